"""FP16 conversions of an exported ONNX, each parity-checked and written with its manifest.

``convert_onnx_to_fp16``: an FP32 export -> FP16 weights and compute with FP32 I/O (what strongly
typed TensorRT 11.x needs for an FP16 engine). ``convert_qdq_float_to_fp16``: a Q/DQ INT8 ONNX ->
the same with its unquantized part in FP16 (what 8.6-10.x's FP16 builder flag does to an INT8
engine, put in the graph for 11.x).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifacts import Manifest, atomic_path, read_manifest, write_artifact_manifest
from edgeopt.data.presets import Preprocess
from edgeopt.errors import ArtifactError, VerificationError
from edgeopt.export.parity import INPUT_NAME, check_parity, parity_inputs
from edgeopt.formats import format_of

FP16_QDQ_OPSET = 19  # QuantizeLinear/DequantizeLinear take float16 scales from opset 19


def convert_onnx_to_fp16(src: str | Path, out: str | Path) -> Path:
    """FP32 ONNX artifact -> FP16 ONNX (FP32 I/O), parity-checked on random inputs."""
    import onnx

    src, out = Path(src), Path(out)
    manifest = read_manifest(src, expect_kind="onnx")
    if manifest.precision != "fp32":
        raise ArtifactError(f"{src}: is {manifest.precision}, expected an FP32 ONNX to convert")
    graph = to_fp16(onnx.load(str(src)))
    for prop in graph.metadata_props:
        if prop.key == "precision":
            prop.value = "fp16"
    parity = _save_checked(graph, src, out, manifest, emulate_qdq=False, tolerance=2e-2)
    new = dataclasses.replace(manifest, precision="fp16", format="onnx-fp16", parent=None, sha256=None,
                              metrics={"parity": parity}, created=Manifest(kind="x").created)
    write_artifact_manifest(out, new, parent=src)
    return out


def convert_qdq_float_to_fp16(src: str | Path, out: str | Path) -> Path:
    """Q/DQ INT8 ONNX (FP32 float part) -> the same Q/DQ with its float part in FP16, FP32 I/O.

    For strongly typed TensorRT (11.x), which runs every layer in the type its tensors have: the
    scales become float16 (opset 19), so each DequantizeLinear feeds FP16, and the layers left
    unquantized run in FP16 as the FP16 builder flag makes them run on 8.6-10.x. Parity-checked
    against the FP32-float Q/DQ on random inputs; the manifest records ``float_precision: fp16``."""
    import onnx
    from onnx import version_converter

    src, out = Path(src), Path(out)
    manifest = read_manifest(src, expect_kind="onnx")
    fmt = format_of(manifest)
    if fmt.name == "int8-qdq-fp16":
        raise ArtifactError(f"{src}: its float part is FP16 already")
    if fmt.name != "int8-qdq":
        raise ArtifactError(f"{src}: is not a Q/DQ INT8 ONNX for TensorRT; make one with edgeopt calibrate --target tensorrt")
    model = onnx.load(str(src))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < FP16_QDQ_OPSET:
        others = [o for o in model.opset_import if o.domain not in ("", "ai.onnx")
                  and any(n.domain == o.domain for n in model.graph.node)]
        del model.opset_import[:]
        model.opset_import.extend([onnx.helper.make_opsetid("", opset), *others])
        model = version_converter.convert_version(model, FP16_QDQ_OPSET)
    requantized = requantize_for_fp16_scales(model)
    # FP16 rounding moves some values across a quantization step: a looser bound than FP16 alone
    parity = _save_checked(to_fp16(model), src, out, manifest, emulate_qdq=True, tolerance=0.25)
    extra = {**manifest.extra, "float_precision": "fp16", "opset": max(opset, FP16_QDQ_OPSET),
             "fp16_requantized_weights": requantized}
    new = dataclasses.replace(manifest, parent=None, sha256=None, extra=extra, format="int8-qdq-fp16",
                              metrics={**manifest.metrics, "fp16_parity": parity}, created=Manifest(kind="x").created)
    write_artifact_manifest(out, new, parent=src)
    return out


def fp16_scale(scale: np.ndarray) -> np.ndarray:
    """What a Q/DQ scale becomes in float16: ONNX Runtime's converter raises magnitudes below 5.96e-8 (the
    smallest float16) to it and rounds the rest; below 6.1e-5 (the smallest normal) few bits are left."""
    from onnxruntime.transformers.float16 import convert_np_to_float16

    scale = np.asarray(scale, dtype=np.float32)
    return convert_np_to_float16(np.atleast_1d(scale)).astype(np.float32).reshape(scale.shape)


def requantize_for_fp16_scales(model: Any) -> list[str]:
    """Before the float part goes to FP16: each DequantizeLinear of constant INT8 weights gets the scale float16 can
    hold, and its weights are requantized against it (``round(q * s / s16)``, clipped to [-127, 127]), so the
    dequantized weights stay what calibration chose: a scale raised or rounded under FP16 (tiny per-channel scales
    of nearly-dead channels) would otherwise scale the stored INT8 values by the error. Activation scales are set to
    their float16 value too (a Q/DQ pair shares one, so the pair stays consistent). In place; returns the weights
    requantized."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    changed = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        scale_init = inits[node.input[1]]
        scale = numpy_helper.to_array(scale_init)
        if scale.dtype != np.float32:
            continue
        held = fp16_scale(scale)
        if np.array_equal(held, scale):
            continue
        weights = inits.get(node.input[0])
        if weights is not None and numpy_helper.to_array(weights).dtype == np.int8:
            q = numpy_helper.to_array(weights).astype(np.float64)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            if held.ndim == 1 and q.ndim > 0:
                shape[axis % q.ndim] = held.size
            ratio = (scale.astype(np.float64) / held.astype(np.float64)).reshape(shape if held.ndim == 1 else ())
            requantized = np.clip(np.round(q * ratio), -127, 127).astype(np.int8)
            if not np.array_equal(requantized, q.astype(np.int8)):
                weights.CopyFrom(numpy_helper.from_array(requantized, weights.name))
                changed.append(weights.name)
        scale_init.CopyFrom(numpy_helper.from_array(held.reshape(scale.shape).astype(np.float32), scale_init.name))
    return changed


