"""CPU tests for everything around TensorRT; the real builds are marked ``tensorrt`` and skip without it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeopt.data.calibration import padded_paths
from edgeopt.cli.app import app
from edgeopt.errors import ConfigError, MissingDependencyError
from edgeopt.trt.calibrator import CalibrationCache, calibration_key
from edgeopt.trt.compat import engine_incompatibility, trt_generation
from edgeopt.trt.plan import BuildConfig, plan_build, profile_shapes

runner = CliRunner()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


needs_trt = pytest.mark.skipif(not (HAS_TRT and _has_cuda()), reason="needs TensorRT and an NVIDIA GPU (pip install 'edgeopt[tensorrt]')")


@pytest.mark.parametrize("kw,match", [
    (dict(precision="fp8"), "`precision` 'fp8' is unknown: use one of fp16, int8"),
    (dict(precision="int8", calibrator="kl", calib_data=Path(".")), "`method` 'kl' is unknown"),  # said as the flag users type
    (dict(precision="fp16", calibrator="entropy", calib_data=Path(".")), "`int8` builds only"),
    (dict(precision="int8", calibrator="entropy"), "needs `calib_data`"),
    (dict(precision="fp16", min_batch=4, max_batch=2), "1 <= min <= opt <= max"),
    (dict(precision="fp16", opt_batch=64, max_batch=32), "1 <= min <= opt <= max"),
    (dict(precision="fp16", workspace_gib=0), "`workspace`"),
    (dict(precision="fp16", opt_level=7), "`opt_level` 7"),
    (dict(precision="fp16", hw_compat="hopper"), "`hw_compat` 'hopper'"),
    (dict(precision="fp16", dla_core=0, hw_compat="ampere+"), "do not go together"),
    (dict(precision="fp16", dla_core=-1), "numbered from 0"),
])
def test_option_validation(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        BuildConfig(**kw)


def test_version_dispatch() -> None:
    assert trt_generation("8.6.1") == 10 and trt_generation("10.4.0") == 10 and trt_generation("10.13.3.9") == 10
    assert trt_generation("11.4.0.106") == 11
    with pytest.raises(MissingDependencyError, match="too old"):
        trt_generation("8.5.3")


def test_plans_for_tensorrt11_are_strongly_typed_with_precision_in_the_onnx() -> None:
    fp16 = plan_build("fp32", BuildConfig("fp16"), "11.4.0")
    assert fp16.strongly_typed and fp16.convert == "fp16" and fp16.builder_flags == ()
    assert plan_build("fp16", BuildConfig("fp16"), "11.4.0").convert is None
    int8 = plan_build("fp32", BuildConfig("int8", calib_data=Path("crops")), "11.4.0")
    assert int8.convert == "int8" and int8.onnx_precision == "int8"
    assert plan_build("int8", BuildConfig("int8"), "11.4.0").convert is None
    with pytest.raises(ConfigError, match="removed implicit INT8 calibration"):
        plan_build("fp32", BuildConfig("int8", calib_data=Path("c"), calibrator="entropy"), "11.4.0")


def test_plans_for_tensorrt10_use_builder_flags_and_legacy_calibrators() -> None:
    fp16 = plan_build("fp32", BuildConfig("fp16"), "10.13.3")
    assert fp16.builder_flags == ("FP16",) and fp16.convert is None and not fp16.strongly_typed
    qdq = plan_build("int8", BuildConfig("int8"), "10.4.0")
    assert qdq.builder_flags == ("INT8", "FP16") and qdq.legacy_calibrator is None
    legacy = plan_build("fp32", BuildConfig("int8", calib_data=Path("c"), calibrator="minmax"), "8.6.1")
    assert legacy.legacy_calibrator == "minmax" and "INT8" in legacy.builder_flags and legacy.convert is None
    with pytest.raises(ConfigError, match="needs `calib_data`"):
        plan_build("fp32", BuildConfig("int8"), "10.13.3")
    with pytest.raises(ConfigError, match="this ONNX is INT8"):
        plan_build("int8", BuildConfig("fp16"), "10.13.3")
    with pytest.raises(ConfigError, match="not an FP16 ONNX"):
        plan_build("fp16", BuildConfig("int8"), "10.13.3")


def test_int8_plans_run_the_unquantized_layers_in_fp16_on_every_version() -> None:
    """8.6-10.x: the FP16 flag beside INT8; 11.x (strongly typed, no flags): the Q/DQ ONNX's float part
    is cast to FP16 first unless its scales are float16 already; --int8-float fp32 keeps FP32 on both."""
    for version in ("8.6.1", "10.13.3"):
        plan = plan_build("int8", BuildConfig("int8"), version)
        assert plan.builder_flags == ("INT8", "FP16") and plan.float_precision == "fp16" and not plan.cast_float_fp16
        fp32 = plan_build("int8", BuildConfig("int8", int8_float="fp32"), version)
        assert fp32.builder_flags == ("INT8",) and fp32.float_precision == "fp32"
    st = plan_build("int8", BuildConfig("int8"), "11.4.0", onnx_float="fp32")
    assert st.builder_flags == () and st.cast_float_fp16 and st.float_precision == "fp16"
    assert not plan_build("int8", BuildConfig("int8"), "11.4.0", onnx_float="fp16").cast_float_fp16
    kept = plan_build("int8", BuildConfig("int8", int8_float="fp32"), "11.4.0", onnx_float="fp32")
    assert not kept.cast_float_fp16 and kept.float_precision == "fp32"
    assert plan_build("fp32", BuildConfig("fp16"), "11.4.0").float_precision is None
    with pytest.raises(ConfigError, match="float part is FP16"):
        plan_build("int8", BuildConfig("int8", int8_float="fp32"), "11.4.0", onnx_float="fp16")
    with pytest.raises(ConfigError, match="`int8_float` 'bf16'"):
        BuildConfig("int8", int8_float="bf16")


def test_profile_shapes() -> None:
    shapes = profile_shapes((None, 3, 96, 96), BuildConfig("fp16", min_batch=1, opt_batch=8, max_batch=256))
    assert shapes == {"min": (1, 3, 96, 96), "opt": (8, 3, 96, 96), "max": (256, 3, 96, 96)}
    assert profile_shapes((None, 3, 64, 64), BuildConfig("fp16", max_batch=16))["opt"] == (16, 3, 64, 64)
    assert profile_shapes((None, 3, 64, 64), BuildConfig("fp16"))["max"] == (32, 3, 64, 64)
    # a fixed batch is its own profile; another range is refused
    assert profile_shapes((4, 3, 32, 48), BuildConfig("fp16")) == {k: (4, 3, 32, 48) for k in ("min", "opt", "max")}
    with pytest.raises(ConfigError, match="fixed batch of 4"):
        profile_shapes((4, 3, 32, 32), BuildConfig("fp16", max_batch=8))
    with pytest.raises(ConfigError, match="dynamic dimensions"):
        profile_shapes((None, 3, None, None), BuildConfig("fp16"))


def test_calibration_batches_are_filled_up_not_dropped() -> None:
    paths = [Path(f"{i}.jpg") for i in range(5)]
    assert padded_paths(paths, 4) == paths + paths[:3]
    assert padded_paths(paths, 5) == paths and padded_paths(paths[:1], 3) == paths[:1] * 3


def test_calibration_cache_keying_and_invalidation(tmp_path: Path) -> None:
    v = "10.13.3.9"
    key = calibration_key("a" * 64, "entropy", ["h1", "h2"], 32, v)
    assert key != calibration_key("b" * 64, "entropy", ["h1", "h2"], 32, v)
    assert key != calibration_key("a" * 64, "entropy", ["h1", "h3"], 32, v)
    assert key != calibration_key("a" * 64, "entropy", ["h1", "h2"], 16, v)
    assert key != calibration_key("a" * 64, "minmax", ["h1", "h2"], 32, v)
    assert key != calibration_key("a" * 64, "entropy", ["h1", "h2"], 32, "10.4.0.26")  # another TensorRT: recalibrate
    cache = CalibrationCache(tmp_path, "a" * 64, "entropy", key)
    assert cache.read() is None
    cache.write(b"TRT-1001-EntropyCalibration2\n")
    assert cache.read() == b"TRT-1001-EntropyCalibration2\n" and cache.path.name == "aaaaaaaaaaaaaaaa.entropy.calib"
    stale = CalibrationCache(tmp_path, "a" * 64, "entropy", calibration_key("a" * 64, "entropy", ["h9"], 32, v))
    assert stale.path == cache.path and stale.read() is None  # same file, other images: not used


@pytest.mark.parametrize("built,version,cc,expect", [
    ({"tensorrt_version": "10.13.3.9", "compute_capability": "9.0"}, "10.13.3.9", "9.0", None),
    ({"tensorrt_version": "10.13.3.9", "compute_capability": "9.0"}, "10.13.2.6", "9.0", "built with TensorRT 10.13.3.9"),
    ({"tensorrt_version": "10.13.3.9", "compute_capability": "9.0", "version_compatible": True}, "10.14.1", "9.0", None),
    ({"tensorrt_version": "10.13.3.9", "compute_capability": "9.0", "gpu": "H100"}, "10.13.3.9", "8.6", "compute capability 9.0 (H100)"),
    ({"tensorrt_version": "10.13.3.9", "compute_capability": "9.0", "hardware_compatible": True}, "10.13.3.9", "8.6", None),
    ({"tensorrt_version": "10.13.3.9", "compute_capability": "9.0", "hardware_compatible": True}, "10.13.3.9", "7.0", "Ampere and newer"),
    ({"compute_capability": "9.0"}, "10.13.3.9", "9.0", "does not say"),
])
def test_engine_compatibility_decisions(built: dict, version: str, cc: str, expect: str | None) -> None:
    why = engine_incompatibility(built, version, cc)
    assert (why is None) if expect is None else (expect in why)


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is absent")
def test_build_without_tensorrt_names_the_extra(tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Full TensorRT asked for and absent: its extra; neither builder installed: both extras, one line."""
    import sys

    from edgeopt.trt.build import build_engine

    with pytest.raises(MissingDependencyError, match=r"edgeopt\[tensorrt\]"):
        build_engine(tiny_onnx, tmp_path / "m.engine", BuildConfig("fp16", builder="tensorrt"))
    monkeypatch.setitem(sys.modules, "tensorrt_rtx_bindings", None)  # import fails as where it is not installed
    with pytest.raises(MissingDependencyError, match=r"neither TensorRT nor TensorRT-RTX .*edgeopt\[tensorrt-rtx\]"):
        build_engine(tiny_onnx, tmp_path / "m.engine", BuildConfig("fp16"))
    result = runner.invoke(app, ["build-engine", str(tiny_onnx), "--fp16", "--out", str(tmp_path / "m.engine")])
    assert result.exit_code == 1 and "edgeopt[tensorrt]" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.engine").exists()


