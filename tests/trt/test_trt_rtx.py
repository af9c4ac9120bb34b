"""Real engines: NVIDIA's ONNX parser and strongly typed builder (TensorRT for RTX) on every graph edgeopt writes.

TensorRT-RTX (``tensorrt_rtx_bindings``, installed by ``make install``) parses ONNX and builds engines ahead
of time on a machine without a GPU. Each graph below is what an edgeopt stage writes: FP32 exports of
each backbone family (YAML DSL, timm, torchvision, pruned, Tucker-decomposed; dynamic and static
batch), their FP16 conversion, Q/DQ INT8 from every calibration method and PTQ remedy, and a QAT
export. Each is built into a real engine, and the layer list TensorRT-RTX logs while it builds says
which layers run in which precision. Where the 11.x double's rules overlap the real parser's and
builder's (which graphs parse, strong typing, Q/DQ form, profiles, I/O names and types), the same
graphs go through both and must agree. Running an engine needs an RTX-class GPU: here that is one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import rtx_engines

pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX is not installed: pip install 'edgeopt[tensorrt-rtx]'")

from edgeopt.cli.app import app  # noqa: E402
from edgeopt.errors import ConfigError, MissingDependencyError  # noqa: E402
from edgeopt.trt.plan import BuildConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("8.6",)  # an Ampere RTX: a fixed target, so a GPU on the test machine changes nothing
cli = CliRunner()


@pytest.fixture(autouse=True)
def _no_gpu_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every build here is the ahead-of-time one, GPU on the test machine or not."""
    def absent():
        raise MissingDependencyError("no CUDA GPU is visible")

    monkeypatch.setattr("edgeopt.trt.build.default_device", absent)
    monkeypatch.setattr("edgeopt.trt.runner.default_device", absent)


def build_rtx(onnx: Path, out: Path, precision: str, **options):
    """``edgeopt.convert`` to an engine with TensorRT-RTX (as build-engine does); counted as a real engine."""
    from edgeopt.convert import convert_artifact

    options.setdefault("compute_capabilities", TARGETS)
    options.setdefault("max_batch", 8)
    build = BuildConfig(precision, builder="tensorrt-rtx", **options)
    result = convert_artifact(onnx, "engine", out, log=lambda m: None, build=build).results["engine"]
    rtx_engines.record(result.path)
    return result


def _extra(engine: Path) -> dict:
    return json.loads(Path(f"{engine}.json").read_text())["extra"]


def _precisions(engine: Path) -> dict[str, int]:
    summary = _extra(engine)["layer_summary"]
    assert summary is not None, "TensorRT-RTX logged no layer list"
    return summary["precision"]


