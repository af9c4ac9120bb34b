"""The bench baseline: a fixed reference model, or an artifact used as is.

A named baseline (``resnet18d``) is built at **its own** input size, from the model's config
(timm's pretrained config: 224 px for resnet18d; a YAML's ``INPUT_SIZE``; 224 for torchvision),
and in FP32 (FP16 for an engine), the way the competition's server ran its baseline, not in the
shape and precision of the artifact it is compared with. ``--baseline-size`` and
``--baseline-precision`` change that on purpose. ``--baseline-checkpoint`` gives it trained
weights; it then runs at the size it was trained at and is labelled with its own architecture.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgeopt.artifacts import artifact_kind, read_manifest, suffix_kind
from edgeopt.settings import choices
from edgeopt.errors import ConfigError
from edgeopt.formats import get_format

BaselinePrecision = choices("BaselinePrecision", "fp32", "fp16", "int8", doc="The precision a named baseline is built in.")


PRECISIONS = tuple(p.value for p in BaselinePrecision)


@dataclasses.dataclass(frozen=True)
class Baseline:
    path: Path
    name: str
    random_weights: bool
    input_size: int
    precision: str
    source: str  # how it was made, for the report

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "input_size": self.input_size, "precision": self.precision,
                "random_weights": self.random_weights, "source": self.source}


@dataclasses.dataclass(frozen=True)
class BaselineSpec:
    name: str  # a model name, a YAML file, or an artifact path
    checkpoint: Path | None = None
    size: int | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"`baseline_precision` {self.precision!r} is unknown: use one of {', '.join(PRECISIONS)}")
        if self.size is not None and not 16 <= self.size <= 1024:
            raise ConfigError(f"`baseline_size` {self.size} is out of range: use 16..1024 pixels")


def build_baseline(spec: BaselineSpec, kind: str, classes: list[str], resize: str, workdir: Path,
                   calib_data: Path | None = None) -> Baseline:
    """The baseline artifact, of ``kind`` (the benched artifacts' kind: checkpoint, onnx or engine)."""
    as_path = Path(spec.name)
    if as_path.exists() and suffix_kind(as_path) is not None:  # an artifact; a YAML file is a model definition
        if spec.size is not None or spec.precision is not None or spec.checkpoint is not None:
            raise ConfigError(f"`baseline` {spec.name} is an artifact used as is: drop `baseline_size`, "
                              "`baseline_precision` and `baseline_checkpoint`, or name a model instead")
        m = read_manifest(as_path, expect_kind=artifact_kind(as_path))
        return Baseline(as_path, as_path.name, False, int(m.preprocess.get("size", 0)), m.precision or "fp32",
                        f"the artifact {as_path}")
    if as_path.suffix and not as_path.name.endswith((".yaml", ".yml")):
        raise ConfigError(f"`baseline` {spec.name}: no such file; pass an artifact or a model name like resnet18d")
    from edgeopt.models.checkpoint import load_checkpoint, save_checkpoint
    from edgeopt.models import create_model
    from edgeopt.models.factory import default_input_size, preset_for_model

    workdir.mkdir(parents=True, exist_ok=True)
    precision = spec.precision or ("fp16" if kind == "engine" else "fp32")
    if kind == "checkpoint" and precision != "fp32":
        raise ConfigError("`baseline_precision` applies to ONNX and engine benches; a checkpoint's precision is "
                          "`torch_fp16` for every checkpoint in the bench")
    if spec.checkpoint is not None:
        _, ck = load_checkpoint(spec.checkpoint)
        if list(ck.classes) != list(classes):
            raise ConfigError(f"`baseline_checkpoint` {spec.checkpoint} has classes {ck.classes}, the artifact {classes}")
        trained = int(ck.preprocess["size"])
        if spec.size is not None and spec.size != trained:
            raise ConfigError(f"`baseline_size` {spec.size} conflicts with `baseline_checkpoint` {spec.checkpoint}, "
                              f"trained at {trained} px: drop one of them")
        ckpt, random, size = Path(spec.checkpoint), False, trained
        name = str(ck.arch.get("name") or spec.name)
        source = f"checkpoint {spec.checkpoint}"
    else:
        size = spec.size or default_input_size(spec.name)
        model, arch = create_model(spec.name, len(classes))
        name = str(arch.get("name") or spec.name)
        preprocess = preset_for_model(spec.name, size, resize)
        ckpt = save_checkpoint(workdir / f"baseline_{name}_{size}.pt", model.eval(), arch, classes, preprocess,
                               extra={"random_weights": True, "purpose": "bench baseline (timing only)"})
        random, source = True, f"{name} with random weights (timing only)"
    if kind == "checkpoint":
        return Baseline(ckpt, name, random, size, "fp32", source)
    return _convert(ckpt, name, random, size, precision, source, kind, workdir, calib_data)


def _convert(ckpt: Path, name: str, random: bool, size: int, precision: str, source: str, kind: str, workdir: Path,
             calib_data: Path | None) -> Baseline:
    from edgeopt.convert import convert_artifact

    stem = workdir / f"baseline_{name}_{size}"
    if precision == "int8" and calib_data is None:
        raise ConfigError("an INT8 baseline is calibrated: pass `data` DIR with images")
    if kind == "onnx":
        to = {"fp32": "onnx", "fp16": "onnx-fp16", "int8": "int8-qdq"}[precision]
        options = {"data": calib_data, "num_images": 256} if precision == "int8" else {}
        path = convert_artifact(ckpt, to, stem.with_name(stem.name + get_format(to).suffix), **options).path
    else:
        from edgeopt.trt.plan import BuildConfig

        # an INT8 engine is calibrated from the FP32 export inside the build (explicit Q/DQ)
        path = convert_artifact(ckpt, "engine", stem.with_name(f"{stem.name}.{precision}{get_format('engine').suffix}"),
                       build=BuildConfig(precision, calib_data=calib_data, num_images=256)).path
    return Baseline(path, name, random, size, precision, source)
