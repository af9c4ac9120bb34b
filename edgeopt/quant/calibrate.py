"""Calibration stage: FP32 ONNX -> INT8 ONNX, for TensorRT (Q/DQ) or ONNX Runtime's CPU kernels.

The TensorRT target follows the rules ``edgeopt.quant.writers.check_qdq`` checks: int8 everywhere,
zero-point 0 (symmetric), per-tensor activations, per-channel weights on the output-channel axis.
The calibration subset is deterministic and stratified, and recorded beside the output with each
file's sha256. Writing the models lives in ``edgeopt.quant.writers``, the ranges in ``edgeopt.quant.ranges``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any


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
from edgeopt.data.calibration import calibration_set, iter_calibration_batches
from edgeopt.data.presets import Preprocess
from edgeopt.errors import (
    ArtifactError,
    ConfigError,
    VerificationError,
)
from edgeopt.formats import CALIBRATE_TARGET
from edgeopt.quant.ptq import PtqOptions
from edgeopt.quant.writers import (
    QdqWriter,
    check_qdq,
    first_last_layers,
    quantize_cpu,
    quantize_modelopt,
)

if TYPE_CHECKING:
    from edgeopt.quant.fallback import FallbackConfig

METHODS = ("minmax", "entropy", "percentile")
TARGETS = tuple(CALIBRATE_TARGET.values())  # the INT8 rows of edgeopt.formats.FORMATS
# The CPU targets, chosen by measurement (benchmarks/README.md, "INT8 for ONNX Runtime's CPU kernels";
# Lite0 at 96 px): QOperator (fused QLinearConv kernels) with uint8 activations and per-channel
# weights. Without VNNI, ORT's AVX2 u8 x s8 kernels add pairs of products into saturating int16
# (255 * 127 * 2 overflows): 7-bit weights (reduce_range) cannot overflow, so "cpu" is exact on
# any x86 CPU; "cpu-vnni" keeps 8-bit weights, which only VNNI/AMX CPUs compute without saturation.
CPU_FORMATS = {
    "cpu": {"format": "QOperator", "activations": "uint8 asymmetric per-tensor", "weights": "int8 per-channel, 7-bit (reduce_range)",
            "reduce_range": True},
    "cpu-vnni": {"format": "QOperator", "activations": "uint8 asymmetric per-tensor", "weights": "int8 per-channel, 8-bit",
                 "reduce_range": False},
}
QUANTIZERS = ("onnxruntime", "modelopt")
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
    fallback: Any = None  # edgeopt.quant.fallback.FallbackResult with --max-f1-drop


def calibrate_onnx(model: str | Path, data: str | Path, out: str | Path, *, num_images: int = 512, method: str | None = None,
                   quantizer: str = "onnxruntime", batch_size: int = 32, seed: int = 0,
                   calibration_dir: str | Path | None = None, skip_first_last: bool = False,
                   target: str = "tensorrt", fallback: FallbackConfig | None = None,
                   ptq: PtqOptions | None = None, progress: Callable[[int, int], None] | None = None) -> CalibrationResult:
    """Quantize an FP32 ONNX artifact to INT8.

    ``target="tensorrt"``: a TensorRT-compatible Q/DQ ONNX (symmetric int8, per-channel weights;
    ``method`` default entropy). ``target="cpu"``: an ONNX that ONNX Runtime's CPU int8 kernels run
    exactly on any x86 CPU, VNNI or not (QOperator, uint8 activations, 7-bit per-channel
    weights; ``method`` default minmax); ``"cpu-vnni"``: the same with 8-bit weights, for CPUs with
    VNNI/AMX only. Neither is for TensorRT. ``fallback`` leaves the most sensitive layers in float
    until the macro-F1 drop on its eval data is within budget (``edgeopt.quant.fallback``); ``ptq``
    applies cross-layer equalization, bias correction and AdaRound first (``edgeopt.quant.ptq``). The
    calibration record (``<out stem>.calib.json``) goes into ``calibration_dir``, by default beside
    ``out``.
    """
    model, out = Path(model), Path(out)
    if target not in TARGETS:
        raise ConfigError(f"`target` {target!r} is unknown: use one of {', '.join(TARGETS)}")
    method = method or ("entropy" if target == "tensorrt" else "minmax")
    if target in CPU_FORMATS and (method == "entropy" or quantizer != "onnxruntime" or skip_first_last or fallback):
        raise ConfigError(f"`target` {target} calibrates with onnxruntime's minmax or percentile (no entropy, ModelOpt, "
                          "`skip_first_last` or `max_f1_drop`)")
    ptq = ptq or PtqOptions()
    if ptq.enabled and (target != "tensorrt" or quantizer != "onnxruntime"):
        raise ConfigError("`equalize`, `bias_correction` and `adaround` apply to `target` tensorrt with `quantizer` onnxruntime")
    fallback_result = None
    if method not in METHODS:
        raise ConfigError(f"`method` {method!r} is unknown: use one of {', '.join(METHODS)}")
    if quantizer not in QUANTIZERS:
        raise ConfigError(f"`quantizer` {quantizer!r} is unknown: use one of {', '.join(QUANTIZERS)}")
    require_kind(out, "onnx", "`out`")
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
        raise ConfigError(f"{model} has a fixed batch of {static}: calibrate it with `batch_size` {static}")
    batches = iter_calibration_batches(cset, preprocess, batch_size, fixed_batch=bool(static))
    if progress is not None:  # images decoded for the calibrator, as they are read
        batches = _counted(batches, len(cset.samples), progress)
    prepared = None
    if fallback is not None and target == "tensorrt" and quantizer == "onnxruntime":
        from edgeopt.quant.fallback import prepare_eval

        prepared = prepare_eval(fallback, list(manifest.classes), model, manifest.extra)
    with atomic_path(out) as tmp:
        if target in CPU_FORMATS:
            served, ranges = quantize_cpu(model, tmp, batches, input_name, method, CPU_FORMATS[target]["reduce_range"]), {}
        elif quantizer == "onnxruntime":
            writer = QdqWriter(model, list(batches), input_name, method, ptq)
            try:
                excluded = first_last_layers(writer.model) if skip_first_last else []
                if fallback is not None:
                    from edgeopt.quant.fallback import run_fallback

                    fallback_result = run_fallback(writer, model, fallback, manifest.classes, preprocess, out,
                                                   extra=manifest.extra, prepared=prepared)
                    excluded = sorted(set(excluded) | set(fallback_result.float_layers))
                writer.write(tmp, excluded)
                served, ranges, ptq_report = writer.served, writer.ranges, writer.ptq_report
            finally:
                writer.close()
        else:
            if skip_first_last or fallback is not None:
                raise ConfigError("`skip_first_last` and `max_f1_drop` are implemented for `quantizer` onnxruntime only")
            served, ranges = quantize_modelopt(model, tmp, batches, method), {}
        if target in CPU_FORMATS or quantizer != "onnxruntime":
            ptq_report = {}
        if served == 0:
            raise VerificationError("the calibrator received zero batches; check `data` and `batch_size`")
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
        "ptq": {**ptq.to_dict(), **ptq_report},
    }
    atomic_write_json(calib_path, record)
    new = Manifest(kind="onnx", classes=manifest.classes, preprocess=manifest.preprocess, arch=manifest.arch, precision="int8",
                   format={v: k for k, v in CALIBRATE_TARGET.items()}[target], tools=tool_versions("onnx", "onnxruntime", "nvidia-modelopt"),
                   extra={**manifest.extra, "quantization": {
                       **({"format": "QDQ", "activations": "int8 symmetric per-tensor",
                           "weights": "int8 symmetric per-channel (output-channel axis)"} if target == "tensorrt"
                          else {k: v for k, v in CPU_FORMATS[target].items() if k != "reduce_range"}),
                       "target": target, "method": method, "quantizer": quantizer, "calibration_manifest": str(calib_path),
                       "num_images": len(cset.samples), "skip_first_last": skip_first_last, "ptq": ptq.to_dict(),
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


def _counted(batches: Iterator[Any], total: int, progress: Callable[[int, int], None]) -> Iterator[Any]:
    done = 0
    progress(done, total)
    for batch in batches:
        done = min(total, done + len(batch))
        progress(done, total)
        yield batch
