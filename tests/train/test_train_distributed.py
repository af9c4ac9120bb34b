"""``edgeopt train`` under torchrun: two real CPU processes on gloo, against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "models" / "tiny_cnn.yaml"
# the agreement this test holds a two-process run to (one-process torchrun run, same data, seed and
# global batch): the same samples form each global batch, but BatchNorm sees half-batches and each
# process draws its own augmentation, so losses agree closely rather than exactly
VAL_LOSS_ATOL = 0.05
TRAIN_LOSS_RTOL = 0.2


def torchrun(nproc: int, out: Path, data: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "edgeopt", "train", "--model", str(TINY), "--data", str(data), "--img-size", "32", "--epochs", "4",
           "--batch-size", "16", "--lr", "5e-3", "--device", "cpu", "--workers", "0", "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=out.parent)


@pytest.fixture(scope="module")
def runs(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this PyTorch has no gloo backend")
    base = tmp_path_factory.mktemp("ddp")
    out = {}
    for n in (1, 2):
        result = torchrun(n, base / f"n{n}", synth_data)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
        out[f"n{n}"] = base / f"n{n}"
    return out


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_two_processes_train_one_model_and_rank0_writes(runs: dict[str, Path], tiny_ckpts: dict) -> None:
    two = _metrics(runs["n2"])
    assert two["distributed"] == {"world_size": 2, "backend": "gloo"}
    losses = [h["train_loss"] for h in two["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.9  # the loss goes down
    manifest = json.loads((runs["n2"] / "best.pt.json").read_text())
    plain = json.loads(Path(str(tiny_ckpts["yaml"]) + ".json").read_text())  # a plain one-process run's manifest
    assert manifest["extra"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert set(manifest) == set(plain) and manifest["classes"] == plain["classes"]
    assert manifest["preprocess"] == plain["preprocess"] and manifest["arch"]["name"] == plain["arch"]["name"]
    assert sorted(p.name for p in runs["n2"].iterdir()) == ["best.pt", "best.pt.json", "curve.png", "last.pt", "metrics.json"]
    from edgeopt.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(runs["n2"] / "best.pt")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 6)


def test_two_processes_agree_with_one(runs: dict[str, Path]) -> None:
    one, two = _metrics(runs["n1"]), _metrics(runs["n2"])
    assert one["distributed"] == {"world_size": 1, "backend": "gloo"}
    for a, b in zip(one["history"], two["history"]):
        assert abs(a["val_loss"] - b["val_loss"]) <= VAL_LOSS_ATOL
        assert abs(a["train_loss"] - b["train_loss"]) <= TRAIN_LOSS_RTOL * a["train_loss"]
    assert one["history"][-1]["val_loss"] < one["history"][0]["val_loss"]


def test_resume_under_torchrun(runs: dict[str, Path], synth_data: Path, tmp_path: Path) -> None:
    """A run stopped after epoch 2 (its last.pt cut back to epoch 2) resumes on two processes."""
    import shutil

    from edgeopt.models.checkpoint import read_checkpoint

    run = tmp_path / "resume"
    shutil.copytree(runs["n2"], run)
    state = read_checkpoint(run / "last.pt")
    state.update(epoch=1, history=state["history"][:2])
    torch.save(state, run / "last.pt")
    result = torchrun(2, run, synth_data, "--resume")
    assert result.returncode == 0, result.stderr[-4000:]
    history = _metrics(run)["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]


def test_world_size_larger_than_the_batches_is_one_line(synth_data: Path, tmp_path: Path) -> None:
    result = torchrun(2, tmp_path / "big", synth_data, "--batch-size", "64")
    assert result.returncode != 0 and "give no full batch of 64 across 2 processes" in result.stdout + result.stderr
    result = torchrun(2, tmp_path / "odd", synth_data, "--batch-size", "15")
    assert result.returncode != 0 and "does not split across 2 processes" in result.stdout + result.stderr
    assert not (tmp_path / "big" / "best.pt").exists()
