"""Classification metrics shared by train, eval and bench (scikit-learn underneath)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass
class ClassificationMetrics:
    macro_f1: float
    accuracy: float
    per_class_f1: dict[str, float]
    confusion: list[list[int]]  # rows = true class, columns = predicted
    classes: list[str]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> ClassificationMetrics:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    labels = list(range(len(classes)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return ClassificationMetrics(
        macro_f1=float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        accuracy=float(accuracy_score(y_true, y_pred)),
        per_class_f1={c: float(v) for c, v in zip(classes, per_class)},
        confusion=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        classes=list(classes),
        n=int(len(y_true)),
    )


def plot_confusion(metrics: ClassificationMetrics, path: str | Path, title: str = "") -> Path:
    """Write the confusion matrix as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeopt.artifacts import atomic_path

    cm = np.asarray(metrics.confusion)
    n = len(metrics.classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 1.0 + 0.6 * n))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), metrics.classes, rotation=45, ha="right")
    ax.set_yticks(range(n), metrics.classes)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"macro-F1 {metrics.macro_f1:.3f}, accuracy {metrics.accuracy:.3f}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
