"""build-engine stage: ONNX -> serialized TensorRT engine (FP16 / INT8), TensorRT 8.6-10.x, 11.x and TensorRT-RTX.

TensorRT-RTX (``builder`` tensorrt-rtx, or found when full TensorRT is absent) builds like 11.x
(strongly typed) ahead of time, with or without a GPU here, for the compute capabilities named in
``compute_capabilities`` (else the GPU here, else NVIDIA's default set); its engines run on RTX-class
GPUs only.

TensorRT >= 11 builds strongly typed networks only: precision must live in the ONNX (an FP16 ONNX
for ``--fp16``, a Q/DQ ONNX for ``--int8``), and edgeopt produces those with its export and
calibrate stages when given an FP32 ONNX. TensorRT 8.6-10.x takes the same explicit paths with the
FP16/INT8 builder flags, plus the legacy implicit INT8 path (``--calibrator entropy|minmax``) with a
calibration cache keyed by the ONNX hash, for V100 (TensorRT <= 10.4) and Jetson.

Functions ending in ``_trt10`` (here and in ``trt.builder_config``, which sets DLA, profiles, precision
flags and the legacy calibrator) hold calls that exist only before TensorRT 11; the test suite runs
them against a double of every supported version's real bindings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from edgeopt.artifacts import (
    Manifest,
    atomic_write_bytes,
    require_kind,
    tool_versions,
    write_artifact_manifest,
)
from edgeopt.errors import ArtifactError, ConfigError, EdgeoptWarning, MissingDependencyError, VerificationError
from edgeopt.formats import format_of
from edgeopt.trt.builder_config import set_dla, set_precision_trt10, set_profile_shape, share_profiles_trt10
from edgeopt.trt.compat import (
    RTX_NAME,
    builder_label,
    builder_of,
    dla_unsupported,
    gpu_unsupported,
    hardware_compatibility_level,
    import_tensorrt,
    network_flags,
    parse_version,
)
from edgeopt.trt.device import Device, default_device
from edgeopt.trt.model_info import OnnxModelInfo, read_onnx_info
from edgeopt.trt.plan import BuildConfig, BuildPlan, check_dla_profile, plan_build, profile_shapes
from edgeopt.trt.rtx import logged_layers, rtx_device_and_targets, set_compute_capabilities_rtx
from edgeopt.trt.verify import VerifyConfig, verify_and_hand_over


@dataclasses.dataclass
class BuildResult:
    path: Path
    plan: BuildPlan
    trt_version: str
    build_seconds: float
    engine_bytes: int
    parsed_onnx: Path
    calibration: dict[str, Any] | None
    verification: dict[str, Any] | None = None
    builder: str = "tensorrt"

    @property
    def builder_label(self) -> str:
        """``"TensorRT 10.13.3.9"`` or ``"TensorRT-RTX 1.7.1.116"``."""
        return builder_label(self.builder, self.trt_version)


class _Log:
    """A TensorRT logger that prints warnings and keeps errors, so a failure can quote the first one."""

    def __init__(self, trt, echo: Callable[[str], None], keep_layers: bool = False) -> None:
        severity = trt.ILogger.Severity
        keep = {severity.INTERNAL_ERROR, severity.ERROR, severity.WARNING}
        outer = self

        class Logger(trt.ILogger):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, level, msg) -> None:
                if keep_layers and level == severity.VERBOSE and str(msg).startswith("Layers:"):
                    outer.layers = str(msg)  # TensorRT-RTX's engine layer list, logged once per build
                if level in keep:
                    errors = outer.handled if outer.handling else outer.errors
                    (errors if level != severity.WARNING else outer.warnings).append(str(msg))
                    echo(f"TensorRT {level.name}: {msg}")

        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.handled: list[str] = []  # errors of calls whose failure edgeopt handles (a rejected timing cache)
        self.handling = False
        self.layers: str | None = None
        self.logger = Logger()

    @contextlib.contextmanager
    def handled_errors(self):
        """Errors TensorRT logs inside this block are shown but never quoted as the build's error."""
        self.handling = True
        try:
            yield
        finally:
            self.handling = False

    def first_error(self, default: str) -> str:
        return self.errors[0] if self.errors else default


