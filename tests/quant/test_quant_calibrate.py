from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgeopt.artifacts import read_manifest, sha256_file
from edgeopt.quant.calibrate import calibrate_onnx, check_qdq
from edgeopt.data.folder import select_subset
from edgeopt.cli.app import app
from edgeopt.data.folder import scan_folder
from edgeopt.errors import ArtifactError, DataError
from edgeopt.runtime import open_runner

runner = CliRunner()


def test_subset_is_deterministic_and_stratified(synth_data: Path) -> None:
    scan = scan_folder(synth_data)
    scan = scan.subset([i for i, s in enumerate(scan.samples) if not (s.label == 5 and s.path.name > "0003")])  # 4 of the last class
    a = select_subset(scan, 34, seed=1)
    b = select_subset(scan, 34, seed=1)
    assert [s.path for s in a] == [s.path for s in b]
    assert [s.path for s in a] != [s.path for s in select_subset(scan, 34, seed=2)]
    counts = Counter(s.label for s in a)
    assert sum(counts.values()) == 34 and counts[5] >= 1
    assert max(counts[c] for c in range(5)) - min(counts[c] for c in range(5)) <= 1  # equal classes get equal shares
    assert counts[5] < counts[0]  # the small class gets a proportionally small share


def test_calibrate_writes_valid_qdq_and_an_auditable_manifest(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="300\\+"):
        result = calibrate_onnx(tiny_onnx, synth_data, tmp_path / "q.onnx", num_images=48, method="minmax",
                                batch_size=16, calibration_dir=tmp_path / "calibration")
    assert result.batches == 3 and result.qdq_nodes > 0
    assert check_qdq(onnx.load(str(result.path))) == []
    manifest = read_manifest(result.path, expect_kind="onnx")
    assert manifest.precision == "int8" and manifest.parent["sha256"] == sha256_file(tiny_onnx)
    record = json.loads(result.calibration_manifest.read_text())
    assert record["onnx_sha256"] == sha256_file(tiny_onnx) and len(record["images"]) == 48
    first = record["images"][0]
    assert not Path(first["path"]).is_absolute() and first["sha256"] == sha256_file(synth_data / first["path"])
    logits = open_runner(result.path).run(np.zeros((2, 3, 32, 32), np.float32))
    assert logits.shape == (2, 6) and np.isfinite(logits).all()
    again = calibrate_onnx(tiny_onnx, synth_data, tmp_path / "q2.onnx", num_images=48, method="minmax", batch_size=16,
                           calibration_dir=tmp_path / "calibration")
    assert json.loads(again.calibration_manifest.read_text())["images"] == record["images"]


