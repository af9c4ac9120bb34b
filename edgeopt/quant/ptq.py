"""Post-training quantization that suits depthwise-separable nets, on the BN-folded ONNX graph.

Three remedies, each an option of ``edgeopt calibrate`` (TensorRT target), applied in this order:

- **Cross-layer equalization** (Nagel et al., "Data-Free Quantization Through Weight Equalization
  and Bias Correction", ICCV 2019, section 4.1). For two consecutive convolutions A -> act -> B
  where A's output feeds only B, output channel i of A is divided by ``s_i`` and input channel i of
  B multiplied by it, with ``s_i = sqrt(r1_i / r2_i)`` (``r1_i``: range of A's output channel i,
  ``r2_i``: range of B's weights on input channel i), so both ranges become ``sqrt(r1_i r2_i)``.
  ReLU is positively homogeneous, so the function is unchanged. A ReLU6 (``Clip(0, 6)``) is not: its
  bound becomes ``6 / s_i`` per channel, so such a Clip is rewritten as ``Relu`` then ``Min`` with a
  per-channel bound, which computes exactly what the original did. Chains (A -> B -> C) are swept
  until the scales settle, as the paper does.
- **Bias correction** (same paper, section 4.2, in its empirical form): for each quantized layer the
  mean output error over the calibration images, per output channel, of the quantized layer
  (int8 weights, input quantized at its calibrated range) against the float one, subtracted from
  the layer's bias.
- **AdaRound** (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization",
  ICML 2020): each weight's rounding (down or up) is learned per layer to minimise the layer's output
  error on the calibration images, with the rectified sigmoid ``h(V)`` (zeta 1.1, gamma -0.1), the
  regulariser ``sum(1 - |2h - 1|^beta)`` with beta annealed from 20 to 2 after a 20 % warm-up,
  lambda 0.01, Adam at 1e-2 (the paper's section 5 settings, fewer iterations). The learned
  rounding is kept only where its reconstruction error on the calibration images is below nearest
  rounding's, so it never does worse than nearest rounding on its own loss.

Equalization and the ONNX graph helpers live in ``edgeopt.quant.equalize``, the quantizable layers in
``edgeopt.quant.layers``, AdaRound in ``edgeopt.quant.adaround``; bias correction and the per-layer pass here. The scales stay TensorRT's (``edgeopt.quant.writers.check_qdq``): int8 symmetric weights per output
channel, ``max|w| / 127``; AdaRound picks which of the two neighbouring integers each weight takes
at that scale and writes those integers into the Q/DQ model ONNX Runtime's writer made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeopt.errors import VerificationError
from edgeopt.quant.adaround import AdaroundResult, adaround_layer
from edgeopt.quant.equalize import Graph
from edgeopt.quant.layers import QMAX, Layer, quantizable_layers
from edgeopt.settings import check_settings, setting



@dataclasses.dataclass(frozen=True)
class PtqConfig:
    """What post-training quantization does beyond calibrating ranges (all off: plain calibration)."""

    equalize: bool = setting(False, help="Cross-layer equalization of consecutive convolutions first (exact in FP32).")
    bias_correction: bool = setting(False, help="Remove each layer's mean INT8 output error on the calibration images.")
    adaround: bool = setting(False, help="Learn each weight's rounding per layer on the calibration images (AdaRound).")
    adaround_iterations: int = setting(500, low=1, high=1_000_000, help="AdaRound steps per layer.")
    adaround_images: int = setting(256, low=1, high=100_000, help="Calibration images AdaRound and bias correction use.")
    seed: int = setting(0, low=0, high=2**32 - 1, help="Seed of the calibration subset and of AdaRound.")

    def __post_init__(self) -> None:
        check_settings(self)

    @property
    def enabled(self) -> bool:
        return self.equalize or self.bias_correction or self.adaround

    def to_dict(self) -> dict[str, Any]:
        return {"equalize": self.equalize, "bias_correction": self.bias_correction, "adaround": self.adaround,
                **({"adaround_iterations": self.adaround_iterations, "adaround_images": self.adaround_images}
                   if self.adaround else {})}


# -- per-layer reconstruction: bias correction here, AdaRound in quant.adaround -------------------
def corrected_bias(layer: Layer, x_fp32, x_quant, weight_int: np.ndarray) -> tuple[np.ndarray, float]:
    """The bias that removes the quantized layer's mean output error per output channel, and the
    largest |mean error| it removes, over the given inputs."""
    import torch

    w = torch.from_numpy(layer.weight.astype(np.float32))
    s = torch.from_numpy(layer.scale().astype(np.float32)).reshape(-1, *([1] * (w.ndim - 1)))
    wq = s * torch.from_numpy(weight_int.astype(np.float32))
    with torch.no_grad():
        total, count = None, 0
        for i in range(0, x_fp32.shape[0], 64):
            diff = layer.forward(x_quant[i:i + 64], wq) - layer.forward(x_fp32[i:i + 64], w)
            dims = [0] + list(range(2, diff.ndim))
            part = diff.double().sum(dim=dims)
            total = part if total is None else total + part
            count += diff.numel() // diff.shape[1]
        mean_error = (total / count).numpy()
    bias = layer.bias.astype(np.float64) if layer.bias is not None else np.zeros(layer.weight.shape[0])
    return (bias - mean_error).astype(np.float32), float(np.abs(mean_error).max())


def nearest_int(layer: Layer) -> np.ndarray:
    s = layer.scale().reshape(-1, *([1] * (layer.weight.ndim - 1)))
    return np.clip(np.round(layer.weight.astype(np.float64) / s), -QMAX, QMAX).astype(np.int8)


class _Taps:
    """One ONNX Runtime session over a model with extra tensors as outputs (graph optimizations off, so
    every tensor is as in the graph); ``values(name)`` runs only what that tensor needs."""

    def __init__(self, model: Any, tensors: Sequence[str]) -> None:
        import onnx
        import onnxruntime as ort

        model = copy_model(model)
        existing = {o.name for o in model.graph.output}
        for name in tensors:
            if name not in existing:
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def values(self, name: str, batches: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([self.session.run([name], {self.input_name: b})[0] for b in batches])


def copy_model(model: Any) -> Any:
    import onnx

    clone = onnx.ModelProto()
    clone.CopyFrom(model)
    return clone


@dataclasses.dataclass
class LayerReport:
    name: str
    op: str
    adaround: AdaroundResult | None = None
    bias_error_before: float | None = None  # largest |mean output error| per channel, over the calibration images

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, **({"adaround": dataclasses.asdict(self.adaround)} if self.adaround else {}),
                **({"bias_mean_error_before": self.bias_error_before} if self.bias_error_before is not None else {})}


def reconstruct(model: Any, quantized: Any, batches: Sequence[np.ndarray], options: PtqConfig,
                expected_scales: dict[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], list[LayerReport]]:
    """AdaRound and/or bias correction of every quantizable layer, one layer after another in graph order.

    ``model`` is the FP32 graph, ``quantized`` the Q/DQ model written from it with nearest rounding.
    Each layer's quantized input is read from ``quantized`` with every earlier layer already
    corrected (so a layer also makes up for the error that reaches it, as AIMET's empirical bias
    correction and AdaRound do); its target is the FP32 layer on the FP32 input. Corrected biases
    go into both models in place (the Q/DQ writer keeps biases in float under the same names);
    returns ``{layer name: int8 weights}`` where AdaRound's rounding was kept, and a report."""
    import torch

    layers = quantizable_layers(model)
    fp32_graph, q_graph = Graph(model), Graph(quantized)
    q_nodes = {n.name: n for n in quantized.graph.node}
    count, picked = 0, []
    for batch in batches:  # the first adaround_images calibration images
        if count >= options.adaround_images:
            break
        picked.append(batch[:options.adaround_images - count])
        count += len(picked[-1])
    fp32_taps = _Taps(model, [layer.input_name for layer in layers])
    int_weights: dict[str, np.ndarray] = {}
    reports = []
    for index, layer in enumerate(layers):
        q_node = q_nodes.get(layer.name)
        if q_node is None or q_node.input[1] in q_graph.inits:  # left in float by the writer: nothing to correct
            continue
        x = torch.from_numpy(fp32_taps.values(layer.input_name, picked).astype(np.float32))
        xq = torch.from_numpy(_Taps(quantized, [q_node.input[0]]).values(q_node.input[0], picked).astype(np.float32))
        report = LayerReport(layer.name, layer.node.op_type)
        weight_int = nearest_int(layer)
        if options.adaround:
            learned, report.adaround = adaround_layer(layer, x, xq, options.adaround_iterations, seed=options.seed + index)
            if report.adaround.kept:
                weight_int = int_weights[layer.name] = learned
                apply_int_weights(quantized, {layer.name: learned}, {layer.name: layer.scale()} if expected_scales is None
                                  else expected_scales)
        if options.bias_correction:
            bias, report.bias_error_before = corrected_bias(layer, x, xq, weight_int)
            if layer.bias is None:
                raise VerificationError(f"{layer.name} has no bias to correct; export with edgeopt export (which folds BatchNorm "
                                        "into biases)")
            fp32_graph.set_init(layer.node.input[2], bias)
            q_graph.set_init(q_node.input[2], bias)
        reports.append(report)
    return int_weights, reports