def test_build_engine_cli_bad_inputs(tiny_onnx: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["build-engine", str(tiny_onnx), "--out", str(tmp_path / "m.engine")])
    assert result.exit_code == 2 and "exactly one of --fp16 or --int8" in result.output
    result = runner.invoke(app, ["build-engine", str(tiny_onnx), "--fp16", "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1 and "must end in .engine" in result.output
    result = runner.invoke(app, ["build-engine", str(tiny_onnx), "--fp16", "--opt-level", "9"])
    assert result.exit_code == 1 and "--opt-level 9" in result.output
    checkpoint = tmp_path / "m.pt"
    checkpoint.write_bytes(b"not an onnx")
    result = runner.invoke(app, ["build-engine", str(checkpoint), "--fp16", "--out", str(tmp_path / "m.engine")])
    assert result.exit_code == 1 and "build-engine takes an ONNX" in result.output and not (tmp_path / "m.engine").exists()
    assert runner.invoke(app, ["build-engine", "--help"]).exit_code == 0


def test_engine_runs_need_tensorrt(tmp_path: Path) -> None:
    from edgeopt.artifacts import Manifest, write_artifact_manifest
    from edgeopt.runtime import open_runner

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really an engine")
    write_artifact_manifest(engine, Manifest(kind="engine", precision="fp16", extra={"tensorrt_version": "10.13.3.9"}))
    with pytest.raises(ConfigError, match="runs on the tensorrt backend"):
        open_runner(engine, backend="onnxruntime")
    if not (HAS_TRT and _has_cuda()):
        with pytest.raises(MissingDependencyError):
            open_runner(engine)


@pytest.mark.tensorrt
@needs_trt
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_real_build_runs_and_matches_onnxruntime(precision: str, tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.convert import convert_artifact
    from edgeopt.runtime import open_runner

    options = BuildConfig(precision, calib_data=synth_data if precision == "int8" else None, max_batch=8,
                           num_images=64, calib_batch_size=16, timing_cache=tmp_path / "timing.cache")
    result = convert_artifact(tiny_onnx, "engine", tmp_path / f"m.{precision}.engine", build=options).results["engine"]
    assert result.engine_bytes > 0 and (tmp_path / "timing.cache").exists()
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    ref = open_runner(tiny_onnx).run(x)
    out = open_runner(result.path).run(x)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < (0.05 if precision == "fp16" else 0.5) * max(1.0, np.abs(ref).max())


def test_build_engine_alone_refuses_an_onnx_it_must_convert_first(fake_trt, tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    """Chaining calibrate -> build is convert's job: the builder names it instead of calibrating itself."""
    from edgeopt.trt.build import build_engine

    with pytest.raises(ConfigError, match=r"must be converted first .*edgeopt\.convert\.convert"):
        build_engine(tiny_onnx, tmp_path / "m.engine", BuildConfig("int8", calib_data=synth_data))
    assert not list(tmp_path.iterdir())


def test_build_config_choices_are_compat_tables_and_held_as_text() -> None:
    from edgeopt.trt.compat import BUILDERS, HW_COMPAT_LEVELS
    from edgeopt.trt.plan import Builder, HwCompat

    assert [m.value for m in HwCompat] == list(HW_COMPAT_LEVELS) and [m.value for m in Builder] == list(BUILDERS)
    config = BuildConfig("int8", hw_compat=HwCompat.ampere_plus, builder="tensorrt", compute_capabilities=())
    assert type(config.hw_compat) is str and type(config.precision) is str and config.to_dict()["hw_compat"] == "ampere+"
    assert BuildConfig("fp16", builder="tensorrt-rtx", compute_capabilities=[8.6, "CURRENT"]).compute_capabilities == ("8.6", "current")
