"""Classification metrics shared by train, eval and bench (scikit-learn underneath)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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
