"""edgeopt.plots: every figure is drawn from plain results and written as a PNG, atomically."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace as NS

import pytest
from PIL import Image

from edgeopt import plots


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_each_figure_is_a_png(tmp_path: Path) -> None:
    metrics = NS(classes=["a", "b", "c"], confusion=[[3, 1, 0], [0, 4, 0], [1, 0, 2]], macro_f1=0.8, accuracy=0.82)
    history = [NS(epoch=e, train_loss=1 / e, val_loss=1.2 / e, val_macro_f1=0.5 + 0.1 * e) for e in (1, 2, 3)]
    latency = {1: NS(p50_ms=2.0)}
    report = NS(rows=[NS(f1=0.9, latency=latency, is_baseline=True, name="base", precision="fp32"),
                      NS(f1=None, latency=latency, is_baseline=False, name="x", precision="int8")])
    panel = {"x": [1, 2, 3], "y": [0.5, 0.7, 0.6], "front_x": [1, 2], "front_y": [0.5, 0.7], "front_labels": ["#0", "#1"],
             "xlabel": "MACs (M)"}
    layer = NS(f1=0.8, kl_gain=0.1, kept_float=True)
    fallback = NS(layers=[layer, NS(f1=float("nan"), kl_gain=0.0, kept_float=False)], float_layers=["l0"], metric="macro_f1",
                  f1_int8=0.7, f1_final=0.8, f1_fp32=0.81)
    drawn = [plots.plot_confusion(metrics, tmp_path / "cm.png"), plots.plot_curve(history, tmp_path / "curve.png"),
             plots.plot_f1_latency(report, tmp_path / "f1.png", batch=1),
             plots.plot_fronts([panel, panel], tmp_path / "fronts.png", ylabel="F1", log_x=True, y_floor=0.4),
             plots.plot_sensitivity(fallback, tmp_path / "sens.png")]
    sizes = [_png(path) for path in drawn]
    assert sizes[3][0] > sizes[2][0]  # two panels side by side
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in drawn)  # no temporary file left


def test_a_figure_that_fails_to_draw_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        with plots.figure(tmp_path / "x.png", (3, 3)) as (_, ax):
            ax.plot([0, 1], [0, 1 / 0])
    assert list(tmp_path.iterdir()) == []
