"""TACO (COCO-format) annotations -> ImageFolder crops, with an optional image downloader."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, ImageOps

from edgeopt.artifacts import Manifest, atomic_path, atomic_write_json
from edgeopt.data.download import MAX_IMAGE_BYTES, DownloadRefused, download_file
from edgeopt.data.presets import to_rgb
from edgeopt.errors import ConfigError, DataError

BUILTIN_MAPS = ("taco6", "taco9")
MANIFEST_NAME = "dataset.json"


@dataclasses.dataclass(frozen=True)
class ClassMap:
    """TACO category -> target class (``None`` = dropped)."""

    name: str
    classes: list[str]
    supercategories: dict[str, str | None]
    categories: dict[str, str | None]

    def target(self, category: str, supercategory: str) -> str | None:
        if category in self.categories:
            return self.categories[category]
        return self.supercategories.get(supercategory)


def load_class_map(spec: str | Path) -> ClassMap:
    """``taco6``/``taco9`` (shipped in ``taco_classes.yaml``) or a user YAML file of one map."""
    spec_str = str(spec)
    if spec_str in BUILTIN_MAPS:
        text = resources.files("edgeopt.data").joinpath("taco_classes.yaml").read_text("utf-8")
        return _parse_map(yaml.safe_load(text)[spec_str], spec_str)
    path = Path(spec_str)
    if not path.is_file():
        raise ConfigError(
            f"`classes` {spec_str!r}: not a built-in map ({', '.join(BUILTIN_MAPS)}) nor an existing YAML file"
        )
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return _parse_map(data, str(path))


def _parse_map(data: Any, source: str) -> ClassMap:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a class map is a mapping with keys classes, supercategories, categories")
    allowed = {"classes", "supercategories", "categories", "drop"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        hint = difflib.get_close_matches(unknown[0], allowed, n=1)
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; valid keys: {sorted(allowed)}"
        )
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ConfigError(f"{source}: 'classes' must be a non-empty list of class names")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"{source}: 'classes' lists a name twice")
    tables: dict[str, dict[str, str | None]] = {}
    for key in ("supercategories", "categories"):
        table = data.get(key) or {}
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {key!r} must map TACO names to a class (or null to drop)")
        for taco_name, target in table.items():
            if target is not None and target not in classes:
                raise ConfigError(
                    f"{source}: {key}.{taco_name} -> {target!r} is not in classes {classes}"
                )
        tables[key] = {str(k): v for k, v in table.items()}
    return ClassMap(source, list(classes), tables["supercategories"], tables["categories"])


# -- annotations ------------------------------------------------------------------------------
def load_annotations(path: str | Path) -> dict[str, Any]:
    """Read and sanity-check a COCO annotations file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such annotations file; pass TACO's annotations.json")
    try:
        data = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: malformed or truncated JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "download the annotations again"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file; pass TACO's annotations.json") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing the COCO list {key!r}; is this a COCO annotations file?")
    # what the converter indexes by: checked here, so a malformed entry is one line, not a KeyError mid-way
    for key, fields in (("categories", ("id", "name")), ("images", ("id", "file_name")), ("annotations", ("id",))):
        for i, entry in enumerate(data[key]):
            missing = [f for f in fields if not isinstance(entry, dict) or entry.get(f) is None]
            if missing:
                raise DataError(f"{path}: {key}[{i}] has no {' or '.join(repr(f) for f in missing)}; "
                                "every COCO entry needs them: fix or re-download the annotations")
    for i, image in enumerate(data["images"]):
        for f in ("width", "height"):
            value = image.get(f)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise DataError(f"{path}: images[{i}] has {f} {value!r}; a size is a positive number of pixels: "
                                "fix or re-download the annotations")
    return data


def check_map_names(class_map: ClassMap, categories: list[dict[str, Any]]) -> None:
    """Catch typos in a map: a name absent from the annotations but close to one present is an error.

    A name with no close match is allowed, since an annotation file may hold only some of TACO's
    categories.
    """
    present = {
        "category": {c["name"] for c in categories},
        "supercategory": {c.get("supercategory", "") for c in categories},
    }
    for kind, names in (("category", class_map.categories), ("supercategory", class_map.supercategories)):
        for name in names:
            if name in present[kind]:
                continue
            hint = difflib.get_close_matches(name, present[kind], n=1, cutoff=0.85)
            if hint:
                raise ConfigError(
                    f"{class_map.name}: {kind} {name!r} is not in the annotations (did you mean {hint[0]!r}?)"
                )


