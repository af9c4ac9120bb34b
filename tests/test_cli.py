"""CLI tests for the data commands (later stages have their own CLI tests beside their modules)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edgeopt.cli import app

runner = CliRunner()


def test_help_lists_real_commands() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert commands == {"data", "train", "eval", "info", "export", "calibrate", "build-engine", "triton", "qat", "prune", "decompose", "search", "bench", "demo", "soft-labels", "optimize"}
    listed = {line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert commands <= listed


def test_data_synth_and_stats(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "d"), "--per-class", "3"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "synthetic_metal" in result.output and "18" in result.output


def test_data_stats_bad_input(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    result = runner.invoke(app, ["data", "stats", str(tmp_path)])
    assert result.exit_code == 1
    assert "error:" in result.output and "no usable images" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "missing")])
    assert result.exit_code == 2


def test_data_taco_success_and_bad_json(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (50, 50)).save(tmp_path / "imgs" / "a.jpg")
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 50, "height": 50}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [0, 0, 30, 30]}],
        "categories": [{"id": 0, "name": "Pop tab", "supercategory": "Pop tab"}],
    }))
    args = ["data", "taco", "--annotations", str(ann), "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Metal" in result.output and (tmp_path / "out" / "Metal" / "1_1.jpg").exists()
    ann.write_text("{")
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "malformed or truncated JSON" in result.output
    result = runner.invoke(app, args[:-2] + ["--out", str(tmp_path / "o2"), "--padding", "3"])
    assert result.exit_code == 1 and "--padding" in result.output


def test_every_command_warns_the_same_way(tmp_path: Path, tiny_onnx: Path, synth_data: Path) -> None:
    """The same skipped file reads the same from `data stats` and `eval`: one `warning:` line, no Python warning."""
    import shutil

    data = tmp_path / "crops"
    shutil.copytree(synth_data, data)
    (next(p for p in data.iterdir() if p.is_dir()) / "broken.jpg").write_bytes(b"not a jpeg")
    lines = {}
    for args in (["data", "stats", str(data)], ["eval", str(tiny_onnx), "--data", str(data)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        warned = [line for line in result.output.splitlines() if "skipped 1 file" in line]
        assert len(warned) == 1 and warned[0].startswith("warning: "), result.output
        assert "UserWarning" not in result.output and "warnings.warn" not in result.output
        lines[args[0]] = warned[0]
    assert lines["data"] == lines["eval"]
