"""What a TensorRT build will do, decided before TensorRT is touched (and so testable anywhere)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgeopt.errors import ConfigError
from edgeopt.settings import check_settings, choices, setting
from edgeopt.trt.compat import RTX_NAME, RTX_TARGETS, builder_label, trt_generation

Precision = choices("Precision", "fp16", "int8", doc="An engine's precision: fp16 or int8.")


Int8Float = choices("Int8Float", "fp16", "fp32", doc="What the layers an INT8 engine leaves unquantized run in.")


Calibrator = choices("Calibrator", "entropy", "minmax", doc="Legacy implicit INT8's calibrators (TensorRT < 11).")


HwCompat = choices("HwCompat", "none", "ampere+", "same-cc",
                   doc="TensorRT's hardware-compatibility levels, by the names users type (``compat.HW_COMPAT_LEVELS``' keys).")


Builder = choices("Builder", "tensorrt", "tensorrt-rtx", doc="Which TensorRT builds (``compat.BUILDERS``' keys).")


DEFAULT_MIN_BATCH, DEFAULT_MAX_BATCH = 1, 32


def _capabilities(value: Any, key: str) -> tuple[str, ...]:
    """TensorRT-RTX's targets, as names or numbers (YAML's 8.6), from a list or comma-separated text."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"`{key}` {value!r}: give a list, e.g. 8.6,current")
    capabilities = tuple(str(c).strip().lower() for c in items if str(c).strip())
    for cc in capabilities:
        if cc not in RTX_TARGETS:
            raise ConfigError(f"`{key}` {cc!r} is not one {RTX_NAME} builds for: use {', '.join(RTX_TARGETS)}")
    return capabilities


