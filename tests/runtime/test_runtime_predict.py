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


def _imports(rel: str) -> set[str]:
    return {n.module for n in ast.walk(ast.parse((PACKAGE / rel).read_text())) if isinstance(n, ast.ImportFrom)}


def test_every_stage_that_scores_a_folder_runs_the_one_loop() -> None:
    """Scoring goes through runtime.scoring, judging a candidate against its parent through runtime.judge
    (which scores through runtime.scoring), and both run models through the one prediction loop."""
    assert "edgeopt.runtime.predict" in _imports("runtime/scoring.py")
    assert "edgeopt.runtime.scoring" in _imports("runtime/judge.py")
    scorers = ("runtime/evaluate.py", "runtime/classify.py", "train/loop.py", "bench/timing.py")
    judges = ("quant/fallback.py", "quant/int8_choice.py", "trt/verify.py", "optimize/deploy.py")
    assert [rel for rel in scorers if "edgeopt.runtime.scoring" not in _imports(rel)] == []
    assert [rel for rel in judges if "edgeopt.runtime.judge" not in _imports(rel)] == []
