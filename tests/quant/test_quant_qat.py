"""Quantization-aware fine-tuning: folding, fake quantization, and a Q/DQ export TensorRT takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from edgeopt.artifacts import read_manifest
from edgeopt.cli.app import app
from edgeopt.quant.qat import FakeQuant, fold_batchnorm, insert_fake_quant
from edgeopt.quant.writers import check_qdq

runner = CliRunner()


@pytest.mark.parametrize("key", ["yaml", "timm"])
def test_batchnorm_folding_keeps_the_outputs(tiny_ckpts: dict, key: str) -> None:
    from edgeopt.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tiny_ckpts[key])
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
        folded = fold_batchnorm(model)
        after = model(x)
    assert folded > 0 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_fake_quant_rounds_to_int8_levels() -> None:
    layer = FakeQuant(torch.nn.Linear(4, 2, bias=False))
    layer.layer.weight.data = torch.tensor([[1.0, -0.5, 0.25, 0.003], [2.0, 1.0, -2.0, 0.5]])
    layer.input_amax.fill_(1.27)  # input scale 0.01
    x = torch.tensor([[0.123, -0.456, 2.0, 0.0049]])
    # numpy: inputs to multiples of 0.01 clipped at +-1.28/1.27; weights per row to multiples of max|w|/127
    xq = np.clip(np.round(x.numpy() / 0.01), -128, 127) * 0.01
    w = layer.layer.weight.data.numpy()
    s = np.abs(w).max(1, keepdims=True) / 127
    wq = np.clip(np.round(w / s), -128, 127) * s
    np.testing.assert_allclose(layer(x).detach().numpy(), xq @ wq.T, rtol=1e-5, atol=1e-6)


def test_qat_exports_a_tensorrt_qdq_onnx(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.runtime.evaluate import evaluate_artifact

    out = tmp_path / "qat.onnx"
    result = runner.invoke(app, ["qat", str(tiny_ckpts["yaml"]), "--data", str(synth_data), "--out", str(out),
                                 "--epochs", "1", "--batch-size", "16", "--num-images", "32"])
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    assert check_qdq(model) == []
    inits = {i.name: i for i in model.graph.initializer}
    dq_weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert dq_weights and all(inits[n.input[0]].data_type == onnx.TensorProto.INT8 for n in dq_weights)
    manifest = read_manifest(out)
    assert manifest.precision == "int8" and manifest.extra["quantization"]["method"] == "qat"
    assert manifest.parent["path"] == str(tiny_ckpts["yaml"])
    # QAT trains on --data: the model's record of training images holds the checkpoint's and all of --data's
    from edgeopt.data.seen import digest, trained_on

    recorded = trained_on(manifest.extra)
    assert trained_on(read_manifest(tiny_ckpts["yaml"]).extra) <= recorded
    assert {digest(p) for p in synth_data.rglob("*.png")} | {digest(p) for p in synth_data.rglob("*.jpg")} <= recorded
    assert evaluate_artifact(out, synth_data).metrics.n == 72
    wrapped = insert_fake_quant(torch.nn.Sequential(torch.nn.Flatten()))
    assert wrapped == []
    bad = runner.invoke(app, ["qat", str(tiny_ckpts["yaml"]), "--data", str(synth_data), "--out", str(tmp_path / "q.pt")])
    assert bad.exit_code == 1 and "must end in .onnx" in bad.output
