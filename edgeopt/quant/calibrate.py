"""Calibration stage: FP32 ONNX -> INT8 ONNX, for TensorRT (Q/DQ) or ONNX Runtime's CPU kernels.

The TensorRT target follows the rules ``edgeopt.quant.writers.check_qdq`` checks: int8 everywhere,
zero-point 0 (symmetric), per-tensor activations, per-channel weights on the output-channel axis.
The calibration subset is deterministic and stratified, and recorded beside the output with each
file's sha256. Writing the models lives in ``edgeopt.quant.writers``, the ranges in ``edgeopt.quant.ranges``;
each target's INT8 form (Q/DQ or QOperator, weight bits) is its row of ``edgeopt.formats.FORMATS``.
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
from edgeopt.formats import CALIBRATE_TARGET, Format, get_format
from edgeopt.quant.ptq import PtqConfig
from edgeopt.quant.writers import (
    QdqWriter,
    check_qdq,
    first_last_layers,
    quantize_cpu,
    quantize_modelopt,
)

if TYPE_CHECKING:
    from edgeopt.data.calibration import CalibrationSet
    from edgeopt.quant.fallback import FallbackConfig, FallbackResult

METHODS = ("minmax", "entropy", "percentile")
TARGETS = tuple(CALIBRATE_TARGET.values())  # the INT8 rows of edgeopt.formats.FORMATS
FORMAT_OF_TARGET = {target: name for name, target in CALIBRATE_TARGET.items()}
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


@dataclasses.dataclass(frozen=True)
class _Settings:
    """``calibrate_onnx``'s choices, checked against each other, handed to its steps as one object."""

    row: Format  # the INT8 format made (``edgeopt.formats.FORMATS``)
    target: str
    method: str
    quantizer: str
    batch_size: int
    seed: int
    skip_first_last: bool
    fallback: FallbackConfig | None
    ptq: PtqConfig

    @property
    def for_cpu(self) -> bool:  # ONNX Runtime's QOperator CPU kernels, not TensorRT's Q/DQ
        return self.row.quant is not None and self.row.quant.form == "QOperator"

    @property
    def reduce_range(self) -> bool:  # 7-bit weights
        return self.row.quant is not None and self.row.quant.reduce_range


def calibrate_onnx(model: str | Path, data: str | Path, out: str | Path, *, num_images: int = 512, method: str | None = None,
                   quantizer: str = "onnxruntime", batch_size: int = 32, seed: int = 0,
                   calibration_dir: str | Path | None = None, skip_first_last: bool = False,
                   target: str = "tensorrt", fallback: FallbackConfig | None = None,
                   ptq: PtqConfig | None = None, progress: Callable[[int, int], None] | None = None) -> CalibrationResult:
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
    settings = _settings(target=target, method=method, quantizer=quantizer, batch_size=batch_size, seed=seed,
                         skip_first_last=skip_first_last, fallback=fallback, ptq=ptq)
    require_kind(out, "onnx", "`out`")
    manifest = _read_fp32(model, batch_size)
    preprocess = Preprocess.from_dict(manifest.preprocess)
    cset = calibration_set(data, manifest.classes, num_images, batch_size, seed)
    batches = iter_calibration_batches(cset, preprocess, batch_size, fixed_batch=bool(manifest.extra.get("static_batch")))
    if progress is not None:  # images decoded for the calibrator, as they are read
        batches = _counted(batches, len(cset.samples), progress)
    with atomic_path(out) as tmp:
        served, ranges, ptq_report, fallback_result = _quantize(model, tmp, out, batches, manifest=manifest,
                                                                preprocess=preprocess, settings=settings)
        qdq_nodes = _verify_quantized(tmp, model, served=served, settings=settings)
    calib_path = Path(calibration_dir if calibration_dir is not None else out.parent) / f"{out.stem}.calib.json"
    _write_record(calib_path, model=model, manifest=manifest, cset=cset, preprocess=preprocess, settings=settings,
                  served=served, ranges=ranges, ptq_report=ptq_report, fallback_result=fallback_result)
    new = Manifest(kind="onnx", classes=manifest.classes, preprocess=manifest.preprocess, arch=manifest.arch, precision="int8",
                   format=settings.row.name, tools=tool_versions("onnx", "onnxruntime", "nvidia-modelopt"),
                   extra={**manifest.extra, "quantization": {
                       **(settings.row.quant.to_dict() if settings.row.quant else {}),
                       "target": target, "method": settings.method, "quantizer": quantizer,
                       "calibration_manifest": str(calib_path), "num_images": len(cset.samples),
                       "skip_first_last": skip_first_last, "ptq": settings.ptq.to_dict(),
                       **({"fallback": fallback_result.summary()} if fallback_result else {})}})
    write_artifact_manifest(out, new, parent=model)
    return CalibrationResult(out, calib_path, len(cset.samples), served, settings.method, quantizer, qdq_nodes, target,
                             fallback_result)


