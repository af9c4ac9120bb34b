from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from edgeopt.artifacts import read_manifest, sha256_file
from edgeopt.models.checkpoint import load_checkpoint
from edgeopt.cli.app import app
from edgeopt.data.presets import Preprocess
from edgeopt.errors import ArtifactError, ConfigError, VerificationError
from edgeopt.export.onnx import export_onnx
from edgeopt.export.parity import check_parity
from edgeopt.runtime import open_runner

runner = CliRunner()


@pytest.mark.parametrize("key", ["yaml", "timm"])
def test_export_roundtrip_same_predictions_dynamic_batch(key: str, tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    result = export_onnx(tiny_ckpts[key], tmp_path / "m.onnx", data=synth_data)
    assert result.parity.source == "data" and result.parity.top1_agreement == 1.0
    assert "BatchNormalization" not in result.ops
    manifest = read_manifest(result.path, expect_kind="onnx")
    assert manifest.parent == {"path": str(tiny_ckpts[key]), "sha256": sha256_file(tiny_ckpts[key])}
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert json.loads(props["classes"]) == manifest.classes and json.loads(props["preprocess"])["size"] == 32
    model, _ = load_checkpoint(tiny_ckpts[key])
    ort_runner = open_runner(result.path)
    paths = sorted(synth_data.rglob("*.jpg"))[:7]
    pre = Preprocess.from_dict(manifest.preprocess)
    x = np.stack([pre.load(p) for p in paths])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    for batch in (x[:1], x):  # batch 1 and 7 through one dynamic-batch model
        out = ort_runner.run(batch)
        np.testing.assert_allclose(out, ref[: len(batch)], atol=1e-4)
        assert (out.argmax(1) == ref[: len(batch)].argmax(1)).all()


def test_static_batch_and_fp16(tiny_ckpts: dict, tmp_path: Path) -> None:
    static = export_onnx(tiny_ckpts["yaml"], tmp_path / "s.onnx", static_batch=True, batch_size=4)
    assert static.parity.source == "random"
    dims = onnx.load(str(static.path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 4
    r = open_runner(static.path)
    assert r.run(np.zeros((4, 3, 32, 32), np.float32)).shape == (4, 6)
    with pytest.raises(ArtifactError, match="static batch of 4"):
        r.run(np.zeros((1, 3, 32, 32), np.float32))
    half = export_onnx(tiny_ckpts["yaml"], tmp_path / "h.onnx", fp16=True)
    graph = onnx.load(str(half.path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    assert read_manifest(half.path).precision == "fp16"


def test_parity_failure_is_an_error_and_leaves_no_file(tiny_ckpts: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(VerificationError, match="top-1 agreement"):
        check_parity(np.eye(3), np.eye(3)[::-1], 1e-3, 1.0, "random")
    import edgeopt.export.onnx as export_mod

    real = export_mod._simplify

    def corrupt(graph):
        graph = real(graph)
        gemm_bias = [i for i in graph.graph.initializer if len(i.dims) == 1][-1]
        arr = onnx.numpy_helper.to_array(gemm_bias).copy()
        arr[0] += 100.0  # a wrong graph: class 0 always wins
        gemm_bias.CopyFrom(onnx.numpy_helper.from_array(arr, gemm_bias.name))
        return graph

    monkeypatch.setattr(export_mod, "_simplify", corrupt)
    with pytest.raises(VerificationError, match="parity check failed"):
        export_onnx(tiny_ckpts["yaml"], tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_export_bad_inputs(tiny_ckpts: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must end in .onnx"):
        export_onnx(tiny_ckpts["yaml"], tmp_path / "m.trt")
    with pytest.raises(ConfigError, match="`opset` 9"):
        export_onnx(tiny_ckpts["yaml"], tmp_path / "m.onnx", opset=9)
    txt = tmp_path / "x.txt"
    txt.write_text("hi")
    result = runner.invoke(app, ["export", str(txt), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1 and "no manifest" in result.output


def test_cli_export(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(tiny_ckpts["timm"]), "--out", str(tmp_path / "m.onnx"), "--data", str(synth_data)])
    assert result.exit_code == 0, result.output
    assert "top-1 agreement 100.00%" in result.output


@pytest.fixture(scope="module")
def lite0_at_40(tmp_path_factory: pytest.TempPathFactory, synth_data: Path) -> Path:
    """Pretrained Lite0 (TensorFlow "SAME" padding) saved for 40 px, a size that is not a multiple of 32."""
    from edgeopt.models.checkpoint import save_checkpoint
    from edgeopt.data.folder import scan_folder
    from edgeopt.models import create_model
    from edgeopt.models.factory import preset_for_model

    classes = scan_folder(synth_data).classes
    model, arch = create_model("tf_efficientnet_lite0", len(classes), pretrained=True)
    path = tmp_path_factory.mktemp("lite0") / "lite0_40.pt"
    return save_checkpoint(path, model.eval(), arch, classes, preset_for_model("tf_efficientnet_lite0", 40))


def test_same_padding_is_frozen_for_sizes_that_are_not_multiples_of_32(lite0_at_40: Path, tmp_path: Path) -> None:
    from edgeopt.export.parity import INPUT_NAME
    from edgeopt.models.padding import freeze_same_padding
    from edgeopt.runtime.ort_runner import make_session

    model, _ = load_checkpoint(lite0_at_40)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 40, 40)).astype(np.float32))
    with torch.no_grad():
        reference = model(x).numpy()
    # frozen at 40 px, the model computes what it computed before, and exports faithfully (before the
    # freeze, onnxslim folded the run-time padding arithmetic wrongly and the parity check refused it)
    assert freeze_same_padding(model, 40) > 0
    with torch.no_grad():
        assert torch.allclose(model(x), torch.from_numpy(reference), atol=1e-5)
    result = export_onnx(lite0_at_40, tmp_path / "lite0.onnx")
    assert result.parity.max_abs_diff < 1e-3 and result.parity.top1_agreement == 1.0
    exported = make_session(result.path).run(None, {INPUT_NAME: x.numpy()})[0]
    assert np.abs(exported - reference).max() < 1e-3


def test_qat_export_of_a_same_padded_model_at_40_px(lite0_at_40: Path, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.quant.qat import QatConfig, finetune_qat

    out = tmp_path / "qat.onnx"
    finetune_qat(QatConfig(checkpoint=lite0_at_40, data=synth_data, out=out, epochs=1, batch_size=16, num_calib_images=32),
                 log=lambda m: None)
    assert read_manifest(out).metrics  # exported, parity-checked against the fine-tuned model
