"""The one prediction loop: a model's logits over batches of a labelled (or unlabelled) folder.

Evaluation, INT8 judging and the fallback's sensitivity pass, engine verification, training's
validation and submit time all run their models through ``predict_each``/``predict``, so every
figure comes from the same loop over the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

Run = Callable[[Any], Any]  # a batch -> logits (a numpy array, or a torch tensor on any device)


def as_numpy(logits: Any) -> np.ndarray:
    """Logits as a float32 numpy array (a torch tensor is detached and brought to the CPU)."""
    if hasattr(logits, "detach"):
        logits = logits.detach().float().cpu().numpy()
    return np.asarray(logits, dtype=np.float32)


def predict_each(runs: Sequence[Run], batches: Iterable[Any]) -> list[np.ndarray]:
    """Every run's logits over ``batches`` (each batch decoded once, handed to each run in turn),
    concatenated per run; runs over an empty folder give empty arrays."""
    outputs: list[list[np.ndarray]] = [[] for _ in runs]
    for batch in batches:
        for out, run in zip(outputs, runs):
            out.append(as_numpy(run(batch)))
    return [np.concatenate(out) if out else np.zeros((0, 0), np.float32) for out in outputs]


def predict(run: Run, batches: Iterable[Any]) -> np.ndarray:
    """``run``'s logits over ``batches``, concatenated."""
    return predict_each([run], batches)[0]
