"""The third review of edgeopt/trt, convert.py and export/fp16.py (issue 30): one test per finding, each failing
without its fix, through the doubles where only full TensorRT has the rule, through TensorRT-RTX where it has it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import trt_double
from edgeopt.cli.app import app
from edgeopt.errors import ConfigError
from edgeopt.trt.compat import dla_unsupported
from edgeopt.trt.plan import BuildConfig, check_dla_profile, plan_build

cli = CliRunner()


def _build(*args: str):
    return cli.invoke(app, ["build-engine", *map(str, args)])


def _extra(engine: Path) -> dict:
    return json.loads(Path(f"{engine}.json").read_text())["extra"]


def _double(version: str, monkeypatch: pytest.MonkeyPatch, gpu=("NVIDIA H100 80GB HBM3", "9.0"), as_version: str | None = None):
    memory = trt_double.Memory()
    module = trt_double.make_tensorrt(version, memory, gpu=gpu)
    if as_version:
        module.__version__ = as_version
    device = trt_double.HostDevice(memory, gpu=gpu)
    module.device = device
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr("edgeopt.trt.build.default_device", lambda: device)
    monkeypatch.setattr("edgeopt.trt.runner.default_device", lambda: device)
    return module


ORIN = ("Orin (nvgpu)", "8.7")


# 1 and 2 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("trt_version", ["8.6.1", "10.13.3.9", "11.4.0.106"])
def test_1_2_a_dynamic_batch_engine_lists_its_layer_precisions(fake_trt, tiny_qdq: Path, tmp_path: Path) -> None:
    """Finding 1: the inspector gets an execution context (a dynamic-batch engine otherwise reads "N/A due to dynamic
    shapes"); finding 2: 11.x's Datatype key is read (it reads "?" with only Format/Datatype)."""
    engine = tmp_path / "m.engine"
    assert _build(tiny_qdq, "--int8", "--out", engine, "--min-batch", "1", "--max-batch", "8").exit_code == 0
    layers = [layer for layer in _extra(engine)["layers"] if not layer["reformat"]]
    assert layers and all(layer["precision"] in ("INT8", "FP16", "FP32") for layer in layers), layers
    # the double's rule, proven able to fail: asked without a context, the same engine's types are unknown
    runtime = fake_trt.Runtime(fake_trt.Logger(fake_trt.Logger.WARNING))
    inspector = runtime.deserialize_cuda_engine(engine.read_bytes()).create_engine_inspector()
    assert "N/A due to dynamic shapes" in inspector.get_engine_information(fake_trt.LayerInformationFormat.JSON)


def test_2_the_11x_inspector_keys_and_tensorrt_rtx_log_are_read() -> None:
    from edgeopt.trt.layers import parse_layers, parse_logged_layers

    split = {"Layers": [{"Name": "conv", "LayerType": "CaskConvolution", "Metadata": "[ONNX Layer: /c]",
                         "Inputs": [{"Name": "x", "Datatype": "Int8", "Format": "(Vectorized C4) Four wide channel vectorized"}],
                         "Outputs": [{"Name": "y", "Datatype": "Half", "Format": "(Linear) Row major linear format"}]}]}
    layer = parse_layers(json.dumps(split), {"/c"})[0]
    assert (layer["precision"], layer["outputs"], layer["onnx"]) == ("INT8", ["FP16"], ["/c"])
    # one line as TensorRT-RTX 1.7.1 logs a layer at VERBOSE while it builds (abridged constants)
    logged = ("Layers:\nName: /0/Conv_myl0_2, LayerType: correlation, Inputs: [ { Name: a, Dimensions: [-1,3,32,32], "
              "Datatype: Int8, Format: (NHWC) Channel major format }], Constants: [ { Name: w, Dimensions: [8,3,3,3], "
              "Datatype: Int8, Format: (NHWC) Channel major format }], Outputs: [ { Name: b, Dimensions: [-1,8,32,32], "
              "Datatype: Half, Format: (NHWC) Channel major format }], TacticName: __myelin_CASK_STUB, StreamId: 0, "
              "Metadata: [ONNX Layer: /0/Conv][ONNX Layer: /1/Relu]")
    layer = parse_logged_layers(logged)[0]
    assert (layer["name"], layer["type"], layer["precision"], layer["outputs"]) == ("/0/Conv_myl0_2", "correlation", "INT8", ["FP16"])
    assert layer["onnx"] == ["/0/Conv", "/1/Relu"] and layer["tactic"] == "__myelin_CASK_STUB"


# 3, 4, 9, 10, 11: DLA -------------------------------------------------------------------------
def test_3_dla_refuses_explicit_qdq_int8_before_tensorrt_11(tiny_qdq: Path, tiny_onnx: Path, synth_data: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """DLA on 8.6-10.7 runs INT8 only by implicit (entropy) calibration: a Q/DQ ONNX is refused before any work, and the
    FP32 ONNX with the entropy calibrator builds."""
    _double("10.4.0", monkeypatch, gpu=ORIN)
    one = ("--dla-core", "0", "--min-batch", "4", "--max-batch", "4")
    refused = _build(tiny_qdq, "--int8", *one, "--out", tmp_path / "q.engine")
    assert refused.exit_code == 1 and "does not run explicit (Q/DQ) INT8" in refused.output and "--method entropy" in refused.output
    from_fp32 = _build(tiny_onnx, "--int8", *one, "--data", synth_data, "--out", tmp_path / "q.engine")
    assert from_fp32.exit_code == 1 and "does not run explicit" in from_fp32.output  # the explicit path from FP32 too
    ok = _build(tiny_onnx, "--int8", *one, "--method", "entropy", "--data", synth_data, "--num-images", "32",
                "--out", tmp_path / "e.engine")
    assert ok.exit_code == 0, ok.output
    assert _extra(tmp_path / "e.engine")["calibration"]["calibrator"] == "entropy"


def test_4_dla_needs_the_entropy_calibrator(tiny_onnx: Path, synth_data: Path, tmp_path: Path, monkeypatch) -> None:
    _double("10.4.0", monkeypatch, gpu=ORIN)
    result = _build(tiny_onnx, "--int8", "--dla-core", "0", "--min-batch", "4", "--max-batch", "4", "--method", "minmax",
                    "--data", synth_data, "--out", tmp_path / "m.engine")
    assert result.exit_code == 1 and "requires the entropy calibrator" in result.output and not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize("version,why", [("10.7.0", None), ("10.8.0.43", "10.7 was the last"), ("11.3.0", "10.7 was the last"),
                                         ("11.4.0.106", "only on Windows on ARM"), ("11.4.1.3", None),
                                         ("11.5.0.2", "does not support JetPack")])
def test_9_the_dla_gate_reads_the_patch_version(version: str, why: str | None) -> None:
    said = dla_unsupported(version)
    assert (said is None) if why is None else (why in said)


def test_9_tensorrt_11_4_0_refuses_dla_on_a_jetson(tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    _double("11.4.0.106", monkeypatch, gpu=ORIN)
    result = _build(tiny_onnx, "--fp16", "--dla-core", "0", "--min-batch", "4", "--max-batch", "4", "--out", tmp_path / "m.engine")
    assert result.exit_code == 1 and "only on Windows on ARM" in result.output


def test_10_dla_int8_on_11_4_1_takes_fp32_scales(tiny_qdq: Path, tmp_path: Path, monkeypatch) -> None:
    """NVIDIA documents DLA Q/DQ with FP32 scales only: no FP16 float part on 11.x DLA builds."""
    options = BuildConfig("int8", dla_core=0, min_batch=4, max_batch=4)
    with pytest.raises(ConfigError, match="FP32 scales only"):
        plan_build("int8", options, "11.4.1.3")
    plan = plan_build("int8", BuildConfig("int8", dla_core=0, min_batch=4, max_batch=4, int8_float="fp32"), "11.4.1.3")
    assert not plan.cast_float_fp16 and plan.float_precision == "fp32"
    _double("11.4.0.106", monkeypatch, gpu=ORIN, as_version="11.4.1.3")  # 11.4.0's surface standing in for 11.4.1
    one = ("--dla-core", "0", "--min-batch", "4", "--max-batch", "4")
    assert _build(tiny_qdq, "--int8", *one, "--out", tmp_path / "h.engine").exit_code == 1
    ok = _build(tiny_qdq, "--int8", *one, "--int8-float", "fp32", "--out", tmp_path / "f.engine")
    assert ok.exit_code == 0, ok.output
    extra = _extra(tmp_path / "f.engine")
    assert extra["float_precision"] == "fp32" and extra["dla_core"] == 0
    assert json.loads(Path(f"{tmp_path / 'f.engine'}.json").read_text())["parent"]["path"].endswith(tiny_qdq.name)


def test_11_dla_builds_prefer_precision_constraints_and_check_the_dimension_limit(tiny_onnx: Path, tmp_path: Path,
                                                                                  monkeypatch) -> None:
    module = _double("10.4.0", monkeypatch, gpu=ORIN)
    engine = tmp_path / "m.engine"
    assert _build(tiny_onnx, "--fp16", "--dla-core", "0", "--min-batch", "2", "--max-batch", "2", "--out", engine).exit_code == 0
    built = trt_double.Engine.deserialize(engine.read_bytes())
    assert {"PREFER_PRECISION_CONSTRAINTS", "GPU_FALLBACK", "FP16"} <= set(built.flags), built.flags
    assert module.__version__ == "10.4.0"
    with pytest.raises(ConfigError, match="over DLA's maximum of 8192"):
        check_dla_profile({k: (1, 3, 8200, 64) for k in ("min", "opt", "max")})
    check_dla_profile({k: (1, 3, 8192, 64) for k in ("min", "opt", "max")})


# 5 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trt_version", ["10.13.3.9", "11.4.0.106"])
def test_5_verify_on_a_fixed_batch_profile_runs_the_short_last_batch(fake_trt, tiny_onnx: Path, synth_data: Path,
                                                                      tmp_path: Path) -> None:
    """--verify with a fixed-batch profile (as every DLA build, a static-batch ONNX, --min-batch > 1): 7 images in batches
    of 4 leave a last batch of 3, outside the profile; it is padded, not a crash that deletes the staged engine."""
    images = tmp_path / "seven"
    images.mkdir()
    for i, path in enumerate(sorted(synth_data.rglob("*.jpg"))[:7]):
        (images / f"{i}.jpg").write_bytes(path.read_bytes())
    engine = tmp_path / "m.engine"
    result = _build(tiny_onnx, "--fp16", "--min-batch", "4", "--max-batch", "4", "--out", engine, "--verify", images,
                    "--max-disagreement", "0.5")
    assert result.exit_code == 0, result.output
    record = _extra(engine)["verification"]
    assert record["images"] == 7 and record["passed"] and engine.is_file()
    from edgeopt.trt.runner import TensorRTRunner

    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    padded = TensorRTRunner(engine).run(x)
    full = TensorRTRunner(engine).run(np.concatenate([x, x[:1]]))
    assert padded.shape == (3, full.shape[1]) and np.allclose(padded, full[:3])


# 6 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trt_version", ["8.6.1", "10.13.3.9", "11.4.0.106"])
def test_6_every_context_runs_with_layer_names_only_nvtx(fake_trt, tiny_onnx: Path, tmp_path: Path) -> None:
    from edgeopt.trt.runner import TensorRTRunner

    engine = tmp_path / "m.engine"
    assert _build(tiny_onnx, "--fp16", "--max-batch", "4", "--out", engine).exit_code == 0
    graphed = TensorRTRunner(engine, cuda_graph=True)
    for n in (2, 3):
        graphed.run(np.zeros((n, 3, 32, 32), np.float32))
    contexts = {id(c): c for c in [graphed.context, *graphed._contexts.values()]}
    assert len(contexts) == 2
    names_only = fake_trt.ProfilingVerbosity.LAYER_NAMES_ONLY
    assert all(c.nvtx_verbosity == names_only for c in contexts.values())
    # the default a context would have kept: the engine's DETAILED build verbosity
    assert graphed.engine.create_execution_context().nvtx_verbosity == fake_trt.ProfilingVerbosity.DETAILED


# 7 and 8: export/fp16.py -------------------------------------------------------------------------
def test_7_equalized_int8_models_have_no_fp32_islands(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    """Equalization turns ReLU6 into Relu + Min; the FP16 float part keeps Min (and Max) in FP16, so the only Casts are
    the FP32 input's and output's."""
    import onnx

    from edgeopt.export.fp16 import convert_qdq_float_to_fp16
    from edgeopt.quant.calibrate import calibrate_onnx
    from edgeopt.quant.ptq import PtqConfig

    qdq = calibrate_onnx(tiny_onnx, synth_data, tmp_path / "eq.int8.onnx", num_images=32, batch_size=16,
                         calibration_dir=tmp_path / "calib", ptq=PtqConfig(equalize=True)).path
    assert any(n.op_type == "Min" for n in onnx.load(str(qdq)).graph.node)  # premise: the rewritten ReLU6
    half = onnx.load(str(convert_qdq_float_to_fp16(qdq, tmp_path / "eq.int8-fp16.onnx")))
    casts = [n for n in half.graph.node if n.op_type == "Cast"]
    io = {v.name for v in (*half.graph.input, *half.graph.output)}
    assert len(casts) == 2 and all(set(n.input) & io or set(n.output) & io for n in casts), [n.name for n in casts]


def test_8_tiny_weight_scales_are_requantized_for_fp16(tiny_qdq: Path) -> None:
    """A per-channel weight scale below float16's range is raised to 5.96e-8 when the float part goes to FP16; the INT8
    weights are requantized against the scale FP16 holds, so the dequantized weights stay within one step."""
    import onnx
    from onnx import numpy_helper

    from edgeopt.export.fp16 import fp16_scale, requantize_for_fp16_scales

    model = onnx.load(str(tiny_qdq))
    inits = {i.name: i for i in model.graph.initializer}
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
              and numpy_helper.to_array(inits[n.input[0]]).dtype == np.int8)
    q = numpy_helper.to_array(inits[dq.input[0]])
    scale = numpy_helper.to_array(inits[dq.input[1]]).copy()
    scale[0], scale[1] = 1e-9, 3e-6  # a nearly dead channel, and one in float16's subnormal range
    inits[dq.input[1]].CopyFrom(numpy_helper.from_array(scale, dq.input[1]))
    shape = (-1,) + (1,) * (q.ndim - 1)
    before = q.astype(np.float64) * scale.reshape(shape)
    naive = q.astype(np.float64) * fp16_scale(scale).reshape(shape)  # the stored INT8 under the raised scale
    assert requantize_for_fp16_scales(model) == [dq.input[0]]
    held = numpy_helper.to_array(inits[dq.input[1]])
    after = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64) * held.reshape(shape)
    assert np.array_equal(held, fp16_scale(held))  # nothing left for FP16 to change
    step = held.reshape(shape).astype(np.float64)
    assert (np.abs(after - before) <= step * (1 + 1e-6)).all()
    assert np.abs(naive - before)[0].max() > 10 * step[0].max()  # without requantizing: tens of steps off


# 12 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trt_version", ["8.6.1", "10.4.0", "11.4.0.106"])
def test_12_cuda_graph_contexts_share_one_activation_block(fake_trt, tiny_onnx: Path, tmp_path: Path) -> None:
    """Each captured shape has its own context; they run one after another on one stream, so they share one activation
    block (made without memory of their own: 8.6-10.x without_device_memory, 11.x USER_MANAGED) instead of one each."""
    from edgeopt.trt.runner import TensorRTRunner

    engine = tmp_path / "m.engine"
    assert _build(tiny_onnx, "--fp16", "--max-batch", "4", "--out", engine).exit_code == 0
    graphed, plain = TensorRTRunner(engine, cuda_graph=True), TensorRTRunner(engine)
    for n in (1, 2, 3, 2):
        x = np.random.default_rng(n).standard_normal((n, 3, 32, 32)).astype(np.float32)
        np.testing.assert_allclose(graphed.run(x), plain.run(x), rtol=1e-6)
    contexts = list({id(c): c for c in graphed._contexts.values()}.values())
    assert len(contexts) == 3 and all(c.__dict__.get("_needs_memory") for c in contexts)
    blocks = {c.__dict__.get("_device_memory") or c.__dict__["_props"].get("device_memory") for c in contexts}
    assert blocks == {fake_trt.device.address(graphed._activations)}
    assert not plain.context.__dict__.get("_needs_memory")  # without graphs: one context, its own memory
