"""The conversion graph's table: every kind of artifact edgeopt makes, what makes it, from what.

One row per format (as Ultralytics' ``export_formats()``): the artifact kind and file suffix, the
precision, the target that runs it, the stage that produces it, the formats it can be made from,
and the options that stage takes. ``edgeopt.convert.convert`` walks this table; everything else
asks it (``format_of``) instead of comparing manifest strings. A leaf module: it imports no stage,
so any stage may read it.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from edgeopt.artifacts import Manifest
from edgeopt.errors import ConfigError

# the targets an artifact runs on; "any" = ONNX Runtime or TensorRT alike
TARGETS = ("torch", "any", "tensorrt", "cpu", "cpu-vnni")
CPU_TARGETS = ("cpu", "cpu-vnni")  # ONNX Runtime's CPU int8 kernels (QOperator): not for TensorRT


@dataclasses.dataclass(frozen=True)
class Format:
    """One row of the conversion graph."""

    name: str
    kind: str  # artifact kind (``artifacts.ARTIFACT_KINDS``): checkpoint, onnx, engine
    suffix: str  # what ``convert`` names a file of this format: <stem><suffix>
    precision: str | None  # fp32, fp16, int8; None: set by the stage's options (an engine)
    target: str  # what runs it (``TARGETS``)
    stage: str  # the stage that makes it
    parents: tuple[str, ...]  # the formats it is made from directly
    options: tuple[str, ...] = ()  # the keyword options ``convert`` hands that stage

    @property
    def for_tensorrt(self) -> bool:
        return self.target in ("any", "tensorrt")


_CALIBRATE = ("data", "num_images", "method", "batch_size", "seed", "calibration_dir")
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("checkpoint", "checkpoint", ".pt", "fp32", "torch", "train", ()),
    Format("onnx", "onnx", ".onnx", "fp32", "any", "export", ("checkpoint",), ("data", "opset", "static_batch", "atol")),
    Format("onnx-fp16", "onnx", ".fp16.onnx", "fp16", "tensorrt", "export", ("onnx",)),
    Format("int8-qdq", "onnx", ".int8.onnx", "int8", "tensorrt", "calibrate", ("onnx",),
           (*_CALIBRATE, "quantizer", "skip_first_last", "fallback", "ptq")),
    Format("int8-qdq-fp16", "onnx", ".int8-fp16.onnx", "int8", "tensorrt", "export", ("int8-qdq",)),
    Format("int8-cpu", "onnx", ".cpu-int8.onnx", "int8", "cpu", "calibrate", ("onnx",), _CALIBRATE),
    Format("int8-cpu-vnni", "onnx", ".cpu-vnni-int8.onnx", "int8", "cpu-vnni", "calibrate", ("onnx",), _CALIBRATE),
    # an engine's precision is its build options'; the ONNX it needs first (FP16 graph, Q/DQ, FP16
    # float part) depends on the TensorRT version, so its build plan asks convert for it
    Format("engine", "engine", ".engine", None, "tensorrt", "build-engine",
           ("onnx", "onnx-fp16", "int8-qdq", "int8-qdq-fp16"), ("build", "verify", "device")),
)}
# the calibrate stage's ``target`` argument for each INT8 format
CALIBRATE_TARGET = {"int8-qdq": "tensorrt", "int8-cpu": "cpu", "int8-cpu-vnni": "cpu-vnni"}


def get_format(name: str) -> Format:
    """The row named ``name``; an unknown name is a one-line error with the closest row."""
    if name not in FORMATS:
        close = difflib.get_close_matches(name, FORMATS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"format {name!r} is unknown{hint}: use one of {', '.join(FORMATS)}")
    return FORMATS[name]


def format_of(manifest: Manifest) -> Format:
    """The row an artifact belongs to, from its manifest's ``format`` (or, for manifests written
    before that field, from its kind, precision and quantization record)."""
    if manifest.format is not None:
        return get_format(manifest.format)
    if manifest.kind in ("checkpoint", "engine"):
        return FORMATS[manifest.kind]
    if manifest.kind != "onnx":
        raise ConfigError(f"a {manifest.kind!r} artifact is not a model format: pass a checkpoint, an ONNX or an engine")
    if manifest.precision == "int8":
        target = (manifest.extra.get("quantization") or {}).get("target", "tensorrt")
        name = {v: k for k, v in CALIBRATE_TARGET.items()}.get(target, "int8-qdq")
        if name == "int8-qdq" and manifest.extra.get("float_precision") == "fp16":
            name = "int8-qdq-fp16"
        return FORMATS[name]
    return FORMATS["onnx-fp16" if manifest.precision == "fp16" else "onnx"]


def conversion_path(source: str, to: str) -> list[Format]:
    """The formats to make, in order, from ``source`` to ``to`` (the shortest walk of the table)."""
    get_format(source)
    goal = get_format(to)
    if source == to:
        return []
    frontier, came_from = [source], {source: None}
    while frontier:
        nxt = []
        for name in frontier:
            for row in FORMATS.values():
                if name in row.parents and row.name not in came_from:
                    came_from[row.name] = name
                    nxt.append(row.name)
        frontier = nxt
    if goal.name not in came_from:
        if FORMATS[source].target in CPU_TARGETS and goal.for_tensorrt:
            raise ConfigError(f"no conversion from {source} to {to}: it was quantized for ONNX Runtime's CPU kernels (`target` "
                              f"{FORMATS[source].target}); TensorRT needs the Q/DQ form: edgeopt calibrate --target tensorrt")
        raise ConfigError(f"no conversion from {source} to {to}: {to} is made from "
                          f"{' or '.join(goal.parents) or 'training'}")
    path, here = [], goal.name
    while here != source:
        path.append(FORMATS[here])
        here = came_from[here]
    return path[::-1]


def stem_of(out: Path, fmt: Format) -> Path:
    """``out`` less ``fmt``'s suffix and a precision marker: ``m.int8.engine`` -> ``m``; intermediate
    artifacts of a conversion are named ``<stem><their suffix>`` beside it."""
    name = out.name
    for suffix in (fmt.suffix, out.suffix):
        if suffix and name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    for marker in (".fp32", ".fp16", ".int8"):
        if name.endswith(marker) and len(name) > len(marker):
            name = name[: -len(marker)]
            break
    return out.with_name(name)
