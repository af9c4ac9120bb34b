"""``convert_artifact(source, to=FORMAT)``: the one place that chains stages.

It walks ``edgeopt.formats.FORMATS`` from the source artifact's format to the one asked for and
runs each row's stage on the previous artifact: checkpoint -> ONNX (export) -> Q/DQ INT8
(calibrate) or INT8 for ONNX Runtime's CPU kernels -> TensorRT engine (build-engine). Intermediate
artifacts are written beside ``out`` as ``<stem><their suffix>``, each with its manifest and its
parent's hash, so the chain can be read back from any of them.

An engine's build plan depends on the TensorRT version (11.x wants FP16 and the INT8 float part
in the graph); ``build_engine`` asks this module for those conversions through its ``prepare``
hook after it has checked the GPU, the version and the DLA profile, so nothing is calibrated for
a build that cannot happen.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeopt.artifacts import manifest_path, read_manifest, suffix_kind
from edgeopt.errors import ArtifactError, ConfigError, EdgeoptWarning
from edgeopt.formats import CALIBRATE_TARGET, FORMATS, Format, conversion_path, format_of, get_format, stem_of

if TYPE_CHECKING:
    from edgeopt.trt.plan import BuildPlan, BuildConfig


@dataclasses.dataclass
class Conversion:
    """What ``convert`` made: the final artifact, and every artifact of the walk by format."""

    path: Path
    format: Format
    artifacts: dict[str, Path]  # format name -> path, in the order they were made (the source first)
    results: dict[str, Any]  # format name -> its stage's result object (ExportResult, CalibrationResult, BuildResult)


def source_format(source: Path) -> Format:
    """The row ``source`` belongs to (its manifest); an ONNX without one is taken as an FP32 export,
    which only the engine builder can take (it reads precision from the graph)."""
    try:
        return format_of(read_manifest(source))
    except ArtifactError:
        if suffix_kind(source) == "onnx" and source.is_file() and not manifest_path(source).exists():
            return FORMATS["onnx"]
        raise


def convert_artifact(source: str | Path, to: str, out: str | Path | None = None, *, log: Callable[[str], None] = print,
            **options: Any) -> Conversion:
    """Make a ``to`` artifact from ``source`` by walking the conversion graph.

    ``options`` go to the stages that take them (``FORMATS[...].options``): ``data``/``num_images``/
    ``method``/``batch_size`` to calibrate (``data`` also to export's parity check), ``build``
    (a ``BuildConfig``), ``verify`` and ``device`` to build-engine. An option no stage on the way
    takes is an error naming the closest one."""
    source = Path(source)
    src = source_format(source)
    goal = get_format(to)
    steps = conversion_path(src.name, goal.name)
    accepted = sorted({name for row in steps for name in row.options})
    for name in options:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"convert to {goal.name}: option {name!r} is not taken by any stage on the way "
                              f"({' -> '.join([src.name, *(r.name for r in steps)])}){hint}")
    if out is None:
        own = stem_of(source, src)
        out = own.with_name(own.name + goal.suffix)
    out = Path(out)
    if not steps and out.resolve() != source.resolve():
        raise ConfigError(f"{source} is {src.name} already: nothing to convert (copy it to {out} if you need it there)")
    stem = stem_of(out, goal)
    names = [out if row is goal else stem.with_name(stem.name + row.suffix) for row in steps]
    clash = [n for n in names[:-1] if n.resolve() in (out.resolve(), source.resolve())]
    if clash:
        raise ConfigError(f"{out}: its intermediate {clash[0].name} would replace {'the output' if clash[0].resolve() == out.resolve() else 'the source'}; "
                          f"name the output with its format's suffix ({goal.suffix})")
    artifacts, results = {src.name: source}, {}
    current = source
    for row, target in zip(steps, names):
        current, results[row.name] = _STAGES[row.stage](row, current, target, {k: v for k, v in options.items() if k in row.options}, log)
        artifacts[row.name] = current
    return Conversion(current, goal, artifacts, results)


def _export(row: Format, src: Path, out: Path, options: dict[str, Any], log) -> tuple[Path, Any]:
    from edgeopt.export.fp16 import convert_onnx_to_fp16, convert_qdq_float_to_fp16
    from edgeopt.export.onnx import export_onnx

    if row.name == "onnx":
        result = export_onnx(src, out, **options)
        return result.path, result
    if row.name == "onnx-fp16":
        return convert_onnx_to_fp16(src, out), None
    return convert_qdq_float_to_fp16(src, out), None  # int8-qdq-fp16


def _calibrate(row: Format, src: Path, out: Path, options: dict[str, Any], log) -> tuple[Path, Any]:
    from edgeopt.quant.calibrate import calibrate_onnx

    if options.get("data") is None:
        raise ConfigError(f"{row.name} is calibrated on images: pass data=DIR (the CLI's `data`/`calib_data`)")
    options = dict(options)
    result = calibrate_onnx(src, options.pop("data"), out, target=CALIBRATE_TARGET[row.name], **options)
    return result.path, result


def _build_engine(row: Format, src: Path, out: Path, options: dict[str, Any], log) -> tuple[Path, Any]:
    from edgeopt.trt.build import build_engine

    if options.get("build") is None:
        raise ConfigError("an engine needs its build options: pass build=BuildConfig(...) (precision, batch profile)")
    result = build_engine(src, out, options["build"], log=log, device=options.get("device"), verify=options.get("verify"),
                          prepare=prepare_for_engine)
    return result.path, result


_STAGES = {"export": _export, "calibrate": _calibrate, "build-engine": _build_engine}


def prepare_for_engine(onnx: Path, out: Path, plan: BuildPlan, options: BuildConfig) -> tuple[Path, dict[str, Any] | None]:
    """The ONNX a build plan parses, made from ``onnx`` beside the engine ``out``: the FP16 graph
    (11.x FP16), the Q/DQ INT8 from an FP32 export, and on 11.x its float part cast to FP16.
    Returns it and the calibration record when it was calibrated here."""
    # beside the engine, its name with the ONNX's suffix (m.int8.engine -> m.int8.int8.onnx), as
    # build-engine always named them: a Q/DQ ONNX the user calibrated (m.int8.onnx) is never replaced
    calibration = None
    if plan.convert == "fp16":
        return _export(FORMATS["onnx-fp16"], onnx, out.with_suffix(FORMATS["onnx-fp16"].suffix), {}, None)[0], None
    if plan.convert == "int8":
        onnx, result = _calibrate(FORMATS["int8-qdq"], onnx, out.with_suffix(FORMATS["int8-qdq"].suffix),
                                  {"data": options.calib_data, "num_images": options.num_images, "method": options.calib_method,
                                   "batch_size": options.calib_batch_size}, None)
        calibration = {"path": str(result.calibration_manifest), "method": options.calib_method}
    if plan.cast_float_fp16 and format_of(read_manifest(onnx)).name == "int8-qdq":
        row = FORMATS["int8-qdq-fp16"]
        try:
            onnx = _export(row, onnx, out.with_suffix(row.suffix), {}, None)[0]
        except Exception as exc:  # noqa: BLE001 - an opset upgrade or parity failure: build the FP32-float Q/DQ (warned)
            warnings.warn(f"could not cast {onnx.name}'s float part to FP16 ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                          EdgeoptWarning, stacklevel=2)
    return onnx, calibration
