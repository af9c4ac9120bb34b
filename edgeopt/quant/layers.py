"""The layers post-training quantization rewrites: a Conv or Gemm of the BN-folded ONNX graph whose
weight gets per-output-channel symmetric int8 and whose bias stays float (what bias correction and
AdaRound work on, layer by layer)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeopt.quant.equalize import Graph, attr, conv_weight

QMAX = 127  # symmetric int8 weights: [-127, 127] (ONNX Runtime's and TensorRT's symmetric range)


@dataclasses.dataclass
class Layer:
    """A Conv or Gemm (transB=1) whose weight gets per-output-channel int8 and whose bias stays float."""

    node: Any
    weight: np.ndarray
    bias: np.ndarray | None
    input_name: str

    @property
    def name(self) -> str:
        return self.node.name

    def scale(self) -> np.ndarray:
        absmax = np.abs(self.weight).reshape(self.weight.shape[0], -1).max(axis=1).astype(np.float64)
        scale = absmax / QMAX
        return np.where(scale < np.finfo(np.float32).tiny, 1.0, scale)

    def forward(self, x, weight):  # torch tensors
        import torch.nn.functional as F

        if self.node.op_type == "Gemm":
            return F.linear(x.flatten(1) if x.ndim > 2 else x, weight)
        pads = list(attr(self.node, "pads", [0] * (2 * (weight.ndim - 2))))
        half = len(pads) // 2
        torch_pads = [p for i in reversed(range(half)) for p in (pads[i], pads[i + half])]  # F.pad: last dim first
        if any(torch_pads):
            x = F.pad(x, torch_pads)
        conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[weight.ndim]
        return conv(x, weight, stride=list(attr(self.node, "strides", [1] * (weight.ndim - 2))),
                    dilation=list(attr(self.node, "dilations", [1] * (weight.ndim - 2))), groups=attr(self.node, "group", 1))


def quantizable_layers(model: Any, names: Sequence[str] | None = None) -> list[Layer]:
    graph = Graph(model)
    layers = []
    for node in model.graph.node:
        if names is not None and node.name not in names:
            continue
        if node.op_type == "Conv" and conv_weight(graph, node) is not None:
            if attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                continue
        elif not (node.op_type == "Gemm" and attr(node, "transB", 0) == 1 and attr(node, "alpha", 1.0) == 1.0
                  and attr(node, "beta", 1.0) == 1.0 and attr(node, "transA", 0) == 0 and node.input[1] in graph.inits):
            continue
        bias = graph.inits.get(node.input[2]) if len(node.input) > 2 else None
        layers.append(Layer(node, graph.inits[node.input[1]], bias, node.input[0]))
    return layers