def apply_int_weights(quantized: Any, int_weights: dict[str, np.ndarray], expected_scales: dict[str, np.ndarray]) -> int:
    """Replace the int8 weights ONNX Runtime's Q/DQ writer rounded to nearest with AdaRound's.

    The layer's weight must reach it through a DequantizeLinear of an int8 initializer whose scale
    equals edgeopt's (``Layer.scale``); anything else is an error, not a silent mismatch."""
    from onnx import numpy_helper

    graph = quantized.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    by_name = {n.name: n for n in graph.node}
    replaced = 0
    for name, values in int_weights.items():
        node = by_name.get(name)
        dq = producers.get(node.input[1]) if node is not None else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue  # the layer was left in float (fallback): nothing to replace
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
        if scale.shape != expected_scales[name].shape or not np.allclose(scale, expected_scales[name], rtol=1e-6, atol=0):
            raise VerificationError(f"{name}: the Q/DQ writer's weight scales differ from AdaRound's; calibrate without `adaround`")
        current = numpy_helper.to_array(inits[dq.input[0]])
        if current.shape != values.shape or current.dtype != np.int8:
            raise VerificationError(f"{name}: quantized weights are {current.dtype}{list(current.shape)}, "
                                    f"AdaRound's int8{list(values.shape)}")
        inits[dq.input[0]].CopyFrom(numpy_helper.from_array(values, dq.input[0]))
        replaced += 1
    return replaced
