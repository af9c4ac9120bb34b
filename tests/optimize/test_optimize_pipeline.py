"""edgeopt optimize: the whole way from crops to a benched INT8 model, rerun, resumed after kill -9, from YAML."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.errors import ConfigError
from optimize_args import tiny_args  # tests/optimize/optimize_args.py

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "models" / "tiny_cnn.yaml")
pytestmark = pytest.mark.slow
runner = CliRunner()


def _args(data: Path, out: Path, trials: int = 1) -> list[str]:
    return tiny_args(data, out, trials)


def test_optimize_runs_end_to_end_and_a_rerun_skips_every_finished_step(synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.artifacts import read_manifest
    from edgeopt.data.seen import digest, trained_on

    out = tmp_path / "run"
    result = runner.invoke(app, ["optimize", *_args(synth_data, out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()
    assert "## INT8" in markdown and "## Bench (test split" in markdown
    # the test split trained, selected and judged nothing
    test = sorted(Path(record["split"]["test"]).rglob("*.jpg"))
    final = record["search"]["final"]
    assert test and not {digest(p) for p in test} & trained_on(read_manifest(final["checkpoint"]).extra)
    assert Path(final["int8"]["judged_on"]) != Path(record["split"]["test"])
    # the final run's BatchNorm statistics recomputed on its images as deployed (optimize's default, FixRes)
    assert final["bn_recalibrated"] and read_manifest(final["checkpoint"]).extra["bn_recalibrated"]["images"] > 0
    # a 32 px student: the 96 px teacher assistant's bank taught it and its weights started it (the defaults)
    assistant = final["assistant"]
    assert assistant["img_size"] == 96 and final["started_from"] == assistant["checkpoint"]
    assert read_manifest(final["checkpoint"]).extra["soft_labels"]["path"] == assistant["bank"]
    assert "teacher assistant: 96 px" in markdown and "the final run started from its weights" in markdown
    # deployed in the form this CPU runs, benched with the FP32 student against the baseline on the test split
    assert record["deploy"]["target"] == "cpu" and read_manifest(record["deploy"]["artifact"]).extra["quantization"]["target"] == "cpu"
    rows = record["bench"]["rows"]
    assert len(rows) == 3 and rows[-1]["baseline"] and all(r["test_macro_f1"] is not None for r in rows[:2])
    assert {s.stem for s in (out / "steps").glob("*.json")} == {"split", "teacher", "bank", "search", "deploy", "bench"}
    again = runner.invoke(app, ["optimize", *_args(synth_data, out)])
    assert again.exit_code == 0, again.output
    for step in ("split", "teacher", "bank", "search", "deploy", "bench"):
        assert f"{step}: done in an earlier run, inputs unchanged: skipped" in again.output
    rerun = json.loads((out / "report.json").read_text())
    assert rerun["bench"] == record["bench"] and rerun["search"] == record["search"]


def test_optimize_from_yaml_and_its_bad_keys(synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.optimize import OptimizeConfig, read_yaml_config

    good = tmp_path / "run.yaml"
    good.write_text(f"data: {synth_data}\nmax-macs: 20M\nsizes: 32,48\nfinal-epochs: 5\n")
    config = read_yaml_config(good, {"trials": 2})
    assert config == OptimizeConfig(data=synth_data, max_macs=20_000_000, sizes=(32, 48), final_epochs=5, trials=2)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"data: {synth_data}\nmax-mac: 20M\n")
    with pytest.raises(ConfigError, match="unknown setting 'max-mac'; did you mean 'max-macs'"):
        read_yaml_config(bad, {})
    result = runner.invoke(app, ["optimize", str(bad)])
    assert result.exit_code == 1 and result.output.count("error:") == 1 and "max-macs" in result.output
    assert not (tmp_path / "runs").exists()


def test_optimize_killed_mid_search_resumes_and_finishes(synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "edgeopt", "optimize", *_args(synth_data, out, trials=3)]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (out / "search" / "edgeopt" / "trial-0001").exists():  # the second trial has begun
        assert proc.poll() is None, "optimize ended before the search's second trial"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "report.json").exists() and not (out / "steps" / "search.json").exists()
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "teacher: done in an earlier run" in finished.stdout
    record = json.loads((out / "report.json").read_text())
    assert record["search"]["trials"] == 3
    trial_zero = json.loads((out / "search" / "edgeopt" / "trial-0000" / "metrics.json").read_text())
    assert len(trial_zero["history"]) == 1  # the trial finished before the kill was not trained again


def test_demo_is_optimize_on_the_synthetic_data(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "resnet18d" in result.output and "TensorRT" in result.output
    record = json.loads((out / "report.json").read_text())
    assert {s.stem for s in (out / "steps").glob("*.json")} == {"split", "teacher", "bank", "search", "deploy", "bench"}
    report = json.loads(Path(record["bench"]["json"]).read_text())
    assert [r["precision"] for r in report["rows"]] == ["fp32", "int8", "fp32"]
    assert all(r["f1"] is not None and r["score_time"] is not None for r in report["rows"])
    # without TensorRT the INT8 row is the model made for ONNX Runtime's CPU kernels, which it is benched on
    from edgeopt.artifacts import read_manifest
    from edgeopt.formats import format_of

    assert read_manifest(report["rows"][1]["path"]).extra["quantization"]["target"] == "cpu"
    assert format_of(read_manifest(report["rows"][1]["path"])).name == "int8-cpu"
    # the synthetic data is rendered once, so a rerun finds every step done
    again = runner.invoke(app, ["demo", "--out", str(out), "--epochs", "1"])
    assert again.exit_code == 0, again.output
    for step in ("split", "teacher", "bank", "search", "deploy", "bench"):
        assert f"{step}: done in an earlier run, inputs unchanged: skipped" in again.output
