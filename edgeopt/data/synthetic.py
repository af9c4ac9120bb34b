"""A small deterministic dataset the project renders itself (clearly labelled synthetic).

Each class is a shape with a typical colour on a textured background, cut as crops of varying
size and aspect ratio like TACO's, so the whole pipeline can run without downloads. Class names
carry a ``synthetic_`` prefix so every table, plot and CSV made from it says what it is.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgeopt.artifacts import Manifest, atomic_path, atomic_write_json
from edgeopt.errors import ConfigError

SYNTHETIC_CLASSES = (
    "synthetic_metal",
    "synthetic_paper",
    "synthetic_paperpack",
    "synthetic_plastic",
    "synthetic_plasticbag",
    "synthetic_styrofoam",
)
# (shape, base RGB colour) per class; shapes differ so small models learn them in a few epochs
_STYLE = {
    "synthetic_metal": ("circle", (150, 155, 165)),
    "synthetic_paper": ("rect", (235, 230, 215)),
    "synthetic_paperpack": ("triangle", (190, 140, 80)),
    "synthetic_plastic": ("ellipse", (60, 130, 220)),
    "synthetic_plasticbag": ("blob", (230, 70, 160)),
    "synthetic_styrofoam": ("cross", (250, 250, 250)),
}
MANIFEST_NAME = "dataset.json"


def render_synthetic(
    out: str | Path, per_class: int = 40, seed: int = 0, min_side: int = 48, max_side: int = 160
) -> Path:
    """Render ``per_class`` JPEG crops per class into ``out/<class>/`` and write ``dataset.json``.

    Deterministic for a given seed; re-running overwrites the same files with the same bytes.
    """
    if per_class < 2:
        raise ConfigError(f"per_class={per_class}: need at least 2 images per class for a split")
    if not 16 <= min_side <= max_side <= 2048:
        raise ConfigError(f"image sides {min_side}..{max_side} invalid: use 16 <= min <= max <= 2048")
    out = Path(out)
    rng = np.random.default_rng(seed)
    counts = {}
    for name in SYNTHETIC_CLASSES:
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = _render_one(name, rng, min_side, max_side)
            with atomic_path(out / name / f"{i:04d}.jpg") as tmp:
                image.save(tmp, format="JPEG", quality=90)
        counts[name] = per_class
    manifest = Manifest(
        kind="dataset",
        classes=list(SYNTHETIC_CLASSES),
        extra={"synthetic": True, "generator": "edgeopt.data.synthetic", "seed": seed, "counts": counts},
    )
    atomic_write_json(out / MANIFEST_NAME, manifest.to_dict())
    return out


def is_synthetic(root: str | Path) -> bool:
    """True when ``root`` was rendered by :func:`render_synthetic`."""
    import json

    path = Path(root) / MANIFEST_NAME
    try:
        return bool(json.loads(path.read_text()).get("extra", {}).get("synthetic"))
    except (OSError, ValueError, AttributeError):
        return False


def _render_one(name: str, rng: np.random.Generator, min_side: int, max_side: int) -> Image.Image:
    shape, base = _STYLE[name]
    w, h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    bg = rng.integers(40, 200, size=3)
    noise = rng.normal(0, 18, size=(h, w, 3))
    canvas = np.clip(bg + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    colour = tuple(int(np.clip(c + rng.normal(0, 18), 0, 255)) for c in base)
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6)
    rx, ry = w * rng.uniform(0.25, 0.42), h * rng.uniform(0.25, 0.42)
    if shape == "circle":
        r = min(rx, ry)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "rect":
        draw.rectangle((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - ry), (cx - rx, cy + ry), (cx + rx, cy + ry)], fill=colour)
    elif shape == "ellipse":
        draw.ellipse((cx - rx, cy - ry * 0.5, cx + rx, cy + ry * 0.5), fill=colour)
    elif shape == "blob":
        pts = []
        for k in range(12):
            a = 2 * math.pi * k / 12
            f = rng.uniform(0.6, 1.0)
            pts.append((cx + rx * f * math.cos(a), cy + ry * f * math.sin(a)))
        draw.polygon(pts, fill=colour)
    else:  # cross
        t = 0.35
        draw.rectangle((cx - rx, cy - ry * t, cx + rx, cy + ry * t), fill=colour)
        draw.rectangle((cx - rx * t, cy - ry, cx + rx * t, cy + ry), fill=colour)
    return image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0, 1.2))))
