"""Calibration stage: FP32 ONNX -> explicit INT8 Q/DQ ONNX that TensorRT (and ONNX Runtime) accept.

Rules of the output (checked by :func:`check_qdq`): int8 everywhere, zero-point 0 (symmetric),
per-tensor activations, per-channel weights on the output-channel axis. The calibration subset is
deterministic and stratified, and recorded in ``calibration/`` with each file's sha256.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeopt.artifacts import (
    Manifest,
    atomic_path,
    atomic_write_json,
    read_manifest,
    require_kind,
    sha256_file,
    suffix_kind,
    tool_versions,
    write_artifact_manifest,
)
from edgeopt.data.folder import FolderScan, Sample, scan_folder
from edgeopt.data.presets import Preprocess
from edgeopt.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    MissingDependencyError,
    VerificationError,
)

if TYPE_CHECKING:
    from edgeopt.int8_fallback import FallbackConfig

METHODS = ("minmax", "entropy", "percentile")
TARGETS = ("tensorrt", "cpu")
# --target cpu, chosen by measurement (benchmarks/README.md, "INT8 on a CPU without VNNI": Lite0 at
# 96 px, AVX2 CPU): QOperator (fused QLinearConv kernels) with uint8 asymmetric activations and 8-bit
# per-channel weights (ONNX Runtime stores per-channel weights as int8) kept F1 and ran about twice
# as fast as FP32; 7-bit weights (reduce_range) lost 0.015 F1, per-tensor weights collapsed, and
# the symmetric int8 Q/DQ form kept F1 but ran slower than FP32
CPU_FORMAT = {"format": "QOperator", "activations": "uint8 asymmetric per-tensor", "weights": "int8 per-channel (8-bit)"}
QUANTIZERS = ("onnxruntime", "modelopt")
RECOMMENDED_IMAGES = 300


def select_subset(scan: FolderScan, num_images: int, seed: int = 0) -> list[Sample]:
    """A deterministic, class-stratified subset (largest-remainder quotas, at least one per class)."""
    if num_images < 1:
        raise ConfigError(f"--num-images {num_images} must be at least 1")
    labels = scan.labels
    present = [c for c in range(len(scan.classes)) if (labels == c).any()]
    n = min(num_images, len(labels))
    counts = np.asarray([(labels == c).sum() for c in present], dtype=np.float64)
    exact = counts / counts.sum() * n
    quota = np.minimum(np.floor(exact).astype(int), counts.astype(int))
    if n >= len(present):
        quota = np.maximum(quota, 1)
    for i in np.argsort(-(exact - np.floor(exact)), kind="stable"):  # hand out what rounding left over
        if quota.sum() >= n:
            break
        if quota[i] < counts[i]:
            quota[i] += 1
    while quota.sum() > n:
        quota[int(np.argmax(quota))] -= 1
    rng = np.random.default_rng(seed)
    picked: list[Sample] = []
    for c, q in zip(present, quota):
        members = sorted((s for s in scan.samples if s.label == c), key=lambda s: str(s.path))
        order = rng.permutation(len(members))[:q]
        picked.extend(members[i] for i in sorted(order))
    return picked


@dataclasses.dataclass
class CalibrationSet:
    samples: list[Sample]
    root: Path
    classes: list[str]
    missing_classes: list[str]


def calibration_set(data: str | Path, classes: Sequence[str], num_images: int, batch_size: int, seed: int = 0) -> CalibrationSet:
    """Choose the subset; warn below 300 images or with a class missing; fail below one batch."""
    scan = scan_folder(data, classes=classes, allow_empty_classes=True)
    picked = select_subset(scan, num_images, seed)
    if len(picked) < batch_size:
        raise DataError(
            f"{data}: only {len(picked)} calibration image(s), fewer than one batch of {batch_size}; "
            "add images or lower --batch-size"
        )
    missing = [c for i, c in enumerate(classes) if not any(s.label == i for s in picked)]
    if len(picked) < RECOMMENDED_IMAGES:
        warnings.warn(f"calibrating on {len(picked)} images; {RECOMMENDED_IMAGES}+ give more reliable INT8 ranges", stacklevel=2)
    if missing:
        warnings.warn(f"calibration set has no images of class(es) {missing}", stacklevel=2)
    return CalibrationSet(picked, Path(data), list(classes), missing)


def iter_calibration_batches(cset: CalibrationSet, preprocess: Preprocess, batch_size: int,
                             fixed_batch: bool = False) -> Iterator[np.ndarray]:
    """Every image of the subset, in batches; the last batch is shorter, or (``fixed_batch``, for a
    model with a static batch) filled up with images from the start of the subset. None is dropped."""
    paths = [s.path for s in cset.samples]
    yield from preprocess.iter_batches(padded_paths(paths, batch_size) if fixed_batch else paths, batch_size)


def padded_paths(paths: list[Path], batch_size: int) -> list[Path]:
    """``paths`` filled up to whole batches with paths from its start (each image used at least once)."""
    if not paths:
        return []
    short = -len(paths) % batch_size
    return paths + [paths[i % len(paths)] for i in range(short)]


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


@dataclasses.dataclass
class CalibrationResult:
    path: Path
    calibration_manifest: Path
    num_images: int
    batches: int
    method: str
    quantizer: str
    qdq_nodes: int
    target: str = "tensorrt"
    fallback: Any = None  # edgeopt.int8_fallback.FallbackResult with --max-f1-drop


def calibrate_onnx(model: str | Path, data: str | Path, out: str | Path, *, num_images: int = 512, method: str | None = None,
                   quantizer: str = "onnxruntime", batch_size: int = 32, seed: int = 0,
                   calibration_dir: str | Path | None = None, skip_first_last: bool = False,
                   target: str = "tensorrt", fallback: FallbackConfig | None = None) -> CalibrationResult:
    """Quantize an FP32 ONNX artifact to INT8.

    ``target="tensorrt"``: a TensorRT-compatible Q/DQ ONNX (symmetric int8, per-channel weights;
    ``method`` default entropy). ``target="cpu"``: an ONNX that ONNX Runtime's CPU int8 kernels run
    accurately and fast on CPUs without VNNI (QOperator, uint8 activations and weights; ``method``
    default minmax); it is not for TensorRT. ``fallback`` leaves the most sensitive layers in float
    until the macro-F1 drop on its eval data is within budget (``edgeopt.int8_fallback``). The
    calibration record (``<out stem>.calib.json``) goes into ``calibration_dir``, by default beside
    ``out``.
    """
    model, out = Path(model), Path(out)
    if target not in TARGETS:
        raise ConfigError(f"--target {target!r} is unknown: use tensorrt or cpu")
    method = method or ("entropy" if target == "tensorrt" else "minmax")
    if target == "cpu" and (method == "entropy" or quantizer != "onnxruntime" or skip_first_last or fallback):
        raise ConfigError("--target cpu calibrates with onnxruntime's minmax or percentile (no entropy, ModelOpt, "
                          "--skip-first-last or --max-f1-drop)")
    fallback_result = None
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is unknown: use one of {', '.join(METHODS)}")
    if quantizer not in QUANTIZERS:
        raise ConfigError(f"--quantizer {quantizer!r} is unknown: use one of {', '.join(QUANTIZERS)}")
    require_kind(out, "onnx", "--out")
    if suffix_kind(model) != "onnx":
        raise ArtifactError(f"{model}: expected an ONNX model (.onnx) from edgeopt export")
    manifest = read_manifest(model, expect_kind="onnx")
    if manifest.precision != "fp32":
        raise ArtifactError(f"{model}: is {manifest.precision}; calibrate the FP32 export")
    input_name = manifest.extra.get("input", "input")
    _check_input(model, input_name)
    preprocess = Preprocess.from_dict(manifest.preprocess)
    cset = calibration_set(data, manifest.classes, num_images, batch_size, seed)
    static = manifest.extra.get("static_batch")
    if static and static != batch_size:
        raise ConfigError(f"{model} has a fixed batch of {static}: calibrate it with --batch-size {static}")
    batches = iter_calibration_batches(cset, preprocess, batch_size, fixed_batch=bool(static))
    with atomic_path(out) as tmp:
        if target == "cpu":
            served, ranges = _quantize_cpu(model, tmp, batches, input_name, method), {}
        elif quantizer == "onnxruntime":
            writer = QdqWriter(model, list(batches), input_name, method)
            try:
                excluded = first_last_layers(writer.model) if skip_first_last else []
                if fallback is not None:
                    from edgeopt.int8_fallback import run_fallback

                    fallback_result = run_fallback(writer, model, fallback, manifest.classes, preprocess, out)
                    excluded = sorted(set(excluded) | set(fallback_result.float_layers))
                writer.write(tmp, excluded)
                served, ranges = writer.served, writer.ranges
            finally:
                writer.close()
        else:
            if skip_first_last or fallback is not None:
                raise ConfigError("--skip-first-last and --max-f1-drop are implemented for --quantizer onnxruntime only")
            served, ranges = _quantize_modelopt(model, tmp, batches, method), {}
        if served == 0:
            raise VerificationError("the calibrator received zero batches; check --data and --batch-size")
        import onnx

        quantized = onnx.load(str(tmp))
        if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith("QLinear")
                   for n in quantized.graph.node):
            raise VerificationError(f"{model.name} has nothing quantizable (no layer got Q/DQ nodes); keep it in FP32/FP16")
        violations = check_qdq(quantized) if target == "tensorrt" else []
        if violations:
            raise VerificationError(f"quantized model breaks the TensorRT Q/DQ rules: {violations[0]} (+{len(violations) - 1} more)")
        qdq_nodes = sum(1 for n in quantized.graph.node
                        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith("QLinear"))
    calib_path = Path(calibration_dir if calibration_dir is not None else out.parent) / f"{out.stem}.calib.json"
    record = {
        "onnx": str(model), "onnx_sha256": manifest.sha256, "target": target, "method": method, "quantizer": quantizer, "seed": seed,
        "batch_size": batch_size, "batches": served, "data_root": str(cset.root), "classes": cset.classes,
        "missing_classes": cset.missing_classes, "preprocess": preprocess.to_dict(),
        "images": [{"path": str(s.path.relative_to(cset.root)), "label": cset.classes[s.label], "sha256": sha256_file(s.path)}
                   for s in cset.samples],
        "activation_amax": {k: round(float(v), 6) for k, v in sorted(ranges.items())},
        "fallback": fallback_result.to_dict() if fallback_result else None,
    }
    atomic_write_json(calib_path, record)
    new = Manifest(kind="onnx", classes=manifest.classes, preprocess=manifest.preprocess, arch=manifest.arch, precision="int8",
                   tools=tool_versions("onnx", "onnxruntime", "nvidia-modelopt"),
                   extra={**manifest.extra, "quantization": {
                       **({"format": "QDQ", "activations": "int8 symmetric per-tensor",
                           "weights": "int8 symmetric per-channel (output-channel axis)"} if target == "tensorrt" else CPU_FORMAT),
                       "target": target, "method": method, "quantizer": quantizer, "calibration_manifest": str(calib_path),
                       "num_images": len(cset.samples), "skip_first_last": skip_first_last,
                       **({"fallback": fallback_result.summary()} if fallback_result else {})}})
    write_artifact_manifest(out, new, parent=model)
    return CalibrationResult(out, calib_path, len(cset.samples), served, method, quantizer, qdq_nodes, target, fallback_result)


def _check_input(model: Path, input_name: str) -> None:
    import onnx

    try:
        graph = onnx.load(str(model), load_external_data=False).graph
    except Exception as exc:  # protobuf decode errors
        raise ArtifactError(f"{model}: not a readable ONNX file ({type(exc).__name__})") from None
    inits = {i.name for i in graph.initializer}
    names = [i.name for i in graph.input if i.name not in inits]
    if input_name not in names:
        raise ArtifactError(f"{model}: has no input {input_name!r} (inputs: {names}); export it with edgeopt export")


def first_last_layers(model: Any) -> list[str]:
    """Names of the first Conv and the last Conv/Gemm/MatMul: the layers most sensitive to INT8."""
    compute = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    if not compute:
        return []
    names = [compute[0].name, compute[-1].name]
    if not all(names):
        raise ConfigError("--skip-first-last needs named nodes, and this ONNX's first or last layer has no name: "
                          "export it with edgeopt export (which names every node), or drop --skip-first-last")
    return list(dict.fromkeys(names))


class QdqWriter:
    """Calibrates once (edgeopt's own ranges, ``edgeopt.calib_ranges``), then writes the Q/DQ model
    for any set of layers left in float.

    ``quantize_static`` would calibrate itself, but its entropy calibrator spreads 128 levels over
    [-t, t] (and, without its bin counts forwarded, equals min-max); TensorRT's entropy puts 128
    levels on |x|. edgeopt computes every activation's amax itself and hands them over as tensor
    overrides; a tensor that only feeds a bounded Clip (ReLU6) gets ``min(calibrated, clip)``.
    """

    COMPUTE_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")

    def __init__(self, model: Path, data: list[np.ndarray], input_name: str, method: str) -> None:
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from edgeopt.calib_ranges import (
            amax_for,
            collect_abs_histograms,
            tensors_to_calibrate,
        )

        self._tmp = tempfile.TemporaryDirectory()
        self.prepped = Path(self._tmp.name) / "prep.onnx"
        quant_pre_process(str(model), str(self.prepped), skip_symbolic_shape=True)
        self.model = onnx.load(str(self.prepped))
        self.input_name, self.first_batch, self.served = input_name, data[:1], len(data)
        histograms = collect_abs_histograms(self.prepped, data, input_name, tensors_to_calibrate(self.model))
        self.ranges = {name: max(amax_for(method, *hist), 1e-8) for name, hist in histograms.items()}
        for name, bound in fused_clip_bounds(self.model).items():
            self.ranges[name] = min(self.ranges.get(name, bound), bound)  # never wider than calibrated

    def compute_layers(self) -> list[tuple[str, str]]:
        """(name, op) of the layers that carry weights: what can be left in float."""
        return [(n.name, n.op_type) for n in self.model.graph.node if n.op_type in self.COMPUTE_OPS]

    def write(self, out: Path, excluded: Sequence[str] = ()) -> None:
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


def _quantize_cpu(model: Path, out: Path, batches: Iterator[np.ndarray], input_name: str, method: str) -> int:
    """ONNX Runtime's own calibration and QOperator U8U8 quantization (see ``CPU_FORMAT``)."""
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
    reader = _Reader(iter(data), input_name)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # one "bias exceeds int32" warning per layer is noise: ORT clamps them
    try:
        with tempfile.TemporaryDirectory() as tmpdir, contextlib.redirect_stdout(io.StringIO()):
            prepped = Path(tmpdir) / "prep.onnx"
            quant_pre_process(str(model), str(prepped), skip_symbolic_shape=True)
            quantize_static(str(prepped), str(out), reader, quant_format=QuantFormat.QOperator, per_channel=True,
                            reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
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
    return bounds


def _quantize_modelopt(model: Path, out: Path, batches: Iterator[np.ndarray], method: str) -> int:
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError:
        raise MissingDependencyError(
            "--quantizer modelopt needs NVIDIA ModelOpt: pip install 'edgeopt[modelopt]' (pulls onnxruntime-gpu and cupy)"
        ) from None
    if method == "percentile":
        raise ConfigError("ModelOpt calibrates with minmax ('max') or entropy; use --quantizer onnxruntime for percentile")
    data = list(batches)
    if not data:
        return 0
    quantize(onnx_path=str(model), quantize_mode="int8", calibration_data=np.concatenate(data),
             calibration_method={"minmax": "max", "entropy": "entropy"}[method], output_path=str(out))
    return len(data)


# -- the Q/DQ rules ---------------------------------------------------------------------------
WEIGHT_AXIS = {"Conv": lambda node: 0, "ConvTranspose": lambda node: 1, "MatMul": lambda node: 1,
               "Gemm": lambda node: 0 if _attr(node, "transB", 0) else 1}


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


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
