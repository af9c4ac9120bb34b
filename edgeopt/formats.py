"""The conversion graph's table: every kind of artifact edgeopt makes, what makes it, from what.

One row per format (as Ultralytics' ``export_formats()``): the artifact kind and file suffix, the
precision, the target that runs it, the stage that produces it, the formats it can be made from,
the options that stage takes, the runner backends that run it (``edgeopt.runtime.open_runner``),
the Triton platform that serves it and, for INT8, its quantization form. ``edgeopt.convert.convert``
walks this table; everything else asks it (``get_format``, ``format_of``, ``SUFFIX_KINDS``) instead
of comparing file names or manifest strings. A leaf module: it imports nothing of edgeopt but its
errors, so any module (``edgeopt.artifacts`` included) may read it.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Protocol

from edgeopt.errors import ConfigError

# the targets an artifact runs on; "any" = ONNX Runtime or TensorRT alike
TARGETS = ("torch", "any", "tensorrt", "cpu", "cpu-vnni")
CPU_TARGETS = ("cpu", "cpu-vnni")  # ONNX Runtime's CPU int8 kernels (QOperator): not for TensorRT


@dataclasses.dataclass(frozen=True)
class QuantForm:
    """How an INT8 format is quantized (recorded in its manifest's ``quantization``)."""

    form: str  # QDQ (QuantizeLinear/DequantizeLinear pairs) or QOperator (fused QLinear* kernels)
    activations: str
    weights: str
    reduce_range: bool = False  # 7-bit weights (ONNX Runtime's ``reduce_range``)

    def to_dict(self) -> dict[str, str]:
        """The manifest's record of it."""
        return {"format": self.form, "activations": self.activations, "weights": self.weights}


@dataclasses.dataclass(frozen=True)
class Format:
    """One row of the conversion graph."""

    name: str
    kind: str  # artifact kind: checkpoint, onnx, engine (``SUFFIX_KINDS`` maps file names to it)
    suffix: str  # what ``convert`` names a file of this format: <stem><suffix>
    precision: str | None  # fp32, fp16, int8; None: set by the stage's options (an engine)
    target: str  # what runs it (``TARGETS``)
    stage: str  # the stage that makes it
    parents: tuple[str, ...]  # the formats it is made from directly
    options: tuple[str, ...] = ()  # the keyword options ``convert`` hands that stage
    backends: tuple[str, ...] = ()  # runner backends that run it (``edgeopt.runtime.RUNNERS``); the first is the default
    triton_platform: str | None = None  # the Triton Inference Server platform that serves it; None: not servable
    quant: QuantForm | None = None  # an INT8 format's quantization form
    aliases: tuple[str, ...] = ()  # other file endings a file of this kind may have (``.pth``, ``.plan``)

    @property
    def for_tensorrt(self) -> bool:
        return self.target in ("any", "tensorrt")


_CALIBRATE = ("data", "num_images", "method", "batch_size", "seed", "calibration_dir")
# ONNX Runtime runs every ONNX row; onnx's pure-Python reference evaluator the float graphs (it has no
# DequantizeLinear before opset 19, and no com.microsoft QLinear* kernels); Triton serves ONNX with ONNX
# Runtime and engines as TensorRT plans
_FLOAT_ONNX = ("onnxruntime", "onnx-reference")
_QDQ = QuantForm("QDQ", "int8 symmetric per-tensor", "int8 symmetric per-channel (output-channel axis)")
# The CPU forms, chosen by measurement (benchmarks/README.md, "INT8 for ONNX Runtime's CPU kernels"):
# QOperator (fused QLinearConv kernels), uint8 activations, per-channel weights. Without VNNI, ORT's
# AVX2 u8 x s8 kernels add pairs of products into saturating int16 (255 * 127 * 2 overflows): 7-bit
# weights (reduce_range) cannot overflow, so int8-cpu is exact on any x86 CPU; int8-cpu-vnni keeps
# 8-bit weights, which only VNNI/AMX CPUs compute without saturation.
_CPU = QuantForm("QOperator", "uint8 asymmetric per-tensor", "int8 per-channel, 7-bit (reduce_range)", reduce_range=True)
_CPU_VNNI = QuantForm("QOperator", "uint8 asymmetric per-tensor", "int8 per-channel, 8-bit")
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("checkpoint", "checkpoint", ".pt", "fp32", "torch", "train", (), backends=("torch",), aliases=(".pth",)),
    Format("onnx", "onnx", ".onnx", "fp32", "any", "export", ("checkpoint",), ("data", "opset", "static_batch", "atol"),
           backends=_FLOAT_ONNX, triton_platform="onnxruntime_onnx"),
    Format("onnx-fp16", "onnx", ".fp16.onnx", "fp16", "tensorrt", "export", ("onnx",),
           backends=_FLOAT_ONNX, triton_platform="onnxruntime_onnx"),
    Format("int8-qdq", "onnx", ".int8.onnx", "int8", "tensorrt", "calibrate", ("onnx",),
           (*_CALIBRATE, "quantizer", "skip_first_last", "fallback", "ptq"),
           backends=("onnxruntime",), triton_platform="onnxruntime_onnx", quant=_QDQ),
    Format("int8-qdq-fp16", "onnx", ".int8-fp16.onnx", "int8", "tensorrt", "export", ("int8-qdq",),
           backends=("onnxruntime",), triton_platform="onnxruntime_onnx", quant=_QDQ),
    Format("int8-cpu", "onnx", ".cpu-int8.onnx", "int8", "cpu", "calibrate", ("onnx",), _CALIBRATE,
           backends=("onnxruntime",), triton_platform="onnxruntime_onnx", quant=_CPU),
    Format("int8-cpu-vnni", "onnx", ".cpu-vnni-int8.onnx", "int8", "cpu-vnni", "calibrate", ("onnx",), _CALIBRATE,
           backends=("onnxruntime",), triton_platform="onnxruntime_onnx", quant=_CPU_VNNI),
    # an engine's precision is its build options'; the ONNX it needs first (FP16 graph, Q/DQ, FP16
    # float part) depends on the TensorRT version, so its build plan asks convert for it
    Format("engine", "engine", ".engine", None, "tensorrt", "build-engine",
           ("onnx", "onnx-fp16", "int8-qdq", "int8-qdq-fp16"), ("build", "verify", "device"),
           backends=("tensorrt",), triton_platform="tensorrt_plan", aliases=(".plan", ".trt")),
)}
# the calibrate stage's ``target`` argument for each INT8 format it makes
CALIBRATE_TARGET = {f.name: f.target for f in FORMATS.values() if f.stage == "calibrate"}
# file ending -> artifact kind, for the model formats (``edgeopt.artifacts`` adds the other artifacts)
SUFFIX_KINDS = {s: f.kind for f in FORMATS.values() for s in ("." + f.suffix.rsplit(".", 1)[-1], *f.aliases)}


class ManifestFields(Protocol):
    """What ``format_of`` reads of a manifest (``edgeopt.artifacts.Manifest``)."""

    kind: str
    precision: str | None
    format: str | None
    extra: dict[str, Any]


def get_format(name: str) -> Format:
    """The row named ``name``; an unknown name is a one-line error with the closest row."""
    if name not in FORMATS:
        close = difflib.get_close_matches(name, FORMATS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"format {name!r} is unknown{hint}: use one of {', '.join(FORMATS)}")
    return FORMATS[name]


def format_of(manifest: ManifestFields) -> Format:
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
