"""Activation ranges: TensorRT's entropy threshold against a worked example, percentile, minmax."""

from __future__ import annotations

import numpy as np
import pytest

from edgeopt.quant.ranges import amax_for, entropy_amax, percentile_amax


def test_entropy_threshold_worked_example() -> None:
    # |x| histogram [4, 4, 3, 1] over edges 0..4, quantized to 2 levels, thresholds i = 2..4 bins:
    #   i=2: P = [4, 4+3+1] = [4, 8]/12, Q = [4, 4]/8          KL = 1/3 ln(2/3) + 2/3 ln(4/3)       = 0.05663
    #   i=3: P = [4, 4, 3+1] = [4, 4, 4]/12, Q = [4, 4, 3]/11   KL = 2/3 ln(11/12) + 1/3 ln(11/9)    = 0.00888
    #   i=4: P = [4, 4, 3, 1]/12, Q = [4, 4, 2, 2]/12           KL = 1/4 ln(3/2) + 1/12 ln(1/2)      = 0.04360
    # the minimum is i=3: the threshold is the upper edge of bin 3, i.e. 3.0 (the outlier bin is clipped)
    edges = np.arange(5, dtype=np.float64)
    assert entropy_amax(np.array([4, 4, 3, 1]), edges, num_quantized_bins=2, start_bin=2) == 3.0
    # the zero bin takes its neighbour's count (a spike of post-ReLU zeros must not steer the search)
    assert entropy_amax(np.array([1000, 4, 3, 1]), edges, num_quantized_bins=2, start_bin=2) == 3.0
    # a flat histogram keeps its whole range
    assert entropy_amax(np.array([2, 2, 2, 2]), edges, num_quantized_bins=2, start_bin=2) == 4.0


def test_entropy_clips_a_long_tail_that_minmax_keeps() -> None:
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal(200_000))
    x[:5] = 40.0  # a few outliers stretch the range tenfold
    counts, edges = np.histogram(x, bins=2048, range=(0, x.max()))
    minmax, entropy = amax_for("minmax", counts, edges), amax_for("entropy", counts, edges)
    assert minmax == pytest.approx(40.0)
    assert 2.0 < entropy < 6.0  # near the bulk of a half-normal, far below the outliers


def test_percentile_from_the_histogram() -> None:
    counts = np.zeros(100, np.int64)
    counts[:99] = 100
    counts[99] = 1  # 9,901 samples: 99.99 % of them lie below the last bin's lower edge
    edges = np.linspace(0, 100, 101)
    assert percentile_amax(counts, edges, 99.0) == pytest.approx(99.0, abs=1.0)
    assert percentile_amax(counts, edges, 100.0) == 100.0
