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
    require_kind,
    tool_versions,
    write_artifact_manifest,
)
from edgeopt.data import seen
from edgeopt.data.presets import Preprocess
from edgeopt.errors import ConfigError, VerificationError
from edgeopt.export.parity import INPUT_NAME, OUTPUT_NAME, Parity, check_parity, parity_inputs
from edgeopt.models.padding import freeze_same_padding

@dataclasses.dataclass
class ExportResult:
    path: Path
    parity: Parity
    ops: dict[str, int]
    precision: str
    opset: int


def write_metadata(model: Any, classes: list[str], preprocess: Preprocess, precision: str) -> None:
    """Class names, preprocessing and precision into the ONNX ``metadata_props`` (what a build of an
    ONNX without its manifest reads back)."""
    import onnx

    for key, value in (("classes", json.dumps(list(classes))), ("preprocess", json.dumps(preprocess.to_dict())),
                       ("edgeopt_version", __version__), ("precision", precision)):
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def export_onnx(checkpoint: str | Path, out: str | Path, *, opset: int = 17, static_batch: bool = False, fp16: bool = False,
                data: str | Path | None = None, batch_size: int = 1, atol: float | None = None) -> ExportResult:
    """Export ``checkpoint`` to ONNX, simplify with onnxslim, check, verify parity, write atomically.

    The graph gets a dynamic batch axis unless ``static_batch`` (then ``batch_size``); class names
    and preprocessing go into the ONNX ``metadata_props`` and the manifest. ``fp16`` converts
    weights and compute to FP16 while keeping FP32 inputs/outputs (for strongly typed TensorRT).
    """
    import onnx
    import torch

    from edgeopt.models.checkpoint import load_checkpoint
    from edgeopt.runtime.ort_runner import make_session

    checkpoint, out = Path(checkpoint), Path(out)
    require_kind(out, "onnx", "`out`")
    if not 13 <= opset <= 21:
        raise ConfigError(f"`opset` {opset}: use 13..21 (TensorRT 8.6+ reads 13-21; 17 is the default)")
    model, manifest = load_checkpoint(checkpoint)
    preprocess = Preprocess.from_dict(manifest.preprocess)
    with atomic_path(out) as tmp:
        # eval-mode export folds BatchNorm into the preceding convolutions
        trace_to_onnx(model, tmp, preprocess.size, batch=batch_size if static_batch else 1, dynamic=not static_batch,
                      opset=opset)
        graph = _simplify(onnx.load(str(tmp)))
        if fp16:
            from edgeopt.export.fp16 import to_fp16

            graph = to_fp16(graph)
        write_metadata(graph, manifest.classes, preprocess, "fp16" if fp16 else "fp32")
        onnx.save(graph, str(tmp))
        check_onnx(tmp)
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
        format="onnx-fp16" if fp16 else "onnx", tools=tool_versions("torch", "onnx", "onnxruntime", "onnxslim"),
        metrics={"parity": parity.to_dict(), **{k: v for k, v in manifest.metrics.items() if k.startswith("val_")}},
        extra={"opset": opset, "dynamic_batch": not static_batch, "static_batch": batch_size if static_batch else None,
               "input": INPUT_NAME, "output": OUTPUT_NAME, "ops": ops, **seen.carried(manifest.extra)},
    )
    write_artifact_manifest(out, out_manifest, parent=checkpoint)
    return ExportResult(out, parity, ops, precision, opset)


def trace_to_onnx(model: Any, path: Path, size: int, *, batch: int = 1, dynamic: bool = True, opset: int = 17) -> None:
    """Trace a copy of ``model`` (its TensorFlow-style padding frozen for ``size``, see
    ``edgeopt.models.padding``) to ONNX at ``path``: ``INPUT_NAME`` of ``batch`` x 3 x size x size in,
    ``OUTPUT_NAME`` out, a dynamic batch axis unless ``dynamic`` is False. The copy leaves ``model``
    itself as it was, for the parity check that follows."""
    import torch

    x = torch.zeros(batch, 3, size, size)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None
    traced = copy.deepcopy(model)
    freeze_same_padding(traced, size)
    with torch.no_grad():
        torch.onnx.export(traced, (x,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)


def check_onnx(path: Path) -> None:
    """``onnx.checker`` (full check) on the file at ``path``; a rejection is a one-line ``VerificationError``."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise VerificationError(f"onnx.checker rejected the export: {str(exc).splitlines()[0]}") from None


def _simplify(graph):
    import onnxslim

    slim = onnxslim.slim(graph)
    remaining = sum(1 for n in slim.graph.node if n.op_type == "BatchNormalization")
    if remaining:
        raise VerificationError(f"{remaining} BatchNormalization node(s) were not folded; export in eval mode")
    return slim
