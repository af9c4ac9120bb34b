"""Structured pruning: a MAC target reached, a checkpoint that rebuilds from its record, the usual pipeline after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.compress.finetune import FinetuneConfig
from edgeopt.errors import ConfigError
from edgeopt.models.complexity import parse_macs

runner = CliRunner()


def test_parse_macs() -> None:
    assert parse_macs("20M") == 20_000_000 and parse_macs("1.5g") == 1_500_000_000 and parse_macs("750k") == 750_000
    with pytest.raises(ConfigError, match="`target_macs` 'lots'"):
        parse_macs("lots")


def test_prune_finetune_export_calibrate_bench(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.artifacts import read_manifest
    from edgeopt.bench.harness import BenchConfig, bench_artifacts
    from edgeopt.quant.calibrate import calibrate_onnx
    from edgeopt.models.checkpoint import load_checkpoint
    from edgeopt.export.onnx import export_onnx
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
    report = bench_artifacts(BenchConfig(artifacts=(onnx_path, int8), baseline=None, data=synth_data, batch_sizes=(2,), runs=2,
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
    from edgeopt.models.checkpoint import load_checkpoint
    from edgeopt.models.complexity import count_complexity
    from edgeopt.compress.prune import PruneConfig, prune_checkpoint

    for key in ("timm", "yaml"):
        base = read_manifest(tiny_ckpts[key]).arch["macs"]
        result = prune_checkpoint(PruneConfig(checkpoint=tiny_ckpts[key], data=synth_data, out=tmp_path / key,
                                              target_macs=int(base * 0.8), importance="taylor", finetune=FinetuneConfig(epochs=0),
                                              global_pruning=True), log=lambda m: None)
        model, _ = load_checkpoint(result.pruned_checkpoint)
        assert result.macs_after <= base * 0.8 and count_complexity(model, 32).macs == result.macs_after
        # the pruned model remembers what the model it came from trained on
        assert read_manifest(result.pruned_checkpoint).extra["train_images"] == read_manifest(tiny_ckpts[key]).extra["train_images"]


class _Attention(torch.nn.Module):
    """A conv stem and one multi-head self-attention over its pixels: qkv is reshaped into heads."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, dim, 3, 2, 1)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.head = torch.nn.Linear(dim, 6)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.stem(x).flatten(2).transpose(1, 2)  # B, N, dim
        b, n, d = t.shape
        q, k, v = self.qkv(t).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, -1)
        t = self.proj((a @ v).transpose(1, 2).reshape(b, n, d))
        return self.head(t.mean(1))


def test_a_layer_the_pruner_cannot_follow_is_one_line() -> None:
    # Torch-Pruning prunes qkv's outputs without knowing they are reshaped into heads: the forward
    # after its step breaks; that is a one-line error, not a traceback
    from edgeopt.models.complexity import count_complexity
    from edgeopt.compress.prune import prune_to_macs

    model = _Attention()
    macs = count_complexity(model, 32).macs
    with pytest.raises(ConfigError, match="could not prune this model consistently .*attention heads"):
        prune_to_macs(model, {}, 32, int(macs * 0.5), num_classes=6)


def test_shufflenet_channel_shuffle_is_refused_in_one_line_and_nothing_is_written(synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.models.checkpoint import save_checkpoint
    from edgeopt.data.folder import scan_folder
    from edgeopt.models import create_model
    from edgeopt.models.factory import preset_for_model

    classes = scan_folder(synth_data).classes
    model, arch = create_model("shufflenet_v2_x0_5", len(classes))
    ckpt = save_checkpoint(tmp_path / "shuffle.pt", model.eval(), arch, classes, preset_for_model("shufflenet_v2_x0_5", 32))
    result = runner.invoke(app, ["prune", str(ckpt), "--target-macs", "0.5M", "--data", str(synth_data), "--epochs", "0",
                                 "--out", str(tmp_path / "out")])
    line = result.output.strip()
    assert result.exit_code == 1 and "\n" not in line
    assert "Torch-Pruning cannot prune the torchvision model shufflenet_v2_x0_5" in line
    assert not (tmp_path / "out" / "pruned.pt").exists()
