"""Structured pruning: a MAC target reached, a checkpoint that rebuilds from its record, the usual pipeline after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.compress import FinetuneOptions
from edgeopt.errors import ConfigError
from edgeopt.prune import parse_macs

runner = CliRunner()


def test_parse_macs() -> None:
    assert parse_macs("20M") == 20_000_000 and parse_macs("1.5g") == 1_500_000_000 and parse_macs("750k") == 750_000
    with pytest.raises(ConfigError, match="--target-macs 'lots'"):
        parse_macs("lots")


def test_prune_finetune_export_calibrate_bench(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.artifacts import read_manifest
    from edgeopt.bench import BenchConfig, run_bench
    from edgeopt.calibrate import calibrate_onnx
    from edgeopt.checkpoint import load_checkpoint
    from edgeopt.export import export_onnx
    from edgeopt.models.complexity import count_complexity

    base = read_manifest(tiny_ckpts["timm"]).arch["macs"]
    target = int(base * 0.7)
    out = tmp_path / "pruned"
    result = runner.invoke(app, ["prune", str(tiny_ckpts["timm"]), "--target-macs", str(target), "--data", str(synth_data),
                                 "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, manifest = load_checkpoint(out / "best.pt")  # rebuilt from its record: weights_only, no pickled module
    assert count_complexity(model, 32).macs <= target == manifest.arch["pruned"]["target_macs"]
    assert manifest.arch["macs"] <= target and manifest.extra["teachers"] == [str(tiny_ckpts["timm"])]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 6)
    onnx_path = export_onnx(out / "best.pt", tmp_path / "pruned.onnx", data=synth_data).path
    int8 = calibrate_onnx(onnx_path, synth_data, tmp_path / "pruned.int8.onnx", num_images=32, batch_size=16).path
    report = run_bench(BenchConfig(artifacts=(onnx_path, int8), baseline=None, data=synth_data, batch_sizes=(2,), runs=2,
                                   warmup=0, submit_runs=1, out=tmp_path / "b"))
    assert [r.precision for r in report.rows] == ["fp32", "int8"] and report.rows[0].macs <= target
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 1


def test_prune_bad_targets_are_one_line(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["prune", str(tiny_ckpts["timm"]), "--target-macs", "10G", "--data", str(synth_data),
                                 "--out", str(tmp_path / "a")])
    assert result.exit_code == 1 and "is not below the model's" in result.output
    result = runner.invoke(app, ["prune", str(tiny_ckpts["timm"]), "--target-macs", "10", "--data", str(synth_data),
                                 "--epochs", "0", "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and "its floor is about" in result.output
    assert not (tmp_path / "b" / "pruned.pt").exists()


def test_taylor_global_pruning_and_yaml_models(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.artifacts import read_manifest
    from edgeopt.checkpoint import load_checkpoint
    from edgeopt.models.complexity import count_complexity
    from edgeopt.prune import PruneConfig, prune_checkpoint

    for key in ("timm", "yaml"):
        base = read_manifest(tiny_ckpts[key]).arch["macs"]
        result = prune_checkpoint(PruneConfig(checkpoint=tiny_ckpts[key], data=synth_data, out=tmp_path / key,
                                              target_macs=int(base * 0.8), importance="taylor", finetune=FinetuneOptions(epochs=0),
                                              global_pruning=True), log=lambda m: None)
        model, _ = load_checkpoint(result.pruned_checkpoint)
        assert result.macs_after <= base * 0.8 and count_complexity(model, 32).macs == result.macs_after
