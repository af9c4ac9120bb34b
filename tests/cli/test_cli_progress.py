"""Progress in its two forms: rich bars with an ETA on a terminal, plain lines with an ETA in a file."""

from __future__ import annotations

import io
import math
import types

from rich.console import Console

from edgeopt.cli.progress import StepProgress, TrainProgress, epoch_line, format_eta


def _stats(epoch: int, f1: float = 0.5, best: bool = False) -> types.SimpleNamespace:
    return types.SimpleNamespace(epoch=epoch, train_loss=1.25, val_loss=0.75 if f1 == f1 else math.nan, val_macro_f1=f1,
                                 val_accuracy=0.6 if f1 == f1 else math.nan, seconds=10.0, best=best)


CONFIG = types.SimpleNamespace(model="tiny.yaml", img_size=32, epochs=3)


def _train(console: Console, f1: float) -> None:
    cb = TrainProgress(console)
    cb.on_start(CONFIG, steps_per_epoch=4, device="cpu", start_epoch=0)
    for epoch in range(3):
        for step in range(4):
            cb.on_batch(epoch, step, 1.0 / (step + 1))
        cb.on_epoch(_stats(epoch + 1, f1, best=epoch == 2))
    cb.close()


def test_plain_lines_in_a_file_one_per_epoch_with_the_eta() -> None:
    out = io.StringIO()
    _train(Console(file=out, width=200), f1=0.5)
    lines = out.getvalue().splitlines()
    assert lines[0] == "training tiny.yaml at 32 px on cpu, 3 epochs"
    assert lines[1] == "epoch   1/3  train loss 1.2500  val loss 0.7500  val macro-F1 0.5000  acc 0.6000  10.0s  ETA 0:00:20"
    assert lines[2].endswith("ETA 0:00:10") and lines[3].endswith("10.0s *")  # the last epoch has nothing left
    assert len(lines) == 4 and "\x1b" not in out.getvalue()  # no bars, no escape codes


def test_no_validation_split_reads_as_no_validation_not_as_nan() -> None:
    out = io.StringIO()
    _train(Console(file=out, width=200), f1=math.nan)
    assert "nan" not in out.getvalue()
    assert "epoch   1/3  train loss 1.2500  no validation split (fixed epochs)  10.0s  ETA 0:00:20" in out.getvalue()


def test_terminal_form_draws_bars_with_an_eta() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    _train(console, f1=0.5)
    text = out.getvalue()
    assert "all epochs" in text and "ETA" in text and "epoch 1/3" in text  # the bars (redrawn in place)
    assert "epoch   3/3  train loss 1.2500  val loss 0.7500" in text  # and the epoch lines stay


def test_step_progress_plain_quarters_and_terminal_bar() -> None:
    out, now = io.StringIO(), [100.0]
    bar = StepProgress(Console(file=out, width=200), "bank", clock=lambda: now[0])
    for done in range(0, 101, 10):
        bar(done, 100)
        now[0] += 2.0
    assert out.getvalue().splitlines() == ["bank: 30/100 (30%), 6.0s, ETA 0:00:14", "bank: 50/100 (50%), 10.0s, ETA 0:00:10",
                                           "bank: 80/100 (80%), 16.0s, ETA 0:00:04", "bank: 100/100 (100%), 20.0s"]
    out = io.StringIO()
    bar = StepProgress(Console(file=out, force_terminal=True, width=160, color_system=None), "bank")
    for done in (0, 50, 100):
        bar(done, 100)
    assert "bank" in out.getvalue() and "ETA" in out.getvalue() and bar.progress is None  # done: the bar ended


def test_format_eta() -> None:
    assert format_eta(65) == "0:01:05" and format_eta(3 * 3600 + 7) == "3:00:07" and format_eta(math.inf) == "?"
    assert epoch_line(_stats(2), 2, eta=5.0).endswith("10.0s")  # no ETA on the last epoch


def test_calibrate_bench_and_qat_report_progress_in_a_log(tiny_onnx, tiny_ckpts, synth_data, tmp_path) -> None:
    """Calibration, the bench and QAT, the waits the train callbacks do not cover, say how far they are
    in a log (plain lines; a terminal gets bars)."""
    from typer.testing import CliRunner

    from edgeopt.cli.app import app

    runner = CliRunner()
    calibrated = runner.invoke(app, ["calibrate", str(tiny_onnx), "--data", str(synth_data), "--out", str(tmp_path / "q.onnx"),
                                     "--num-images", "32", "--batch-size", "8"])
    assert calibrated.exit_code == 0, calibrated.output
    assert "calibration images: 32/32 (100%)" in calibrated.output
    benched = runner.invoke(app, ["bench", str(tiny_onnx), "--baseline", "none", "--data", str(synth_data), "--runs", "2",
                                  "--warmup", "1", "--batch-sizes", "1,4", "--out", str(tmp_path / "b")])
    assert benched.exit_code == 0, benched.output
    assert "bench: latency per batch size, then submit time per artifact: 3/3 (100%)" in benched.output
    qat = runner.invoke(app, ["qat", str(tiny_ckpts["yaml"]), "--data", str(synth_data), "--epochs", "2",
                              "--out", str(tmp_path / "m.qat.onnx"), "--device", "cpu"])
    assert qat.exit_code == 0, qat.output
    assert "QAT epoch 1/2" in qat.output and "ETA 0:" in qat.output
