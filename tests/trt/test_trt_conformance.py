"""edgeopt's real build-engine (through the CLI) and TensorRT runner against the double of every version.

Each test runs once per committed surface (tests/trt_surface: 8.6.1 ... 11.4). The double has
exactly that version's API (names, overloads, argument types, return classes) and runs the
built ONNX with ONNX Runtime on the bytes at the engine's input address, so engine outputs are
compared with ONNX Runtime on the same inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.errors import ArtifactError, ConfigError
from edgeopt.trt.compat import parse_version

runner = CliRunner()


def _build(args: list[str]):
    result = runner.invoke(app, ["build-engine", *args])
    return result


def _major(fake_trt) -> int:
    return parse_version(fake_trt.__version__)[0]


def _inputs(n: int = 4, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def _ort(onnx: Path, x: np.ndarray) -> np.ndarray:
    from edgeopt.runtime import open_runner

    return open_runner(onnx).run(x)


def _engine_run(engine: Path, x: np.ndarray, **kw) -> np.ndarray:
    from edgeopt.trt.runner import TensorRTRunner

    return TensorRTRunner(engine, **kw).run(x)


def _assert_like_a_real_engine(out: np.ndarray, ref: np.ndarray, precision: str) -> None:
    """Engine logits against ONNX Runtime's FP32 (or emulated Q/DQ) ones, at what a real engine meets:
    FP16 layers move logits by ~1e-3 of their range; in an INT8 engine, FP16 rounding moves some values
    across a quantization step. The double runs FP16 wherever TensorRT may, so these bounds are tested."""
    _assert_within_real_engine_bounds(out, ref, precision)
    assert not np.array_equal(out, ref)  # the double ran reduced precision, not the FP32 graph


def _assert_within_real_engine_bounds(out: np.ndarray, ref: np.ndarray, precision: str) -> None:
    """The bounds alone, for comparisons where the double happens to be exact and a real engine is not: an INT8 engine
    with an FP32 float part (its INT8 kernels round and accumulate in their own order, so values near a quantization
    step land on the other side) and an engine with FP16 I/O (its FP16 kernels are not ONNX Runtime's)."""
    scale = max(1.0, float(np.abs(ref).max()))
    bound = 0.05 * scale if precision == "fp16" else 0.25 * scale
    assert np.abs(out - ref).max() < bound
    # top-1 agreement where the reference's top-1 leads by more than the error allowed (a near-tie may flip: a
    # one-epoch toy model's logits can all lie within the bound)
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * bound
    if clear.any():
        assert (out.argmax(1) == ref.argmax(1))[clear].mean() >= (0.99 if precision == "fp16" else 0.75)


def test_fp16_engine_builds_runs_and_matches_onnxruntime(fake_trt, tiny_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "m.fp16.engine"
    result = _build([str(tiny_onnx), "--fp16", "--out", str(engine), "--max-batch", "8",
                     "--timing-cache", str(tmp_path / "timing.cache")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "m.fp16.engine.json").read_text())
    assert manifest["extra"]["tensorrt_version"] == fake_trt.__version__
    assert manifest["extra"]["profile"] == {"min": [1, 3, 32, 32], "opt": [8, 3, 32, 32], "max": [8, 3, 32, 32]}
    assert (tmp_path / "timing.cache").read_bytes().startswith(b"TIMING-CACHE")
    x = _inputs()
    out = _engine_run(engine, x)
    ref = _ort(tiny_onnx, x)
    if _major(fake_trt) >= 11:  # strongly typed: edgeopt converted the ONNX to FP16 first
        assert manifest["extra"]["strongly_typed"] and manifest["extra"]["builder_flags"] == []
    else:
        assert manifest["extra"]["builder_flags"] == ["FP16"]
    _assert_like_a_real_engine(out, ref, "fp16")
    # a second build loads the timing cache it wrote
    again = _build([str(tiny_onnx), "--fp16", "--out", str(tmp_path / "m2.engine"), "--max-batch", "8",
                    "--timing-cache", str(tmp_path / "timing.cache")])
    assert again.exit_code == 0 and "another GPU" not in again.output


def test_a_rejected_timing_cache_is_not_quoted_as_the_build_error(fake_trt, tiny_onnx: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT logs a corrupt timing cache at ERROR and builds on without it; when the build then fails
    for its own reason, the one-line error quotes that reason."""
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache")
    ok = _build([str(tiny_onnx), "--fp16", "--out", str(tmp_path / "ok.engine"), "--timing-cache", str(cache)])
    assert ok.exit_code == 0, ok.output
    assert "another GPU or TensorRT, or is corrupt" in ok.output and cache.read_bytes().startswith(b"TIMING-CACHE")
    cache.write_bytes(b"not a timing cache")
    builder = fake_trt.Builder

    def failing(self, network, config):
        self._logger.log(fake_trt.ILogger.Severity.ERROR, "Error Code 4: Internal Error (the layer has no implementation)")
        return None

    monkeypatch.setattr(builder, "build_serialized_network", failing)
    bad = _build([str(tiny_onnx), "--fp16", "--out", str(tmp_path / "bad.engine"), "--timing-cache", str(cache)])
    assert bad.exit_code == 1
    error = next(line for line in bad.output.splitlines() if "could not build the engine" in line)
    assert "no implementation" in error and "timing cache" not in error and "Magic tag" not in error


def test_int8_engine_from_a_qdq_onnx(fake_trt, tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.quant.calibrate import calibrate_onnx

    qdq = calibrate_onnx(tiny_onnx, synth_data, tmp_path / "tiny.int8.onnx", num_images=48, batch_size=16,
                         calibration_dir=tmp_path / "calibration").path
    engine = tmp_path / "m.int8.engine"
    result = _build([str(qdq), "--int8", "--out", str(engine), "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    x = _inputs()
    _assert_like_a_real_engine(_engine_run(engine, x), _ort(qdq, x), "int8")
    extra = json.loads((tmp_path / "m.int8.engine.json").read_text())["extra"]
    assert extra["builder_flags"] == ([] if _major(fake_trt) >= 11 else ["INT8", "FP16"])
    assert extra["float_precision"] == "fp16"  # the unquantized layers in FP16 on every version


@pytest.mark.parametrize("trt_version", ["8.6.1", "10.13.3.9", "11.4.0.106"])  # the same inspector/flag API in every surface
def test_every_engine_layer_is_in_the_manifest_and_named_by_onnx_node(fake_trt, tiny_onnx: Path, tiny_qdq: Path, synth_data: Path,
                                                                      tmp_path: Path) -> None:
    """Built with DETAILED profiling verbosity, the inspector's layers (type, precision, tactic) go into
    the manifest, mapped back to the ONNX node names; `edgeopt info --layers` prints them."""
    import onnx

    qdq = tiny_qdq
    engine = tmp_path / "m.engine"
    result = _build([str(qdq), "--int8", "--out", str(engine), "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    extra = json.loads(Path(str(engine) + ".json").read_text())["extra"]
    layers, summary = extra["layers"], extra["layer_summary"]
    convs = [n.name for n in onnx.load(str(qdq)).graph.node if n.op_type == "Conv"]
    by_node = {n: layer for layer in layers for n in layer["onnx"]}
    assert convs and all(by_node[c]["precision"] == "INT8" and by_node[c]["tactic"] for c in convs)
    assert summary["onnx_nodes_mapped"] == summary["onnx_nodes"] and summary["precision"]["INT8"] >= len(convs)
    assert all(not layer["onnx"] or layer["type"] == "Reformat" for layer in layers if layer["reformat"])
    if _major(fake_trt) < 11:  # the input's QuantizeLinear is a Reformat layer (11.x: a Cast to FP16 comes first)
        assert summary["reformats"] >= 1
    shown = runner.invoke(app, ["info", str(engine), "--layers"])
    assert shown.exit_code == 0, shown.output
    assert convs[0] in shown.output and "INT8" in shown.output and f"{len(layers)} layers" in shown.output
    fp16 = tmp_path / "h.engine"
    assert _build([str(tiny_onnx), "--fp16", "--out", str(fp16), "--max-batch", "4"]).exit_code == 0
    half = json.loads(Path(str(fp16) + ".json").read_text())["extra"]
    conv_layers = [layer for layer in half["layers"] if any(n in convs for n in layer["onnx"])]
    assert conv_layers and {layer["precision"] for layer in conv_layers} == {"FP16"}
    assert half["layer_summary"]["onnx_nodes_mapped"] == half["layer_summary"]["onnx_nodes"]
    bad = runner.invoke(app, ["info", str(tiny_onnx), "--layers"])
    assert bad.exit_code == 1 and "lists the layers of a TensorRT engine" in bad.output


def test_an_inspector_failure_leaves_the_engine_and_its_manifest(fake_trt, tiny_onnx: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self, format):
        raise RuntimeError("inspector unavailable")

    monkeypatch.setattr(fake_trt.EngineInspector, "get_engine_information", broken)
    engine = tmp_path / "m.engine"
    result = _build([str(tiny_onnx), "--fp16", "--out", str(engine), "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    assert json.loads(Path(str(engine) + ".json").read_text())["extra"]["layers"] is None
    assert "gave no layer list" in " ".join(result.output.split())


@pytest.mark.parametrize("trt_version", ["8.6.1", "10.13.3.9", "11.4.0.106"])  # the same inspector/flag API in every surface
def test_int8_float_part_is_recorded_and_shown(fake_trt, tiny_onnx: Path, tiny_qdq: Path, synth_data: Path, tmp_path: Path) -> None:
    """--int8-float fp32 keeps the unquantized layers in FP32 (no FP16 flag, no cast); the runner's
    precision (what bench and eval rows show) says which float part an INT8 engine has."""
    from edgeopt.trt.runner import TensorRTRunner

    qdq = tiny_qdq
    for choice in ("fp16", "fp32"):
        engine = tmp_path / f"m.{choice}.engine"
        result = _build([str(qdq), "--int8", "--int8-float", choice, "--out", str(engine), "--max-batch", "4"])
        assert result.exit_code == 0, result.output
        extra = json.loads(Path(str(engine) + ".json").read_text())["extra"]
        assert extra["float_precision"] == choice and TensorRTRunner(engine).precision == f"int8+{choice}"
        if _major(fake_trt) < 11:
            assert extra["builder_flags"] == (["INT8", "FP16"] if choice == "fp16" else ["INT8"])
    x = _inputs()
    # FP32 float layers: the double runs the Q/DQ graph exactly, a real engine only within INT8's bounds (review 3, 13)
    _assert_within_real_engine_bounds(_engine_run(tmp_path / "m.fp32.engine", x), _ort(qdq, x), "int8")


@pytest.mark.parametrize("trt_version", ["11.4.0.106"])
def test_a_foreign_qdq_onnx_on_11_warns_that_its_float_layers_run_fp32(fake_trt, tiny_onnx: Path, tiny_qdq: Path, synth_data: Path,
                                                                       tmp_path: Path) -> None:
    import shutil

    qdq = tiny_qdq
    foreign = tmp_path / "foreign" / "model.onnx"
    foreign.parent.mkdir()
    shutil.copy(qdq, foreign)  # no manifest beside it
    engine = tmp_path / "f.engine"
    result = _build([str(foreign), "--int8", "--out", str(engine), "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    assert "unquantized layers run in FP32" in " ".join(result.output.split())
    assert json.loads(Path(str(engine) + ".json").read_text())["extra"]["float_precision"] == "fp32"


def test_int8_from_fp32_calibrates_explicitly_first(fake_trt, tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    result = _build([str(tiny_onnx), "--int8", "--calib-data", str(synth_data), "--out", str(engine),
                     "--num-images", "48", "--calib-batch-size", "16", "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "m.engine.json").read_text())
    parent = Path(manifest["parent"]["path"])
    if _major(fake_trt) >= 11:  # strongly typed: the Q/DQ ONNX's float part cast to FP16 in the graph
        assert parent.name == "m.int8-fp16.onnx" and manifest["extra"]["float_precision"] == "fp16"
        parent = Path(json.loads((tmp_path / "m.int8-fp16.onnx.json").read_text())["parent"]["path"])
    assert parent.name == "m.int8.onnx"  # the Q/DQ ONNX the calibrate stage wrote
    assert manifest["extra"]["calibration"]["method"] == "entropy"


@pytest.mark.parametrize("opt", [64, 8])
def test_legacy_calibrator_serves_the_calibration_profile_batch(fake_trt, tiny_onnx: Path, synth_data: Path,
                                                                tmp_path: Path, opt: int) -> None:
    args = [str(tiny_onnx), "--int8", "--calibrator", "entropy", "--calib-data", str(synth_data), "--out",
            str(tmp_path / "m.engine"), "--opt-batch", str(opt), "--max-batch", "64", "--num-images", "40",
            "--calib-batch-size", "16"]
    result = _build(args)
    if _major(fake_trt) >= 11:
        assert result.exit_code == 1 and "removed implicit INT8 calibration" in result.output
        return
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "m.engine.json").read_text())["extra"]["calibration"]
    assert record["batches"] == 3 and not record["cache_hit"]  # 40 images in batches of 16: the last one filled up
    cache = Path(record["cache"])
    assert cache.read_bytes().startswith(b"TRT-") and cache.with_name(cache.name + ".json").exists()
    again = _build(args)  # same ONNX, images and batch: the cache replaces calibration
    assert again.exit_code == 0, again.output
    record = json.loads((tmp_path / "m.engine.json").read_text())["extra"]["calibration"]
    assert record["cache_hit"] and record["batches"] == 0
    # a cache TensorRT does not accept (another version's header) is offered, skipped, and recalibrated:
    # not a hit, and the cache is replaced by this version's
    cache.write_bytes(b"TRT-7103-EntropyCalibration2\n" + cache.read_bytes().split(b"\n", 1)[1])
    third = _build(args)
    assert third.exit_code == 0, third.output
    record = json.loads((tmp_path / "m.engine.json").read_text())["extra"]["calibration"]
    assert not record["cache_hit"] and record["batches"] == 3
    assert not cache.read_bytes().startswith(b"TRT-7103")


@pytest.mark.parametrize("level", ["ampere+", "same-cc"])
def test_hardware_compatibility_levels(fake_trt, tiny_onnx: Path, tmp_path: Path, level: str) -> None:
    result = _build([str(tiny_onnx), "--fp16", "--out", str(tmp_path / "m.engine"), "--hw-compat", level])
    if level == "same-cc" and parse_version(fake_trt.__version__) < (10, 9):
        assert result.exit_code == 1 and "needs TensorRT 10.9 or newer" in result.output
        assert not (tmp_path / "m.engine").exists()
    else:
        assert result.exit_code == 0, result.output


def test_static_batch_onnx_gets_its_own_profile(fake_trt, tiny_ckpts: dict, tmp_path: Path) -> None:
    from edgeopt.export.onnx import export_onnx

    onnx = export_onnx(tiny_ckpts["yaml"], tmp_path / "static.onnx", static_batch=True, batch_size=4).path
    engine = tmp_path / "static.engine"
    result = _build([str(onnx), "--fp16", "--out", str(engine)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "static.engine.json").read_text())["extra"]["profile"]["max"] == [4, 3, 32, 32]
    x = _inputs(4)
    assert _engine_run(engine, x).shape == (4, 6)
    bad = _build([str(onnx), "--fp16", "--out", str(tmp_path / "b.engine"), "--max-batch", "8"])
    assert bad.exit_code == 1 and "fixed batch of 4" in bad.output and "Traceback" not in bad.output


def test_cuda_graph_replay_matches_plain_runs(fake_trt, tiny_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    assert _build([str(tiny_onnx), "--fp16", "--out", str(engine), "--max-batch", "8"]).exit_code == 0
    from edgeopt.trt.runner import TensorRTRunner

    graphed = TensorRTRunner(engine, cuda_graph=True)
    x = _inputs(2)
    first, second = graphed.run(x), graphed.run(x[::-1].copy())
    assert fake_trt.device.captured == 1  # captured once per shape, replayed after
    np.testing.assert_allclose(first, TensorRTRunner(engine).run(x), rtol=1e-6)
    np.testing.assert_allclose(second, first[::-1], rtol=1e-6)


def test_cuda_graphs_get_a_context_per_shape(fake_trt, tiny_onnx: Path, tmp_path: Path) -> None:
    """bench runs --batch-sizes and then a shorter last batch: a graph captured at one shape must not be
    replayed on a context that ran another shape since (the double fails such a replay)."""
    engine = tmp_path / "m.engine"
    assert _build([str(tiny_onnx), "--fp16", "--out", str(engine), "--max-batch", "8"]).exit_code == 0
    from edgeopt.trt.runner import TensorRTRunner

    graphed, plain = TensorRTRunner(engine, cuda_graph=True), TensorRTRunner(engine)
    for n in (2, 3, 2, 3):
        x = _inputs(n, seed=n)
        np.testing.assert_allclose(graphed.run(x), plain.run(x), rtol=1e-6)
    assert fake_trt.device.captured == 2
    assert len({id(c) for c in graphed._contexts.values()}) == 2
    with pytest.raises(ConfigError, match="outside the engine's profile"):
        graphed.run(_inputs(9))
    assert len(graphed._contexts) == 2  # a batch outside the profile gets no context


@pytest.mark.parametrize("trt_version", ["8.6.1"])
def test_an_8_6_engine_without_profile_sharing_recaptures_on_one_context(fake_trt, tiny_onnx: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """8.6 contexts share profile 0 only with PROFILE_SHARING_0806 (edgeopt's builds set it); an engine
    built without it gets one context whose graphs are dropped and re-captured when the shape changes."""
    from edgeopt.trt.runner import TensorRTRunner

    shared = tmp_path / "shared.engine"
    assert _build([str(tiny_onnx), "--fp16", "--out", str(shared), "--max-batch", "8"]).exit_code == 0
    assert json.loads(Path(str(shared) + ".json").read_text())["extra"]["profile_sharing"] is True
    monkeypatch.setattr(fake_trt.IBuilderConfig, "set_preview_feature", lambda self, feature, enable: None)
    engine = tmp_path / "m.engine"
    assert _build([str(tiny_onnx), "--fp16", "--out", str(engine), "--max-batch", "8"]).exit_code == 0
    manifest = Path(str(engine) + ".json")
    record = json.loads(manifest.read_text())
    record["extra"]["profile_sharing"] = False  # as an engine built by an edgeopt before this rule
    manifest.write_text(json.dumps(record))
    raw = TensorRTRunner(engine)
    second = raw.engine.create_execution_context()
    assert not second.set_input_shape(raw.input, (2, 3, 32, 32))  # the double's rule: no profile for it
    graphed, plain = TensorRTRunner(engine, cuda_graph=True), TensorRTRunner(engine)
    for n in (2, 3, 2):
        x = _inputs(n, seed=n)
        np.testing.assert_allclose(graphed.run(x), plain.run(x), rtol=1e-6)
    assert fake_trt.device.captured == 3


def test_a_failed_capture_runs_that_shape_without_a_graph(fake_trt, tiny_onnx: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An enqueue that fails inside the capture (and only there) ends the capture, warns, and the
    shape runs by plain enqueue, as trtexec does; the results stay right."""
    from edgeopt.errors import EdgeoptWarning
    from edgeopt.trt.runner import TensorRTRunner

    engine = tmp_path / "m.engine"
    assert _build([str(tiny_onnx), "--fp16", "--out", str(engine), "--max-batch", "8"]).exit_code == 0
    cls, memory = fake_trt.IExecutionContext, fake_trt._double.memory
    real = cls.execute_async_v3
    monkeypatch.setattr(cls, "execute_async_v3",
                        lambda self, stream: False if memory.recording is not None else real(self, stream))
    graphed = TensorRTRunner(engine, cuda_graph=True)
    x = _inputs(2)
    with pytest.warns(EdgeoptWarning, match="capture failed.*without a CUDA graph"):
        first = graphed.run(x)
    np.testing.assert_allclose(first, TensorRTRunner(engine).run(x), rtol=1e-6)
    np.testing.assert_allclose(graphed.run(x[::-1].copy()), first[::-1], rtol=1e-6)  # no second capture, no warning
    assert fake_trt.device.captured == 0


def test_engine_with_fp16_io_is_fed_fp16(fake_trt, tmp_path: Path) -> None:
    """An ONNX from elsewhere with FP16 input and output: the runner reads the engine's dtypes."""
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT16, [4, 3, 1, 1], np.random.default_rng(1).standard_normal(12).astype(np.float16).tobytes(), raw=True)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
         helper.make_node("Flatten", ["p"], ["y"])], "fp16io",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["n", 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "fp16io.onnx"
    onnx.save(model, str(path))
    (tmp_path / "classes.txt").write_text("a\nb\nc\nd\n")
    engine = tmp_path / "fp16io.engine"
    result = _build([str(path), "--fp16", "--out", str(engine), "--max-batch", "2", "--img-size", "16",
                     "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--classes", str(tmp_path / "classes.txt")])
    assert result.exit_code == 0, result.output
    x = _inputs(2, 16)
    import onnxruntime as ort

    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.astype(np.float16)})[0]
    _assert_within_real_engine_bounds(_engine_run(engine, x), ref.astype(np.float32), "fp16")  # review 3, finding 13


def test_engine_from_an_onnx_without_manifest(fake_trt, tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(tiny_onnx))
    foreign = tmp_path / "foreign.onnx"
    with_meta = tmp_path / "with_meta.onnx"
    onnx.save(model, str(with_meta))  # edgeopt's metadata_props, no manifest
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    if _major(fake_trt) >= 11:  # FP16 must be in the graph: only edgeopt's own exports are converted for it
        result = _build([str(with_meta), "--fp16", "--out", str(tmp_path / "meta.engine")])
        assert result.exit_code == 1 and "needs an ONNX exported by edgeopt" in result.output
        return
    result = _build([str(with_meta), "--fp16", "--out", str(tmp_path / "meta.engine")])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "meta.engine.json").read_text())
    assert meta["classes"] and meta["preprocess"]["size"] == 32 and meta["extra"]["metadata_source"] == "metadata"

    result = _build([str(foreign), "--fp16", "--out", str(tmp_path / "f.engine")])
    assert result.exit_code == 0, result.output
    assert "recorded as unknown" in result.output
    unknown = runner.invoke(app, ["eval", str(tmp_path / "f.engine"), "--data", str(synth_data), "--backend", "tensorrt"])
    assert unknown.exit_code == 1 and "--img-size" in unknown.output and "Traceback" not in unknown.output

    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(meta["classes"]) + "\n")
    flags = ["--img-size", "32", "--mean", ",".join(map(str, meta["preprocess"]["mean"])),
             "--std", ",".join(map(str, meta["preprocess"]["std"])), "--classes", str(classes)]
    result = _build([str(foreign), "--fp16", "--out", str(tmp_path / "f2.engine"), *flags])
    assert result.exit_code == 0, result.output
    evaluated = runner.invoke(app, ["eval", str(tmp_path / "f2.engine"), "--data", str(synth_data), "--json",
                                    str(tmp_path / "e.json")])
    assert evaluated.exit_code == 0, evaluated.output
    by_onnx = runner.invoke(app, ["eval", str(tiny_onnx), "--data", str(synth_data), "--json", str(tmp_path / "o.json")])
    assert by_onnx.exit_code == 0
    e, o = json.loads((tmp_path / "e.json").read_text()), json.loads((tmp_path / "o.json").read_text())
    assert e["macro_f1"] == pytest.approx(o["macro_f1"])


