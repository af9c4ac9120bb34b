"""Dataset statistics for ``edgeopt data stats``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgeopt.data.folder import scan_folder
from edgeopt.data.synthetic import is_synthetic


@dataclasses.dataclass
class DatasetStats:
    root: Path
    synthetic: bool
    classes: list[str]
    counts: dict[str, int]
    total: int
    imbalance_ratio: float
    width: tuple[int, int, int]  # min, median, max
    height: tuple[int, int, int]
    aspect: tuple[float, float, float]  # w/h min, median, max
    skipped: dict[str, int]
    converted: dict[str, int]


def compute_stats(root: str | Path) -> DatasetStats:
    """Class counts, size and aspect-ratio spread, imbalance, skipped and converted files."""
    scan = scan_folder(root, allow_empty_classes=True)
    sizes = np.asarray(scan.sizes, dtype=np.float64)
    w, h = sizes[:, 0], sizes[:, 1]
    aspect = w / h

    def spread(v: np.ndarray) -> tuple:
        return (v.min(), float(np.median(v)), v.max())

    return DatasetStats(
        root=scan.root,
        synthetic=is_synthetic(root),
        classes=scan.classes,
        counts=scan.class_counts(),
        total=len(scan.samples),
        imbalance_ratio=scan.imbalance_ratio(),
        width=tuple(int(round(v)) for v in spread(w)),
        height=tuple(int(round(v)) for v in spread(h)),
        aspect=tuple(round(float(v), 3) for v in spread(aspect)),
        skipped={k: len(v) for k, v in scan.skipped.items()},
        converted=scan.converted,
    )