def safe_image_path(images_dir: Path, file_name: str) -> Path:
    """Resolve ``file_name`` under ``images_dir``; refuse names that escape it."""
    base = images_dir.resolve()
    candidate = (base / file_name).resolve()
    if Path(file_name).is_absolute() or not candidate.is_relative_to(base):
        raise DataError(f"image file_name {file_name!r} escapes the images folder; refusing it")
    return candidate


@dataclasses.dataclass
class TacoSummary:
    out: Path
    class_map: str
    classes: list[str]
    counts: dict[str, int]
    skipped: dict[str, int]
    dropped_categories: dict[str, int]
    downloaded: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def convert_taco(
    annotations: str | Path,
    images: str | Path,
    out: str | Path,
    classes: str | Path = "taco6",
    padding: float = 0.0,
    min_size: int = 8,
    download: bool = False,
    fetch: Callable[[str, Path], None] | None = None,
    max_download_bytes: int = MAX_IMAGE_BYTES,
) -> TacoSummary:
    """Cut every mapped box of ``annotations`` out of its image into ``out/<class>/``.

    Boxes are scaled when the image on disk differs in size from the annotated size (e.g. the
    640 px Flickr version), padded by ``padding`` x box side, clipped to the image; zero-area
    boxes and crops whose shorter side is under ``min_size`` are skipped and counted. Crops are
    named ``<image_id>_<annotation_id>.jpg``, so nothing is ever written outside ``out``. With
    ``download``, a missing image is fetched from its ``flickr_640_url``/``flickr_url`` (http(s)
    only, at most ``max_download_bytes``, kept only when it is an image; a refusal is a counted skip).
    """
    if not 0.0 <= padding <= 1.0:
        raise ConfigError(f"`padding` {padding} is out of range: use a fraction in 0..1, e.g. 0.1")
    if min_size < 1:
        raise ConfigError(f"`min_size` {min_size} must be at least 1 pixel")
    if max_download_bytes < 1:
        raise ConfigError(f"max_download_bytes {max_download_bytes} must be at least 1 byte")
    data = load_annotations(annotations)
    class_map = load_class_map(classes)
    check_map_names(class_map, data["categories"])
    images_dir = Path(images)
    if not images_dir.is_dir() and not download:
        raise DataError(f"{images_dir}: no such images folder; pass TACO's data folder or add `download`")
    images_dir.mkdir(parents=True, exist_ok=True)
    out = Path(out)
    if out.resolve() == images_dir.resolve():
        raise ConfigError("`out` must differ from `images`; crops go to their own folder")

    image_by_id = {im["id"]: im for im in data["images"]}
    counts: Counter[str] = Counter({c: 0 for c in class_map.classes})
    skipped: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    anns_by_image = _annotations_by_image(data, class_map, image_by_id, skipped, dropped)
    for name in class_map.classes:
        (out / name).mkdir(parents=True, exist_ok=True)
    downloaded = 0
    fetch = fetch or (lambda url, dest: download_file(url, dest, max_bytes=max_download_bytes))
    for image_id, anns in anns_by_image.items():
        meta = image_by_id[image_id]
        im, fetched = _open_image(meta, images_dir, download, fetch, skipped, len(anns))
        downloaded += fetched
        if im is not None:
            _cut_crops(im, image_id, meta, anns, out, padding, min_size, counts, skipped)

    summary = TacoSummary(out, class_map.name, class_map.classes, dict(counts), dict(skipped), dict(dropped), downloaded)
    manifest = Manifest(
        kind="dataset",
        classes=class_map.classes,
        extra={
            "source": "TACO",
            "annotations": str(annotations),
            "class_map": class_map.name,
            "padding": padding,
            "min_size": min_size,
            "counts": summary.counts,
            "skipped": summary.skipped,
            "dropped_categories": summary.dropped_categories,
        },
    )
    atomic_write_json(out / MANIFEST_NAME, manifest.to_dict())
    return summary


