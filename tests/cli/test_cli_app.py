"""CLI tests for the data commands (later stages have their own CLI tests beside their modules)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edgeopt.cli.app import app

runner = CliRunner()


def test_help_lists_real_commands() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert commands == {"data", "train", "eval", "info", "export", "calibrate", "build-engine", "triton", "qat", "prune", "decompose", "search", "bench", "demo", "soft-labels", "optimize", "predict"}
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


def _library_strings() -> list[tuple[str, str]]:
    """(file:line, text) of every string in the library outside the CLI, docstrings left out."""
    import ast

    package = Path(__file__).resolve().parents[2] / "edgeopt"
    found = []
    for path in sorted(package.rglob("*.py")):
        if "cli" in path.relative_to(package).parts:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        in_fstring = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):  # an f-string whole, its fields as {}
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | in_fstring:
                text = node.value
            else:
                continue
            found.append((f"{path.relative_to(package)}:{node.lineno}", text))
    return found


def test_library_messages_name_settings_and_the_cli_says_them_as_flags() -> None:
    """Library errors name the setting (`dla_core`), not a flag; the CLI says each as its flag."""
    import re

    from edgeopt.cli.render import as_flags, command_flags

    flags = command_flags()
    strings = _library_strings()
    named = {name for _, text in strings for name in re.findall(r"`([a-z][a-z0-9_]*)`", text)}
    # settings of the Python API that no command has a flag for, named literally in a message; the CLI shows them as
    # named (the checks every declared setting shares, edgeopt.settings, name their setting from its field)
    api_only = {"preprocess"}  # register_model's (TritonConfig's instance_kind is declared: its check names it from the field)
    assert named and named - set(flags) == api_only, f"settings no command has a flag for: {sorted(named - set(flags))}"
    # a flag may stand only in a command line the message tells the user to run
    commands = re.compile(r"\b(edgeopt|pip|torchrun|trtexec|tritonserver)\b.*?(?=: |; |\)|, |$)")
    stray = [where for where, text in strings if re.search(r"(?<![\w-])--[a-z]", commands.sub("", text))]
    assert stray == []
    assert as_flags("`dla_core` 3: this device has 1; pass `min_batch` N") == "--dla-core 3: this device has 1; pass --min-batch N"
    assert as_flags("`no_dynamic_batching` or `not_a_setting`") == "--no-dynamic-batching or not_a_setting"


def test_info_layers_refuses_a_forged_engine_manifest_in_one_line(tmp_path: Path) -> None:
    """An engine manifest edited by hand (a layer without keys, the layers as text, the architecture as a
    list) is one error line, never a traceback from the renderer."""
    from edgeopt.artifacts import Manifest, write_artifact_manifest

    layer = {"name": "conv1", "type": "Convolution", "precision": "Int8", "inputs": ["Int8"], "outputs": ["Int8"],
             "tactic": "x", "reformat": False, "onnx": ["/conv1/Conv"]}
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really an engine")
    write_artifact_manifest(engine, Manifest(kind="engine", classes=["a", "b"], extra={"layers": [layer]}))
    good = runner.invoke(app, ["info", str(engine), "--layers"])
    assert good.exit_code == 0 and "conv1" in good.output, good.output
    path = tmp_path / "m.engine.json"
    forgeries = [("layers", [{"name": "conv1"}], "layer 0 has no 'type'"), ("layers", "conv1", "layer list is a str"),
                 ("layers", [layer, 7], "layer 1 is a int"), ("arch", ["resnet"], "'arch' is a list")]
    for key, value, message in forgeries:
        record = json.loads(path.read_text())
        (record["extra"] if key == "layers" else record)[key] = value
        forged = tmp_path / f"forged-{len(message)}.engine"
        forged.write_bytes(engine.read_bytes())
        (tmp_path / f"{forged.name}.json").write_text(json.dumps(record))
        result = runner.invoke(app, ["info", str(forged), "--layers"])
        assert result.exit_code == 1 and result.output.count("error:") == 1 and message in result.output, (key, result.output)
        assert "Traceback" not in result.output


def test_cli_defaults_are_their_configs_defaults() -> None:
    """A flag's default and its config field's default are one value: where a command and its config name a
    setting alike, the command's default (as its config would coerce it) equals the field's."""
    import dataclasses

    import typer

    from edgeopt.optimize import OptimizeConfig
    from edgeopt.search import SearchConfig, SearchSpace
    from edgeopt.train.config import KDConfig
    from edgeopt.train.loop import TrainConfig
    from edgeopt.train.soft_labels import SoftLabelConfig

    group = typer.main.get_group(app)

    def defaults(command: str) -> dict:
        return {p.name: p.default for p in group.commands[command].params if p.default is not None}

    def fields(cls) -> dict:
        return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}

    optimize = OptimizeConfig(data=Path("."))  # coerced as the command's values are
    flags = defaults("optimize")
    coerced = OptimizeConfig(data=Path("."), **{k: v for k, v in flags.items() if k in OptimizeConfig.fields()})
    assert coerced == optimize, {k: (getattr(coerced, k), getattr(optimize, k)) for k in OptimizeConfig.fields()
                                 if getattr(coerced, k) != getattr(optimize, k)}
    kd = {"kd_temperature": "temperature", "kd_alpha": "alpha", "kd": "mode", "kd_loss": "loss", "kd_mix": "mix",
          "kd_mix_alpha": "mix_alpha", "kd_class_weighted": "class_weighted"}
    checked = 0
    for command, classes in (("train", (TrainConfig,)), ("soft-labels", (SoftLabelConfig,)), ("search", (SearchConfig, SearchSpace))):
        known = {k: v for cls in reversed(classes) for k, v in fields(cls).items()}
        for flag, value in defaults(command).items():
            if command == "train" and flag in kd:
                field = fields(KDConfig)[kd[flag]]
            elif flag in known:
                field = known[flag]
            else:
                continue
            if isinstance(field, (int, float, str, bool)) and isinstance(value, type(field)):
                assert value == field, (command, flag, value, field)
                checked += 1
    assert checked >= 20


def test_the_cli_starts_without_torch() -> None:
    """Options are declared from the config dataclasses at import; those modules stay free of torch and
    ONNX Runtime, so ``edgeopt --help`` and a bad flag answer at once (the stages import them when run)."""
    import subprocess
    import sys

    code = "import sys, edgeopt.cli.app; print(sorted(m for m in ('torch', 'onnxruntime', 'optuna') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
