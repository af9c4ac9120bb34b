"""The one labelled-folder scoring loop: runs over images, their logits, the labels, macro-F1 & co.

Evaluation, prediction with labels, submit time, training's validation and the INT8/engine judge
(``runtime.judge``) all score through ``score_batches``/``score_folder`` (the logits come from the one
prediction loop, ``runtime.predict``; the figures from ``edgeopt.metrics``), and read labels from a
folder with ``labelled_folder`` (a ``<class>/<image>`` folder of the model's classes) or
``folder_labels`` (any folder to classify: labels when it is laid out as the model's classes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.errors import DataError
from edgeopt.metrics import ClassificationMetrics, classification_metrics
from edgeopt.runtime.predict import Run, predict_each


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """Images to score, in order, and their class indices (None: unlabelled)."""

    paths: list[Path]
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)


@dataclasses.dataclass
class Scored:
    """One run's logits over a set of images, and its metrics where the images are labelled."""

    logits: np.ndarray  # float32, (images, classes)
    labels: np.ndarray | None
    metrics: ClassificationMetrics | None

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(1)


def labelled_folder(folder: str | Path, classes: Sequence[str]) -> ImageSet:
    """The images of ``<folder>/<class>/<image>`` for the model's ``classes`` (other folders are not read;
    a class may have no folder) with their labels."""
    from edgeopt.data.folder import scan_folder

    scan = scan_folder(folder, classes=list(classes), allow_empty_classes=True)
    return ImageSet([s.path for s in scan.samples], scan.labels)


def folder_labels(folder: Path, paths: Sequence[Path], classes: Sequence[str], unlabelled: bool) -> np.ndarray | None:
    """Labels when ``folder`` is ``<class>/<image>`` with the model's classes; None for any other layout.

    A folder laid out as classes (every image one folder deep, two folders or more) whose names are
    not all the model's is an error: that is a model of other classes, or data of another task;
    ``unlabelled`` classifies it anyway."""
    index = {c: i for i, c in enumerate(classes)}
    rel = [p.relative_to(folder).parts for p in paths]
    names = sorted({r[0] for r in rel if len(r) == 2})
    if unlabelled or any(len(r) != 2 for r in rel) or len(names) < 2:
        return None
    foreign = [n for n in names if n not in index]
    if foreign:
        raise DataError(f"{folder}: its sub-folders read as classes {names}, but {foreign} are not among the model's "
                        f"classes {list(classes)}: a model of other classes? Pass `unlabelled` to classify the images anyway")
    return np.asarray([index[r[0]] for r in rel])


def score_logits(logits: np.ndarray, labels: np.ndarray | None, classes: Sequence[str]) -> ClassificationMetrics | None:
    """Macro-F1 & co. of ``logits``' top-1 against ``labels`` (None when there are no labels)."""
    if labels is None:
        return None
    return classification_metrics(labels, np.asarray(logits).argmax(1), classes)


def score_batches(runs: Sequence[Run], batches: Iterable[Any], classes: Sequence[str] | None = None,
                  labels: np.ndarray | None = None) -> list[Scored]:
    """Every run's logits over ``batches`` (each decoded once), scored against the labels.

    A batch is an image array, or an ``(images, labels)`` pair (a loader's): then the labels are
    collected from the batches. Without ``classes`` nothing is scored (``metrics`` None: the caller
    gathers shards first, as training's validation under DDP)."""
    collected: list[Any] = []

    def images_of(stream: Iterable[Any]) -> Iterator[Any]:
        for batch in stream:
            if isinstance(batch, (tuple, list)):
                collected.append(batch[1])
                batch = batch[0]
            yield batch

    logits = predict_each(runs, images_of(batches))
    if collected:
        labels = np.concatenate([np.asarray(y.cpu() if hasattr(y, "cpu") else y) for y in collected])
    return [Scored(out, labels, score_logits(out, labels, classes) if classes is not None else None) for out in logits]


def score_folder(runs: Sequence[Run], images: ImageSet, classes: Sequence[str], preprocess: Any, batch_size: int,
                 workers: int = 4) -> list[Scored]:
    """``score_batches`` over ``images`` decoded and preprocessed by ``preprocess``."""
    return score_batches(runs, preprocess.iter_batches(images.paths, batch_size, workers), classes, images.labels)