def _annotations_by_image(data: dict[str, Any], class_map: Any, image_by_id: dict[Any, Any], skipped: Counter[str],
                          dropped: Counter[str]) -> dict[Any, list[dict[str, Any]]]:
    """Each image's annotations of a mapped category, with their target class under ``_target``; the others
    counted in ``skipped`` (unknown ids) or ``dropped`` (categories the map leaves out)."""
    cats = {c["id"]: c for c in data["categories"]}
    anns_by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in data["annotations"]:
        cat = cats.get(ann.get("category_id"))
        if cat is None:
            skipped["unknown category id"] += 1
            continue
        target = class_map.target(cat["name"], cat.get("supercategory", ""))
        if target is None:
            dropped[cat["name"]] += 1
            continue
        if ann.get("image_id") not in image_by_id:
            skipped["unknown image id"] += 1
            continue
        anns_by_image[ann["image_id"]].append({**ann, "_target": target})
    return anns_by_image


def _open_image(meta: dict[str, Any], images_dir: Path, download: bool, fetch: Callable[[str, Path], None],
                skipped: Counter[str], boxes: int) -> tuple[Image.Image | None, int]:
    """(the image of ``meta``, upright and decoded, or None with its ``boxes`` counted as skipped and why;
    1 when it was downloaded, else 0)."""
    try:
        path = safe_image_path(images_dir, str(meta["file_name"]))
    except DataError:
        skipped["file_name escapes images folder"] += boxes
        return None, 0
    fetched = False
    if not path.exists() and download:
        urls = [u for u in (meta.get("flickr_640_url"), meta.get("flickr_url")) if u]
        fetched, refused = _download_first(urls, path, fetch)
        if refused and not fetched:
            skipped[f"download refused: {refused}"] += boxes
            return None, 0
    if not path.exists():
        skipped["image missing"] += boxes
        return None, int(fetched)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)  # TACO boxes are in the upright frame
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        skipped["image corrupt or truncated"] += boxes
        return None, int(fetched)
    return im, int(fetched)


def _cut_crops(im: Image.Image, image_id: Any, meta: dict[str, Any], anns: list[dict[str, Any]], out: Path, padding: float,
               min_size: int, counts: Counter[str], skipped: Counter[str]) -> None:
    """Each annotation's box (scaled from the annotated size to the image's, padded, clipped) as a JPEG crop
    under ``out/<class>/``, counted; empty and too-small boxes counted as skipped."""
    sx = im.width / float(meta.get("width") or im.width)
    sy = im.height / float(meta.get("height") or im.height)
    for ann in anns:
        box = _crop_box(ann.get("bbox"), sx, sy, padding, im.width, im.height)
        if box is None:
            skipped["empty or malformed box"] += 1
            continue
        if min(box[2] - box[0], box[3] - box[1]) < min_size:
            skipped[f"smaller than {min_size} px"] += 1
            continue
        target_path = out / ann["_target"] / f"{image_id}_{ann['id']}.jpg"
        with atomic_path(target_path) as tmp:
            to_rgb(im.crop(box)).save(tmp, format="JPEG", quality=95)
        counts[ann["_target"]] += 1


def _crop_box(
    bbox: Any, sx: float, sy: float, padding: float, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """COCO [x, y, w, h] -> clipped integer (left, top, right, bottom), or None when empty."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None
    x, y, w, h = x * sx, y * sy, w * sx, h * sy
    px, py = w * padding, h * padding
    left, top = max(0, round(x - px)), max(0, round(y - py))
    right, bottom = min(width, round(x + w + px)), min(height, round(y + h + py))
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


# -- downloading ------------------------------------------------------------------------------
def _download_first(urls: list[str], dest: Path, fetch: Callable[[str, Path], None]) -> tuple[bool, str | None]:
    """Try each URL in turn; (fetched, the last refusal's reason when none was fetched and one was refused)."""
    refused = None
    for url in urls:
        try:
            fetch(url, dest)
            return True, None
        except DownloadRefused as exc:
            refused = exc.reason
        except DataError:
            continue
    return False, refused
