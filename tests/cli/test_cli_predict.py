"""edgeopt predict and edgeopt data split through the CLI: success, and bad input as one `error:` line."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from typer.testing import CliRunner

from edgeopt.cli.app import app

runner = CliRunner()


def _one_error_line(result) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output, result.output


def test_predict_a_folder_with_the_top_k(tiny_onnx: Path, tiny_ckpts: dict[str, Path], synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(tiny_onnx), str(synth_data), "--out", str(out), "--top-k", "2"], terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 72 and set(rows[0]) == {"path", "prediction", "confidence", "prediction_2", "confidence_2"}
    assert "72 images" in result.output and "synthetic_metal" in result.output and "macro-F1" in result.output
    # the plain form of progress (the output is not a terminal): a line per quarter, the last one at 72/72
    assert f"predict {synth_data}: 72/72 (100%)" in result.output
    # a checkpoint runs too, on torch
    result = runner.invoke(app, ["predict", str(tiny_ckpts["yaml"]), str(synth_data), "--out", str(tmp_path / "c.csv")])
    assert result.exit_code == 0 and "torch" in result.output, result.output


def test_predict_default_csv_never_overwrites(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for _ in range(2):
            assert runner.invoke(app, ["predict", str(tiny_onnx), str(synth_data)]).exit_code == 0
    finally:
        os.chdir(cwd)
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "predictions2.csv").is_file()


def test_predict_bad_input(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["predict", str(tiny_onnx), str(tmp_path / "empty"), "--out", str(tmp_path / "p.csv")])
    _one_error_line(result)
    assert "no usable images" in result.output
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"not a jpeg at all")
    (junk / "notes.txt").write_text("hello")
    result = runner.invoke(app, ["predict", str(tiny_onnx), str(junk), "--out", str(tmp_path / "p.csv")])
    _one_error_line(result)
    assert "no usable images" in result.output and "skipped 1 file" in result.output
    other = tmp_path / "other"  # crops of classes the model was not trained on
    for name in ("car", "bus"):
        shutil.copytree(next(p for p in synth_data.iterdir() if p.is_dir()), other / name)
    result = runner.invoke(app, ["predict", str(tiny_onnx), str(other), "--out", str(tmp_path / "p.csv")], terminal_width=300)
    _one_error_line(result)
    assert "a model of other classes" in result.output and "--unlabelled" in result.output
    result = runner.invoke(app, ["predict", str(tiny_onnx), str(other), "--out", str(tmp_path / "p.csv"), "--unlabelled"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(tiny_onnx), str(other), "--top-k", "9", "--out", str(tmp_path / "q.csv")])
    _one_error_line(result)
    assert "--top-k 9" in result.output
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    result = runner.invoke(app, ["predict", str(notes), str(other)])
    _one_error_line(result)
    assert not (tmp_path / "q.csv").exists()


def test_data_split_then_stats(synth_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "split", str(synth_data), "--test", "0.25", "--judge", "0.25", "--out", str(tmp_path / "s")],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "pool/" in result.output and "judge/" in result.output and "test/" in result.output
    for part, per_class in (("pool", 6), ("judge", 3), ("test", 3)):
        stats = runner.invoke(app, ["data", "stats", str(tmp_path / "s" / part)], terminal_width=200)
        assert stats.exit_code == 0 and f"{per_class * 6}" in stats.output, stats.output


def test_data_split_bad_input(synth_data: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["data", "split", str(tmp_path / "empty"), "--out", str(tmp_path / "s")])
    _one_error_line(result)
    assert "no class sub-folders" in result.output
    junk = tmp_path / "junk" / "a"
    junk.mkdir(parents=True)
    (junk / "x.jpg").write_bytes(b"garbage")
    result = runner.invoke(app, ["data", "split", str(tmp_path / "junk"), "--out", str(tmp_path / "s")])
    _one_error_line(result)
    assert "hold no usable images" in result.output
    result = runner.invoke(app, ["data", "split", str(synth_data), "--test", "0.7", "--judge", "0.4", "--out", str(tmp_path / "s")])
    _one_error_line(result)
    assert "--judge 0.4" in result.output
    assert not (tmp_path / "s").exists()
