"""ImageFolder-style crops (``<root>/<class>/<image>``): scanning, validation, splits, weights."""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from edgeopt.errors import ConfigError, DataError, EdgeoptWarning

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclasses.dataclass
class FolderScan:
    """What a crops folder holds: usable samples, plus everything skipped and why."""

    root: Path
    classes: list[str]
    samples: list[Sample]
    skipped: dict[str, list[str]]  # reason -> relative paths
    converted: dict[str, int]  # source colour mode -> count (greyscale, CMYK, alpha, ...)
    sizes: list[tuple[int, int]]  # (width, height) of each sample, same order

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([s.label for s in self.samples], dtype=np.int64)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(s.label for s in self.samples)
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    def class_weights(self) -> np.ndarray:
        """Inverse-frequency weights normalised to mean 1 (sklearn's 'balanced')."""
        counts = np.asarray(list(self.class_counts().values()), dtype=np.float64)
        weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
        return weights.astype(np.float32)

    def imbalance_ratio(self) -> float:
        counts = [c for c in self.class_counts().values() if c > 0]
        return max(counts) / min(counts) if counts else float("nan")

    def subset(self, indices: Sequence[int]) -> FolderScan:
        return dataclasses.replace(
            self,
            samples=[self.samples[i] for i in indices],
            sizes=[self.sizes[i] for i in indices],
        )

    def skipped_count(self) -> int:
        return sum(len(v) for v in self.skipped.values())


def find_classes(root: Path) -> list[str]:
    """Class names are the sub-folder names, sorted, so the order is stable across machines."""
    if not root.exists():
        raise DataError(f"{root}: no such folder; pass a folder of <class>/<image> crops")
    if not root.is_dir():
        raise DataError(f"{root}: is a file; pass a folder of <class>/<image> crops")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{root}: has no class sub-folders; expected <root>/<class>/<image>.jpg "
            "(make one with 'edgeopt data taco' or 'edgeopt data synth')"
        )
    return classes


def scan_folder(
    root: str | Path,
    classes: Sequence[str] | None = None,
    verify: bool = True,
    allow_empty_classes: bool = False,
) -> FolderScan:
    """List and check every image under ``root``.

    Non-image files, unreadable, corrupt and truncated images are skipped and counted (a warning
    lists how many); greyscale, CMYK, palette and alpha images are kept and counted as converted.
    ``classes`` fixes the class order (e.g. from a checkpoint's manifest); a folder the model
    does not know is an error. An empty class folder is an error unless ``allow_empty_classes``.
    """
    root = Path(root)
    found = find_classes(root)
    if classes is None:
        classes = found
    else:
        classes = list(classes)
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(
                f"{root}: class folders {unknown} are not among the model's classes {classes}; "
                "evaluate on data with the same classes"
            )
    samples: list[Sample] = []
    sizes: list[tuple[int, int]] = []
    skipped: dict[str, list[str]] = {}
    converted: Counter[str] = Counter()
    empty: list[str] = []
    for label, name in enumerate(classes):
        folder = root / name
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        kept = 0
        for path in files:
            rel = str(path.relative_to(root))
            if path.name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.setdefault("not an image file", []).append(rel)
                continue
            info = _probe_image(path, verify)
            if isinstance(info, str):
                skipped.setdefault(info, []).append(rel)
                continue
            (w, h), mode = info
            if mode not in ("RGB",):
                converted[mode] += 1
            samples.append(Sample(path, label))
            sizes.append((w, h))
            kept += 1
        if kept == 0:
            empty.append(name)
    if empty and not allow_empty_classes:
        raise DataError(
            f"{root}: class folder(s) {empty} hold no usable images; add images or remove the folder"
        )
    if not samples:
        raise DataError(f"{root}: no usable images found")
    _warn_skipped(root, skipped)
    return FolderScan(root, list(classes), samples, skipped, dict(converted), sizes)


def _warn_skipped(root: Path, skipped: dict[str, list[str]]) -> None:
    if skipped:
        total = sum(len(v) for v in skipped.values())
        detail = "; ".join(f"{len(v)} {k} (e.g. {v[0]})" for k, v in skipped.items())
        warnings.warn(f"{root}: skipped {total} file(s): {detail}", EdgeoptWarning, stacklevel=3)


