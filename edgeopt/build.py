"""build-engine stage: ONNX -> serialized TensorRT engine (FP16 / INT8), TensorRT 8.6-10.x and 11.x.

TensorRT >= 11 builds strongly typed networks only: precision must live in the ONNX (an FP16 ONNX
for ``--fp16``, a Q/DQ ONNX for ``--int8``), and edgeopt produces those with its export and
calibrate stages when given an FP32 ONNX. TensorRT 8.6-10.x takes the same explicit paths with the
FP16/INT8 builder flags, plus the legacy implicit INT8 path (``--calibrator entropy|minmax``) with a
calibration cache keyed by the ONNX hash, for V100 (TensorRT <= 10.4) and Jetson.

Functions whose names end in ``_trt10`` / ``_trt11`` hold the version-specific API calls;
``tests/test_trt_api_names.py`` checks every TensorRT name they use against the real bindings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from edgeopt.artifacts import Manifest, atomic_write_bytes, read_manifest, tool_versions, write_artifact_manifest
from edgeopt.errors import ArtifactError, ConfigError, MissingDependencyError, VerificationError

PRECISIONS = ("fp16", "int8")
CALIBRATORS = ("entropy", "minmax")
HW_COMPAT = ("none", "ampere+", "same-cc")
INSTALL_HINT = "pip install 'edgeopt[tensorrt]' on a machine with an NVIDIA GPU and driver"


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    precision: str
    calib_data: Path | None = None
    calibrator: str | None = None  # legacy implicit INT8 (TensorRT < 11 only)
    min_batch: int = 1
    opt_batch: int | None = None
    max_batch: int = 32
    workspace_gib: float = 4.0
    timing_cache: Path | None = None
    opt_level: int = 3
    hw_compat: str = "none"
    num_images: int = 512
    calib_batch_size: int = 32
    calib_method: str = "entropy"  # for the explicit (Q/DQ) path when calibrating from FP32

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: pass --fp16 or --int8")
        if self.calibrator is not None:
            if self.calibrator not in CALIBRATORS:
                raise ConfigError(f"--calibrator {self.calibrator!r} is unknown: use {' or '.join(CALIBRATORS)}")
            if self.precision != "int8":
                raise ConfigError("--calibrator is for --int8 builds only")
            if self.calib_data is None:
                raise ConfigError("--calibrator needs --calib-data DIR (images to calibrate on)")
        opt = self.opt_batch if self.opt_batch is not None else self.max_batch
        if not 1 <= self.min_batch <= opt <= self.max_batch:
            raise ConfigError(
                f"batch profile min {self.min_batch} / opt {opt} / max {self.max_batch} must satisfy 1 <= min <= opt <= max"
            )
        if not 0 < self.workspace_gib <= 1024:
            raise ConfigError(f"--workspace {self.workspace_gib} GiB is out of range: use (0, 1024]")
        if not 0 <= self.opt_level <= 5:
            raise ConfigError(f"--opt-level {self.opt_level} is out of range: use 0..5 (3 is TensorRT's default)")
        if self.hw_compat not in HW_COMPAT:
            raise ConfigError(f"--hw-compat {self.hw_compat!r} is unknown: use one of {', '.join(HW_COMPAT)}")

    @property
    def opt(self) -> int:
        return self.opt_batch if self.opt_batch is not None else self.max_batch

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def parse_version(version: str) -> tuple[int, int]:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ConfigError(f"cannot read TensorRT version {version!r}") from None


def trt_generation(version: str) -> int:
    """10 for TensorRT 8.6-10.x (builder flags, legacy calibrators), 11 for >= 11 (strongly typed only)."""
    major, minor = parse_version(version)
    if (major, minor) < (8, 6):
        raise MissingDependencyError(f"TensorRT {version} is too old: edgeopt supports 8.6 and newer ({INSTALL_HINT})")
    return 11 if major >= 11 else 10


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """What a build will do, decided before TensorRT is touched (and so testable anywhere)."""

    generation: int
    onnx_precision: str  # precision of the ONNX the builder parses
    convert: str | None  # "fp16" (export stage) or "int8" (calibrate stage) when the given ONNX must be converted first
    builder_flags: tuple[str, ...]  # TensorRT 10: BuilderFlag names to set
    strongly_typed: bool
    legacy_calibrator: str | None


def plan_build(onnx_precision: str, options: BuildOptions, trt_version: str) -> BuildPlan:
    """Decide the path: which ONNX to parse, which conversions first, which flags; never a silent downgrade."""
    gen = trt_generation(trt_version)
    want = options.precision
    if options.calibrator is not None:
        if gen >= 11:
            raise ConfigError(
                f"TensorRT {trt_version} removed implicit INT8 calibration; drop --calibrator and edgeopt will "
                "calibrate explicitly (Q/DQ ONNX) from --calib-data"
            )
        if onnx_precision != "fp32":
            raise ConfigError(f"--calibrator calibrates an FP32 ONNX; this one is {onnx_precision}")
        return BuildPlan(gen, "fp32", None, ("INT8", "FP16"), False, options.calibrator)
    convert = None
    if want == "fp16":
        if onnx_precision == "int8":
            raise ConfigError("this ONNX is INT8 (Q/DQ); build it with --int8, or pass the FP32 export for --fp16")
        if onnx_precision == "fp32" and gen >= 11:
            convert = "fp16"  # strongly typed: the FP16 must be in the graph
    else:
        if onnx_precision == "fp16":
            raise ConfigError("INT8 needs the FP32 export (to calibrate) or its Q/DQ INT8 ONNX, not an FP16 ONNX")
        if onnx_precision == "fp32":
            if options.calib_data is None:
                raise ConfigError(
                    "--int8 from an FP32 ONNX needs --calib-data DIR (edgeopt calibrates it to Q/DQ first), "
                    "or pass a Q/DQ ONNX from edgeopt calibrate"
                )
            convert = "int8"
    if gen >= 11:
        return BuildPlan(gen, want, convert, (), True, None)
    # TensorRT 10: explicit Q/DQ needs the INT8 flag; FP16 lets non-quantized layers run in half precision
    flags = ("FP16",) if want == "fp16" else ("INT8", "FP16")
    onnx_after = want if convert == "int8" else onnx_precision
    return BuildPlan(gen, onnx_after, convert, flags, False, None)


def profile_shapes(size: int, options: BuildOptions, channels: int = 3) -> dict[str, tuple[int, ...]]:
    """min/opt/max input shapes of the optimization profile."""
    return {k: (b, channels, size, size) for k, b in (("min", options.min_batch), ("opt", options.opt), ("max", options.max_batch))}


# -- legacy calibration cache ------------------------------------------------------------------
def calibration_key(onnx_sha256: str, calibrator: str, image_hashes: list[str], batch_size: int) -> str:
    """A cache is valid only for the same ONNX, calibrator, images and batch size."""
    digest = hashlib.sha256()
    for part in (onnx_sha256, calibrator, str(batch_size), *image_hashes):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class CalibrationCache:
    """``<dir>/<onnx sha256[:16]>.<calibrator>.calib`` + a JSON sidecar holding the full key.

    A cache whose key no longer matches (ONNX, images or batch size changed) is not used; TensorRT
    recalibrates and the new cache replaces it atomically.
    """

    def __init__(self, directory: Path, onnx_sha256: str, calibrator: str, key: str) -> None:
        self.path = Path(directory) / f"{onnx_sha256[:16]}.{calibrator}.calib"
        self.sidecar = self.path.with_name(self.path.name + ".json")
        self.key = key

    def read(self) -> bytes | None:
        if not self.path.exists() or not self.sidecar.exists():
            return None
        try:
            meta = json.loads(self.sidecar.read_text())
        except ValueError:
            return None
        return self.path.read_bytes() if meta.get("key") == self.key else None

    def write(self, data: bytes) -> None:
        atomic_write_bytes(self.path, bytes(data))
        atomic_write_bytes(self.sidecar, json.dumps({"key": self.key}).encode())


# -- the build ----------------------------------------------------------------------------------
def import_tensorrt():
    """``import tensorrt`` or a one-line error naming the extra to install."""
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError(f"TensorRT is not installed: {INSTALL_HINT}") from None
    return trt


def cuda_device_info() -> dict[str, str]:
    """GPU name and compute capability, or a one-line error when there is no CUDA GPU."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("edgeopt's TensorRT path needs PyTorch with CUDA for device buffers") from None
    if not torch.cuda.is_available():
        raise MissingDependencyError(f"no CUDA GPU is visible: TensorRT engines need an NVIDIA GPU ({INSTALL_HINT})")
    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}"}


