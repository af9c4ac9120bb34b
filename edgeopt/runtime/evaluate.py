"""Evaluation stage: any artifact (checkpoint, ONNX, engine), same preprocessing, same metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifacts import Manifest, atomic_write_json, read_manifest
from edgeopt.data.presets import Preprocess
from edgeopt.errors import ConfigError
from edgeopt.metrics import ClassificationMetrics
from edgeopt.plots import plot_confusion
from edgeopt.runtime import artifact_kind, open_runner
from edgeopt.runtime.scoring import labelled_folder, score_folder


@dataclasses.dataclass
class EvalResult:
    artifact: Path
    backend: str
    precision: str
    metrics: ClassificationMetrics
    predictions: np.ndarray
    size_bytes: int
    agreement: float | None = None  # top-1 agreement with the first artifact of a comparison

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": str(self.artifact), "backend": self.backend, "precision": self.precision,
                "size_bytes": self.size_bytes, "agreement": self.agreement, **self.metrics.to_dict()}


def artifact_manifest(path: str | Path) -> Manifest:
    kind = artifact_kind(path)
    return read_manifest(path, expect_kind=kind)


def evaluate_artifact(path: str | Path, data: str | Path, backend: str = "auto", device: str = "cpu",
                      batch_size: int = 32, plot: Path | None = None, json_path: Path | None = None,
                      int8_exec: str = "emulate") -> EvalResult:
    """Run ``path`` over every image under ``data`` (``<class>/<image>``) and score it.

    INT8 ONNX models are evaluated as emulated Q/DQ by default (``int8_exec``: quantize and
    dequantize in float around float ops, the quantized model's own accuracy); ``kernels``
    measures ONNX Runtime's CPU int8 kernels instead.
    """
    path = Path(path)
    manifest = artifact_manifest(path)
    preprocess = Preprocess.from_dict(manifest.preprocess)
    if not manifest.classes:
        raise ConfigError(f"{path}: its class names are unknown (built from an ONNX without edgeopt metadata): "
                          "rebuild it with edgeopt build-engine --classes FILE (one name a line)")
    options = {"int8_exec": int8_exec} if artifact_kind(path) == "onnx" else {}
    runner = open_runner(path, backend=backend, device=device, **options)
    scored = score_folder([runner.run], labelled_folder(data, manifest.classes), manifest.classes, preprocess, batch_size)[0]
    preds, metrics = scored.predictions, scored.metrics
    result = EvalResult(path, runner.backend, runner.precision, metrics, preds, path.stat().st_size)
    if plot is not None:
        plot_confusion(metrics, plot, title=f"{path.name}: macro-F1 {metrics.macro_f1:.3f}")
    if json_path is not None:
        atomic_write_json(json_path, result.to_dict())
    return result


def compare_artifacts(paths: Sequence[str | Path], data: str | Path, backend: str = "auto", device: str = "cpu",
                      batch_size: int = 32, json_path: Path | None = None, int8_exec: str = "emulate") -> list[EvalResult]:
    """Evaluate several artifacts on the same data; agreement is top-1 agreement with the first.

    ``backend`` applies to every artifact: one that cannot run on it is an error, not skipped.
    """
    results = [evaluate_artifact(p, data, backend=backend, device=device, batch_size=batch_size, int8_exec=int8_exec)
               for p in paths]
    for r in results:
        r.agreement = float((r.predictions == results[0].predictions).mean())
    if json_path is not None:
        atomic_write_json(json_path, [r.to_dict() for r in results])
    return results
