"""The search shows each trial's training progress: the trials' and the final run's epoch lines reach the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeopt.cli.app import app

runner = CliRunner()
TINY = str(Path(__file__).resolve().parents[2] / "models" / "tiny_cnn.yaml")


@pytest.mark.slow
def test_search_prints_every_trials_epochs_and_the_final_run(synth_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", "--data", str(synth_data), "--out", str(tmp_path / "s"), "--backbones", TINY,
                                 "--sizes", "32", "--trials", "1", "--epochs", "1", "--final-epochs", "1", "--max-prune", "0",
                                 "--scratch", "--device", "cpu", "--batch-size", "32", "--seed", "0"], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("epoch   1/1  train loss") and "val macro-F1" in line for line in lines)  # the trial
    assert any(line.startswith("epoch   1/1  train loss") and "no validation split" in line for line in lines)  # the final run
    assert sum(line.startswith("training ") for line in lines) == 2  # each training announces itself


def test_search_bad_input_and_the_old_budget_flag(synth_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", "--data", str(synth_data), "--out", str(tmp_path / "s"), "--sizes", "a,b"])
    assert result.exit_code == 1 and result.output.count("error:") == 1
    both = runner.invoke(app, ["search", "--data", str(synth_data), "--out", str(tmp_path / "s"), "--max-f1-drop", "0.01",
                               "--int8-max-drop", "0.02"])
    assert both.exit_code == 1 and both.output.count("error:") == 1 and "--int8-max-drop is the old spelling of --max-f1-drop" in both.output
    old = runner.invoke(app, ["search", "--data", str(synth_data), "--out", str(tmp_path / "s"), "--int8-max-drop", "1.5"],
                        terminal_width=300)
    assert "warning: --int8-max-drop is now --max-f1-drop" in old.output
    # the library's range error names the setting; the CLI says it as the flag of today
    assert old.exit_code == 1 and "error: --max-f1-drop 1.5 is out of range" in old.output, old.output