# -- the graphs edgeopt writes, made once per session ------------------------------------------
@pytest.fixture(scope="session")
def family_onnx(tiny_ckpts: dict, tiny_onnx: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """FP32 exports: YAML DSL, timm, torchvision, pruned, Tucker-decomposed (dynamic batch), and a static batch of 4."""
    from edgeopt.compress.decompose import DecomposeConfig, decompose_checkpoint
    from edgeopt.compress.finetune import FinetuneConfig
    from edgeopt.compress.prune import PruneConfig, prune_checkpoint
    from edgeopt.export.onnx import export_onnx
    from edgeopt.artifacts import read_manifest
    from edgeopt.train.loop import TrainConfig, train_classifier

    out = tmp_path_factory.mktemp("rtx_families")
    quiet = lambda m: None  # noqa: E731
    torchvision = train_classifier(TrainConfig(model="shufflenet_v2_x0_5", data=synth_data, out=out / "tv", img_size=32,
                                               epochs=1, batch_size=16, device="cpu", workers=0)).best_checkpoint
    macs = read_manifest(tiny_ckpts["yaml"]).arch["macs"]
    pruned = prune_checkpoint(PruneConfig(checkpoint=tiny_ckpts["yaml"], data=synth_data, out=out / "pruned",
                                          target_macs=int(macs * 0.7), finetune=FinetuneConfig(epochs=0)), log=quiet).pruned_checkpoint
    tucker = decompose_checkpoint(DecomposeConfig(checkpoint=tiny_ckpts["yaml"], data=synth_data, out=out / "tucker",
                                                  energy=0.8, finetune=FinetuneConfig(epochs=0)), log=quiet).decomposed_checkpoint
    onnx = {"yaml": tiny_onnx}
    for name, ckpt in (("timm", tiny_ckpts["timm"]), ("torchvision", torchvision), ("pruned", pruned), ("tucker", tucker)):
        onnx[name] = export_onnx(ckpt, out / f"{name}.onnx", data=synth_data).path
    onnx["static"] = export_onnx(tiny_ckpts["yaml"], out / "static.onnx", data=synth_data, static_batch=True, batch_size=4).path
    return onnx


QDQ_KINDS = ("entropy", "minmax", "percentile", "equalize", "bias_correction", "adaround")


@pytest.fixture(scope="session")
def qdq_onnx(tiny_onnx: Path, tiny_ckpts: dict, synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Q/DQ INT8 (TensorRT form) of the YAML export by every calibration method and PTQ remedy, and a QAT export."""
    from edgeopt.quant.calibrate import calibrate_onnx
    from edgeopt.quant.ptq import PtqConfig
    from edgeopt.quant.qat import QatConfig, finetune_qat

    out = tmp_path_factory.mktemp("rtx_qdq")
    made = {}
    for kind in QDQ_KINDS:
        method = kind if kind in ("entropy", "minmax", "percentile") else "entropy"
        ptq = None
        if kind not in ("entropy", "minmax", "percentile"):
            ptq = PtqConfig(**{kind: True}, **({"adaround_iterations": 20, "adaround_images": 16} if kind == "adaround" else {}))
        made[kind] = calibrate_onnx(tiny_onnx, synth_data, out / f"{kind}.int8.onnx", num_images=32, batch_size=16,
                                    method=method, calibration_dir=out / f"calib_{kind}", ptq=ptq).path
    made["qat"] = finetune_qat(QatConfig(checkpoint=tiny_ckpts["yaml"], data=synth_data, out=out / "qat.int8.onnx", epochs=1,
                                         batch_size=16, num_calib_images=32), log=lambda m: None).path
    return made


# -- every graph edgeopt writes builds -----------------------------------------------------------
@pytest.mark.parametrize("family", ["yaml", "timm", "torchvision", "pruned", "tucker", "static"])
def test_every_fp32_export_builds_fp16_and_int8_engines(family: str, family_onnx: dict, synth_data: Path, tmp_path: Path) -> None:
    """FP16 through edgeopt's FP16 graph (strongly typed), INT8 by calibrating the FP32 export to Q/DQ in the build."""
    onnx = family_onnx[family]
    profile = {"max_batch": None} if family == "static" else {}  # a static batch is its own profile
    fp16 = build_rtx(onnx, tmp_path / "m.fp16.engine", "fp16", **profile)
    extra = _extra(fp16.path)
    assert extra["builder"] == "tensorrt-rtx" and extra["strongly_typed"] and extra["compute_capabilities"] == ["8.6"]
    assert extra["builder_flags"] == [] and fp16.parsed_onnx.name.endswith(".fp16.onnx")
    batch = 4 if family == "static" else None
    assert extra["profile"]["min"][0] == (batch or 1) and extra["profile"]["max"][0] == (batch or 8)
    assert _precisions(fp16.path).get("FP16", 0) > 0  # the convolutions run in half precision
    int8 = build_rtx(onnx, tmp_path / "m.int8.engine", "int8", calib_data=synth_data, num_images=16, calib_batch_size=16, **profile)
    extra = _extra(int8.path)
    assert extra["calibration"]["method"] == "entropy" and extra["float_precision"] == "fp16"
    assert _precisions(int8.path).get("INT8", 0) > 0  # TensorRT-RTX chose INT8 kernels for the quantized layers


@pytest.mark.parametrize("kind", [*QDQ_KINDS, "qat"])
def test_every_qdq_model_builds_an_int8_engine(kind: str, qdq_onnx: dict, tmp_path: Path) -> None:
    """Q/DQ from entropy, minmax, percentile, equalization, bias correction, AdaRound and QAT: the float part is cast
    to FP16 (strongly typed) and the real builder takes it; the quantized convolutions run INT8."""
    result = build_rtx(qdq_onnx[kind], tmp_path / f"{kind}.engine", "int8")
    assert result.parsed_onnx.name.endswith(".int8-fp16.onnx")
    precisions = _precisions(result.path)
    assert precisions.get("INT8", 0) >= 4, precisions


def test_an_int8_engine_with_an_fp32_float_part_builds(qdq_onnx: dict, tmp_path: Path) -> None:
    result = build_rtx(qdq_onnx["entropy"], tmp_path / "fp32float.engine", "int8", int8_float="fp32")
    assert result.parsed_onnx == qdq_onnx["entropy"] and _extra(result.path)["float_precision"] == "fp32"
    assert "FP16" not in _precisions(result.path)  # nothing in the graph is half precision


def test_a_foreign_fp16_onnx_builds(tiny_onnx: Path, tmp_path: Path) -> None:
    """An FP16 ONNX that edgeopt did not write (no manifest, no metadata), with its input described by flags."""
    import onnx

    from edgeopt.export.fp16 import to_fp16

    model = to_fp16(onnx.load(str(tiny_onnx)))
    del model.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(model, str(foreign))
    result = build_rtx(foreign, tmp_path / "foreign.engine", "fp16", img_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert _extra(result.path)["metadata_source"] == "flags" and _precisions(result.path).get("FP16", 0) > 0


def test_compute_capabilities_are_built_for_and_recorded(tiny_onnx: Path, tmp_path: Path) -> None:
    turing = build_rtx(tiny_onnx, tmp_path / "turing.engine", "fp16", compute_capabilities=("7.5", "8.9"))
    assert _extra(turing.path)["compute_capabilities"] == ["7.5", "8.9"] and not _extra(turing.path)["default_targets"]
    default = build_rtx(tiny_onnx, tmp_path / "default.engine", "fp16", compute_capabilities=())
    assert _extra(default.path)["default_targets"] and _extra(default.path)["compute_capabilities"] == ["8.0", "8.6", "8.9", "12.0"]
    with pytest.raises(MissingDependencyError, match="no CUDA GPU is visible here"):
        build_rtx(tiny_onnx, tmp_path / "x.engine", "fp16", compute_capabilities=("current",))
    with pytest.raises(ConfigError, match="'9.0' is not one TensorRT-RTX builds for"):
        build_rtx(tiny_onnx, tmp_path / "x.engine", "fp16", compute_capabilities=("9.0",))


def test_info_names_the_builder_and_triton_refuses_an_rtx_engine(tiny_onnx: Path, tmp_path: Path) -> None:
    """Triton's tensorrt_plan backend is full TensorRT's: an RTX engine is refused in one line, not written."""
    from typer.testing import CliRunner

    from edgeopt.cli.app import app

    engine = build_rtx(tiny_onnx, tmp_path / "m.engine", "fp16", compute_capabilities=("8.6",)).path
    info = CliRunner().invoke(app, ["info", str(engine)])
    assert info.exit_code == 0 and "tensorrt-rtx 1." in info.output and "compute capability 8.6" in info.output, info.output
    served = CliRunner().invoke(app, ["triton", str(engine), "--repo", str(tmp_path / "repo")])
    assert served.exit_code == 1 and served.output.count("error:") == 1 and "TensorRT-RTX engine" in served.output, served.output
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").rglob("*.plan"))


# -- the command line, with TensorRT-RTX the only builder installed ---------------------------------
def test_build_engine_cli_with_only_tensorrt_rtx(tiny_onnx: Path, synth_data: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgeopt build-engine model.onnx --fp16` and the same for `edgeopt calibrate`'s Q/DQ with --int8 write engines and
    manifests on a CPU-only machine where full TensorRT is not installed; running one is one line."""
    import shutil

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails, as where only TensorRT-RTX is installed
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(tiny_onnx.parent / name.replace("model", tiny_onnx.stem), tmp_path / name)
    onnx = tmp_path / "model.onnx"
    result = cli.invoke(app, ["build-engine", str(onnx), "--fp16", "--out", str(tmp_path / "m.engine")])
    assert result.exit_code == 0, result.output
    assert "TensorRT-RTX" in result.output and (tmp_path / "m.engine").stat().st_size > 0
    assert json.loads((tmp_path / "m.engine.json").read_text())["extra"]["builder"] == "tensorrt-rtx"
    calibrated = cli.invoke(app, ["calibrate", str(onnx), "--data", str(synth_data), "--num-images", "32",
                                  "--out", str(tmp_path / "model.int8.onnx")])
    assert calibrated.exit_code == 0, calibrated.output
    result = cli.invoke(app, ["build-engine", str(tmp_path / "model.int8.onnx"), "--int8", "--out", str(tmp_path / "q.engine")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "q.engine.json").read_text())
    assert manifest["precision"] == "int8" and manifest["extra"]["layer_summary"]["precision"].get("INT8", 0) > 0
    for engine in ("m.engine", "q.engine"):
        rtx_engines.record(tmp_path / engine)
    ran = cli.invoke(app, ["eval", str(tmp_path / "q.engine"), "--data", str(synth_data)])
    assert ran.exit_code == 1 and "RTX-class GPU" in ran.output and "Traceback" not in ran.output
    verify = cli.invoke(app, ["build-engine", str(onnx), "--fp16", "--out", str(tmp_path / "v.engine"), "--verify", str(synth_data)])
    assert verify.exit_code == 1 and "--verify runs the engine" in verify.output and not (tmp_path / "v.engine").exists()


def test_what_tensorrt_rtx_has_no_place_for_is_refused_before_building(tiny_onnx: Path, tmp_path: Path) -> None:
    rtx = ["--builder", "tensorrt-rtx"]
    for args, says in (([*rtx, "--timing-cache", str(tmp_path / "t.cache")], "has no timing cache"),
                       ([*rtx, "--hw-compat", "ampere+"], "does not support it"),
                       ([*rtx, "--dla-core", "0", "--min-batch", "4", "--max-batch", "4"], "no DLA"),
                       (["--builder", "tensorrt", "--compute-capability", "8.6"], "is for TensorRT-RTX builds")):
        result = cli.invoke(app, ["build-engine", str(tiny_onnx), "--fp16", *args, "--out", str(tmp_path / "x.engine")])
        assert result.exit_code == 1 and says in result.output, (args, result.output)
        assert not list(tmp_path.glob("x*"))


def test_an_rtx_engine_is_judged_by_its_own_targets(tmp_path: Path) -> None:
    from edgeopt.trt.compat import engine_incompatibility

    built = {"builder": "tensorrt-rtx", "builder_version": "1.7.1.116", "compute_capabilities": ["8.6", "8.9"]}
    assert engine_incompatibility(built, "1.7.1.116", "8.9") is None
    assert "Hopper" in engine_incompatibility(built, "1.7.1.116", "9.0")
    assert "built with TensorRT-RTX 1.7.1.116" in engine_incompatibility(built, "1.8.0.1", "8.6")


# -- the real parser and builder against the 11.x double -------------------------------------------
def _handmade(kind: str):
    """Small graphs on the edges of what TensorRT takes."""
    from onnx import TensorProto as T, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    scale_type = T.FLOAT16 if kind == "fp16 scale, fp32 kernel" else T.FLOAT
    zero_type, zero = {"asymmetric int8": (T.INT8, 3), "uint8 zero point 128": (T.UINT8, 128)}.get(kind, (T.INT8, 0))
    inits = [helper.make_tensor("s", scale_type, [], [0.05]), helper.make_tensor("z", zero_type, [], [zero]), w]
    io_type = {"double I/O": T.DOUBLE, "complex I/O": T.COMPLEX64}.get(kind, T.FLOAT)
    if io_type != T.FLOAT:
        nodes, inits = [helper.make_node("Relu", ["x"], ["y"])], []
        out = helper.make_tensor_value_info("y", io_type, ["n", 3, 8, 8])
    else:
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
                 helper.make_node("Conv", ["d", "w"], ["y"], pads=[1, 1, 1, 1])]
        out = helper.make_tensor_value_info("y", T.FLOAT, ["n", 4, 8, 8])
    graph = helper.make_graph(nodes, kind.replace(" ", "_"), [helper.make_tensor_value_info("x", io_type, ["n", 3, 8, 8])], [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]).SerializeToString()


def _parse_and_build(trt, data: bytes, shapes: tuple) -> tuple[str, list]:
    """('parse error' | 'build error' | 'built', the parsed network's I/O as (name, dtype, shape))."""
    class Log(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg) -> None:
            pass

    logger = Log()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        return "parse error", []
    io = [(t.name, t.dtype.name, tuple(t.shape)) for t in
          [network.get_input(i) for i in range(network.num_inputs)] + [network.get_output(i) for i in range(network.num_outputs)]]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(io[0][0], *shapes)
    config.add_optimization_profile(profile)
    return ("built" if builder.build_serialized_network(network, config) is not None else "build error"), io


HANDMADE = ["symmetric int8", "asymmetric int8", "uint8 zero point 128", "fp16 scale, fp32 kernel", "double I/O", "complex I/O"]


@pytest.fixture(scope="session")
def double11():
    import trt_double

    return trt_double.make_tensorrt("11.4.0.106")


@pytest.mark.parametrize("kind", HANDMADE)
def test_the_11x_double_parses_and_builds_as_the_real_parser_does(kind: str, rtx, double11) -> None:
    """Which graphs parse and build, and the parsed network's I/O names, types and shapes: the real builder is the
    reference (the double learnt asymmetric Q/DQ, strong typing of a layer's inputs and DOUBLE I/O from it)."""
    shapes = ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))
    data = _handmade(kind)
    assert _parse_and_build(double11, data, shapes) == _parse_and_build(rtx, data, shapes)


@pytest.mark.parametrize("graph", ["yaml", "static", "fp16", "entropy", "entropy-fp16", "qat", "static-wrong-profile"])
def test_edgeopts_graphs_parse_and_build_alike_in_the_double_and_the_real_builder(graph: str, rtx, double11, family_onnx: dict,
                                                                                 qdq_onnx: dict, tmp_path: Path) -> None:
    from edgeopt.export.fp16 import convert_onnx_to_fp16, convert_qdq_float_to_fp16

    path = {"yaml": family_onnx["yaml"], "static": family_onnx["static"], "static-wrong-profile": family_onnx["static"],
            "entropy": qdq_onnx["entropy"], "qat": qdq_onnx["qat"]}.get(graph)
    if graph == "fp16":
        path = convert_onnx_to_fp16(family_onnx["yaml"], tmp_path / "m.fp16.onnx")
    elif graph == "entropy-fp16":
        path = convert_qdq_float_to_fp16(qdq_onnx["entropy"], tmp_path / "m.int8-fp16.onnx")
    if graph == "static":
        shapes = ((4, 3, 32, 32),) * 3
    elif graph == "static-wrong-profile":  # a profile that disagrees with the static batch: both refuse to build
        shapes = ((1, 3, 32, 32), (4, 3, 32, 32), (8, 3, 32, 32))
    else:
        shapes = ((1, 3, 32, 32), (4, 3, 32, 32), (8, 3, 32, 32))
    data = path.read_bytes()
    real, double = _parse_and_build(rtx, data, shapes), _parse_and_build(double11, data, shapes)
    assert double == real
    assert real[0] == ("build error" if graph == "static-wrong-profile" else "built")


def test_the_runner_judges_an_rtx_engine_before_loading_it(tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner loads an engine with the builder its manifest names (TensorRT-RTX's runtime, real here): a GPU the
    engine was not built for is one line before anything is loaded; on one it was built for, this machine's missing
    driver makes TensorRT-RTX refuse to deserialize, also one line."""
    import trt_double

    from edgeopt.errors import ArtifactError
    from edgeopt.trt.runner import TensorRTRunner

    import torch

    result = build_rtx(tiny_onnx, tmp_path / "m.engine", "fp16")
    cases = [(("NVIDIA H100 80GB HBM3", "9.0"), "for compute capabilities 8.6, this GPU is sm 9.0")]
    if not torch.cuda.is_available():  # with a driver, TensorRT-RTX would load it
        cases.append((("NVIDIA GeForce RTX 3090", "8.6"), "could not deserialize"))
    for gpu, says in cases:
        device = trt_double.HostDevice(trt_double.Memory(), gpu=gpu)
        with pytest.raises(ArtifactError, match=says):
            TensorRTRunner(result.path, device=device)
