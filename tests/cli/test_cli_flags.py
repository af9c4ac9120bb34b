"""One flag per concept: build-engine's calibration flags read as calibrate's, old spellings warn; stage
outputs default beside their source."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.cli.render import as_flags, command_flags

runner = CliRunner()


def test_the_same_concept_has_the_same_flag_in_every_command() -> None:
    from typer.main import get_command

    group = get_command(app)
    visible = {name: {o for p in cmd.params if not getattr(p, "hidden", False) for o in getattr(p, "opts", ())}
               for name, cmd in group.commands.items() if hasattr(cmd, "params")}
    for name in ("calibrate", "build-engine", "optimize", "search"):
        assert "--max-f1-drop" in visible[name] and "--int8-max-drop" not in visible[name], name
    for name in ("calibrate", "build-engine"):
        assert {"--data", "--method", "--batch-size", "--num-images"} <= visible[name], name
        assert not {"--calib-data", "--calibrator", "--calib-batch-size"} & visible[name]
    for name in ("train", "search", "optimize"):
        assert "--pretrained" in {o for p in group.commands[name].params for o in (*p.opts, *p.secondary_opts)}
    # a library message names the setting; the CLI says today's flag, even where the setting kept its old name
    assert as_flags("pass `calibrator` entropy and `calib_data`", "build-engine") == "pass --method entropy and --data"
    assert command_flags(group.commands["search"])["int8_max_drop"] == "--max-f1-drop"


def test_old_spellings_still_work_and_warn_both_spellings_is_an_error(tiny_onnx: Path, tmp_path: Path) -> None:
    both = runner.invoke(app, ["build-engine", str(tiny_onnx), "--int8", "--data", str(tmp_path), "--calib-data", str(tmp_path)])
    assert both.exit_code == 1 and both.output.count("error:") == 1
    assert "--calib-data is the old spelling of --data" in both.output and "warning: --calib-data is now --data" in both.output
    bad = runner.invoke(app, ["build-engine", str(tiny_onnx), "--int8", "--calibrator", "entropy", "--method", "minmax"])
    assert bad.exit_code == 1 and "--calibrator is the old spelling of --method" in bad.output


def test_export_and_calibrate_write_beside_their_source(tiny_ckpts: dict[str, Path], synth_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    src = tiny_ckpts["yaml"]
    for name in (src.name, src.name + ".json"):
        shutil.copy(src.parent / name, run / name)
    result = runner.invoke(app, ["export", str(run / "best.pt"), "--data", str(synth_data)])
    assert result.exit_code == 0, result.output
    assert (run / "best.onnx").is_file() and str(run / "best.onnx") in result.output
    result = runner.invoke(app, ["calibrate", str(run / "best.onnx"), "--data", str(synth_data), "--num-images", "16", "--batch-size", "8",
                                 "--target", "cpu"])
    assert result.exit_code == 0, result.output
    assert (run / "best.cpu-int8.onnx").is_file()
    bad = runner.invoke(app, ["calibrate", str(run / "best.onnx"), "--data", str(synth_data), "--target", "gpu"])
    assert bad.exit_code == 1 and bad.output.count("error:") == 1
