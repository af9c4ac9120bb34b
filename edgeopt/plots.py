"""Every figure edgeopt draws, in one place: the confusion matrix (eval), the learning curve (train), F1
against latency (bench), a search's Pareto fronts and the fallback's layer sensitivity.

Each function takes plain results (read by attribute, so this module imports no stage) and writes one
PNG atomically through :func:`figure`; matplotlib is imported when a figure is drawn, with the
``Agg`` backend (no display needed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifacts import atomic_path


@contextlib.contextmanager
def figure(path: str | Path, figsize: tuple[float, float], **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``(fig, axes)`` to draw on; on exit the figure is written to ``path`` (PNG, atomically) and closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=figsize, **subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def plot_confusion(metrics: Any, path: str | Path, title: str = "") -> Path:
    """The confusion matrix of a ``ClassificationMetrics`` (classes, confusion, macro_f1, accuracy)."""
    cm = np.asarray(metrics.confusion)
    n = len(metrics.classes)
    with figure(path, (1.0 + 0.7 * n, 1.0 + 0.6 * n)) as (_, ax):
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(n), metrics.classes, rotation=45, ha="right")
        ax.set_yticks(range(n), metrics.classes)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title or f"macro-F1 {metrics.macro_f1:.3f}, accuracy {metrics.accuracy:.3f}")
    return Path(path)


def plot_curve(history: Sequence[Any], path: str | Path) -> Path:
    """Learning curve: train/val loss and val macro-F1 per epoch (``EpochStats`` rows)."""
    epochs = [h.epoch for h in history]
    with figure(path, (6, 3.5)) as (fig, ax):
        ax.plot(epochs, [h.train_loss for h in history], label="train loss")
        ax.plot(epochs, [h.val_loss for h in history], label="val loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax2 = ax.twinx()
        ax2.plot(epochs, [h.val_macro_f1 for h in history], color="tab:green", label="val macro-F1")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("macro-F1")
        fig.legend(loc="upper center", ncol=3, fontsize=8)
    return Path(path)


def plot_f1_latency(report: Any, path: str | Path, batch: int) -> Path:
    """F1 against batch latency for everything a ``BenchReport`` benched (rows without an F1 are left out)."""
    with figure(path, (6, 4)) as (_, ax):
        for row in report.rows:
            if row.f1 is None:
                continue
            ax.scatter(row.latency[batch].p50_ms, row.f1, marker="s" if row.is_baseline else "o")
            ax.annotate(f"{row.name} ({row.precision})", (row.latency[batch].p50_ms, row.f1), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel(f"latency p50 at batch {batch} (ms, log)")
        ax.set_ylabel("macro-F1")
        ax.set_title("F1 vs latency")
    return Path(path)


def plot_fronts(panels: Sequence[dict[str, Any]], path: str | Path, ylabel: str, log_x: bool = False,
                y_floor: float | None = None) -> Path:
    """Side-by-side panels sharing the y axis, each a cloud of points (``x``, ``y``) with its front joined
    (``front_x``, ``front_y``, ``front_labels``) and an ``xlabel``: a search's F1 against MACs and latency."""
    with figure(path, (5 * len(panels), 4), ncols=len(panels), sharey=True, squeeze=False) as (_, axes):
        for ax, panel in zip(axes[0], panels):
            ax.scatter(panel["x"], panel["y"], c="lightgray", edgecolors="gray", label="trial")
            ax.plot(panel["front_x"], panel["front_y"], "o-", color="tab:red", label="Pareto front")
            for label, x, y in zip(panel["front_labels"], panel["front_x"], panel["front_y"]):
                ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel(panel["xlabel"])
            if log_x and len(panel["x"]):
                ax.set_xscale("log")
            ax.grid(alpha=0.3)
        if y_floor is not None:
            axes[0][0].set_ylim(bottom=y_floor)
        axes[0][0].set_ylabel(ylabel)
        axes[0][0].legend(fontsize=8, loc="lower right")
    return Path(path)


def plot_sensitivity(result: Any, path: str | Path) -> Path:
    """Each measured layer's INT8 sensitivity (a ``FallbackResult``), the layers kept in float highlighted."""
    rows = [r for r in result.layers if r.f1 == r.f1]  # the measured weight layers (the other ops have no score)
    with figure(path, (max(6, len(rows) * 0.12), 3.5)) as (_, ax):
        ax.bar(range(len(rows)), [r.kl_gain for r in rows], color=["tab:red" if r.kept_float else "tab:blue" for r in rows])
        ax.set_xlabel("layer (most sensitive first)")
        ax.set_ylabel("KL gain when left in float")
        ax.set_title(f"INT8 sensitivity: {len(result.float_layers)} layer(s) kept in float, "
                     f"{'F1' if result.metric == 'macro_f1' else 'agreement'} {result.f1_int8:.3f} -> {result.f1_final:.3f} "
                     f"(FP32 {result.f1_fp32:.3f})")
    return Path(path)
