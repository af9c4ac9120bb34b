"""Export stage: checkpoint -> ONNX (BN folded, simplified, checked, parity-verified)."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt import __version__
from edgeopt.artifacts import (
    Manifest,
    atomic_path,
    read_manifest,
    require_kind,
    tool_versions,
    write_artifact_manifest,
)
from edgeopt.data import seen
from edgeopt.data.presets import Preprocess
from edgeopt.errors import ArtifactError, ConfigError, VerificationError
from edgeopt.models.padding import freeze_same_padding

INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclasses.dataclass
class Parity:
    max_abs_diff: float
    top1_agreement: float
    images: int
    source: str  # "data" or "random"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ExportResult:
    path: Path
    parity: Parity
    ops: dict[str, int]
    precision: str
    opset: int


def parity_inputs(preprocess: Preprocess, data: Path | None, classes: list[str], count: int = 32, seed: int = 0) -> tuple[np.ndarray, str]:
    """Real images from ``data`` (a deterministic spread over classes) or seeded random inputs."""
    if data is not None:
        from edgeopt.data.folder import scan_folder, select_subset

        scan = scan_folder(data, classes=classes, allow_empty_classes=True)
        picked = select_subset(scan, min(count, len(scan.samples)), seed)
        return np.stack([preprocess.load(s.path) for s in picked]), "data"
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, 3, preprocess.size, preprocess.size)).astype(np.float32), "random"


def write_metadata(model: Any, classes: list[str], preprocess: Preprocess, precision: str) -> None:
    """Class names, preprocessing and precision into the ONNX ``metadata_props`` (what a build of an
    ONNX without its manifest reads back)."""
    import onnx

    for key, value in (("classes", json.dumps(list(classes))), ("preprocess", json.dumps(preprocess.to_dict())),
                       ("edgeopt_version", __version__), ("precision", precision)):
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def check_parity(reference: np.ndarray, candidate: np.ndarray, atol: float, min_agreement: float, source: str) -> Parity:
    """Compare logits; raise ``VerificationError`` beyond tolerance."""
    diff = float(np.abs(reference - candidate).max())
    agree = float((reference.argmax(1) == candidate.argmax(1)).mean())
    parity = Parity(diff, agree, len(reference), source)
    if diff > atol or agree < min_agreement:
        raise VerificationError(
            f"parity check failed: max |Δlogit| {diff:.3g} (tolerance {atol:g}), top-1 agreement {agree:.2%} "
            f"(needs {min_agreement:.0%}); the exported graph does not reproduce the model"
        )
    return parity


def export_onnx(checkpoint: str | Path, out: str | Path, *, opset: int = 17, static_batch: bool = False, fp16: bool = False,
                data: str | Path | None = None, batch_size: int = 1, atol: float | None = None) -> ExportResult:
    """Export ``checkpoint`` to ONNX, simplify with onnxslim, check, verify parity, write atomically.

    The graph gets a dynamic batch axis unless ``static_batch`` (then ``batch_size``); class names
    and preprocessing go into the ONNX ``metadata_props`` and the manifest. ``fp16`` converts
    weights and compute to FP16 while keeping FP32 inputs/outputs (for strongly typed TensorRT).
    """
    import onnx
    import torch

    from edgeopt.checkpoint import load_checkpoint
    from edgeopt.runtime.ort_runner import make_session

    checkpoint, out = Path(checkpoint), Path(out)
    require_kind(out, "onnx", "--out")
    if not 13 <= opset <= 21:
        raise ConfigError(f"--opset {opset}: use 13..21 (TensorRT 8.6+ reads 13-21; 17 is the default)")
    model, manifest = load_checkpoint(checkpoint)
    preprocess = Preprocess.from_dict(manifest.preprocess)
    x = torch.zeros(batch_size if static_batch else 1, 3, preprocess.size, preprocess.size)
    dynamic = None if static_batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    traced = copy.deepcopy(model)  # the parity check compares the export with the model as trained
    freeze_same_padding(traced, preprocess.size)
    with atomic_path(out) as tmp:
        with torch.no_grad():
            # eval-mode export folds BatchNorm into the preceding convolutions
            torch.onnx.export(traced, (x,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)
        graph = _simplify(onnx.load(str(tmp)))
        if fp16:
            graph = _to_fp16(graph)
        write_metadata(graph, manifest.classes, preprocess, "fp16" if fp16 else "fp32")
        onnx.save(graph, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise VerificationError(f"onnx.checker rejected the export: {str(exc).splitlines()[0]}") from None
        inputs, source = parity_inputs(preprocess, Path(data) if data else None, manifest.classes,
                                       count=batch_size if static_batch else 32)
        with torch.no_grad():
            reference = model(torch.from_numpy(inputs)).numpy()
        session = make_session(tmp)
        candidate = session.run(None, {INPUT_NAME: inputs})[0].astype(np.float32)
        scale = max(1.0, float(np.abs(reference).max()))
        tolerance = atol if atol is not None else (2e-2 if fp16 else 1e-3) * scale
        parity = check_parity(reference, candidate, tolerance, 0.95 if fp16 else 1.0, source)
        ops = dict(Counter(n.op_type for n in graph.graph.node))
    precision = "fp16" if fp16 else "fp32"
    out_manifest = Manifest(
        kind="onnx", classes=manifest.classes, preprocess=preprocess.to_dict(), arch=manifest.arch, precision=precision,
        tools=tool_versions("torch", "onnx", "onnxruntime", "onnxslim"),
        metrics={"parity": parity.to_dict(), **{k: v for k, v in manifest.metrics.items() if k.startswith("val_")}},
        extra={"opset": opset, "dynamic_batch": not static_batch, "static_batch": batch_size if static_batch else None,
               "input": INPUT_NAME, "output": OUTPUT_NAME, "ops": ops, **seen.carried(manifest.extra)},
    )
    write_artifact_manifest(out, out_manifest, parent=checkpoint)
    return ExportResult(out, parity, ops, precision, opset)


def _simplify(graph):
    import onnxslim

    slim = onnxslim.slim(graph)
    remaining = sum(1 for n in slim.graph.node if n.op_type == "BatchNormalization")
    if remaining:
        raise VerificationError(f"{remaining} BatchNormalization node(s) were not folded; export in eval mode")
    return slim


def _to_fp16(graph):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(graph, keep_io_types=True, disable_shape_infer=False)
    _topological_sort(converted.graph)  # the converter appends its input Casts at the end
    return converted


FP16_QDQ_OPSET = 19  # QuantizeLinear/DequantizeLinear take float16 scales from opset 19


def convert_qdq_float_to_fp16(src: str | Path, out: str | Path) -> Path:
    """Q/DQ INT8 ONNX (FP32 float part) -> the same Q/DQ with its float part in FP16, FP32 I/O.

    For strongly typed TensorRT (11.x), which runs every layer in the type its tensors have: the
    scales become float16 (opset 19), so each DequantizeLinear feeds FP16, and the layers left
    unquantized run in FP16 as the FP16 builder flag makes them run on 8.6-10.x. Parity-checked
    against the FP32-float Q/DQ on random inputs; the manifest records ``float_precision: fp16``."""
    import onnx
    from onnx import version_converter

    from edgeopt.runtime.ort_runner import make_session

    src, out = Path(src), Path(out)
    manifest = read_manifest(src, expect_kind="onnx")
    if manifest.precision != "int8" or manifest.extra.get("quantization", {}).get("target", "tensorrt") != "tensorrt":
        raise ArtifactError(f"{src}: is not a Q/DQ INT8 ONNX for TensorRT; make one with edgeopt calibrate --target tensorrt")
    if manifest.extra.get("float_precision") == "fp16":
        raise ArtifactError(f"{src}: its float part is FP16 already")
    model = onnx.load(str(src))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < FP16_QDQ_OPSET:
        others = [o for o in model.opset_import if o.domain not in ("", "ai.onnx")
                  and any(n.domain == o.domain for n in model.graph.node)]
        del model.opset_import[:]
        model.opset_import.extend([onnx.helper.make_opsetid("", opset), *others])
        model = version_converter.convert_version(model, FP16_QDQ_OPSET)
    model = _to_fp16(model)
    preprocess = Preprocess.from_dict(manifest.preprocess)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
        inputs, source = parity_inputs(preprocess, None, manifest.classes, count=manifest.extra.get("static_batch") or 8)
        reference = make_session(src, optimize=False).run(None, {INPUT_NAME: inputs})[0]  # emulated Q/DQ, as calibrate
        candidate = make_session(tmp, optimize=False).run(None, {INPUT_NAME: inputs})[0]
        # FP16 rounding moves some values across a quantization step: a looser bound than FP16 alone
        parity = check_parity(reference, candidate, 0.25 * max(1.0, float(np.abs(reference).max())), 0.75, source)
    extra = {**manifest.extra, "float_precision": "fp16", "opset": max(opset, FP16_QDQ_OPSET)}
    new = dataclasses.replace(manifest, parent=None, sha256=None, extra=extra,
                              metrics={**manifest.metrics, "fp16_parity": parity.to_dict()}, created=Manifest(kind="x").created)
    write_artifact_manifest(out, new, parent=src)
    return out


def _topological_sort(graph) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (Kahn)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise VerificationError("the FP16 graph has a cycle or a dangling input; cannot order its nodes")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if all(n is not r for r in ready)]
    nodes = [type(n)() for n in ordered]
    for copy, node in zip(nodes, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)


def convert_onnx_to_fp16(src: str | Path, out: str | Path) -> Path:
    """FP32 ONNX artifact -> FP16 ONNX (FP32 I/O), parity-checked on random inputs; used by build-engine."""
    import onnx

    from edgeopt.runtime.ort_runner import make_session

    src, out = Path(src), Path(out)
    manifest = read_manifest(src, expect_kind="onnx")
    if manifest.precision != "fp32":
        raise ArtifactError(f"{src}: is {manifest.precision}, expected an FP32 ONNX to convert")
    preprocess = Preprocess.from_dict(manifest.preprocess)
    graph = _to_fp16(onnx.load(str(src)))
    for prop in graph.metadata_props:
        if prop.key == "precision":
            prop.value = "fp16"
    with atomic_path(out) as tmp:
        onnx.save(graph, str(tmp))
        # a static-batch export takes exactly its batch
        inputs, source = parity_inputs(preprocess, None, manifest.classes, count=manifest.extra.get("static_batch") or 8)
        reference = make_session(src).run(None, {INPUT_NAME: inputs})[0]
        candidate = make_session(tmp).run(None, {INPUT_NAME: inputs})[0]
        parity = check_parity(reference, candidate, 2e-2 * max(1.0, float(np.abs(reference).max())), 0.75, source)
    new = dataclasses.replace(manifest, precision="fp16", parent=None, sha256=None,
                              metrics={"parity": parity.to_dict()}, created=Manifest(kind="x").created)
    write_artifact_manifest(out, new, parent=src)
    return out
