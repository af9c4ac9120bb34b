"""``edgeopt predict``: every image under a folder (recursively) through any artifact, into a CSV of
class and confidence per file (the competition's submission; what a robot's integrator runs first).

The images go through the one scoring loop (``runtime.scoring``) with the artifact's own
preprocessing; the CSV has submit time's columns (``path,prediction,confidence``), then the runners-up
when ``top_k`` > 1.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from edgeopt.artifacts import atomic_write_text
from edgeopt.settings import check_settings, setting
from edgeopt.errors import ConfigError
from edgeopt.runtime.scoring import folder_labels, score_batches, score_logits

Progress = Callable[[int, int], None]  # (images done, images in all)


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    artifact: Path = setting(help="Checkpoint, ONNX model or engine.")
    folder: Path = setting(help="Images to classify, in any layout (recursively).")
    out: Path = setting(Path("predictions.csv"), help="The CSV: path, prediction, confidence (then the runners-up with `top_k`).")
    top_k: int = setting(1, low=1, high=1000, help="Classes per image, most likely first.")
    batch_size: int = setting(32, low=1, high=65_536, help="Batch size.")
    backend: str = setting("auto", help="The runner backend (auto: the first its format lists).")
    device: str = setting("cpu", help="cpu or cuda.")
    workers: int = setting(4, low=1, high=256, help="Decode threads.")
    unlabelled: bool = setting(False, help="Classify a folder whose sub-folders look like classes other than the model's.")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclasses.dataclass
class PredictResult:
    csv: Path
    images: int
    counts: dict[str, int]  # predicted class -> images, in the model's class order
    seconds: float
    backend: str
    precision: str
    macro_f1: float | None = None  # when the folder is <class>/<image> with the model's classes
    accuracy: float | None = None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def predictions_csv(names: Sequence[str], probs: np.ndarray, classes: Sequence[str], top_k: int = 1) -> str:
    """``path,prediction,confidence`` per row (submit time's columns), then ``prediction_2,confidence_2``...
    up to ``top_k``; confidences are softmax probabilities to 5 decimals."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["path", "prediction", "confidence"]
    for k in range(2, top_k + 1):
        header += [f"prediction_{k}", f"confidence_{k}"]
    writer.writerow(header)
    for name, row, p in zip(names, order, probs):
        cells = [name]
        for j in row:
            cells += [classes[int(j)], f"{p[int(j)]:.5f}"]
        writer.writerow(cells)
    return buf.getvalue()


def _counted(batches: Iterable[np.ndarray], total: int, progress: Progress | None) -> Iterator[np.ndarray]:
    done = 0
    for batch in batches:
        yield batch
        done += len(batch)
        if progress is not None:
            progress(done, total)


def classify_folder(config: PredictConfig, progress: Progress | None = None) -> PredictResult:
    """Classify every image under ``config.folder`` and write the CSV (atomically) to ``config.out``.

    Undecodable files are skipped with one warning; a folder with no usable image, an artifact with no
    class names, and ``top_k`` over the model's class count are errors.
    """
    from edgeopt.data.folder import classifiable_images as list_images
    from edgeopt.data.presets import Preprocess
    from edgeopt.runtime import open_runner
    from edgeopt.runtime.evaluate import artifact_manifest

    c = config
    manifest = artifact_manifest(c.artifact)
    if not manifest.classes:
        raise ConfigError(f"{c.artifact}: its class names are unknown (built from an ONNX without edgeopt metadata): "
                          "rebuild it with edgeopt build-engine --classes FILE (one name a line)")
    classes = list(manifest.classes)
    if c.top_k > len(classes):
        raise ConfigError(f"`top_k` {c.top_k} is more than the model's {len(classes)} classes")
    if c.out.exists() and c.out.is_dir():
        raise ConfigError(f"`out` {c.out} is a folder: give the CSV's file name, e.g. predictions.csv")
    paths = list_images(c.folder)
    labels = folder_labels(c.folder, paths, classes, c.unlabelled)
    preprocess = Preprocess.from_dict(manifest.preprocess)
    runner = open_runner(c.artifact, backend=c.backend, device=c.device)  # INT8 ONNX: the kernels a deployment runs
    t0 = time.perf_counter()
    if progress is not None:
        progress(0, len(paths))
    batches = _counted(preprocess.iter_batches(paths, c.batch_size, c.workers), len(paths), progress)
    probs = softmax(score_batches([runner.run], batches)[0].logits)
    atomic_write_text(c.out, predictions_csv([str(p.relative_to(c.folder)) for p in paths], probs, classes, c.top_k))
    seconds = time.perf_counter() - t0
    pred = probs.argmax(1)
    tally = Counter(int(k) for k in pred)
    result = PredictResult(c.out, len(paths), {name: tally.get(i, 0) for i, name in enumerate(classes)}, seconds,
                           runner.backend, runner.precision)
    metrics = score_logits(probs, labels, classes)
    if metrics is not None:
        result.macro_f1, result.accuracy = metrics.macro_f1, metrics.accuracy
    return result