def _settings(*, target: str, method: str | None, quantizer: str, batch_size: int, seed: int, skip_first_last: bool,
              fallback: FallbackConfig | None, ptq: PtqConfig | None) -> _Settings:
    """The choices, or a one-line error for an unknown one or a combination the target does not take."""
    if target not in TARGETS:
        raise ConfigError(f"`target` {target!r} is unknown: use one of {', '.join(TARGETS)}")
    settings = _Settings(get_format(FORMAT_OF_TARGET[target]), target, method or ("entropy" if target == "tensorrt" else "minmax"),
                         quantizer, batch_size, seed, skip_first_last, fallback, ptq or PtqConfig())
    if settings.for_cpu and (settings.method == "entropy" or quantizer != "onnxruntime" or skip_first_last or fallback):
        raise ConfigError(f"`target` {target} calibrates with onnxruntime's minmax or percentile (no entropy, ModelOpt, "
                          "`skip_first_last` or `max_f1_drop`)")
    if settings.ptq.enabled and (target != "tensorrt" or quantizer != "onnxruntime"):
        raise ConfigError("`equalize`, `bias_correction` and `adaround` apply to `target` tensorrt with `quantizer` onnxruntime")
    if settings.method not in METHODS:
        raise ConfigError(f"`method` {settings.method!r} is unknown: use one of {', '.join(METHODS)}")
    if quantizer not in QUANTIZERS:
        raise ConfigError(f"`quantizer` {quantizer!r} is unknown: use one of {', '.join(QUANTIZERS)}")
    if quantizer != "onnxruntime" and (skip_first_last or fallback is not None):
        raise ConfigError("`skip_first_last` and `max_f1_drop` are implemented for `quantizer` onnxruntime only")
    return settings


def _read_fp32(model: Path, batch_size: int) -> Manifest:
    """The FP32 ONNX's manifest, once its input and batch fit calibration."""
    if suffix_kind(model) != "onnx":
        raise ArtifactError(f"{model}: expected an ONNX model ({get_format('onnx').suffix}) from edgeopt export")
    manifest = read_manifest(model, expect_kind="onnx")
    if manifest.precision != "fp32":
        raise ArtifactError(f"{model}: is {manifest.precision}; calibrate the FP32 export")
    _check_input(model, manifest.extra.get("input", "input"))
    static = manifest.extra.get("static_batch")
    if static and static != batch_size:
        raise ConfigError(f"{model} has a fixed batch of {static}: calibrate it with `batch_size` {static}")
    return manifest


def _quantize(model: Path, tmp: Path, out: Path, batches: Iterator[Any], *, manifest: Manifest, preprocess: Preprocess,
              settings: _Settings) -> tuple[int, dict[str, float], dict[str, Any], FallbackResult | None]:
    """Write the INT8 model to ``tmp``: (batches served, activation ranges, PTQ report, fallback result)."""
    input_name = manifest.extra.get("input", "input")
    if settings.for_cpu:
        return quantize_cpu(model, tmp, batches, input_name, settings.method, settings.reduce_range), {}, {}, None
    if settings.quantizer != "onnxruntime":
        return quantize_modelopt(model, tmp, batches, settings.method), {}, {}, None
    prepared = None
    if settings.fallback is not None:  # the eval data is read before the calibrator holds its batches
        from edgeopt.quant.fallback import prepare_eval

        prepared = prepare_eval(settings.fallback, list(manifest.classes), model, manifest.extra)
    writer = QdqWriter(model, list(batches), input_name, settings.method, settings.ptq)
    try:
        excluded = first_last_layers(writer.model) if settings.skip_first_last else []
        fallback_result = None
        if settings.fallback is not None:
            from edgeopt.quant.fallback import run_fallback

            fallback_result = run_fallback(writer, model, settings.fallback, manifest.classes, preprocess, out,
                                           extra=manifest.extra, prepared=prepared)
            excluded = sorted(set(excluded) | set(fallback_result.float_layers))
        writer.write(tmp, excluded)
        return writer.served, writer.ranges, writer.ptq_report, fallback_result
    finally:
        writer.close()


def _is_quantized(node: Any) -> bool:
    return node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.op_type.startswith("QLinear")


def _verify_quantized(tmp: Path, model: Path, *, served: int, settings: _Settings) -> int:
    """The quantized model's Q/DQ (or QLinear) node count, once it got batches, quantized something and,
    for TensorRT, keeps the Q/DQ rules."""
    if served == 0:
        raise VerificationError("the calibrator received zero batches; check `data` and `batch_size`")
    import onnx

    quantized = onnx.load(str(tmp))
    nodes = sum(1 for n in quantized.graph.node if _is_quantized(n))
    if not nodes:
        raise VerificationError(f"{model.name} has nothing quantizable (no layer got Q/DQ nodes); keep it in FP32/FP16")
    violations = check_qdq(quantized) if settings.row.for_tensorrt else []
    if violations:
        raise VerificationError(f"quantized model breaks the TensorRT Q/DQ rules: {violations[0]} (+{len(violations) - 1} more)")
    return nodes


def _write_record(path: Path, *, model: Path, manifest: Manifest, cset: CalibrationSet, preprocess: Preprocess,
                  settings: _Settings, served: int, ranges: dict[str, float], ptq_report: dict[str, Any],
                  fallback_result: FallbackResult | None) -> None:
    """The calibration record: which images (by sha256), how, and the activation ranges found."""
    s = settings
    record = {
        "onnx": str(model), "onnx_sha256": manifest.sha256, "target": s.target, "method": s.method, "quantizer": s.quantizer,
        "seed": s.seed, "batch_size": s.batch_size, "batches": served, "data_root": str(cset.root), "classes": cset.classes,
        "missing_classes": cset.missing_classes, "preprocess": preprocess.to_dict(),
        "images": [{"path": str(x.path.relative_to(cset.root)), "label": cset.classes[x.label], "sha256": sha256_file(x.path)}
                   for x in cset.samples],
        "activation_amax": {k: round(float(v), 6) for k, v in sorted(ranges.items())},
        "fallback": fallback_result.to_dict() if fallback_result else None,
        "ptq": {**s.ptq.to_dict(), **ptq_report},
    }
    atomic_write_json(path, record)


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