# (onnx, engine out, plan, options) -> (the ONNX to parse, calibration record): edgeopt.convert.prepare_for_engine
PrepareOnnx = Callable[[Path, Path, BuildPlan, BuildConfig], tuple[Path, "dict[str, Any] | None"]]


def build_engine(onnx: str | Path, out: str | Path, options: BuildConfig, log: Callable[[str], None] = print,
                 device: Device | None = None, verify: VerifyConfig | None = None,
                 prepare: PrepareOnnx | None = None) -> BuildResult:
    """Build and serialize an engine; writes ``out`` atomically with its manifest.

    An ONNX the plan must convert first (FP32 -> Q/DQ INT8, FP16 graph or FP16 float part on 11.x)
    goes through ``prepare`` after the GPU, version and DLA checks; ``edgeopt.convert.convert(onnx,
    "engine", build=options)`` passes its own. Without it such an ONNX is a one-line error.

    With ``verify``, the engine is built under a staging name, run against its FP32 source ONNX on
    ``verify.data`` (``edgeopt.trt.verify``), and moved to ``out`` only when it is within budget; the
    comparison goes into its manifest."""
    onnx, out = Path(onnx), Path(out)
    require_kind(out, "engine", "`out`")
    final = out
    if verify is not None:  # built under a staging name; the final name only for an engine within budget
        out = out.with_name(out.stem + ".unverified" + out.suffix)
    info = read_onnx_info(onnx, options)
    if info.manifest is not None and not format_of(info.manifest).for_tensorrt:
        raise ConfigError(f"{onnx.name} was quantized for ONNX Runtime's CPU kernels (`target` cpu); TensorRT needs "
                          "the Q/DQ form: edgeopt calibrate --target tensorrt")
    trt = import_tensorrt(options.builder)
    builder = builder_of(trt)
    label = builder_label(builder, trt.__version__)
    device, gpu, targets = _build_device(trt, builder, options, device, verify is not None)
    plan, options = _plan_checked(trt, builder, info, options, log)
    parsed, calibration = _prepared_onnx(info, final, plan, options, prepare)
    if plan.float_precision is not None and parsed.float_precision != plan.float_precision and plan.strongly_typed:
        # a foreign Q/DQ ONNX edgeopt could not cast: its float layers run in FP32 on a strongly typed build
        warnings.warn(f"{parsed.path.name}: its unquantized layers run in FP32 on {label} (strongly typed), "
                      "slower than the FP16 that 8.6-10.x's FP16 flag gives them: cast its float part to FP16 (float16 "
                      "Q/DQ scales, opset 19), or pass the ONNX from edgeopt calibrate", EdgeoptWarning, stacklevel=2)
        plan = dataclasses.replace(plan, float_precision=parsed.float_precision)
    shapes = profile_shapes(parsed.input_shape, options, parsed.input_name)
    if options.dla_core is not None:
        check_dla_profile(shapes)
    log(_describe_build(label, gpu, targets, options, plan, parsed, shapes))
    t0 = time.perf_counter()
    serialized, timing_cache, legacy, verbose_layers = _build_serialized(trt, parsed, plan, options, shapes, device, log,
                                                                          out.parent, targets)
    seconds = time.perf_counter() - t0
    data = memoryview(serialized).tobytes() if serialized is not None else b""  # IHostMemory: buffer protocol, no len()
    if not data:
        raise VerificationError(f"{label} returned an empty engine; the builder log above says why")
    atomic_write_bytes(out, data)
    if options.timing_cache is not None and timing_cache:
        atomic_write_bytes(options.timing_cache, timing_cache)
    log(f"built {out} ({len(data) / 1e6:.2f} MB) in {seconds:.1f}s")
    calibration = calibration or legacy
    if builder == "tensorrt-rtx":  # the inspector would deserialize the engine: it needs a GPU the engine is for
        layers, layer_summary = logged_layers(verbose_layers, parsed.path)
    else:
        layers, layer_summary = _engine_layers(trt, data, parsed.path, log, options.dla_core)
    if layer_summary:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(layer_summary["precision"].items()))
        log(f"{layer_summary['layers']} engine layers ({counts}; {layer_summary['reformats']} reformat), "
            f"{layer_summary['onnx_nodes_mapped']} of {layer_summary['onnx_nodes']} ONNX nodes named: edgeopt info {final.name} --layers")
    engine_manifest = _engine_manifest(trt, parsed, options, plan, shapes, gpu, targets,
                                       {"calibration": calibration, "layer_summary": layer_summary, "layers": layers,
                                        "build_seconds": round(seconds, 2)})
    write_artifact_manifest(out, engine_manifest, parent=parsed.path)
    verification = None
    if verify is not None:
        out, verification = verify_and_hand_over(out, final, onnx, engine_manifest, parsed.path, verify, log)
    return BuildResult(out, plan, trt.__version__, seconds, len(data), parsed.path, calibration, verification, builder)


