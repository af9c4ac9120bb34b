"""Every layer of a built engine, from TensorRT's engine inspector, mapped back to ONNX node names.

Engines are built with ``ProfilingVerbosity.DETAILED`` (trtexec's ``--profilingVerbosity=detailed``), so
``EngineInspector.get_engine_information(LayerInformationFormat.JSON)`` lists each layer with its type,
its input/output formats, its tactic and its ``Metadata``. The format is the one NVIDIA's
trt-engine-explorer reads (NVIDIA/TensorRT ``tools/experimental/trt-engine-explorer/trex``):
``{"Layers": [{"Name", "LayerType", "Inputs": [{"Format/Datatype", ...}], "Outputs", "TacticName",
"TacticValue", "Metadata"}], ...}``; 11.x splits ``Format/Datatype`` into ``Datatype`` and ``Format``
(NVIDIA's 10.x -> 11.x migration guide, IEngineInspector), as TensorRT-RTX's log does. A dynamic-shape
engine's inspector reports every tensor as "N/A due to dynamic shapes" unless it is given an execution
context with the shapes set (``NvInferRuntime.h`` v10.13.3, ``IEngineInspector::setExecutionContext``;
trtexec and Polygraphy set one), so the inspector here gets one at the profile's opt shape.
TensorRT-RTX builds without a GPU cannot deserialize the engine: their layers come from the list the
builder logs at VERBOSE (``Name: ..., LayerType: ..., Inputs: [ { ..., Datatype: Float, Format: ... }],
..., Metadata: [ONNX Layer: ...]``). Since TensorRT 8.6 the ONNX parser writes each fused node as
``[ONNX Layer: <node name>]`` into ``Metadata``, joined by ``\\x1e`` or ``\\x1f``; older engines and
layers without it are mapped by their name's `` + ``-joined parts.
"""

from __future__ import annotations

import json
import re
from typing import Any

_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]\x1e\x1f]*?)(?: \| Local Function:[^\]]*)?\]")
# trex's activations.py: the data type is the word of Format/Datatype that names one
_TYPES = (("FP32", "FP32"), ("Float", "FP32"), ("FP16", "FP16"), ("Half", "FP16"), ("BFloat16", "BF16"),
          ("Int8", "INT8"), ("INT8", "INT8"), ("FP8", "FP8"), ("Int32", "INT32"), ("INT32", "INT32"),
          ("Int64", "INT64"), ("UInt8", "UINT8"), ("BOOL", "BOOL"), ("Bool", "BOOL"))


def data_type(format_datatype: str) -> str:
    """``"Four wide channel vectorized row major Int8 format"`` -> ``"INT8"``."""
    words = set(format_datatype.replace(".", "").split())
    return next((name for word, name in _TYPES if word in words), "?")


def _datatype(tensor: dict[str, Any]) -> str:
    """A tensor's data type text: 8.6-10.x ``Format/Datatype``, 11.x ``Datatype``."""
    return str(tensor.get("Datatype") or tensor.get("Format/Datatype") or "")


_LOGGED_TENSORS = re.compile(r"(Inputs|Outputs): \[(.*?)\](?:, (?:Constants|Outputs|TacticName))")
_LOGGED_TYPE = re.compile(r"Datatype: ([^,}]+)")


def parse_logged_layers(text: str) -> list[dict[str, Any]]:
    """TensorRT-RTX's VERBOSE ``Layers:`` log of a build -> the records ``parse_layers`` gives."""
    layers = []
    for line in text.splitlines():
        if not line.startswith("Name: "):
            continue
        name = line[len("Name: "):].split(", LayerType: ", 1)[0]
        kind = re.search(r", LayerType: ([^,]*),", line)
        tensors = {which: [data_type(t.strip()) for t in _LOGGED_TYPE.findall(body)]
                   for which, body in _LOGGED_TENSORS.findall(line)}
        tactic = re.search(r"TacticName: ([^,]*),", line)
        meta = line.split(", Metadata: ", 1)[1] if ", Metadata: " in line else ""
        inputs, outputs = tensors.get("Inputs", []), tensors.get("Outputs", [])
        layers.append({
            "name": name, "type": kind.group(1) if kind else "?",
            "precision": inputs[0] if inputs else (outputs[0] if outputs else "?"),
            "inputs": inputs, "outputs": outputs, "tactic": (tactic.group(1) if tactic else "") or None,
            "reformat": False, "onnx": _ONNX_LAYER.findall(meta),
        })
    return layers


def parse_layers(engine_json: str, onnx_nodes: set[str]) -> list[dict[str, Any]]:
    """The inspector's JSON -> one record per layer: name, type, precision, formats, tactic, whether
    it is a reformat, and the ONNX nodes it runs."""
    try:
        raw = json.loads(engine_json)
    except ValueError:
        return []
    layers = []
    for layer in raw.get("Layers", []):
        if isinstance(layer, str):  # LAYER_NAMES_ONLY: names only
            layer = {"Name": layer}
        name = str(layer.get("Name", ""))
        meta = str(layer.get("Metadata", ""))
        nodes = _ONNX_LAYER.findall(meta) or [part for part in re.split(r" \+ |[\x1e\x1f]", name) if part in onnx_nodes]
        inputs = [data_type(_datatype(t)) for t in layer.get("Inputs", [])]
        outputs = [data_type(_datatype(t)) for t in layer.get("Outputs", [])]
        kind = str(layer.get("LayerType", "?"))
        layers.append({
            "name": name, "type": kind,
            # trex's Layer.precision: the type of its first input (a layer's compute precision)
            "precision": inputs[0] if inputs else (outputs[0] if outputs else "?"),
            "inputs": inputs, "outputs": outputs,
            "tactic": layer.get("TacticName") or layer.get("TacticValue"),
            "reformat": kind == "Reformat" or name.startswith("Reformatting CopyNode"),
            "onnx": nodes,
        })
    return layers


def summarize(layers: list[dict[str, Any]], onnx_nodes: set[str]) -> dict[str, Any]:
    """Counts per precision, reformat layers, and ONNX nodes no layer names (fused away or renamed)."""
    precision: dict[str, int] = {}
    for layer in layers:
        if not layer["reformat"]:
            precision[layer["precision"]] = precision.get(layer["precision"], 0) + 1
    mapped = {n for layer in layers for n in layer["onnx"]}
    return {"layers": len(layers), "reformats": sum(layer["reformat"] for layer in layers), "precision": precision,
            "onnx_nodes": len(onnx_nodes), "onnx_nodes_mapped": len(mapped & onnx_nodes)}


def inspect_engine(trt, logger, data: bytes, dla_core: int | None = None) -> str | None:
    """The engine's layer list as the inspector's JSON (None when this engine cannot be inspected).

    The inspector gets an execution context with every input at its profile's opt shape: without one,
    a dynamic-shape engine's formats and types read "N/A due to dynamic shapes"."""
    runtime = trt.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = dla_core  # a DLA engine deserializes onto its core (trtexec: setDLACore)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        return None
    inspector = engine.create_engine_inspector()
    if inspector is None:
        return None
    context = engine.create_execution_context()
    if context is not None:
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                context.set_input_shape(name, engine.get_tensor_profile_shape(name, 0)[1])
        inspector.execution_context = context
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)