def _probe_image(path: Path, verify: bool) -> tuple[tuple[int, int], str] | str:
    """((w, h), mode) for a usable image, else the reason it is not."""
    try:
        with Image.open(path) as im:
            size, mode = im.size, im.mode
            if im.format == "JPEG" and "exif" in im.info:
                orientation = im.getexif().get(0x0112, 1)
                if orientation in (5, 6, 7, 8):
                    size = (size[1], size[0])
            if verify:
                # decoding at reduced DCT scale still reads every byte, so truncation shows up
                if im.format == "JPEG":
                    im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                im.load()
    except Image.DecompressionBombError:
        return "too large to decode safely"
    except (OSError, SyntaxError, ValueError):
        return "corrupt or truncated image"
    if size[0] < 1 or size[1] < 1:
        return "empty image"
    return size, mode


def stratified_split(
    labels: Sequence[int] | np.ndarray, val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified train/val indices: each class split at the same fraction.

    Every class with at least two images keeps at least one image on each side.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val fraction {val_fraction} is out of range: use a value in (0, 1), e.g. 0.2")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val_idx.extend(idx[:n_val].tolist())
        train_idx.extend(idx[n_val:].tolist())
    return np.sort(np.asarray(train_idx, dtype=np.int64)), np.sort(np.asarray(val_idx, dtype=np.int64))


def split_scan(scan: FolderScan, val_fraction: float, seed: int = 0) -> tuple[FolderScan, FolderScan]:
    """Split a scanned folder into stratified train and val parts."""
    train_idx, val_idx = stratified_split(scan.labels, val_fraction, seed)
    if len(val_idx) == 0:
        raise DataError(f"{scan.root}: too few images for a validation split of {val_fraction}")
    return scan.subset(train_idx), scan.subset(val_idx)


def materialize_split(root: str | Path, out: str | Path, test_fraction: float, seed: int = 0) -> tuple[Path, Path]:
    """Split a crops folder into ``out/pool`` and ``out/test`` (stratified, deterministic), as links or copies.

    The test part is for headline figures: nothing trained or selected on the pool sees it.
    """
    scan = scan_folder(root)
    pool_idx, test_idx = stratified_split(scan.labels, test_fraction, seed)
    if len(test_idx) == 0:
        raise DataError(f"{root}: too few images for a test split of {test_fraction}")
    out = Path(out)
    link_samples(scan, pool_idx, out / "pool")
    link_samples(scan, test_idx, out / "test")
    return out / "pool", out / "test"


def link_samples(scan: FolderScan, indices: Sequence[int] | np.ndarray, dest: str | Path) -> Path:
    """``dest/<class>/<image>`` for the ``indices`` of ``scan``, as hard links (copies across file systems);
    an image keeps its path inside its class folder, and a file already there is left as it is."""
    import os
    import shutil

    dest = Path(dest)
    for i in indices:
        sample = scan.samples[int(i)]
        name = scan.classes[sample.label]
        target = dest / name / sample.path.relative_to(scan.root / name)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(sample.path, target)
        except OSError:  # another file system: copy
            shutil.copy2(sample.path, target)
    return dest


def select_subset(scan: FolderScan, num_images: int, seed: int = 0) -> list[Sample]:
    """A deterministic, class-stratified subset (largest-remainder quotas, at least one per class)."""
    if num_images < 1:
        raise ConfigError(f"`num_images` {num_images} must be at least 1")
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


def list_images(root: str | Path) -> list[Path]:
    """Every image file under ``root`` (any layout, class folders or not), sorted; hidden files left out."""
    return sorted(p for p in Path(root).rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def usable_images(root: str | Path) -> list[Path]:
    """Every image under ``root`` that decodes (any layout), sorted: the rule ``scan_folder`` applies to a
    labelled folder, for unlabelled ones. Corrupt, truncated and empty files are skipped and counted in
    one warning."""
    root = Path(root)
    kept: list[Path] = []
    skipped: dict[str, list[str]] = {}
    for path in list_images(root):
        info = _probe_image(path, verify=True)
        if isinstance(info, str):
            skipped.setdefault(info, []).append(str(path.relative_to(root)))
        else:
            kept.append(path)
    _warn_skipped(root, skipped)
    return kept


def classifiable_images(folder: str | Path) -> list[Path]:
    """``usable_images`` of a folder to classify (submit time, ``predict``); a missing folder, or one with
    no usable image, is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; pass the folder of images to classify")
    paths = usable_images(folder)
    if not paths:
        raise DataError(f"{folder}: holds no usable images ({', '.join(IMAGE_SUFFIXES)})")
    return paths