def _build_device(trt, builder: str, options: BuildConfig, device: Device | None,
                  verifying: bool) -> tuple[Device | None, dict[str, Any] | None, dict[str, Any] | None]:
    """(the device to build on, its GPU record, TensorRT-RTX's targets or None): full TensorRT builds on
    the GPU here, refused where this TensorRT does not support it; TensorRT-RTX builds with or without one."""
    if builder == "tensorrt-rtx":
        if device is None:
            try:
                device = default_device()
            except MissingDependencyError:  # no GPU here: a TensorRT-RTX build needs none
                device = None
        return rtx_device_and_targets(trt, options, device, verifying)
    device = device or default_device()
    gpu = device.info()
    why = gpu_unsupported(trt.__version__, gpu["compute_capability"])
    if why:
        raise MissingDependencyError(f"{gpu['gpu']}: {why}")
    return device, gpu, None


def _plan_checked(trt, builder: str, info: OnnxModelInfo, options: BuildConfig,
                  log: Callable[[str], None]) -> tuple[BuildPlan, BuildConfig]:
    """The build plan, after the DLA checks (before any calibration or conversion work), and the options
    with the calibration batch a static-batch ONNX needs."""
    no_dla = dla_unsupported(trt.__version__) if options.dla_core is not None and builder == "tensorrt" else None
    if no_dla:
        raise ConfigError(f"`dla_core`: {no_dla}")
    plan = plan_build(info.precision, options, trt.__version__, info.float_precision, builder)
    if options.dla_core is not None:  # before any calibration or conversion work
        check_dla_profile(profile_shapes(info.input_shape, options, info.input_name))
    fixed = info.input_shape[0] if info.input_shape else None
    if plan.convert == "int8" and fixed is not None and options.calib_batch_size != fixed:
        # a static-batch ONNX runs only its own batch, in calibration too (as the legacy calibrator's profile)
        log(f"{info.path.name} has a fixed batch of {fixed}: calibrating in batches of {fixed}")
        options = dataclasses.replace(options, calib_batch_size=int(fixed))
    return plan, options


def _describe_build(label: str, gpu: dict[str, Any] | None, targets: dict[str, Any] | None, options: BuildConfig,
                    plan: BuildPlan, parsed: OnnxModelInfo, shapes: dict[str, Any]) -> str:
    """The builder's configuration in one line, logged before the build."""
    where = (f"on {gpu['gpu']} (sm {gpu['compute_capability']})" if targets is None else
             f"for sm {', '.join(targets['compute_capabilities'])}{' (its default set)' if targets['default_targets'] else ''}"
             f"{'' if gpu else ' ahead of time, no GPU here'}")
    return (f"{label} {where}: "
            f"{options.precision.upper()}{f' (unquantized layers {plan.float_precision.upper()})' if plan.float_precision else ''} "
            f"from {parsed.path.name}, flags {list(plan.builder_flags) or 'strongly typed'}, "
            f"profile {shapes}, workspace {options.workspace_gib} GiB, opt level {options.opt_level}, hw-compat {options.hw_compat}")


