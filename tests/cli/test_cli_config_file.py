"""Settings declared once: every command reads ``--config FILE.yaml`` (keys as its flags, flags override),
and the options of a config's settings take their default and help from the config's field."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.cli.common import SETTINGS_OF, _flags_in
from edgeopt.settings import default_of, key_of, rule_of

runner = CliRunner()
TINY = str(Path(__file__).resolve().parents[2] / "edgeopt" / "models" / "tiny_cnn.yaml")


def _commands(group=None, prefix=""):
    group = group or typer.main.get_group(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_command_takes_a_config_file() -> None:
    commands = dict(_commands())
    assert len(commands) >= 20
    missing = [name for name, command in commands.items()
               if not any("--config" in getattr(p, "opts", ()) for p in command.params)]
    assert missing == []


def test_train_reads_a_config_file_and_its_flags_override_it(synth_data: Path, tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(f"model: {TINY}\ndata: {synth_data}\nout: {tmp_path / 'run'}\nimg-size: 24\nepochs: 1\n"
                      "batch_size: 32\nval-split: 0.25\noptimizer: sgd\nlabel_smoothing: 0.0\n")
    result = runner.invoke(app, ["train", "--config", str(config), "--img-size", "32"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "best.pt.json").read_text())
    assert manifest["preprocess"]["size"] == 32  # the flag, over the file's 24
    recorded = json.dumps(manifest)
    assert '"optimizer": "sgd"' in recorded and '"label_smoothing": 0.0' in recorded, "the file's settings were not used"


def test_a_command_without_a_config_class_reads_the_file_as_its_flags(synth_data: Path, tmp_path: Path) -> None:
    config = tmp_path / "split.yaml"
    config.write_text("test: 0.5\njudge: 0\nseed: 3\n")
    out = tmp_path / "parts"
    result = runner.invoke(app, ["data", "split", str(synth_data), "--out", str(out), "--config", str(config)])
    assert result.exit_code == 0, result.output
    split = json.loads((out / "split.json").read_text())
    total = sum(1 for p in synth_data.rglob("*") if p.is_file())
    tested = sum(1 for p in (out / "test").rglob("*") if p.is_file() or p.is_symlink())
    assert abs(tested - total / 2) <= len([d for d in synth_data.iterdir() if d.is_dir()]), split


@pytest.mark.parametrize(("body", "message"), [
    ("epoch: 3\n", "unknown setting 'epoch'; did you mean 'epochs'?"),
    ("epochs: many\n", "key 'epochs': 'many': expected a whole number"),
    ("optimizer: adam\n", "key 'optimizer': 'adam' is unknown (did you mean 'adamw'?)"),
    ("kd-alpha: 2\n", "key 'kd-alpha': 2.0 is out of range: use 0..1"),
    ("- a list\n", "expected a mapping of settings"),
])
def test_a_bad_config_file_is_one_line_naming_the_file_and_key(body: str, message: str, synth_data: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(body)
    result = runner.invoke(app, ["train", "--model", TINY, "--data", str(synth_data), "--out", str(tmp_path / "run"),
                                 "--config", str(config)])
    assert result.exit_code != 0
    assert result.output.count("error:") == 1 and message in result.output and str(config) in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


# options whose default or help a command states itself, and why
OWN_WORDS = {
    ("train", "teacher"): "repeatable: no default list",
    ("train", "pretrained"): "default: where edgeopt ships the weights",
    ("search", "teacher"): "one teacher, its own help",
    ("bench", "backend"): "its help lists the runner registry's backends",
    ("predict", "backend"): "its help lists the runner registry's backends",
    ("search", "max_f1_drop"): "its own help: what search does with the budget",
    ("calibrate", "batch_size"): "the calibration batch, not FallbackConfig's batch for scoring the eval images",
    ("qat", "device"): "a GPU where there is one; the library stays on the CPU unless told",
    ("build-engine", "compute_capability"): "repeatable: no default list",
}


def test_every_option_of_a_declared_setting_takes_its_default_and_help_from_the_config() -> None:
    commands = dict(_commands())
    checked = 0
    for command, classes in SETTINGS_OF.items():
        fields = {}
        for dotted in classes:
            module, _, name = dotted.partition(":")
            for field in dataclasses.fields(getattr(importlib.import_module(module), name)):
                if field.metadata.get("setting"):
                    fields.setdefault(key_of(field), field)
        for param in commands[command].params:
            field = fields.get(param.name)
            if field is None or (command, param.name) in OWN_WORDS:
                continue
            default = default_of(field)
            if isinstance(default, tuple):
                default = ",".join(map(str, default))
            assert param.default == default or param.default is None and default is dataclasses.MISSING, (command, param.name)
            assert param.help == (_flags_in(rule_of(field).help) or None), (command, param.name, param.help)
            checked += 1
    assert checked >= 80, checked


class _Captured(Exception):
    pass


def _capture(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> list:
    """Replace the stage a command calls with one that records its config and stops."""
    seen: list = []

    def stage(config, *args, **kwargs):
        seen.append(config)
        raise _Captured

    monkeypatch.setattr(importlib.import_module(module), name, stage)
    return seen


def test_config_file_values_reach_the_stage_as_given(synth_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch, "edgeopt.train.loop", "train_classifier")
    earlier = tmp_path / "mine"
    earlier.mkdir()  # an earlier run there: an out the file names is the user's choice, written as given
    config = tmp_path / "train.yaml"
    config.write_text(f"model: mobilenet_v2\ndata: {synth_data}\nout: {earlier}\nteacher: {tmp_path / 'a.pt'}\nepochs: 10.0\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert isinstance(result.exception, _Captured), result.output
    (train,) = seen
    assert train.out == earlier and train.kd.teachers == (tmp_path / "a.pt",) and train.epochs == 10
    assert train.pretrained, "mobilenet_v2 ships offline ImageNet weights: train starts from them unless --scratch"


def test_a_config_file_key_may_be_a_flag_and_optimize_reads_every_setting(synth_data: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch, "edgeopt.optimize.pipeline", "optimize_classifier")
    config = tmp_path / "run.yaml"
    config.write_text(f"data: {synth_data}\nint8_holdout: 0.2\nqat-epochs: 2\nsizes: 48\nscratch: true\n")
    result = runner.invoke(app, ["optimize", str(config)])
    assert result.exit_code == 1 and "unknown setting 'scratch'" in result.output  # a negative flag is not a key
    config.write_text(f"data: {synth_data}\nint8_holdout: 0.2\nqat-epochs: 2\nsizes: 48\npretrained: false\n")
    result = runner.invoke(app, ["optimize", str(config)])
    assert isinstance(result.exception, _Captured), result.output
    (optimize,) = seen
    assert (optimize.int8_holdout, optimize.qat_epochs, optimize.sizes, optimize.pretrained) == (0.2, 2, (48,), False)


def test_a_config_file_key_may_be_an_options_flag(tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch, "edgeopt.bench.harness", "bench_artifacts")
    config = tmp_path / "bench.yaml"
    config.write_text(f"artifacts: {tiny_onnx}\njson: {tmp_path / 'r.json'}\nplot: {tmp_path / 'p.png'}\nbatch-sizes: [1, 8]\n")
    result = runner.invoke(app, ["bench", "--config", str(config), "--baseline", "none"])
    assert isinstance(result.exception, _Captured), result.output
    (bench,) = seen
    assert (bench.artifacts, bench.json_path, bench.plot_path, bench.batch_sizes) == (
        (tiny_onnx,), tmp_path / "r.json", tmp_path / "p.png", (1, 8))


@pytest.mark.parametrize(("args", "message"), [
    (["--sizes", "48,x"], "--sizes 'x': expected a whole number, e.g. 48,64,96"),
    (["--lr", "1,2,3"], "--lr '1,2,3': give 2 values, e.g. 3e-4,3e-3"),
    (["--kd-alpha", "0.5,2"], "--kd-alpha 2.0 is out of range: use 0..1"),
])
def test_search_space_text_is_read_by_its_settings(args: list[str], message: str, synth_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", "--data", str(synth_data), "--out", str(tmp_path / "s"), *args])
    assert result.exit_code == 1 and result.output.count("error:") == 1 and message in result.output, result.output
    assert not (tmp_path / "s").exists()