# -- bad input: one line each -----------------------------------------------------------------
def test_corrupt_engine_is_one_line(fake_trt, tiny_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    assert _build([str(tiny_onnx), "--fp16", "--out", str(engine)]).exit_code == 0
    blob = bytearray(engine.read_bytes())
    blob[:8] = b"garbage!"
    engine.write_bytes(bytes(blob))
    from edgeopt.artifacts import Manifest, read_manifest, write_artifact_manifest

    manifest = read_manifest(engine, verify=False)
    write_artifact_manifest(engine, Manifest(**{**manifest.to_dict(), "sha256": None}))  # re-hash: only the bytes are bad
    with pytest.raises(ArtifactError, match="could not deserialize"):
        _engine_run(engine, _inputs())


def test_engine_from_another_version_or_gpu_is_refused(fake_trt, tiny_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    assert _build([str(tiny_onnx), "--fp16", "--out", str(engine)]).exit_code == 0
    fake_trt.__version__ = "10.99.0.1"
    with pytest.raises(ArtifactError, match=r"built with TensorRT .* rebuild it"):
        _engine_run(engine, _inputs())
    fake_trt.__version__ = fake_trt._double.version
    fake_trt.device.gpu = ("NVIDIA A100", "8.0")
    with pytest.raises(ArtifactError, match=r"compute capability 9.0 .*this GPU is 8.0"):
        _engine_run(engine, _inputs())


def test_onnx_the_parser_rejects_quotes_its_first_error(fake_trt, tmp_path: Path) -> None:
    """An asymmetric Q/DQ (non-zero zero point), which TensorRT's parser refuses (as TensorRT-RTX's does, in
    test_trt_rtx.py): the one-line error quotes the parser."""
    import onnx
    from onnx import TensorProto, helper

    scale, zero = helper.make_tensor("s", TensorProto.FLOAT, [], [0.05]), helper.make_tensor("z", TensorProto.INT8, [], [3])
    graph = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                               helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], "asymmetric",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 8, 8])], [scale, zero])
    path = tmp_path / "asymmetric.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = _build([str(path), "--int8", "--out", str(tmp_path / "m.engine")])
    assert result.exit_code == 1 and "TensorRT cannot parse it" in result.output, result.output
    assert "Non-zero zero point is not supported" in result.output
    assert len(result.output.strip().splitlines()[-1]) > 0 and "Traceback" not in result.output


