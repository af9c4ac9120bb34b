"""Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and
Bias Correction", ICCV 2019, section 4.1) on the BN-folded ONNX graph, and the graph helpers it reads
the model with (``attr`` also serves ``quant.writers``).

For two consecutive convolutions A -> act -> B where A's output feeds only B, output channel i of A
is divided by ``s_i`` and input channel i of B multiplied by it, with ``s_i = sqrt(r1_i / r2_i)``, so
both ranges become ``sqrt(r1_i r2_i)``. ReLU is positively homogeneous, so the function is unchanged;
a ReLU6 (``Clip(0, 6)``) is rewritten as ``Relu`` then a per-channel ``Min``. Chains are swept until
the scales settle. (The module docstring of ``quant.ptq`` describes all three remedies.)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


class Graph:
    """Initializers as numpy arrays, producers and consumers of every tensor, of one ONNX graph."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.model = model
        graph = model.graph
        self.inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in graph.output}

    def sole_consumer(self, tensor: str) -> Any | None:
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None

    def set_init(self, name: str, value: np.ndarray) -> None:
        from onnx import numpy_helper

        for i, init in enumerate(self.model.graph.initializer):
            if init.name == name:
                self.model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value.astype(self.inits[name].dtype), name))
                self.inits[name] = value.astype(self.inits[name].dtype)
                return
        raise KeyError(name)

    def add_init(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.model.graph.initializer.append(numpy_helper.from_array(value, name))
        self.inits[name] = value
        return name


def attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def conv_weight(graph: Graph, node: Any) -> np.ndarray | None:
    if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in graph.inits:
        return None
    weight = graph.inits[node.input[1]]
    return weight if weight.ndim >= 3 else None


def _positive_homogeneous(graph: Graph, node: Any) -> float | None:
    """``inf`` for Relu, the upper bound for ``Clip(0, hi)``; None for anything that is not act(x / s) = act(x) / s."""
    if node.op_type == "Relu":
        return math.inf
    if node.op_type == "Clip" and len(node.input) >= 3 and node.input[1] in graph.inits and node.input[2] in graph.inits:
        lo, hi = float(graph.inits[node.input[1]]), float(graph.inits[node.input[2]])
        return hi if lo == 0.0 and hi > 0 else None
    return None


@dataclasses.dataclass
class _Pair:
    first: Any  # Conv A
    act: Any | None  # Relu / Clip between them, or None
    second: Any  # Conv B
    bound: float  # the activation's upper bound (inf for Relu or no activation)
    scale: np.ndarray  # cumulative s_i applied to A's output channels


def find_pairs(model: Any) -> list[_Pair]:
    """Conv -> (Relu | Clip(0, hi))? -> Conv chains where A's output reaches only B."""
    graph = Graph(model)
    pairs = []
    for node in model.graph.node:
        weight = conv_weight(graph, node)
        if weight is None or attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        act, nxt = None, graph.sole_consumer(node.output[0])
        bound = math.inf
        if nxt is not None and nxt.op_type in ("Relu", "Clip"):
            bound = _positive_homogeneous(graph, nxt)
            if bound is None:
                continue
            act, nxt = nxt, graph.sole_consumer(nxt.output[0])
        if nxt is None or conv_weight(graph, nxt) is None or nxt.input[0] != (act.output[0] if act else node.output[0]):
            continue
        second = graph.inits[nxt.input[1]]
        if second.shape[1] * attr(nxt, "group", 1) != weight.shape[0]:
            continue
        pairs.append(_Pair(node, act, nxt, bound, np.ones(weight.shape[0], np.float64)))
    return pairs


def _input_channel_ranges(weight: np.ndarray, groups: int) -> np.ndarray:
    """max |w| over everything that reads each input channel of a grouped conv (weights [O, I/g, ...])."""
    out_per_group, in_per_group = weight.shape[0] // groups, weight.shape[1]
    flat = np.abs(weight).reshape(groups, out_per_group, in_per_group, -1).max(axis=(1, 3))  # [g, I/g]
    return flat.reshape(-1)


def _scale_input_channels(weight: np.ndarray, groups: int, s: np.ndarray) -> np.ndarray:
    out_per_group, in_per_group = weight.shape[0] // groups, weight.shape[1]
    w = weight.reshape(groups, out_per_group, in_per_group, *weight.shape[2:]).astype(np.float64)
    w = w * s.reshape(groups, 1, in_per_group, *([1] * (weight.ndim - 2)))
    return w.reshape(weight.shape)


@dataclasses.dataclass
class EqualizeReport:
    pairs: int
    sweeps: int
    clips_rewritten: int
    layers: list[str]


def equalize(model: Any, max_sweeps: int = 20, tolerance: float = 1e-4) -> EqualizeReport:
    """Cross-layer equalization of every Conv pair (see the module docstring), in place."""
    import onnx

    pairs = find_pairs(model)
    graph = Graph(model)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        change = 0.0
        for pair in pairs:
            w1 = graph.inits[pair.first.input[1]].astype(np.float64)
            w2 = graph.inits[pair.second.input[1]].astype(np.float64)
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
            r2 = _input_channel_ranges(w2, attr(pair.second, "group", 1))
            s = np.ones_like(r1)
            ok = (r1 > 0) & (r2 > 0)
            s[ok] = np.sqrt(r1[ok] / r2[ok])
            change = max(change, float(np.max(np.abs(np.log(s)))))
            graph.set_init(pair.first.input[1], w1 / s.reshape(-1, *([1] * (w1.ndim - 1))))
            if len(pair.first.input) > 2 and pair.first.input[2] in graph.inits:
                graph.set_init(pair.first.input[2], graph.inits[pair.first.input[2]].astype(np.float64) / s)
            graph.set_init(pair.second.input[1], _scale_input_channels(w2, attr(pair.second, "group", 1), s))
            pair.scale *= s
        if change < tolerance:
            break
    rewritten = 0
    for pair in pairs:
        if pair.act is None or pair.act.op_type != "Clip" or np.allclose(pair.scale, 1.0):
            continue
        # Clip(x, 0, hi) on channels scaled by 1/S: Min(Relu(x), hi / S) per channel, exactly the same function
        clip = pair.act
        relu_out = clip.output[0] + "_eq_relu"
        bound = graph.add_init(clip.output[0] + "_eq_bound",
                               (pair.bound / pair.scale).astype(np.float32).reshape(-1, 1, 1))
        position = list(model.graph.node).index(clip)
        relu = onnx.helper.make_node("Relu", [clip.input[0]], [relu_out], name=(clip.name or clip.output[0]) + "_eq_relu")
        minimum = onnx.helper.make_node("Min", [relu_out, bound], [clip.output[0]], name=(clip.name or clip.output[0]) + "_eq_min")
        model.graph.node.remove(clip)
        model.graph.node.insert(position, minimum)
        model.graph.node.insert(position, relu)
        rewritten += 1
    return EqualizeReport(len(pairs), sweeps, rewritten, [p.first.name for p in pairs])