_FOREIGN = " of an ONNX edgeopt did not export."


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything ``build-engine`` takes besides the ONNX and the output path.

    Batch sizes left ``None`` come from the model: a static-batch ONNX is built for exactly its
    batch, a dynamic one for 1..32 (opt = max). ``img_size``/``mean``/``std``/``classes_file``
    describe an ONNX that edgeopt did not export (ignored when the ONNX says it itself).
    """

    precision: Precision = setting(help="fp16 or int8.")
    calib_data: Path | None = setting(None, key="data", help="Crops to calibrate on (as calibrate's `data`).")
    calibrator: Calibrator | None = setting(None, key="method", help="Legacy implicit INT8 (TensorRT < 11): entropy or "
                                            "minmax (as calibrate's `method`).")
    min_batch: int | None = setting(None, low=1, high=65_536, help="Default: 1, or the ONNX's fixed batch.")
    opt_batch: int | None = setting(None, low=1, high=65_536, help="Default: `max_batch`.")
    max_batch: int | None = setting(None, low=1, high=65_536, help="Default: 32, or the ONNX's fixed batch.")
    workspace_gib: float = setting(4.0, key="workspace", low=0.0, low_open=True, high=1024.0,
                                   help="Workspace memory-pool limit, GiB.")
    timing_cache: Path | None = setting(None, help="Load and save the builder timing cache here.")
    opt_level: int = setting(3, low=0, high=5, example="3 (TensorRT's default)", help="Builder optimization level 0-5.")
    hw_compat: HwCompat = setting(HwCompat.none, help="none, ampere+ or same-cc (TensorRT 10.9+).")
    num_images: int = setting(512, low=1, high=1_000_000, help="Images to calibrate on (as calibrate's `num_images`).")
    calib_batch_size: int = setting(32, key="batch_size", low=1, high=65_536,
                                    help="Images per calibration batch (as calibrate's `batch_size`).")
    calib_method: str = "entropy"  # for the explicit (Q/DQ) path when calibrating from FP32
    int8_float: Int8Float = setting(Int8Float.fp16, help="INT8: run the unquantized layers in fp16 (8.6-10.x: FP16 flag; "
                                    "11.x: FP16 float part cast into the Q/DQ ONNX) or fp32.")
    dla_core: int | None = setting(None, low=0, high=64, example="0 (DLA cores are numbered from 0)",
                                   help="Jetson: build for this DLA core (GPU fallback for the rest; one batch size).")
    img_size: int | None = setting(None, low=1, high=16_384, help="Input size" + _FOREIGN)
    mean: tuple[float, float, float] | None = setting(None, help="R,G,B mean" + _FOREIGN)
    std: tuple[float, float, float] | None = setting(None, help="R,G,B std" + _FOREIGN)
    classes_file: Path | None = setting(None, key="classes", help="Class names, one a line, for an ONNX edgeopt did not export.")
    builder: Builder | None = setting(None, help="tensorrt or tensorrt-rtx (default: TensorRT where installed, else TensorRT-RTX).")
    compute_capabilities: tuple[str, ...] = setting((), key="compute_capability", parse=_capabilities, help=(
        f"TensorRT-RTX: a GPU to build for ({', '.join(RTX_TARGETS)}); repeatable. Default: the GPU here, else NVIDIA's "
        "default set."))

    def __post_init__(self) -> None:
        check_settings(self)
        if self.compute_capabilities and self.builder == "tensorrt":
            raise ConfigError(f"`compute_capability` is for {RTX_NAME} builds (full TensorRT builds for the GPU it runs "
                              "on, or `hw_compat`): drop it, or use `builder` tensorrt-rtx")
        if self.calibrator is not None:
            if self.precision != "int8":
                raise ConfigError("`calibrator` is for `int8` builds only")
            if self.calib_data is None:
                raise ConfigError("`calibrator` needs `calib_data` DIR (images to calibrate on)")
        lo, opt, hi = self.batch_profile()
        if not 1 <= lo <= opt <= hi:
            raise ConfigError(f"batch profile min {lo} / opt {opt} / max {hi} must satisfy 1 <= min <= opt <= max")
        if self.dla_core is not None and self.hw_compat != "none":
            raise ConfigError("`dla_core` and `hw_compat` do not go together: a hardware-compatible engine runs on GPUs only")

    @property
    def batch_given(self) -> bool:
        return any(b is not None for b in (self.min_batch, self.opt_batch, self.max_batch))

    def batch_profile(self) -> tuple[int, int, int]:
        """(min, opt, max) batch for a dynamic-batch model; opt defaults to max."""
        lo = self.min_batch if self.min_batch is not None else DEFAULT_MIN_BATCH
        hi = self.max_batch if self.max_batch is not None else max(DEFAULT_MAX_BATCH, lo, self.opt_batch or 0)
        return lo, self.opt_batch if self.opt_batch is not None else hi, hi

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """What a build will do, decided before TensorRT is touched (and so testable anywhere)."""

    generation: int
    onnx_precision: str  # precision of the ONNX the builder parses
    convert: str | None  # "fp16" (export stage) or "int8" (calibrate stage) when the given ONNX must be converted first
    builder_flags: tuple[str, ...]  # TensorRT 10: BuilderFlag names to set
    strongly_typed: bool
    legacy_calibrator: str | None
    float_precision: str | None = None  # INT8: what the unquantized layers run in (fp16 or fp32)
    cast_float_fp16: bool = False  # 11.x INT8: cast the Q/DQ ONNX's float part to FP16 before parsing


def plan_build(onnx_precision: str, options: BuildConfig, trt_version: str, onnx_float: str | None = None,
               builder: str = "tensorrt") -> BuildPlan:
    """Decide the path: which ONNX to parse, which conversions first, which flags; never a silent downgrade.

    ``onnx_float`` is an INT8 ONNX's float part (fp16 when its Q/DQ scales are float16). An INT8
    engine's unquantized layers run in ``options.int8_float`` on every version: 8.6-10.x by the FP16
    builder flag, 11.x and TensorRT-RTX (strongly typed: each layer runs in its tensors' type) by an
    FP16 float part in the ONNX, which edgeopt casts when needed."""
    gen = trt_generation(trt_version, builder)
    label = builder_label(builder, trt_version)
    want = options.precision
    if builder == "tensorrt-rtx":
        _check_rtx_options(options, label)
    elif options.compute_capabilities:
        raise ConfigError(f"`compute_capability` is for {RTX_NAME} builds; {label} builds for the GPU it runs on")
    if options.dla_core is not None:
        _check_dla_precision(options, onnx_precision, onnx_float, gen, label)
    if options.calibrator is not None:
        if gen >= 11:
            raise ConfigError(
                f"{label} {'has no' if builder == 'tensorrt-rtx' else 'removed'} implicit INT8 calibration; drop `calibrator` and edgeopt will "
                "calibrate explicitly (Q/DQ ONNX) from `calib_data`"
            )
        if onnx_precision != "fp32":
            raise ConfigError(f"`calibrator` calibrates an FP32 ONNX; this one is {onnx_precision}")
        flags = ("INT8", "FP16") if options.int8_float == "fp16" else ("INT8",)
        return BuildPlan(gen, "fp32", None, flags, False, options.calibrator, options.int8_float)
    convert = None
    if want == "fp16":
        if onnx_precision == "int8":
            raise ConfigError("this ONNX is INT8 (Q/DQ); build it with `int8`, or pass the FP32 export for `fp16`")
        if onnx_precision == "fp32" and gen >= 11:
            convert = "fp16"  # strongly typed: the FP16 must be in the graph
    else:
        if onnx_precision == "fp16":
            raise ConfigError("INT8 needs the FP32 export (to calibrate) or its Q/DQ INT8 ONNX, not an FP16 ONNX")
        if onnx_precision == "fp32":
            if options.calib_data is None:
                raise ConfigError(
                    "`int8` from an FP32 ONNX needs `calib_data` DIR (edgeopt calibrate converts it to Q/DQ first), "
                    "or pass a Q/DQ ONNX from edgeopt calibrate"
                )
            convert = "int8"
        if onnx_precision == "int8" and onnx_float == "fp16" and options.int8_float == "fp32":
            raise ConfigError("this Q/DQ ONNX's float part is FP16 (float16 scales); for `int8_float` fp32 pass the "
                              "Q/DQ ONNX with FP32 scales from edgeopt calibrate")
    if gen >= 11:
        cast = want == "int8" and options.int8_float == "fp16" and onnx_float != "fp16"
        return BuildPlan(gen, want, convert, (), True, None, options.int8_float if want == "int8" else None, cast)
    # TensorRT 8.6-10.x: explicit Q/DQ needs the INT8 flag; FP16 lets non-quantized layers run in half precision
    if want == "fp16":
        return BuildPlan(gen, onnx_precision, convert, ("FP16",), False, None)
    flags = ("INT8", "FP16") if options.int8_float == "fp16" else ("INT8",)
    return BuildPlan(gen, "int8", convert, flags, False, None, options.int8_float)


def _check_rtx_options(options: BuildConfig, label: str) -> None:
    """What TensorRT-RTX has no place for, refused before anything is converted (never ignored quietly)."""
    if options.dla_core is not None:
        raise ConfigError(f"`dla_core`: {label} builds for RTX GPUs, which have no DLA; use full TensorRT on Jetson")
    if options.hw_compat != "none":
        # the builder logs "setHardwareCompatibilityLevel() is unsupported in TensorRT-RTX" and ignores it
        raise ConfigError(f"`hw_compat` {options.hw_compat}: {label} does not support it; name the GPUs with "
                          "`compute_capability` instead")
    if options.timing_cache is not None:
        # TensorRT-RTX 1.1 release notes: a timing cache "forces the ahead-of-time compilation step to query your
        # system for a GPU" and "has no effect on the built engine"; its API is deprecated (a runtime cache instead)
        raise ConfigError(f"`timing_cache`: {label} has no timing cache (it has no effect there and needs a GPU to "
                          "build); drop it")


def _check_dla_precision(options: BuildConfig, onnx_precision: str, onnx_float: str | None, gen: int, label: str) -> None:
    """DLA's INT8 paths, per generation. 8.6-10.7: DLA runs INT8 only through implicit calibration with the
    entropy calibrator: explicit Q/DQ INT8 "is not supported on DLA" (NVIDIA/TensorRT#2222, NVIDIA/Model-Optimizer
    #1661: the quantized layers go to the GPU or the build fails), and "IInt8EntropyCalibrator2 ... is required for
    DLA" (NvInfer.h v10.13.3). 11.4.1 (strongly typed): INT8 through Q/DQ whose scales are FP32, the only DLA Q/DQ
    form NVIDIA documents ("Strongly Typed Networks for DLA"), so no FP16 float part."""
    if options.precision != "int8":
        return
    if gen < 11:
        if options.calibrator is None:
            raise ConfigError(f"`dla_core` with `int8` on {label}: DLA does not run explicit (Q/DQ) INT8 before TensorRT 11 "
                              "(NVIDIA/TensorRT#2222); pass the FP32 ONNX with `calibrator` entropy and `calib_data`")
        if options.calibrator != "entropy":
            raise ConfigError(f"`dla_core` with `calibrator` {options.calibrator}: DLA requires the entropy calibrator "
                              "(IInt8EntropyCalibrator2); use `calibrator` entropy")
        return
    if options.int8_float == "fp16" or onnx_float == "fp16":
        raise ConfigError(f"`dla_core` with `int8` on {label}: DLA takes Q/DQ with FP32 scales only, so the unquantized "
                          "layers cannot be cast to FP16: pass `int8_float` fp32 and the Q/DQ ONNX with FP32 scales")


def profile_shapes(input_shape: tuple[int | None, ...], options: BuildConfig, input_name: str = "input") -> dict[str, tuple[int, ...]]:
    """min/opt/max shapes of the optimization profile for an input of ``input_shape`` (None/-1 = dynamic).

    A fixed batch is its own profile: asking for another batch range is an error, since TensorRT
    refuses a profile that disagrees with a static dimension.
    """
    if not input_shape:
        raise ConfigError(f"input {input_name!r} has no shape: edgeopt builds image classifiers with NCHW inputs")
    dims = [d if d is not None and d > 0 else None for d in input_shape]
    if any(d is None for d in dims[1:]):
        raise ConfigError(f"input {input_name!r} has dynamic dimensions {list(input_shape)} besides the batch: "
                          "export it with a fixed image size")
    rest = tuple(int(d) for d in dims[1:])
    if dims[0] is not None:
        fixed = int(dims[0])
        if options.batch_given and options.batch_profile() != (fixed, fixed, fixed):
            lo, opt, hi = options.batch_profile()
            raise ConfigError(f"this ONNX has a fixed batch of {fixed}; the profile {lo}/{opt}/{hi} does not fit it: "
                              "drop `min_batch`/`opt_batch`/`max_batch`, or export with a dynamic batch")
        return {k: (fixed, *rest) for k in ("min", "opt", "max")}
    lo, opt, hi = options.batch_profile()
    return {"min": (lo, *rest), "opt": (opt, *rest), "max": (hi, *rest)}


DLA_MAX_BATCH = 4096  # developer guide, "Working with DLA": "The maximum supported batch size is 4096"
DLA_MAX_DIM = 8192  # developer guide, "DLA Supported Layers and Restrictions": non-batch dimensions are at most 8192


def check_dla_profile(shapes: dict[str, tuple[int, ...]]) -> None:
    """DLA builds need one shape: "DLA does not support dynamic dimensions, so the profile's min, max, and
    opt values must be equal for wildcard dimensions" (developer guide, "Working with DLA")."""
    if not shapes["min"] == shapes["opt"] == shapes["max"]:
        raise ConfigError(f"`dla_core` needs one batch size (DLA does not support dynamic shapes), this profile is "
                          f"{shapes['min'][0]}..{shapes['max'][0]}: pass `min_batch` N `max_batch` N")
    if shapes["max"][0] > DLA_MAX_BATCH:
        raise ConfigError(f"`dla_core`: batch {shapes['max'][0]} is over DLA's maximum of {DLA_MAX_BATCH}")
    big = [d for d in shapes["max"][1:] if d > DLA_MAX_DIM]
    if big:
        raise ConfigError(f"`dla_core`: input shape {list(shapes['max'])} has a dimension over DLA's maximum of {DLA_MAX_DIM} "
                          "(non-batch dimensions); export at a smaller size")