def _engine_manifest(trt, parsed: OnnxModelInfo, options: BuildConfig, plan: BuildPlan, shapes: dict[str, Any],
                     gpu: dict[str, Any] | None, targets: dict[str, Any] | None, built: dict[str, Any]) -> Manifest:
    """The engine's manifest: what it was built from, by which builder, for what, and how (``built``: its
    calibration, layer list and summary, and build time)."""
    builder = builder_of(trt)
    return Manifest(
        kind="engine", format="engine", classes=parsed.classes, preprocess=parsed.preprocess,
        arch=parsed.manifest.arch if parsed.manifest else {}, precision=options.precision,
        tools=tool_versions("tensorrt" if builder == "tensorrt" else "tensorrt-rtx-cu12-bindings", "torch", "onnx"),
        extra={"builder": builder, "builder_version": trt.__version__,
               **({"tensorrt_version": trt.__version__, **gpu} if targets is None else {"gpu": (gpu or {}).get("gpu"),
                                                                   **{k: v for k, v in targets.items() if not k.startswith("_")}}),
               "profile": {k: list(v) for k, v in shapes.items()},
               "input": parsed.input_name, "output": parsed.output_name, "io": parsed.io, "onnx_sha256": parsed.sha256,
               "metadata_source": parsed.source, "calibration": built["calibration"], "build_options": options.to_dict(),
               "strongly_typed": plan.strongly_typed, "builder_flags": list(plan.builder_flags),
               "float_precision": plan.float_precision, "profile_sharing": True,
               "layer_summary": built["layer_summary"], "layers": built["layers"], "dla_core": options.dla_core,
               "hardware_compatible": options.hw_compat == "ampere+", "hw_compat": options.hw_compat,
               "build_seconds": built["build_seconds"]},
    )


def _engine_layers(trt, data: bytes, onnx: Path, echo: Callable[[str], None],
                   dla_core: int | None = None) -> tuple[list | None, dict | None]:
    """The engine inspector's layer list, mapped to the parsed ONNX's node names (None when it cannot say:
    the list is information, so a failure of it never costs the engine its manifest)."""
    import onnx as onnx_lib

    from edgeopt.trt.layers import inspect_engine, parse_layers, summarize

    try:
        nodes = {n.name for n in onnx_lib.load(str(onnx), load_external_data=False).graph.node
                 if n.name and n.op_type not in ("QuantizeLinear", "DequantizeLinear")}
        text = inspect_engine(trt, _Log(trt, echo).logger, data, dla_core)
        layers = parse_layers(text, nodes) if text else []
    except Exception as exc:  # noqa: BLE001 - any inspector failure: no layer list, the engine stands
        echo(f"the engine inspector failed: {exc}")
        layers = []
    if not layers:
        warnings.warn("TensorRT's engine inspector gave no layer list; the manifest has none (edgeopt info --layers "
                      "will say so)", EdgeoptWarning, stacklevel=3)
        return None, None
    return layers, summarize(layers, nodes)


def _prepared_onnx(info: OnnxModelInfo, out: Path, plan: BuildPlan, options: BuildConfig,
                   prepare: PrepareOnnx | None) -> tuple[OnnxModelInfo, dict | None]:
    """The ONNX the plan parses: ``info`` itself, or what ``prepare`` (``edgeopt.convert``) made of it."""
    cast = plan.cast_float_fp16 and info.manifest is not None and info.float_precision != "fp16"
    if plan.convert is None and not cast:
        return info, None
    if plan.convert is not None and info.manifest is None:
        raise ConfigError(f"{info.path.name} must be converted to {plan.convert.upper()} first, which needs an ONNX exported "
                          f"by edgeopt (a manifest beside it); pass an {plan.convert.upper()} ONNX instead")
    if prepare is None:
        need = {"fp16": "its FP16 graph made", "int8": "calibrating to Q/DQ INT8"}.get(plan.convert or "", "its float part cast to FP16")
        raise ConfigError(f"{info.path.name} must be converted first for this build ({need} on TensorRT {plan.generation}.x): "
                          "build it through edgeopt.convert.convert(onnx, 'engine', build=options), as build-engine does")
    path, calibration = prepare(info.path, out, plan, options)
    return read_onnx_info(path), calibration


