"""The bench baseline: a named model (e.g. ``resnet18d``) built like the artifact, or an artifact as is."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgeopt.artifacts import Manifest
from edgeopt.data.presets import Preprocess, preset_for_model
from edgeopt.errors import ConfigError
from edgeopt.runtime import artifact_kind


@dataclasses.dataclass
class Baseline:
    path: Path
    name: str
    random_weights: bool


def build_baseline(spec: str, like: Manifest, like_path: Path, workdir: Path, checkpoint: Path | None = None,
                   size: int | None = None, calib_data: Path | None = None) -> Baseline:
    """Make the baseline artifact in the same form (checkpoint / ONNX / engine) and precision as ``like``.

    A path is used as is. A model name is built at the artifact's input size (or ``size``) with the
    weights of ``checkpoint`` when given, otherwise with random weights (good for timing only).
    """
    as_path = Path(spec)
    if as_path.suffix and as_path.exists():
        return Baseline(as_path, as_path.name, False)
    if as_path.suffix:
        raise ConfigError(f"--baseline {spec}: no such file; pass an artifact or a model name like resnet18d")
    from edgeopt.models import create_model
    from edgeopt.runtime.torch_runner import load_checkpoint
    from edgeopt.train import save_checkpoint

    workdir.mkdir(parents=True, exist_ok=True)
    preprocess = Preprocess.from_dict(like.preprocess)
    if checkpoint is not None:
        model, ck_manifest = load_checkpoint(checkpoint)
        if list(ck_manifest.classes) != list(like.classes):
            raise ConfigError(f"--baseline-checkpoint {checkpoint} has classes {ck_manifest.classes}, the artifact {like.classes}")
        ckpt, random = Path(checkpoint), False
    else:
        model, arch = create_model(spec, len(like.classes))
        target = preset_for_model(spec, size or preprocess.size, preprocess.resize)
        ckpt = save_checkpoint(workdir / f"baseline_{spec}.pt", model.eval(), arch, like.classes, target,
                               extra={"random_weights": True, "purpose": "bench baseline (timing only)"})
        random = True
    kind = artifact_kind(like_path)
    if kind == "checkpoint":
        return Baseline(ckpt, spec, random)
    from edgeopt.export import export_onnx

    precision = like.precision or "fp32"
    onnx = export_onnx(ckpt, workdir / f"baseline_{spec}.onnx", fp16=precision == "fp16" and kind == "onnx").path
    if precision == "int8":
        from edgeopt.calibrate import calibrate_onnx

        if calib_data is None:
            raise ConfigError("an INT8 artifact's baseline is calibrated too: pass --data DIR with images")
        onnx = calibrate_onnx(onnx, calib_data, workdir / f"baseline_{spec}.int8.onnx", num_images=256,
                              calibration_dir=workdir / "calibration").path
    if kind == "onnx":
        return Baseline(onnx, spec, random)
    from edgeopt.trt.build import build_engine
    from edgeopt.trt.plan import BuildOptions

    opts = like.extra.get("build_options", {})
    options = BuildOptions(precision, max_batch=opts.get("max_batch"), min_batch=opts.get("min_batch"),
                           opt_batch=opts.get("opt_batch"))
    return Baseline(build_engine(onnx, workdir / f"baseline_{spec}.engine", options).path, spec, random)