@dataclasses.dataclass
class BuildResult:
    path: Path
    plan: BuildPlan
    trt_version: str
    build_seconds: float
    engine_bytes: int
    parsed_onnx: Path


def build_engine(onnx: str | Path, out: str | Path, options: BuildOptions, log=print) -> BuildResult:
    """Build and serialize an engine; writes ``out`` atomically with its manifest."""
    onnx, out = Path(onnx), Path(out)
    if out.suffix.lower() not in (".engine", ".plan"):
        raise ConfigError(f"--out {out}: an engine's name must end in .engine (or .plan)")
    manifest = read_manifest(onnx, expect_kind="onnx")
    trt = import_tensorrt()
    device = cuda_device_info()
    plan = plan_build(manifest.precision or "fp32", options, trt.__version__)
    parsed, calib_manifest = _prepare_onnx(onnx, out, plan, options)
    parsed_manifest = read_manifest(parsed, expect_kind="onnx")
    size = int(parsed_manifest.preprocess["size"])
    shapes = profile_shapes(size, options)
    log(f"TensorRT {trt.__version__} on {device['gpu']} (sm {device['compute_capability']}): "
        f"{options.precision.upper()} from {parsed.name}, flags {list(plan.builder_flags) or 'strongly typed'}, "
        f"profile {shapes}, workspace {options.workspace_gib} GiB, opt level {options.opt_level}, hw-compat {options.hw_compat}")
    t0 = time.perf_counter()
    serialized, timing_cache = _build_serialized(trt, parsed, parsed_manifest, plan, options, shapes)
    seconds = time.perf_counter() - t0
    if serialized is None or len(serialized) == 0:
        raise VerificationError("TensorRT returned an empty engine; the builder log above says why")
    atomic_write_bytes(out, bytes(serialized))
    if options.timing_cache is not None and timing_cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(timing_cache))
    log(f"built {out} ({len(serialized) / 1e6:.2f} MB) in {seconds:.1f}s")
    engine_manifest = Manifest(
        kind="engine", classes=manifest.classes, preprocess=parsed_manifest.preprocess, arch=manifest.arch,
        precision=options.precision, tools=tool_versions("tensorrt", "torch", "onnx"),
        extra={"tensorrt_version": trt.__version__, **device, "profile": {k: list(v) for k, v in shapes.items()},
               "input": parsed_manifest.extra.get("input", "input"), "output": parsed_manifest.extra.get("output", "logits"),
               "onnx_sha256": parsed_manifest.sha256, "calibration": calib_manifest, "build_options": options.to_dict(),
               "strongly_typed": plan.strongly_typed, "builder_flags": list(plan.builder_flags),
               "hardware_compatible": options.hw_compat == "ampere+", "build_seconds": round(seconds, 2)},
    )
    write_artifact_manifest(out, engine_manifest, parent=parsed)
    return BuildResult(out, plan, trt.__version__, seconds, len(serialized), parsed)


