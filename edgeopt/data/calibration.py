"""Calibration sets: a deterministic subset of a labelled folder, checked, and its batches.

Used by INT8 calibration (``edgeopt.quant.calibrate``) and TensorRT's legacy implicit calibrator
(``edgeopt.trt.calibrator``) alike.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from edgeopt.data.folder import Sample, scan_folder, select_subset
from edgeopt.data.presets import Preprocess
from edgeopt.errors import DataError, EdgeoptWarning

RECOMMENDED_IMAGES = 300


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
            "add images or lower `batch_size`"
        )
    missing = [c for i, c in enumerate(classes) if not any(s.label == i for s in picked)]
    if len(picked) < RECOMMENDED_IMAGES:
        warnings.warn(f"calibrating on {len(picked)} images; {RECOMMENDED_IMAGES}+ give more reliable INT8 ranges", EdgeoptWarning, stacklevel=2)
    if missing:
        warnings.warn(f"calibration set has no images of class(es) {missing}", EdgeoptWarning, stacklevel=2)
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


