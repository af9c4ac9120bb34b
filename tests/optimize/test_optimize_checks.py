"""Every optimize input checked before it is believed and before step 1: one `error:` line naming the
flag or key, no traceback, nothing written into --out. And the YAML file the README advertises."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.errors import ConfigError
from edgeopt.optimize import OptimizeConfig, read_yaml_config
from optimize_args import TINY, tiny_args  # tests/optimize/optimize_args.py

runner = CliRunner()


def _refused(args: list[str], out: Path, message: str) -> None:
    result = runner.invoke(app, ["optimize", *args])
    assert result.exit_code == 1, (args, result.output)
    assert result.output.count("error:") == 1 and message in result.output, (message, result.output)
    assert "Traceback" not in result.output and not (out.is_dir() and any(out.iterdir())), (message, result.output)


def test_bad_flags_are_refused_before_anything_is_written(synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    one_class = tmp_path / "one"
    shutil.copytree(synth_data / "synthetic_metal", one_class / "synthetic_metal")
    overlapping = tmp_path / "test"
    shutil.copytree(synth_data / "synthetic_paper", overlapping / "synthetic_paper")  # the same images as --data
    cases = [
        ({"sizes": "abc"}, "--sizes 'abc': expected a whole number"),
        ({"sizes": "32,abc"}, "--sizes 'abc': expected a whole number"),
        ({"max_macs": "lots"}, "--max-macs 'lots'"),
        ({"max_f1_drop": "1.5"}, "--max-f1-drop 1.5 is out of range"),
        ({"test_fraction": "0.9"}, "--test-fraction 0.9 is out of range"),
        ({"views": "0"}, "--views 0 is out of range"),
        ({"backbones": "no_such_net"}, "--backbones no_such_net: unknown model"),
        ({"teacher_model": "no_such_net"}, "--teacher-model no_such_net: unknown model"),
        ({"baseline": "no_such_net"}, "--baseline no_such_net: unknown model"),
        ({"max_macs": "1k"}, "--max-macs 0.001M: no backbone fits at any size"),
        ({"data": str(one_class)}, "has one class folder"),
        ({"test": str(synth_data)}, "--test " + str(synth_data) + " is --data itself"),
        ({"test": str(overlapping)}, f"shares {len(list(overlapping.rglob('*.jpg')))} image(s) with --data"),
        ({"target": "tensorrt"}, "--target tensorrt needs TensorRT and an NVIDIA GPU"),
        ({"device": "tpu"}, "--device 'tpu' is unknown"),
        ({"assistant_size": "32"}, "--assistant-for 32 is not below --assistant-size 32"),
    ]
    for flags, message in cases:
        data = Path(flags.pop("data", synth_data))
        _refused(tiny_args(data, out, **flags), out, message)
    assert not out.exists()
    taken = tmp_path / "a-file"
    taken.write_text("keep me")
    _refused(tiny_args(synth_data, taken), taken, "--out " + str(taken) + " is a file")
    assert taken.read_text() == "keep me"


def test_bad_yaml_values_name_their_key_and_file(synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    for body, message in ((f"data: {synth_data}\nsizes: abc\n", "key 'sizes': 'abc': expected a whole number"),
                          (f"data: {synth_data}\nviews: many\n", "key 'views': 'many': expected a whole number"),
                          (f"data: {synth_data}\nmax-macs: lots\n", "key 'max-macs': 'lots'"),
                          (f"data: {synth_data}\npretrained: maybe\n", "key 'pretrained': 'maybe': expected true or false"),
                          (f"data: {synth_data}\nmax-mac: 20M\n", "unknown setting 'max-mac'; did you mean 'max-macs'"),
                          ("- data\n", "expected a mapping of settings")):
        config = tmp_path / "bad.yaml"
        config.write_text(body if body.startswith("-") else body + f"out: {out}\n")
        _refused([str(config)], out, f"{config}: ")
        _refused([str(config)], out, message)
    assert not (tmp_path / "runs").exists()


def test_yaml_and_flags_merge_with_the_flags_on_top(synth_data: Path, tmp_path: Path) -> None:
    good = tmp_path / "run.yaml"
    good.write_text(f"data: {synth_data}\nmax-macs: 20M\nsizes: 32,48\nfinal-epochs: 5\nviews: 4\n")
    assert read_yaml_config(good, {"trials": 2, "views": 7}) == OptimizeConfig(
        data=synth_data, max_macs=20_000_000, sizes=(32, 48), final_epochs=5, trials=2, views=7)
    with pytest.raises(ConfigError, match="unknown setting 'max-mac'; did you mean 'max-macs'"):
        read_yaml_config(tmp_path / "x.yaml" if (tmp_path / "x.yaml").write_text("data: d\nmax-mac: 1\n") else good, {})


@pytest.mark.slow
def test_a_valid_yaml_file_runs_end_to_end_and_flags_given_override_it(synth_data: Path, tmp_path: Path) -> None:
    """The README's form, `edgeopt optimize run.yaml`, through the CLI: every key from the file, except
    what a flag given on the command line says; the flags' defaults never override the file."""
    out = tmp_path / "from-yaml"
    args = tiny_args(synth_data, out)
    settings = {args[i][2:]: args[i + 1] for i in range(0, len(args) - 2, 2)}
    settings.update({"pretrained": False, "adaround": False, "final-epochs": 3, "sizes": [32], "views": 2})
    config = tmp_path / "run.yaml"
    import yaml

    config.write_text(yaml.safe_dump(settings))
    result = runner.invoke(app, ["optimize", str(config)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "report.json").read_text())["config"]
    assert record["final_epochs"] == 3 and record["pretrained"] is False and record["baseline"] == TINY
    assert record["max_f1_drop"] == 0.3 and record["teacher_size"] == 40  # the file's, not the flags' defaults
    other = tmp_path / "overridden"
    result = runner.invoke(app, ["optimize", str(config), "--out", str(other), "--final-epochs", "4"])
    assert result.exit_code == 0, result.output
    record = json.loads((other / "report.json").read_text())["config"]
    assert record["final_epochs"] == 4 and record["out"] == str(other) and record["teacher_size"] == 40
    assert json.loads((other / "report.json").read_text())["search"]["final"]["epochs"] == 4