def test_qdq_check_fails_on_an_asymmetric_model(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    class Reader:
        def __init__(self) -> None:
            self.left = [np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)]

        def get_next(self):
            return {"input": self.left.pop()} if self.left else None

    quantize_static(str(tiny_onnx), str(tmp_path / "asym.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8, per_channel=False)
    problems = check_qdq(onnx.load(str(tmp_path / "asym.onnx")))
    assert any("must be INT8" in p for p in problems)
    assert any("per output channel" in p for p in problems)
    assert check_qdq(onnx.load(str(tiny_onnx))) == ["no QuantizeLinear/DequantizeLinear nodes: the model is not quantized"]


def test_calibration_bad_inputs(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    for cls in ("synthetic_metal", "synthetic_paper"):
        (small / cls).mkdir(parents=True)
        for p in sorted((synth_data / cls).glob("*.jpg"))[:2]:
            shutil.copy(p, small / cls / p.name)
    with pytest.raises(DataError, match="fewer than one batch of 32"):
        calibrate_onnx(tiny_onnx, small, tmp_path / "q.onnx", calibration_dir=tmp_path)
    # an ONNX model whose input is not the one its manifest names
    renamed = tmp_path / "renamed.onnx"
    graph = onnx.load(str(tiny_onnx))
    old = graph.graph.input[0].name
    graph.graph.input[0].name = "images"
    for node in graph.graph.node:
        node.input[:] = ["images" if i == old else i for i in node.input]
    onnx.save(graph, str(renamed))
    shutil.copy(str(tiny_onnx) + ".json", str(renamed) + ".json")
    manifest = json.loads(Path(str(renamed) + ".json").read_text())
    manifest["sha256"] = sha256_file(renamed)
    Path(str(renamed) + ".json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="has no input 'input'"):
        calibrate_onnx(renamed, synth_data, tmp_path / "q.onnx", calibration_dir=tmp_path)
    txt = tmp_path / "model.txt"
    txt.write_text("x")
    result = runner.invoke(app, ["calibrate", str(txt), "--data", str(synth_data), "--out", str(tmp_path / "q.onnx")])
    assert result.exit_code == 1 and "expected an ONNX model" in result.output
    result = runner.invoke(app, ["calibrate", str(tiny_onnx), "--data", str(synth_data), "--method", "kl"])
    assert result.exit_code == 1 and "--method 'kl' is unknown" in result.output


def test_cli_calibrate_and_compare(tiny_onnx: Path, tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    result = runner.invoke(app, ["calibrate", str(tiny_onnx), "--data", str(synth_data), "--out", str(out), "--num-images", "32",
                                 "--batch-size", "16", "--method", "percentile", "--calibration-dir", str(tmp_path / "cal")])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and "300+" in result.output
    result = runner.invoke(app, ["eval", str(tiny_onnx), str(out), "--data", str(synth_data), "--json", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [r["precision"] for r in rows] == ["fp32", "int8"] and rows[0]["agreement"] == 1.0
    from edgeopt.runtime.evaluate import evaluate_artifact

    fp32_preds, int8_preds = (evaluate_artifact(p, synth_data).predictions for p in (tiny_onnx, out))
    assert rows[1]["agreement"] == pytest.approx(float((fp32_preds == int8_preds).mean()))
    assert rows[1]["size_bytes"] == out.stat().st_size


def _tensor_amax(onnx_path: Path, names: list[str], images: np.ndarray) -> dict[str, float]:
    """max|x| of intermediate tensors, by running the FP32 model with those tensors as extra outputs."""
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    model = onnx.shape_inference.infer_shapes(model)
    infos = {v.name: v for v in model.graph.value_info}
    model.graph.output.extend(infos[n] for n in names)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(names, {"input": images})
    return {n: float(np.abs(v).max()) for n, v in zip(names, values)}


def test_tensors_feeding_relu6_get_min_of_calibrated_and_clip(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    from onnx import numpy_helper

    from edgeopt.data.presets import Preprocess
    from edgeopt.quant.writers import fused_clip_bounds
    from edgeopt.runtime.ort_runner import OrtRunner

    bounds = fused_clip_bounds(onnx.load(str(tiny_onnx)))
    assert len(bounds) == 4 and set(bounds.values()) == {6.0}  # tiny_cnn has four ReLU6 (Clip 0..6) after convs
    q = calibrate_onnx(tiny_onnx, synth_data, tmp_path / "q.onnx", num_images=40, method="minmax", batch_size=16,
                       calibration_dir=tmp_path)
    record = json.loads(q.calibration_manifest.read_text())
    assert len(record["images"]) == 40 and record["batches"] == 3  # 16 + 16 + 8: nothing dropped
    pre = Preprocess.from_dict(read_manifest(tiny_onnx).preprocess)
    images = np.concatenate(list(pre.iter_batches([synth_data / i["path"] for i in record["images"]], 64)))
    calibrated = _tensor_amax(tiny_onnx, list(bounds), images)
    graph = onnx.load(str(q.path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    scales = {n.input[0]: float(inits[n.input[1]]) for n in graph.node if n.op_type == "QuantizeLinear"}
    # both sides of min(calibrated, 6) are exercised only if some range is inside [0, 6]; say so if not
    assert any(v < 6 for v in calibrated.values()), f"premise: a pre-clip range under 6 ({calibrated})"
    for tensor, amax in calibrated.items():
        assert scales[tensor] == pytest.approx(min(amax, 6.0) / 127, rel=1e-4)
    emulated = OrtRunner(q.path, int8_exec="emulate")
    assert emulated.backend == "onnxruntime (Q/DQ emulated)" and OrtRunner(q.path).backend == "onnxruntime"


def test_emulated_int8_is_plain_qdq_arithmetic(tmp_path: Path) -> None:
    """The emulated INT8 path against numpy: quantize, dequantize, then the float op."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeopt.artifacts import Manifest, write_artifact_manifest
    from edgeopt.runtime.ort_runner import OrtRunner

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
    w_scale = (np.abs(w).reshape(4, -1).max(1) / 127).astype(np.float32)
    w_q = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    x_scale = np.float32(2.5 / 127)
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "zp"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wzp"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["y"])]
    inits = [numpy_helper.from_array(np.array(x_scale), "xs"), numpy_helper.from_array(np.array(0, np.int8), "zp"),
             numpy_helper.from_array(w_q, "wq"), numpy_helper.from_array(w_scale, "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wzp")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], inits)
    path = tmp_path / "qdq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    write_artifact_manifest(path, Manifest(kind="onnx", classes=list("abcd"), precision="int8",
                                           preprocess={"size": 8}, extra={"input": "x", "output": "y"}))
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32) * 1.5
    # numpy: round half to even (QuantizeLinear's rule), saturate to int8, dequantize, 1x1 conv, mean
    xd = np.clip(np.round(x / x_scale), -128, 127) * x_scale
    wd = w_q.astype(np.float32) * w_scale[:, None, None, None]
    expected = np.einsum("nchw,oc->nohw", xd, wd[:, :, 0, 0]).mean(axis=(2, 3))
    np.testing.assert_allclose(OrtRunner(path, int8_exec="emulate").run(x), expected, rtol=1e-5, atol=1e-6)


def test_calibration_methods_really_differ(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    # onnxruntime's quantize_static alone makes "entropy" equal "minmax" (it drops the bin counts)
    from onnx import numpy_helper

    def activation_scales(method: str) -> list[float]:
        q = calibrate_onnx(tiny_onnx, synth_data, tmp_path / f"{method}.onnx", num_images=48, method=method, batch_size=16,
                           calibration_dir=tmp_path)
        graph = onnx.load(str(q.path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        return [float(inits[n.input[1]]) for n in graph.node if n.op_type == "QuantizeLinear"]

    minmax, entropy, percentile = (activation_scales(m) for m in ("minmax", "entropy", "percentile"))
    assert len(minmax) == len(entropy) == len(percentile)
    assert minmax != entropy and minmax != percentile
    assert all(e <= m * (1 + 1e-6) for e, m in zip(entropy, minmax))  # entropy only ever narrows the range


def test_skip_first_last_leaves_stem_and_classifier_in_float(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["calibrate", str(tiny_onnx), "--data", str(synth_data), "--out", str(tmp_path / "q.onnx"),
                                 "--num-images", "32", "--batch-size", "16", "--skip-first-last", "--calibration-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    compute = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    fed_by_dq = [producers.get(n.input[1]) is not None and producers[n.input[1]].op_type == "DequantizeLinear" for n in compute]
    assert fed_by_dq[0] is False and fed_by_dq[-1] is False and all(fed_by_dq[1:-1])
    assert check_qdq(onnx.load(str(tmp_path / "q.onnx"))) == []


def test_skip_first_last_refuses_unnamed_layers(tiny_onnx: Path) -> None:
    from edgeopt.errors import ConfigError
    from edgeopt.quant.writers import first_last_layers

    model = onnx.load(str(tiny_onnx))
    named = first_last_layers(model)
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert named == [convs[0].name, convs[-1].name]
    convs[0].name = ""
    with pytest.raises(ConfigError, match="needs named nodes"):
        first_last_layers(model)


def test_cpu_target_runs_on_onnxruntime_kernels(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.data.presets import Preprocess
    from edgeopt.runtime.ort_runner import OrtRunner

    out = tmp_path / "cpu.onnx"
    result = runner.invoke(app, ["calibrate", str(tiny_onnx), "--data", str(synth_data), "--out", str(out), "--target", "cpu",
                                 "--num-images", "32", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    assert "CPU kernels" in result.output
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QLinearConv" in ops and "DequantizeLinear" in ops  # QOperator form
    graph = onnx.load(str(out)).graph
    qlinear = next(n for n in graph.node if n.op_type == "QLinearConv")
    inits = {i.name: i for i in graph.initializer}
    weights = onnx.numpy_helper.to_array(inits[qlinear.input[3]])
    assert weights.dtype == np.int8 and np.abs(weights).max() <= 64  # 7-bit weights: AVX2's int16 sums cannot saturate
    assert inits[qlinear.input[2]].data_type == onnx.TensorProto.UINT8  # uint8 activations (zero-point type)
    quant = read_manifest(out).extra["quantization"]
    assert quant["target"] == "cpu" and quant["method"] == "minmax" and quant["format"] == "QOperator"
    vnni = tmp_path / "vnni.onnx"
    result = runner.invoke(app, ["calibrate", str(tiny_onnx), "--data", str(synth_data), "--out", str(vnni), "--target",
                                 "cpu-vnni", "--num-images", "32", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    vgraph = onnx.load(str(vnni)).graph
    vconv = next(n for n in vgraph.node if n.op_type == "QLinearConv")
    vinits = {i.name: i for i in vgraph.initializer}
    assert np.abs(onnx.numpy_helper.to_array(vinits[vconv.input[3]])).max() > 64  # full 8-bit weights
    runner_ = OrtRunner(out, int8_exec="emulate")  # nothing to emulate: the kernels are the deployment
    assert runner_.backend == "onnxruntime (CPU int8 kernels)"
    # INT8 kernels differ by CPU (AVX2, VNNI, AMX) and a one-epoch model has near-ties, so the check is on the
    # logits: the kernels' error is small against the logits' spread, and only near-ties may change the class
    pre = Preprocess.from_dict(read_manifest(tiny_onnx).preprocess)
    images = np.concatenate(list(pre.iter_batches(sorted(synth_data.rglob("*.jpg")), 64)))
    l32, l8 = (OrtRunner(p).run(images) for p in (tiny_onnx, out))
    spread = float(l32.std())
    assert spread > 0, "premise: the FP32 model's logits vary across images"
    assert float(np.median(np.abs(l8 - l32))) < 0.1 * spread
    top2 = np.sort(l32, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.2 * spread
    assert clear.mean() >= 0.5, f"premise: most images are not near-ties ({clear.mean():.2f})"
    assert (l32.argmax(1) == l8.argmax(1))[clear].mean() >= 0.95
    bad = runner.invoke(app, ["calibrate", str(tiny_onnx), "--data", str(synth_data), "--out", str(tmp_path / "b.onnx"),
                              "--target", "cpu", "--method", "entropy"])
    assert bad.exit_code == 1 and "--target cpu calibrates with" in bad.output


def test_the_float_part_of_a_qdq_onnx_cast_to_fp16(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    """For strongly typed TensorRT: float16 Q/DQ scales (opset 19), FP32 I/O, the same predictions as
    the FP32-float Q/DQ; build-engine sees the float part as fp16. A timm model (ReduceMean, whose
    axes became an input at opset 18) goes through the opset upgrade too."""
    import onnx

    from edgeopt.export.fp16 import convert_qdq_float_to_fp16
    from edgeopt.export.onnx import export_onnx
    from edgeopt.runtime.ort_runner import make_session
    from edgeopt.trt.model_info import read_onnx_info

    onnx_path = export_onnx(tiny_ckpts["timm"], tmp_path / "m.onnx", data=synth_data).path
    qdq = calibrate_onnx(onnx_path, synth_data, tmp_path / "m.int8.onnx", num_images=32, batch_size=16).path
    assert read_onnx_info(qdq).float_precision == "fp32"
    half = convert_qdq_float_to_fp16(qdq, tmp_path / "m.int8-fp16.onnx")
    model = onnx.load(str(half))
    assert next(o.version for o in model.opset_import if o.domain == "") == 19
    scales = {i.name: i.data_type for i in model.graph.initializer}
    assert {scales[n.input[1]] for n in model.graph.node if n.op_type == "DequantizeLinear"} == {onnx.TensorProto.FLOAT16}
    assert [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)] == [onnx.TensorProto.FLOAT] * 2
    info = read_onnx_info(half)
    assert info.precision == "int8" and info.float_precision == "fp16"
    assert read_manifest(half).extra["float_precision"] == "fp16"
    x = np.random.default_rng(1).standard_normal((8, 3, 32, 32)).astype(np.float32)
    ref = make_session(qdq, optimize=False).run(None, {"input": x})[0]
    out = make_session(half, optimize=False).run(None, {"input": x})[0]
    assert (ref.argmax(1) == out.argmax(1)).mean() >= 0.75 and not np.array_equal(ref, out)
    with pytest.raises(ArtifactError, match="FP16 already"):
        convert_qdq_float_to_fp16(half, tmp_path / "again.onnx")
    with pytest.raises(ArtifactError, match="not a Q/DQ INT8 ONNX"):
        convert_qdq_float_to_fp16(onnx_path, tmp_path / "fp32.onnx")


def test_cpu_percentile_calibration_takes_a_short_last_batch(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    """ORT's histogram calibrators stack a tensor's batches into one array: 20 images in batches of 16
    end in a batch of 4, which must not break the percentile method (optimize's CPU deploy tries it)."""
    out = tmp_path / "pct.onnx"
    result = runner.invoke(app, ["calibrate", str(tiny_onnx), "--data", str(synth_data), "--out", str(out), "--target", "cpu",
                                 "--method", "percentile", "--num-images", "20", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    quant = read_manifest(out).extra["quantization"]
    assert quant["method"] == "percentile" and quant["num_images"] == 20
    assert "QLinearConv" in {n.op_type for n in onnx.load(str(out)).graph.node}
