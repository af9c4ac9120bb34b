"""What ``build-engine`` needs to know about an ONNX, whoever exported it.

An edgeopt ONNX has a manifest (classes, preprocessing, precision, its sha256). An ONNX from
elsewhere is accepted like trtexec accepts it: classes and preprocessing come from the ONNX
``metadata_props`` where edgeopt wrote them, else from ``--img-size/--mean/--std/--classes``, else
they are recorded as unknown (with a warning): the engine builds, and ``eval``/``bench`` of it
stop with a line naming those flags.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, Protocol

from edgeopt.artifacts import Manifest, manifest_path, read_manifest, sha256_file
from edgeopt.data.presets import Preprocess
from edgeopt.errors import ArtifactError, ConfigError, EdgeoptWarning

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


@dataclasses.dataclass(frozen=True)
class OnnxModelInfo:
    path: Path
    sha256: str
    manifest: Manifest | None  # None for an ONNX edgeopt did not export
    classes: list[str]
    preprocess: dict[str, Any]  # {} when unknown
    precision: str  # fp32, fp16 or int8 (Q/DQ)
    input_name: str
    input_shape: tuple[int | None, ...]  # None for a dynamic dimension
    output_name: str
    source: str  # where classes/preprocessing came from: manifest, metadata, flags or unknown
    io: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # {"input"|"output": {name, dtype, shape}}
    float_precision: str | None = None  # an INT8 (Q/DQ) ONNX's float part: fp16 when its scales are float16


class DescribesInput(Protocol):
    """What the user says of an ONNX that cannot say it itself (``BuildConfig``, ``InputDescription``)."""

    img_size: int | None
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    classes_file: Path | None


@dataclasses.dataclass(frozen=True)
class InputDescription:
    """Input size, mean, std and a class-names file for an ONNX without a manifest or metadata."""

    img_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    classes_file: Path | None = None


def read_onnx_info(path: str | Path, options: DescribesInput | None = None,
                   needed_by: str = "eval and bench of the engine") -> OnnxModelInfo:
    """Read an ONNX's I/O and precision, and its classes/preprocessing from the best source there is
    (its manifest, its ``metadata_props``, then ``options``; ``needed_by`` says who will miss them)."""
    import onnx

    path = Path(path)
    manifest = read_manifest(path, expect_kind="onnx") if manifest_path(path).exists() else None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a file that is not ONNX
        raise ArtifactError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ArtifactError(f"{path}: edgeopt builds classifiers with one input and one output; this ONNX has "
                            f"{[v.name for v in inputs]} -> {[v.name for v in graph.output]}")
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                  for d in inputs[0].type.tensor_type.shape.dim)
    meta = {p.key: p.value for p in model.metadata_props}
    precision = _precision(model, manifest, meta)
    if manifest is not None:
        classes, preprocess, source = list(manifest.classes), dict(manifest.preprocess), "manifest"
    elif "classes" in meta and "preprocess" in meta:
        try:
            classes, preprocess = list(json.loads(meta["classes"])), dict(json.loads(meta["preprocess"]))
        except (ValueError, TypeError):
            raise ArtifactError(f"{path}: its metadata_props 'classes'/'preprocess' are not valid JSON") from None
        Preprocess.from_dict(preprocess)
        source = "metadata"
    else:
        classes, preprocess, source = _from_flags(path, shape, options or InputDescription(), needed_by)
    io = {role: {"name": v.name, "dtype": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type),
                 "shape": [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in v.type.tensor_type.shape.dim]}
          for role, v in (("input", inputs[0]), ("output", graph.output[0]))}
    return OnnxModelInfo(path, manifest.sha256 if manifest and manifest.sha256 else sha256_file(path), manifest, classes,
                         preprocess, precision, inputs[0].name, shape, graph.output[0].name, source, io,
                         _float_part(model) if precision == "int8" else None)


def _float_part(model) -> str:
    """fp16 when the DequantizeLinear scales are float16 (the dequantized tensors, and so the float
    layers of a strongly typed network, are FP16), else fp32."""
    from onnx import TensorProto

    types = {i.name: i.data_type for i in model.graph.initializer}
    types.update({n.output[0]: n.attribute[0].t.data_type for n in model.graph.node
                  if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    scales = [types.get(n.input[1]) for n in model.graph.node if n.op_type == "DequantizeLinear" and len(n.input) > 1]
    return "fp16" if scales and all(t == TensorProto.FLOAT16 for t in scales) else "fp32"


def _precision(model, manifest: Manifest | None, meta: dict[str, str]) -> str:
    if manifest is not None and manifest.precision:
        return manifest.precision
    if any(n.op_type in QDQ_OPS for n in model.graph.node):
        return "int8"
    if meta.get("precision") in ("fp32", "fp16"):
        return meta["precision"]
    from onnx import TensorProto

    halves = [i.data_type for i in model.graph.initializer] + [v.type.tensor_type.elem_type for v in model.graph.input]
    return "fp16" if TensorProto.FLOAT16 in halves else "fp32"


def _from_flags(path: Path, shape: tuple[int | None, ...], o: DescribesInput, needed_by: str) -> tuple[list[str], dict, str]:
    classes: list[str] = []
    if o.classes_file is not None:
        try:
            classes = [line.strip() for line in Path(o.classes_file).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise ConfigError(f"`classes` {o.classes_file}: cannot read it ({exc.strerror})") from None
        if not classes:
            raise ConfigError(f"`classes` {o.classes_file} is empty: put one class name per line")
    preprocess: dict[str, Any] = {}
    if o.img_size is not None or o.mean is not None or o.std is not None:
        if o.img_size is None or o.mean is None or o.std is None:
            raise ConfigError("`img_size`, `mean` and `std` go together: pass all three to describe the model's input")
        spatial = [d for d in shape[2:4] if d is not None]
        if spatial and any(d != o.img_size for d in spatial):
            raise ConfigError(f"`img_size` {o.img_size} does not match the ONNX input {list(shape)}")
        preprocess = Preprocess(size=o.img_size, mean=o.mean, std=o.std).to_dict()
    missing = [what for what, have in (("classes (`classes` FILE)", classes),
                                       ("preprocessing (`img_size`, `mean`, `std`)", preprocess)) if not have]
    if missing:
        warnings.warn(f"{path.name} has no edgeopt manifest or metadata: its {' and '.join(missing)} are recorded as "
                      f"unknown; {needed_by} will need them", EdgeoptWarning, stacklevel=3)
    return classes, preprocess, "flags" if classes or preprocess else "unknown"