def _prepare_onnx(onnx: Path, out: Path, plan: BuildPlan, options: BuildOptions) -> tuple[Path, str | None]:
    """Run the export/calibrate stage first when the plan needs a converted ONNX."""
    if plan.convert == "fp16":
        from edgeopt.export import convert_onnx_to_fp16

        return convert_onnx_to_fp16(onnx, out.with_suffix(".fp16.onnx")), None
    if plan.convert == "int8":
        from edgeopt.calibrate import calibrate_onnx

        result = calibrate_onnx(onnx, options.calib_data, out.with_suffix(".int8.onnx"), options.num_images,
                                options.calib_method, batch_size=options.calib_batch_size)
        return result.path, str(result.calibration_manifest)
    return onnx, None


def _build_serialized(trt, onnx: Path, manifest: Manifest, plan: BuildPlan, options: BuildOptions, shapes):
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if plan.generation >= 11:
        network = _create_network_trt11(trt, builder)
    else:
        network = _create_network_trt10(trt, builder)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ArtifactError(f"{onnx}: TensorRT cannot parse it: {errors[0] if errors else 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * (1 << 30)))
    config.builder_optimization_level = options.opt_level
    levels = {"none": trt.HardwareCompatibilityLevel.NONE, "ampere+": trt.HardwareCompatibilityLevel.AMPERE_PLUS,
              "same-cc": trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY}
    config.hardware_compatibility_level = levels[options.hw_compat]
    input_name = manifest.extra.get("input", "input")
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    timing_cache = config.create_timing_cache(options.timing_cache.read_bytes() if options.timing_cache and options.timing_cache.exists() else b"")
    config.set_timing_cache(timing_cache, False)
    calibrator = None
    if plan.generation < 11:
        calibrator = _set_precision_trt10(trt, config, plan, options, onnx, manifest, input_name, profile)
    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None:
        from edgeopt.runtime.trt_calibrator import check_calibrator

        check_calibrator(calibrator)
    return serialized, config.get_timing_cache().serialize()


def _create_network_trt11(trt, builder):
    return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))


def _create_network_trt10(trt, builder):
    return builder.create_network(0)  # explicit batch is the only mode in TensorRT 10


def _set_precision_trt10(trt, config, plan: BuildPlan, options: BuildOptions, onnx: Path, manifest: Manifest,
                         input_name: str, profile):
    """Builder flags, and the legacy calibrator when asked (returned so the build can check it)."""
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.legacy_calibrator is None:
        return None
    from edgeopt.runtime.trt_calibrator import make_legacy_calibrator_trt10

    calibrator = make_legacy_calibrator_trt10(trt, plan.legacy_calibrator, onnx, manifest, options, input_name)
    config.int8_calibrator = calibrator
    config.set_calibration_profile(profile)
    return calibrator
