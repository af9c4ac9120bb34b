"""The one prediction loop, and the stages that score folders through it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import torch

from edgeopt.runtime.predict import predict, predict_each

PACKAGE = Path(__file__).resolve().parents[2] / "edgeopt"


def test_each_batch_is_decoded_once_and_handed_to_every_run() -> None:
    decoded = []

    def batches():
        for i in range(3):
            decoded.append(i)
            yield np.full((2, 1), float(i), np.float32)

    double, torch_half = predict_each([lambda b: np.hstack([b, 2 * b]), lambda b: torch.from_numpy(b / 2)], batches())
    assert decoded == [0, 1, 2]
    assert double.shape == (6, 2) and double[:, 1].tolist() == [0, 0, 2, 2, 4, 4]
    assert torch_half.dtype == np.float32 and torch_half[:, 0].tolist() == [0, 0, 0.5, 0.5, 1, 1]
    assert predict(lambda b: b, iter([])).shape == (0, 0)


def test_every_stage_that_scores_a_folder_runs_the_one_loop() -> None:
    users = ("runtime/evaluate.py", "quant/fallback.py", "trt/verify.py", "train/loop.py", "bench/timing.py")
    for rel in users:
        tree = ast.parse((PACKAGE / rel).read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "edgeopt.runtime.predict" in modules, rel
