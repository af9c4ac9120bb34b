"""Run folders that never overwrite, stage outputs beside their source, and renamed flags that warn."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.cli.common import beside, next_free

runner = CliRunner()
TINY = str(Path(__file__).resolve().parents[2] / "models" / "tiny_cnn.yaml")


@pytest.fixture
def in_tmp(tmp_path: Path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


def test_a_second_default_train_run_lands_in_a_new_folder(in_tmp: Path, synth_data: Path) -> None:
    args = ["train", "--model", TINY, "--data", str(synth_data), "--img-size", "32", "--epochs", "1", "--batch-size", "32",
            "--device", "cpu", "--val-split", "0"]
    first = runner.invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "no validation split" in first.output and "nan" not in first.output
    stamp = (in_tmp / "runs/train/best.pt").stat().st_mtime_ns
    second = runner.invoke(app, args, terminal_width=200)
    assert second.exit_code == 0, second.output
    assert "runs/train holds an earlier run: writing to runs/train2" in second.output
    assert (in_tmp / "runs/train2/best.pt").is_file() and (in_tmp / "runs/train/best.pt").stat().st_mtime_ns == stamp
    again = runner.invoke(app, [*args, "--exist-ok"])
    assert again.exit_code == 0 and not (in_tmp / "runs/train3").exists()
    bad = runner.invoke(app, [*args, "--epochs", "0"])
    assert bad.exit_code == 1 and bad.output.count("error:") == 1 and not (in_tmp / "runs/train3").exists()


def test_next_free_and_beside(tmp_path: Path) -> None:
    assert next_free(tmp_path / "run") == tmp_path / "run"
    (tmp_path / "run").mkdir()
    (tmp_path / "run2").mkdir()
    assert next_free(tmp_path / "run") == tmp_path / "run3"
    (tmp_path / "p.csv").write_text("")
    assert next_free(tmp_path / "p.csv") == tmp_path / "p2.csv"
    assert beside(Path("runs/a/best.pt"), ".onnx") == Path("runs/a/best.onnx")
    assert beside(Path("runs/a/model.onnx"), ".int8.onnx") == Path("runs/a/model.int8.onnx")
    assert beside(Path("runs/a/model.int8.onnx"), ".int8.engine") == Path("runs/a/model.int8.engine")
