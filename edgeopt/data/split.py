"""``edgeopt data split``: a crops folder into ``pool/``, ``judge/`` and ``test/``, stratified and seeded.

The three folders the stage-by-stage recipe keeps apart: ``pool/`` trains, ``judge/`` checks INT8 and
engines (nothing trains on it), ``test/`` is only reported on. Images are hard links (copies across
file systems), so a split costs no disk; ``split.json`` records the source, fractions, seed and counts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifacts import atomic_write_json
from edgeopt.data.folder import link_samples, scan_folder, stratified_split
from edgeopt.errors import ConfigError, DataError

PARTS = ("pool", "judge", "test")


@dataclasses.dataclass
class SplitResult:
    out: Path
    parts: dict[str, Path]  # part -> its folder (a part of no images is absent)
    counts: dict[str, dict[str, int]]  # part -> class -> images
    classes: list[str]
    record: Path
    skipped: int  # files of the source that are not usable images

    def total(self, part: str) -> int:
        return sum(self.counts.get(part, {}).values())


def split_folder(root: str | Path, out: str | Path, *, test: float = 0.2, judge: float = 0.1, seed: int = 0) -> SplitResult:
    """Split ``root`` (``<class>/<image>``) into ``out/pool``, ``out/judge`` and ``out/test``.

    Each class is split at the same fractions (``stratified_split``: the test share first, then the
    judge share of what is left), so every part keeps the class balance; the same seed gives the
    same split on any machine. ``judge`` 0 makes no judge folder. ``out`` must be new or empty: a
    split never mixes into another one.
    """
    root, out = Path(root), Path(out)
    if not 0 < test < 1:
        raise ConfigError(f"`test` {test} is out of range: give the test share in (0, 1), e.g. 0.2")
    if not 0 <= judge < 1 or test + judge >= 1:
        raise ConfigError(f"`judge` {judge} is out of range: give a share in [0, 1) that leaves a pool "
                          f"(`test` + `judge` = {test + judge:g} must be under 1), e.g. 0.1")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not an empty folder; pick a new `out` folder "
                        "(a split never mixes into another)")
    if out.resolve().is_relative_to(root.resolve()):
        raise DataError(f"{out}: is inside the source folder {root}; put the split beside it")
    scan = scan_folder(root)
    labels = scan.labels
    rest, test_idx = stratified_split(labels, test, seed)
    parts: dict[str, np.ndarray] = {"test": test_idx}
    if judge > 0:
        pool_local, judge_local = stratified_split(labels[rest], judge / (1 - test), seed + 1)
        parts["pool"], parts["judge"] = rest[pool_local], rest[judge_local]
    else:
        parts["pool"] = rest
    counts = {part: {c: int((labels[idx] == k).sum()) for k, c in enumerate(scan.classes)} for part, idx in parts.items()}
    short = sorted({c for part in parts for c, n in counts[part].items() if n == 0})
    if short:
        need = len(parts)
        have = {c: n for c, n in scan.class_counts().items() if c in short}
        raise DataError(f"{root}: class(es) {', '.join(f'{c} ({n} image(s))' for c, n in have.items())} are too small to "
                        f"give every part ({', '.join(p for p in PARTS if p in parts)}) an image; each class needs "
                        f"at least {need}: add images, or lower `test`/`judge`")
    folders = {part: link_samples(scan, parts[part], out / part) for part in PARTS if part in parts}
    record: dict[str, Any] = {"source": str(root.resolve()), "seed": seed, "fractions": {"test": test, "judge": judge},
                              "classes": scan.classes, "counts": counts,
                              "note": "stratified by class; pool trains, judge checks INT8 and engines, test is only reported on"}
    path = atomic_write_json(out / "split.json", record)
    return SplitResult(out, folders, counts, scan.classes, path, scan.skipped_count())
