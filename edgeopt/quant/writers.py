"""Writing quantized ONNX models and checking them: the Q/DQ writer for TensorRT (edgeopt's ranges,
any layers left in float), the QOperator writer for ONNX Runtime's CPU kernels, ModelOpt, and the
Q/DQ rules TensorRT needs (``check_qdq``)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.errors import ConfigError, MissingDependencyError
from edgeopt.quant.ptq import PtqConfig
from edgeopt.quant.equalize import attr as _attr


class _Reader:
    """onnxruntime.quantization ``CalibrationDataReader`` over our batches, counting what it served."""

    def __init__(self, batches: Iterator[np.ndarray], input_name: str) -> None:
        self.batches, self.input_name, self.served = batches, input_name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        if batch is None:
            return None
        self.served += 1
        return {self.input_name: batch}


def first_last_layers(model: Any) -> list[str]:
    """Names of the first Conv and the last Conv/Gemm/MatMul: the layers most sensitive to INT8."""
    compute = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    if not compute:
        return []
    names = [compute[0].name, compute[-1].name]
    if not all(names):
        raise ConfigError("`skip_first_last` needs named nodes, and this ONNX's first or last layer has no name: "
                          "export it with edgeopt export (which names every node), or drop `skip_first_last`")
    return list(dict.fromkeys(names))


class QdqWriter:
    """Calibrates once (edgeopt's own ranges, ``edgeopt.quant.ranges``), then writes the Q/DQ model
    for any set of layers left in float.

    ``quantize_static`` would calibrate itself, but its entropy calibrator spreads 128 levels over
    [-t, t] (and, without its bin counts forwarded, equals min-max); TensorRT's entropy puts 128
    levels on |x|. edgeopt computes every activation's amax itself and hands them over as tensor
    overrides; a tensor that only feeds a bounded Clip (ReLU6) gets ``min(calibrated, clip)``.
    """

    COMPUTE_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")

    def __init__(self, model: Path, data: list[np.ndarray], input_name: str, method: str, ptq: PtqConfig | None = None) -> None:
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from edgeopt.quant.ranges import (
            amax_for,
            collect_abs_histograms,
            tensors_to_calibrate,
        )

        self._tmp = tempfile.TemporaryDirectory()
        self.prepped = Path(self._tmp.name) / "prep.onnx"
        self.ptq = ptq or PtqConfig()
        self.ptq_report: dict[str, Any] = {}
        if self.ptq.equalize:  # on the FP32 graph, before any range is calibrated
            from edgeopt.quant.equalize import equalize

            equalized = onnx.load(str(model))
            report = equalize(equalized)
            model = Path(self._tmp.name) / "equalized.onnx"
            onnx.save(equalized, str(model))
            self.ptq_report["equalized"] = {"pairs": report.pairs, "sweeps": report.sweeps, "clips_rewritten": report.clips_rewritten}
        quant_pre_process(str(model), str(self.prepped), skip_symbolic_shape=True)
        self.model = onnx.load(str(self.prepped))
        self.input_name, self.first_batch, self.served = input_name, data[:1], len(data)
        histograms = collect_abs_histograms(self.prepped, data, input_name, tensors_to_calibrate(self.model))
        self.ranges = {name: max(amax_for(method, *hist), 1e-8) for name, hist in histograms.items()}
        for name, bound in fused_clip_bounds(self.model).items():
            self.ranges[name] = min(self.ranges.get(name, bound), bound)  # never wider than calibrated
        self.int_weights: dict[str, np.ndarray] = {}
        self.weight_scales: dict[str, np.ndarray] = {}
        if self.ptq.bias_correction or self.ptq.adaround:
            from edgeopt.quant.layers import quantizable_layers
            from edgeopt.quant.ptq import reconstruct

            nearest = Path(self._tmp.name) / "nearest.onnx"
            self._quantize(nearest, [])
            self.int_weights, layers = reconstruct(self.model, onnx.load(str(nearest)), data, self.ptq)
            self.weight_scales = {layer.name: layer.scale() for layer in quantizable_layers(self.model, list(self.int_weights))}
            onnx.save(self.model, str(self.prepped))  # the corrected biases are what quantize_static reads
            self.ptq_report["layers"] = [layer.to_dict() for layer in layers]
            if self.ptq.adaround:
                self.ptq_report["adaround_kept"] = len(self.int_weights)

    def compute_layers(self) -> list[tuple[str, str]]:
        """(name, op) of the layers that carry weights: what can be left in float."""
        return [(n.name, n.op_type) for n in self.model.graph.node if n.op_type in self.COMPUTE_OPS]

    def write(self, out: Path, excluded: Sequence[str] = ()) -> None:
        """The Q/DQ model with ``excluded`` layers left in float (AdaRound's weights where it ran)."""
        self._quantize(out, excluded)
        if self.int_weights:  # AdaRound's integers instead of nearest rounding, at the same scales
            import onnx

            from edgeopt.quant.ptq import apply_int_weights

            quantized = onnx.load(str(out))
            apply_int_weights(quantized, self.int_weights, self.weight_scales)
            onnx.save(quantized, str(out))

    def _quantize(self, out: Path, excluded: Sequence[str]) -> None:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        overrides = {name: [{"rmin": np.array(-v, np.float32), "rmax": np.array(v, np.float32)}] for name, v in self.ranges.items()}
        quantize_static(
            str(self.prepped), str(out), _Reader(iter(self.first_batch), self.input_name), quant_format=QuantFormat.QDQ,
            per_channel=True, nodes_to_exclude=list(excluded), reduce_range=False, activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                           "TensorQuantOverrides": overrides},
        )

    def close(self) -> None:
        self._tmp.cleanup()


def quantize_cpu(model: Path, out: Path, batches: Iterator[np.ndarray], input_name: str, method: str,
                 reduce_range: bool) -> int:
    """ONNX Runtime's own calibration and QOperator quantization for its CPU kernels (see
    the ``int8-cpu`` rows of ``edgeopt.formats.FORMATS``): uint8 asymmetric activations (symmetric ones are slower:
    ORT's fast u8 paths want a free zero-point; benchmarks/README.md), per-channel weights, 7-bit with
    ``reduce_range``."""
    import logging

    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    data = list(batches)
    if not data:
        return 0
    if method == "percentile" and len({b.shape for b in data}) > 1:
        # ORT's histogram collector stacks every batch of a tensor into one array: a short last batch
        # breaks it, so the images are served one at a time (the histogram is the same)
        data = [b[i:i + 1] for b in data for i in range(len(b))]
    reader = _Reader(iter(data), input_name)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # one "bias exceeds int32" warning per layer is noise: ORT clamps them
    try:
        with tempfile.TemporaryDirectory() as tmpdir, contextlib.redirect_stdout(io.StringIO()):
            prepped = Path(tmpdir) / "prep.onnx"
            quant_pre_process(str(model), str(prepped), skip_symbolic_shape=True)
            quantize_static(str(prepped), str(out), reader, quant_format=QuantFormat.QOperator, per_channel=True,
                            reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method={"minmax": CalibrationMethod.MinMax,
                                              "percentile": CalibrationMethod.Percentile}[method])
    finally:
        root.setLevel(level)
    return reader.served


def _consumers(graph: Any) -> dict[str, list[Any]]:
    """Tensor name -> the nodes that read it."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def fused_clip_bounds(model: Any) -> dict[str, float]:
    """The bound of the Clip (ReLU6 and the like) that is a tensor's only consumer: its range cap.

    TensorRT fuses Conv + Clip and quantizes after the clip; a per-tensor range calibrated on the
    conv output itself (which after BN folding can span hundreds) would leave only a few int8
    levels inside [0, 6]. Capping such a tensor's range at the clip's bound loses nothing the Clip
    would not cut off anyway; a calibrated range already inside the bound is kept.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers = _consumers(graph)
    graph_outputs = {o.name for o in graph.output}
    bounds: dict[str, float] = {}
    for node in graph.node:
        if node.op_type != "Clip" or len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            continue
        lo, hi = float(inits[node.input[1]]), float(inits[node.input[2]])
        source = node.input[0]
        if source in graph_outputs or source in inits or len(consumers.get(source, [])) != 1 or hi <= 0:
            continue
        bounds[source] = max(abs(lo), abs(hi))
    # cross-layer equalization's ReLU6: Relu then Min with a positive per-channel bound (edgeopt.quant.ptq)
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.op_type != "Min" or len(node.input) != 2 or node.input[1] not in inits:
            continue
        bound, source = inits[node.input[1]], node.input[0]
        if bound.size == 0 or np.any(bound <= 0) or source in graph_outputs or len(consumers.get(source, [])) != 1:
            continue
        bounds[source] = float(bound.max())
        relu = producers.get(source)
        relu = relu if relu is not None and relu.op_type == "Relu" else None
        if relu is not None and len(consumers.get(relu.input[0], [])) == 1 and relu.input[0] not in graph_outputs:
            bounds[relu.input[0]] = float(bound.max())
    return bounds


def quantize_modelopt(model: Path, out: Path, batches: Iterator[np.ndarray], method: str) -> int:
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError:
        raise MissingDependencyError(
            "`quantizer` modelopt needs NVIDIA ModelOpt: pip install 'edgeopt[modelopt]' (pulls onnxruntime-gpu and cupy)"
        ) from None
    if method == "percentile":
        raise ConfigError("ModelOpt calibrates with minmax ('max') or entropy; use `quantizer` onnxruntime for percentile")
    data = list(batches)
    if not data:
        return 0
    quantize(onnx_path=str(model), quantize_mode="int8", calibration_data=np.concatenate(data),
             calibration_method={"minmax": "max", "entropy": "entropy"}[method], output_path=str(out))
    return len(data)


# -- the Q/DQ rules ---------------------------------------------------------------------------
WEIGHT_AXIS = {"Conv": lambda node: 0, "ConvTranspose": lambda node: 1, "MatMul": lambda node: 1,
               "Gemm": lambda node: 0 if _attr(node, "transB", 0) else 1}


def check_qdq(model: Any) -> list[str]:
    """Every Q/DQ pair must be int8 with zero-point 0; weights per-channel on the output axis."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers = _consumers(graph)
    problems: list[str] = []
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return ["no QuantizeLinear/DequantizeLinear nodes: the model is not quantized"]
    for node in qdq:
        where = f"{node.op_type} {node.name or node.output[0]}"
        if len(node.input) < 3 or node.input[2] not in inits:
            problems.append(f"{where}: no zero-point initializer (defaults to uint8)")
            continue
        zp = inits[node.input[2]]
        if zp.data_type != onnx.TensorProto.INT8:
            problems.append(f"{where}: zero-point is {onnx.TensorProto.DataType.Name(zp.data_type)}, must be INT8")
        if np.any(numpy_helper.to_array(zp) != 0):
            problems.append(f"{where}: zero-point is not 0 (asymmetric quantization)")
        scale = numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None
        if scale is not None and np.any(scale <= 0):
            problems.append(f"{where}: non-positive scale")
        is_weight = node.op_type == "DequantizeLinear" and node.input[0] in inits
        if scale is not None and scale.size > 1:
            if not is_weight:
                problems.append(f"{where}: activations must be per-tensor")
                continue
            axis = _attr(node, "axis", 1)
            for consumer in consumers.get(node.output[0], []):
                expected = WEIGHT_AXIS.get(consumer.op_type)
                if expected is not None and axis != expected(consumer):
                    problems.append(f"{where}: per-channel axis {axis}, {consumer.op_type} needs {expected(consumer)}")
        elif is_weight and scale is not None:
            weight = inits[node.input[0]]
            for consumer in consumers.get(node.output[0], []):
                if consumer.op_type == "Conv" and len(weight.dims) == 4 and weight.dims[0] > 1:
                    problems.append(f"{where}: Conv weights must be quantized per output channel")
    return problems
