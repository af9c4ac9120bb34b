"""Reruns that are always right: each step skipped, resumed or started from scratch by the inputs it reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.optimize import OptimizeConfig
from edgeopt.optimize.steps import NOT_INPUTS, STEP_SETTINGS, SettingsView, Steps
from optimize_args import tiny_args  # tests/optimize/optimize_args.py

runner = CliRunner()
STEPS = ("split", "teacher", "bank", "search", "deploy", "bench")


def test_every_setting_is_some_steps_input_and_a_step_reads_only_its_own(tmp_path: Path) -> None:
    named = {s for row in STEP_SETTINGS.values() for s in row}
    assert set(OptimizeConfig.fields()) == named | set(NOT_INPUTS) and not named & set(NOT_INPUTS)
    view = SettingsView(OptimizeConfig(data=tmp_path), "bench")
    assert view.baseline_f1 == 0.884 and view.device == "auto"
    with pytest.raises(AttributeError, match="step 'bench' reads `epochs`, which is not in its STEP_SETTINGS row"):
        view.epochs


def test_a_step_resumes_only_an_interrupted_run_of_the_same_inputs(tmp_path: Path) -> None:
    config = OptimizeConfig(data=tmp_path)
    folder = tmp_path / "work"
    calls: list[bool] = []

    def body(crash: bool):
        def run(settings, resume: bool):
            calls.append(resume)
            folder.mkdir(exist_ok=True)
            (folder / "partial").touch()
            if crash:
                raise KeyboardInterrupt  # killed mid-step
            return {"views": settings.views}, [str(folder)]
        return run

    steps = Steps(tmp_path, config, log=lambda m: None)
    with pytest.raises(KeyboardInterrupt):
        steps.run("bank", steps.inputs("bank", pool="a"), [folder], body(crash=True))
    assert Steps(tmp_path, config, lambda m: None).run("bank", steps.inputs("bank", pool="a"), [folder], body(False)) == {"views": 20}
    assert calls == [False, True]  # the same inputs: resumed, its partial work kept
    assert Steps(tmp_path, config, lambda m: None).run("bank", steps.inputs("bank", pool="a"), [folder], body(False)) == {"views": 20}
    assert calls == [False, True]  # finished: skipped
    with pytest.raises(KeyboardInterrupt):
        Steps(tmp_path, config, lambda m: None).run("bank", steps.inputs("bank", pool="b"), [folder], body(crash=True))
    (folder / "stale").touch()
    other = OptimizeConfig(data=tmp_path, views=3)
    seen: list[set[str]] = []

    def fresh(settings, resume: bool):
        seen.append({p.name for p in folder.iterdir()} if folder.exists() else set())
        calls.append(resume)
        return {"views": settings.views}, []

    steps = Steps(tmp_path, other, lambda m: None)
    assert steps.run("bank", steps.inputs("bank", pool="b"), [folder], fresh) == {"views": 3}
    assert calls[-1] is False and seen == [set()]  # other inputs than the interrupted run's: cleared, from scratch


def _run(args: list[str]) -> tuple[str, dict]:
    result = runner.invoke(app, ["optimize", *args])
    assert result.exit_code == 0, result.output
    return result.output, json.loads((Path(args[args.index("--out") + 1]) / "report.json").read_text())


def _skipped(output: str) -> list[str]:
    return [s for s in STEPS if f"{s}: done in an earlier run, inputs unchanged: skipped" in output]


def _teacher_epochs_trained(out: Path) -> int:
    return len(json.loads((out / "teacher" / "metrics.json").read_text())["history"])


@pytest.mark.slow
def test_reruns_after_each_change_rerun_what_it_feeds_and_skip_the_rest(synth_data: Path, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(synth_data, data)
    first, record = _run(tiny_args(data, out))
    assert _skipped(first) == [] and _teacher_epochs_trained(out) == 2
    # what each change feeds: the steps before it are skipped, it and every later step run from scratch
    current: dict[str, str] = {}
    for key, value, first_to_run in (("epochs", "2", "search"), ("sizes", "32,40", "search"), ("final_epochs", "3", "search"),
                                     ("baseline_f1", "0.5", "search"), ("teacher_epochs", "3", "teacher"),
                                     ("teacher_label_smoothing", "0", "teacher"), ("teacher_mixup", "0.2", "teacher")):
        current[key] = value
        output, record = _run(tiny_args(data, out, **current))
        assert _skipped(output) == list(STEPS[:STEPS.index(first_to_run)]), (key, output)
        assert "starting it from scratch" in output and "resuming" not in output, (key, output)
        # optimize chose both the bank's views and the final run's epochs: it says so once, never as a warning
        assert "views repeat" not in output and ("seen about" in output) == (int(current.get("final_epochs", 2)) > 2)
    assert _teacher_epochs_trained(out) == 3  # trained anew for 3 epochs, not resumed from the 2-epoch run
    recipe = json.loads((out / "teacher" / "best.pt.json").read_text())["extra"]["train_config"]
    assert (recipe["label_smoothing"], recipe["mixup"]) == (0.0, 0.2)  # the teacher made to be distilled
    assert record["search"]["final"]["epochs"] == 3 and record["config"]["sizes"] == [32, 40]
    assert record["config"]["baseline_f1"] == 0.5
    # one image changed: a new split, so everything runs again, the teacher from its first epoch
    image = sorted(data.rglob("*.jpg"))[0]
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(image, quality=100)
    output, record = _run(tiny_args(data, out, **current))
    assert _skipped(output) == [] and _teacher_epochs_trained(out) == 3
    again, _ = _run(tiny_args(data, out, **current))
    assert _skipped(again) == list(STEPS)
