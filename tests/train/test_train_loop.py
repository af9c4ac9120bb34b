from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgeopt.artifacts import read_manifest
from edgeopt.models.checkpoint import load_checkpoint
from edgeopt.cli.app import app
from edgeopt.train.config import KDConfig
from edgeopt.errors import ConfigError
from edgeopt.train.loop import Callbacks, TrainConfig, train_classifier

TINY = str(Path(__file__).resolve().parents[2] / "models" / "tiny_cnn.yaml")
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _config(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model=TINY, data=data, out=out, img_size=32, epochs=2, batch_size=16, lr=3e-3, device="cpu", workers=0)
    return TrainConfig(**{**base, **kw})


def test_train_writes_loadable_checkpoint_manifest_metrics_and_curve(synth_data: Path, tmp_path: Path) -> None:
    result = train_classifier(_config(synth_data, tmp_path / "run"))
    assert result.best_checkpoint.exists() and result.last_checkpoint.exists()
    ckpt = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["classes"][0] == "synthetic_metal"
    manifest = read_manifest(result.best_checkpoint, expect_kind="checkpoint")
    assert manifest.preprocess["size"] == 32 and manifest.arch["macs"] == result.macs > 0
    assert manifest.metrics["val_macro_f1"] == pytest.approx(result.best_macro_f1)
    assert manifest.extra["synthetic_data"] is True
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["history"]) == 2
    assert (tmp_path / "run" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    model, _ = load_checkpoint(result.best_checkpoint)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 6)


class _StopAfterFirstEpoch(Callbacks):
    def on_epoch(self, stats) -> None:
        raise KeyboardInterrupt


def test_resume_continues_and_matches_an_uninterrupted_run(synth_data: Path, tmp_path: Path) -> None:
    straight = train_classifier(_config(synth_data, tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        train_classifier(_config(synth_data, tmp_path / "b"), _StopAfterFirstEpoch())
    resumed = train_classifier(_config(synth_data, tmp_path / "b", resume=True))
    assert [h.epoch for h in resumed.history] == [1, 2]
    a = torch.load(straight.last_checkpoint, weights_only=True)["state_dict"]
    b = torch.load(resumed.last_checkpoint, weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="resume with the same model"):
        train_classifier(_config(synth_data, tmp_path / "b", resume=True, epochs=5))
    with pytest.raises(ConfigError, match="no .* to resume from"):
        train_classifier(_config(synth_data, tmp_path / "c", resume=True))


def test_distillation_with_a_larger_input_teacher(synth_data: Path, tmp_path: Path) -> None:
    teacher = train_classifier(_config(synth_data, tmp_path / "t", img_size=48, epochs=1))
    student = train_classifier(_config(synth_data, tmp_path / "s", epochs=1, kd=KDConfig(teachers=(teacher.best_checkpoint,)),
                                       loss="focal", mixup=0.4))
    manifest = read_manifest(student.best_checkpoint)
    assert manifest.extra["teachers"] == [str(teacher.best_checkpoint)]
    alone = train_classifier(_config(synth_data, tmp_path / "a", epochs=1, loss="focal", mixup=0.4))
    # same seed, same batches: only the teacher's KD term makes the losses differ
    assert np.isfinite(student.history[0].train_loss)
    assert student.history[0].train_loss != pytest.approx(alone.history[0].train_loss, rel=1e-3)


def test_bad_train_config() -> None:
    with pytest.raises(ConfigError, match="`lr` 50.0 is out of range"):
        TrainConfig(model="x", data=Path("."), lr=50.0)
    with pytest.raises(ConfigError, match="`optimizer` 'adam' is unknown"):
        TrainConfig(model="x", data=Path("."), optimizer="adam")


def test_cli_train_eval_info(synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--model", TINY, "--data", str(synth_data), "--img-size", "32", "--epochs", "1",
                                 "--batch-size", "16", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "best val macro-F1" in result.output and "MACs" in result.output
    result = runner.invoke(app, ["eval", str(out / "best.pt"), "--data", str(synth_data), "--json", str(tmp_path / "e.json"),
                                 "--plot", str(tmp_path / "cm.png")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["n"] == 72 and 0 <= report["macro_f1"] <= 1 and len(report["confusion"]) == 6
    assert sum(map(sum, report["confusion"])) == 72
    assert (tmp_path / "cm.png").exists()
    result = runner.invoke(app, ["info", str(out / "best.pt")])
    assert result.exit_code == 0 and "synthetic_metal" in result.output
    result = runner.invoke(app, ["info", "mobilenetv3_small_050", "--img-size", "96"])
    assert result.exit_code == 0 and "4.61 M MACs" in result.output


def test_cli_train_bad_inputs(synth_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--model", "mobilenetv3_smal_050", "--data", str(synth_data), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "did you mean" in result.output
    result = runner.invoke(app, ["train", "--model", TINY, "--data", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "no such folder" in result.output
    (tmp_path / "notes.txt").write_text("x")
    result = runner.invoke(app, ["eval", str(tmp_path / "notes.txt"), "--data", str(synth_data)])
    assert result.exit_code == 1 and "unknown artifact type" in result.output
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["eval", str(fake), "--data", str(synth_data)])
    assert result.exit_code == 1 and "no manifest" in result.output


def test_pretrained_defaults_and_a_final_run_on_the_whole_pool(synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.train.loop import TrainConfig

    tuned = TrainConfig(model="tf_efficientnet_lite0", data=synth_data, pretrained=True)
    scratch = TrainConfig(model="tf_efficientnet_lite0", data=synth_data)
    assert (tuned.lr, tuned.scale_min, tuned.brightness) == (1e-3, 0.6, 0.2)
    assert (scratch.lr, scratch.scale_min, scratch.brightness) == (2e-3, 0.35, 0.0)
    assert TrainConfig(model="x", data=synth_data, pretrained=True, lr=5e-4).lr == 5e-4  # an explicit value wins
    result = runner.invoke(app, ["train", "--model", str(ROOT / "models" / "tiny_cnn.yaml"), "--data", str(synth_data),
                                 "--img-size", "32", "--epochs", "2", "--val-split", "0", "--device", "cpu",
                                 "--out", str(tmp_path / "final")])
    assert result.exit_code == 0, result.output
    assert "whole pool for 2 epochs" in result.output
    metrics = json.loads((tmp_path / "final" / "metrics.json").read_text())
    assert metrics["validation"] is False and metrics["best_epoch"] == 2 and metrics["best_macro_f1"] is None
    manifest = read_manifest(tmp_path / "final" / "best.pt")
    assert manifest.metrics["selection"].startswith("final epoch") and manifest.metrics["epoch"] == 2
