"""The builder configuration ``trt.build`` sets beyond its memory and optimization level: DLA, the
optimization and calibration profiles, precision flags and the legacy calibrator on 8.6-10.x.

Functions ending in ``_trt10`` hold calls that exist only before TensorRT 11; the test suite runs
them against a double of every supported version's real bindings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeopt.errors import ConfigError
from edgeopt.trt.device import Device
from edgeopt.trt.model_info import OnnxModelInfo
from edgeopt.trt.plan import BuildConfig, BuildPlan


def share_profiles_trt10(trt, config) -> None:
    """8.6: contexts share profile 0 only with this preview feature (NvInfer.h v8.6.1: "defaults to false");
    the runner gives each CUDA-graphed shape its own context. Always on from 10.0, gone in 11.x."""
    config.set_preview_feature(trt.PreviewFeature.PROFILE_SHARING_0806, True)


def set_dla(trt, builder, config, core: int, generation: int = 10) -> None:
    """Layers on DLA core ``core``, the rest on the GPU (GPU_FALLBACK: "layers that cannot run on DLA run
    on the GPU"); refused where the device has no such core (``num_DLA_cores``: 0 off Jetson). On 8.6-10.x
    also PREFER_PRECISION_CONSTRAINTS, as trtexec's ``--useDLACore`` sets (samples/common/sampleEngines.cpp:
    ``setFlag(BuilderFlag::kPREFER_PRECISION_CONSTRAINTS)`` with GPU fallback); 11.x has no such flag
    (strongly typed: the tensor types are the constraints)."""
    cores = builder.num_DLA_cores
    if core >= cores:
        raise ConfigError(f"`dla_core` {core}: this device has {cores} DLA core(s)"
                          + (" (DLA is on Jetson AGX/NX Orin and Xavier, not on data-centre GPUs)" if cores == 0 else ""))
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if generation < 11:
        _prefer_precision_constraints_trt10(trt, config)


def _prefer_precision_constraints_trt10(trt, config) -> None:
    config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)


def set_profile_shape(profile, name: str, lo, opt, hi) -> None:
    """``IOptimizationProfile.set_shape``, whose binding raises RuntimeError on shapes TensorRT finds
    inconsistent (pyCore.cpp): one line naming the shapes instead of a traceback."""
    try:
        profile.set_shape(name, lo, opt, hi)
    except RuntimeError as exc:
        raise ConfigError(f"TensorRT rejected the optimization profile min {tuple(lo)} / opt {tuple(opt)} / max {tuple(hi)} "
                          f"for input {name!r}: {exc} Check `min_batch`/`opt_batch`/`max_batch`") from None


def set_precision_trt10(trt, builder, config, plan: BuildPlan, options: BuildConfig, info: OnnxModelInfo, shapes,
                         device: Device, cache_dir: Path):
    """Builder flags, and the legacy calibrator when asked (returned so the build can check it)."""
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.legacy_calibrator is None:
        return None
    from edgeopt.data.presets import Preprocess
    from edgeopt.trt.calibrator import make_legacy_calibrator_trt10

    if not info.classes or not info.preprocess:
        raise ConfigError(f"`calibrator` needs {info.path.name}'s classes and preprocessing: pass `classes` FILE, "
                          "`img_size`, `mean` and `std`")
    # calibration runs at the calibration profile's opt shape: one fixed batch of calib_batch_size
    # (or the model's own fixed batch)
    batch = shapes["opt"][0] if shapes["min"][0] == shapes["max"][0] else options.calib_batch_size
    calib_shape = (batch, *shapes["opt"][1:])
    calib_profile = builder.create_optimization_profile()
    set_profile_shape(calib_profile, info.input_name, calib_shape, calib_shape, calib_shape)
    if not config.set_calibration_profile(calib_profile):
        raise ConfigError(f"TensorRT rejected the calibration profile {calib_shape}")
    calibrator = make_legacy_calibrator_trt10(
        trt, plan.legacy_calibrator, info.path, info.sha256, info.classes, Preprocess.from_dict(info.preprocess),
        options.calib_data, options.num_images, calib_shape, np.dtype(np.float32), cache_dir, device)
    config.int8_calibrator = calibrator
    return calibrator
