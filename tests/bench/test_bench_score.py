from __future__ import annotations

import math

import pytest

from edgeopt.errors import EdgeoptError
from edgeopt.bench.score import score_f1, score_macs, score_time


def test_time_score_hand_computed() -> None:
    # equal F1: sigmoid(0) = 0.5; half the time: 0.25
    assert score_time(30.0, 60.0, 0.75, 0.75) == pytest.approx(0.75)
    # the competition's ResNet18d-like entry: t 61.3 vs 60, F1 0.75 vs 0.75 -> 0.5108 + 0.5
    assert score_time(61.3, 60.0, 0.75, 0.75) == pytest.approx(0.5 * 61.3 / 60 + 0.5)
    # F1 0.05 below the baseline: sigmoid(1) = 0.731059
    assert score_time(60.0, 60.0, 0.70, 0.75) == pytest.approx(0.5 + 1 / (1 + math.exp(-1.0)))
    assert score_time(60.0, 60.0, 0.70, 0.75) == pytest.approx(1.2310586, abs=1e-6)


def test_macs_score_hand_computed() -> None:
    # below the baseline's F1: full penalty 1 - 0.6/0.75 = 0.2
    assert score_f1(0.6, 0.75) == pytest.approx(0.2)
    assert score_macs(1e6, 1e8, 0.6, 0.75) == pytest.approx(0.01 + 0.2)
    # at or above: half of a negative term (a bonus)
    assert score_f1(0.9, 0.75) == pytest.approx(0.5 * (1 - 0.9 / 0.75)) == pytest.approx(-0.1)
    assert score_f1(0.75, 0.75) == 0.0


def test_score_rejects_bad_baselines() -> None:
    with pytest.raises(EdgeoptError, match="baseline time"):
        score_time(1.0, 0.0, 0.5, 0.5)
    with pytest.raises(EdgeoptError, match="baseline f1"):
        score_f1(0.5, 0.0)