def _save_checked(model: Any, src: Path, out: Path, manifest: Manifest, emulate_qdq: bool, tolerance: float) -> dict[str, Any]:
    """Save ``model`` to ``out`` atomically, once it agrees with ``src`` on random inputs (max |dlogit|
    within ``tolerance`` of the logit scale, 75 % top-1 agreement); the parity record."""
    import onnx

    from edgeopt.runtime.ort_runner import make_session

    preprocess = Preprocess.from_dict(manifest.preprocess)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
        # a static-batch export takes exactly its batch; a Q/DQ model runs emulated (as calibrate measured it)
        inputs, source = parity_inputs(preprocess, None, manifest.classes, count=manifest.extra.get("static_batch") or 8)
        optimize = not emulate_qdq
        reference = make_session(src, optimize=optimize).run(None, {INPUT_NAME: inputs})[0]
        candidate = make_session(tmp, optimize=optimize).run(None, {INPUT_NAME: inputs})[0]
        parity = check_parity(reference, candidate, tolerance * max(1.0, float(np.abs(reference).max())), 0.75, source)
    return parity.to_dict()


# ops ONNX Runtime's converter keeps in FP32 by default that TensorRT runs in FP16, and that edgeopt's graphs
# hold: equalization rewrites ReLU6 as Relu + Min, and a blocked Min put a Cast on each side of it, between a
# convolution and its QuantizeLinear: FP32 islands in a graph recorded as FP16
FP16_ALLOWED = ("Min", "Max")


def to_fp16(graph):
    """FP32 weights and compute -> FP16, I/O kept FP32, nodes in topological order."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    blocked = [op for op in DEFAULT_OP_BLOCK_LIST if op not in FP16_ALLOWED]
    converted = convert_float_to_float16(graph, keep_io_types=True, disable_shape_infer=False, op_block_list=blocked)
    _topological_sort(converted.graph)  # the converter appends its input Casts at the end
    return converted


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