def test_batch_outside_the_profile_is_one_line(fake_trt, tiny_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    assert _build([str(tiny_onnx), "--fp16", "--out", str(engine), "--max-batch", "4"]).exit_code == 0
    with pytest.raises(ConfigError, match="outside the engine's profile"):
        _engine_run(engine, _inputs(8))


def test_cpu_target_onnx_is_refused_for_engines(fake_trt, tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.quant.calibrate import calibrate_onnx

    cpu = calibrate_onnx(tiny_onnx, synth_data, tmp_path / "cpu.onnx", num_images=32, batch_size=16, target="cpu").path
    result = _build([str(cpu), "--int8", "--out", str(tmp_path / "m.engine")])
    assert result.exit_code == 1 and "--target tensorrt" in result.output and not (tmp_path / "m.engine").exists()


def test_int8_engine_with_layers_left_in_float(fake_trt, tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    """What --skip-first-last and --max-f1-drop write (Q/DQ with some float layers) builds as an INT8 engine."""
    import onnx

    from edgeopt.quant.calibrate import calibrate_onnx

    mixed = calibrate_onnx(tiny_onnx, synth_data, tmp_path / "mixed.onnx", num_images=32, batch_size=16,
                           skip_first_last=True).path
    float_weights = {i.name for i in onnx.load(str(mixed)).graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert any(n.op_type == "Conv" and n.input[1] in float_weights for n in onnx.load(str(mixed)).graph.node)
    engine = tmp_path / "mixed.engine"
    result = _build([str(mixed), "--int8", "--out", str(engine), "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    x = _inputs()
    _assert_like_a_real_engine(_engine_run(engine, x), _ort(mixed, x), "int8")


@pytest.mark.parametrize("trt_version", ["10.13.3.9", "11.4.0.106"])
def test_qat_onnx_builds_as_an_int8_engine(fake_trt, tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.quant.qat import QatConfig, finetune_qat

    qat = finetune_qat(QatConfig(checkpoint=tiny_ckpts["yaml"], data=synth_data, out=tmp_path / "qat.onnx", epochs=1,
                                 batch_size=16, num_calib_images=32), log=lambda m: None).path
    engine = tmp_path / "qat.engine"
    result = _build([str(qat), "--int8", "--out", str(engine), "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    x = _inputs()
    _assert_like_a_real_engine(_engine_run(engine, x), _ort(qat, x), "int8")


def test_a_calibration_batch_that_does_not_fit_says_why(fake_trt, tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    """A batch of another shape than the calibration input is not served, and the build says why
    (review finding 8: it used to return None silently and end in 'zero batches')."""
    if _major(fake_trt) >= 11:
        pytest.skip("TensorRT 11 removed implicit INT8 calibration")
    from edgeopt.artifacts import read_manifest
    from edgeopt.data.presets import Preprocess
    from edgeopt.errors import VerificationError
    from edgeopt.trt.calibrator import check_calibrator, make_legacy_calibrator_trt10

    manifest = read_manifest(tiny_onnx)
    preprocess = Preprocess.from_dict(manifest.preprocess)  # 32 px
    with pytest.warns(Warning):
        calibrator = make_legacy_calibrator_trt10(fake_trt, "entropy", tiny_onnx, manifest.sha256, manifest.classes, preprocess,
                                                  synth_data, 16, (8, 3, 40, 40), np.dtype(np.float32), tmp_path, fake_trt.device)
    assert calibrator.get_batch(["input"]) is None and calibrator.served == 0
    with pytest.raises(VerificationError, match=r"calibration batch of shape \(8, 3, 32, 32\) does not match .*\(8, 3, 40, 40\)"):
        check_calibrator(calibrator)


def test_a_profile_tensorrt_rejects_is_one_line(fake_trt, tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    """set_shape raising RuntimeError (pyCore.cpp) becomes one line naming the shapes, and no engine is written."""
    monkeypatch.setattr("edgeopt.trt.build.profile_shapes",
                        lambda shape, options, name: {"min": (1, 3, 32, 32), "opt": (16, 3, 32, 32), "max": (8, 3, 32, 32)})
    result = _build([str(tiny_onnx), "--fp16", "--out", str(tmp_path / "m.engine")])
    assert result.exit_code == 1, result.output
    assert "TensorRT rejected the optimization profile" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.engine").exists()


def _jetson(version: str, monkeypatch: pytest.MonkeyPatch, as_version: str | None = None):
    """A Jetson AGX Orin double of ``version`` (reporting ``as_version`` where given) as ``tensorrt``."""
    import sys

    import trt_double

    gpu = ("Orin (nvgpu)", "8.7")
    memory = trt_double.Memory()
    module = trt_double.make_tensorrt(version, memory, gpu=gpu)
    if as_version:
        module.__version__ = as_version
    device = trt_double.HostDevice(memory, gpu=gpu)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr("edgeopt.trt.build.default_device", lambda: device)
    monkeypatch.setattr("edgeopt.trt.runner.default_device", lambda: device)
    return module


# 11.4.1 (DLA on Jetson AGX Orin) has no committed surface: the 11.4.0 surface stands in for it, reporting 11.4.1
@pytest.mark.parametrize("version,as_version", [("10.4.0", None), ("11.4.0.106", "11.4.1.3")])
def test_dla_builds_on_a_jetson_with_one_batch_size(version: str, as_version: str | None, tiny_onnx: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """--dla-core on a device with DLA (a Jetson AGX Orin double): DLA device type, the core, GPU
    fallback; a dynamic batch profile is refused (DLA has no dynamic shapes), so is a missing core."""
    _jetson(version, monkeypatch, as_version)
    engine = tmp_path / "dla.engine"
    dynamic = _build([str(tiny_onnx), "--fp16", "--dla-core", "0", "--out", str(engine)])
    assert dynamic.exit_code == 1 and "one batch size" in dynamic.output and not engine.exists()
    ok = _build([str(tiny_onnx), "--fp16", "--dla-core", "1", "--min-batch", "4", "--max-batch", "4", "--out", str(engine)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(Path(str(engine) + ".json").read_text())["extra"]["dla_core"] == 1
    from edgeopt.trt.runner import TensorRTRunner

    assert TensorRTRunner(engine).runtime.DLA_core == 1  # deserialized onto its core
    missing = _build([str(tiny_onnx), "--fp16", "--dla-core", "2", "--min-batch", "4", "--max-batch", "4",
                      "--out", str(tmp_path / "x.engine")])
    assert missing.exit_code == 1 and "has 2 DLA core(s)" in missing.output


@pytest.mark.parametrize("trt_version", ["10.4.0", "10.13.3.9"])
def test_dla_is_refused_on_a_gpu_without_it_and_on_versions_without_it(fake_trt, tiny_onnx: Path, tmp_path: Path) -> None:
    """The default double is an H100: no DLA core; 10.8-11.3 have no DLA at all."""
    result = _build([str(tiny_onnx), "--fp16", "--dla-core", "0", "--min-batch", "4", "--max-batch", "4",
                     "--out", str(tmp_path / "x.engine")])
    assert result.exit_code == 1 and not (tmp_path / "x.engine").exists()
    if parse_version(fake_trt.__version__) <= (10, 7):
        assert "has 0 DLA core(s)" in result.output and "Jetson" in result.output
    else:
        assert "10.7 was the last 10.x with it" in result.output


@pytest.mark.parametrize("version,refused", [("10.4.0", False), ("10.13.3.9", True), ("11.4.0.106", True)])
def test_a_v100_with_a_tensorrt_that_dropped_volta_is_one_line_before_the_build(version: str, refused: bool, tiny_onnx: Path,
                                                                                tmp_path: Path, monkeypatch) -> None:
    import sys

    import trt_double

    gpu = ("Tesla V100-SXM2-16GB", "7.0")
    memory = trt_double.Memory()
    module = trt_double.make_tensorrt(version, memory, gpu=gpu)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr("edgeopt.trt.build.default_device", lambda: trt_double.HostDevice(memory, gpu=gpu))
    built = []
    real = module.Builder.build_serialized_network
    monkeypatch.setattr(module.Builder, "build_serialized_network", lambda *a: built.append(1) or real(*a))
    result = _build([str(tiny_onnx), "--fp16", "--out", str(tmp_path / "v100.engine")])
    if refused:
        assert result.exit_code == 1 and "the last TensorRT that builds for them is 10.4" in result.output
        assert not built  # checked before the builder runs
    else:
        assert result.exit_code == 0, result.output
