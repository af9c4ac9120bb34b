"""TensorRT for RTX in the build-engine stage: which GPUs an engine is built for, and its layer list.

TensorRT-RTX builds ahead of time, with or without a GPU here, for the compute capabilities named
(``BuildConfig.compute_capabilities``), else the GPU here, else NVIDIA's default set. Without a GPU
its engine cannot be deserialized for the inspector; the builder logs the layer list at VERBOSE
while it builds, and that list goes into the manifest instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from edgeopt.errors import EdgeoptWarning, MissingDependencyError
from edgeopt.trt.compat import RTX_DEFAULT_TARGETS, RTX_MIN_CC, RTX_NAME, rtx_targets_rtx
from edgeopt.trt.device import Device
from edgeopt.trt.plan import BuildConfig


def rtx_device_and_targets(trt, options: BuildConfig, device: Device | None, verifying: bool):
    """TensorRT-RTX: the GPU here (``device``, None on a machine without one) and the compute capabilities to build
    for: those named, else the GPU here, else NVIDIA's default set; checked before anything is converted."""
    gpu = device.info() if device is not None else None
    requested = options.compute_capabilities or (("current",) if gpu else ())
    if "current" in requested and gpu is None:
        raise MissingDependencyError(f"`compute_capability` current: no CUDA GPU is visible here; name the GPUs the "
                                     f"{RTX_NAME} engine is for (7.5, 8.0, 8.6, 8.9, 12.0, 12.1)")
    if gpu is not None and "current" in requested:
        cc = tuple(int(x) for x in gpu["compute_capability"].split(".")[:2])
        if cc < RTX_MIN_CC:
            raise MissingDependencyError(f"{gpu['gpu']} (sm {gpu['compute_capability']}): {RTX_NAME} builds for RTX-class GPUs "
                                         "of compute capability 7.5 and newer; name other GPUs with `compute_capability`")
    if verifying and gpu is None:
        raise MissingDependencyError(f"`verify` runs the engine, and {RTX_NAME} engines need an NVIDIA RTX-class GPU "
                                     "(sm 7.5+); none is visible here: build without `verify`, verify on the target GPU")
    chosen = rtx_targets_rtx(trt, requested)
    ccs = [gpu["compute_capability"] if cc == "current" else cc for cc, _ in chosen] or list(RTX_DEFAULT_TARGETS)
    return device, gpu, {"compute_capabilities": ccs, "default_targets": not chosen, "_members": [m for _, m in chosen]}


def logged_layers(text: str | None, onnx: Path) -> tuple[list | None, dict | None]:
    """The layer list TensorRT-RTX logged while building (what a build without a GPU can say of its layers)."""
    import onnx as onnx_lib

    from edgeopt.trt.layers import parse_logged_layers, summarize

    layers = parse_logged_layers(text or "")
    if not layers:
        warnings.warn(f"{RTX_NAME} logged no layer list for this build; the manifest has none", EdgeoptWarning, stacklevel=4)
        return None, None
    nodes = {n.name for n in onnx_lib.load(str(onnx), load_external_data=False).graph.node
             if n.name and n.op_type not in ("QuantizeLinear", "DequantizeLinear")}
    return layers, summarize(layers, nodes)


def set_compute_capabilities_rtx(config, members: list) -> None:
    """The GPUs a TensorRT-RTX engine is built for (``IBuilderConfig.setNbComputeCapabilities`` then
    ``setComputeCapability`` per index, NVIDIA's "CPU-Only AOT and TensorRT-RTX Engines")."""
    config.num_compute_capabilities = len(members)
    for i, member in enumerate(members):
        config.set_compute_capability(member, i)