def _build_serialized(trt, info: OnnxModelInfo, plan: BuildPlan, options: BuildConfig, shapes, device: Device | None, echo,
                      cache_dir: Path, targets: dict | None = None):
    """Parse, configure and build; returns (serialized engine or None, timing cache bytes, calibration record,
    the layer list TensorRT-RTX logs at VERBOSE while it builds, or None)."""
    log = _Log(trt, echo, keep_layers=targets is not None)
    builder = trt.Builder(log.logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, log.logger)
    if not parser.parse(info.path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ArtifactError(f"{info.path}: TensorRT cannot parse it: {errors[0] if errors else log.first_error('unknown error')}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * (1 << 30)))
    config.builder_optimization_level = options.opt_level
    if options.hw_compat != "none":
        config.hardware_compatibility_level = hardware_compatibility_level(trt, options.hw_compat)
    if options.dla_core is not None:
        set_dla(trt, builder, config, options.dla_core, plan.generation)
    if targets is not None and targets["_members"]:
        set_compute_capabilities_rtx(config, targets["_members"])
    if builder_of(trt) == "tensorrt" and parse_version(trt.__version__)[0] < 10:
        share_profiles_trt10(trt, config)
    # every layer's type, precision, formats and tactic in the engine, for the inspector (trtexec's
    # --profilingVerbosity=detailed); the default LAYER_NAMES_ONLY gives names alone
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    set_profile_shape(profile, info.input_name, shapes["min"], shapes["opt"], shapes["max"])
    if config.add_optimization_profile(profile) < 0:
        raise ConfigError(f"TensorRT rejected the optimization profile {shapes} for input {info.input_name!r}: "
                          f"{log.first_error('check `min_batch`/`opt_batch`/`max_batch`')}")
    if targets is not None:  # TensorRT-RTX: no timing cache (it would make the build look for a GPU)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise VerificationError(f"{RTX_NAME} could not build the engine: {log.first_error('no error was logged')}")
        return serialized, b"", None, log.layers
    cache_bytes = options.timing_cache.read_bytes() if options.timing_cache and options.timing_cache.exists() else b""
    with log.handled_errors():  # a rejected cache is logged at ERROR, and replaced below: not the build's error
        timing_cache = config.create_timing_cache(cache_bytes)
        accepted = timing_cache is not None and config.set_timing_cache(timing_cache, False)
    if not accepted:
        warnings.warn(f"timing cache {options.timing_cache} was made on another GPU or TensorRT, or is corrupt: "
                      "starting a new one (it will be replaced)", EdgeoptWarning, stacklevel=2)
        timing_cache = config.create_timing_cache(b"")
        config.set_timing_cache(timing_cache, True)
    calibrator = None
    if plan.generation < 11:
        calibrator = set_precision_trt10(trt, builder, config, plan, options, info, shapes, device, cache_dir)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None and calibrator is not None and calibrator.error:
        raise VerificationError(calibrator.error)  # the calibrator's reason, not TensorRT's "no scaling factors"
    if serialized is None:
        raise VerificationError(f"TensorRT could not build the engine: {log.first_error('no error was logged')}")
    record = None
    if calibrator is not None:
        from edgeopt.trt.calibrator import check_calibrator

        check_calibrator(calibrator)
        # a cache TensorRT rejected is followed by calibration: a hit is a cache used with no batch served
        record = {"calibrator": plan.legacy_calibrator, "source": calibrator.source, "batches": calibrator.served,
                  "cache_hit": calibrator.cache_hit and calibrator.served == 0, "cache": str(calibrator.cache_path)}
    cache = config.get_timing_cache()
    return serialized, memoryview(cache.serialize()).tobytes() if cache is not None else b"", record, None
