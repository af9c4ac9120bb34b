"""Preprocessing presets: the single definition of resize rule, input size, mean and std.

Train, export, calibrate, eval and bench all preprocess through :class:`Preprocess`, and every
manifest records it, so an artifact is always fed exactly what it was trained on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from edgeopt.settings import choices
from edgeopt.errors import ConfigError, DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

Resize = choices("Resize", "squash", "center_crop",
                 doc="How an image meets the input size: squash (resize both axes) or center_crop (timm's eval rule).")


RESIZE_RULES = tuple(r.value for r in Resize)


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input.

    ``squash`` resizes to ``size x size`` ignoring aspect ratio (what the competition's crops,
    which vary wildly in shape, were fed with); ``center_crop`` resizes the shorter side to
    ``size / crop_pct`` and crops the centre. ``jpeg_draft`` lets the JPEG decoder downscale in
    the DCT domain first (a large speed-up on big photos); it is part of the preset so that
    training and deployment see the same pixels.
    """

    size: int = 96
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "squash"
    crop_pct: float = 0.875
    jpeg_draft: bool = True

    def __post_init__(self) -> None:
        if not 16 <= int(self.size) <= 1024:
            raise ConfigError(f"input size {self.size} is out of range: use 16..1024 pixels")
        if self.resize not in RESIZE_RULES:
            raise ConfigError(f"resize rule {self.resize!r} is unknown: use one of {', '.join(RESIZE_RULES)}")
        if not 0.1 <= self.crop_pct <= 1.0:
            raise ConfigError(f"crop_pct {self.crop_pct} is out of range: use 0.1..1.0")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std need 3 values each and std must be positive")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        if not data:
            raise ConfigError("this artifact's preprocessing is unknown (it was built from an ONNX without edgeopt metadata): "
                              "rebuild it with edgeopt build-engine --img-size N --mean R,G,B --std R,G,B --classes FILE")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown preprocessing keys {unknown}; valid keys: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def with_size(self, size: int) -> Preprocess:
        return dataclasses.replace(self, size=int(size))

    # -- the pixel pipeline -------------------------------------------------------------------
    def load_rgb(self, path: str | Path, min_side: int | None = None) -> Image.Image:
        """Decode ``path`` as an upright RGB image (EXIF orientation applied, alpha on white)."""
        return load_rgb(path, draft_to=(min_side or self.size) if self.jpeg_draft else None)

    def resize_image(self, image: Image.Image) -> Image.Image:
        """Apply the resize rule; returns a ``size x size`` RGB image."""
        s = self.size
        if self.resize == "squash":
            return image.resize((s, s), Image.BILINEAR)
        short = max(s, round(s / self.crop_pct))
        w, h = image.size
        scale = short / min(w, h)
        image = image.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        left, top = (w - s) // 2, (h - s) // 2
        return image.crop((left, top, left + s, top + s))

    def load_uint8(self, path: str | Path) -> np.ndarray:
        """``path`` -> HWC uint8 array of the final size (before normalisation)."""
        draft = self.size if self.resize == "squash" else round(self.size / self.crop_pct)
        return np.asarray(self.resize_image(self.load_rgb(path, min_side=draft)), dtype=np.uint8)

    def normalize(self, hwc_uint8: np.ndarray) -> np.ndarray:
        """HWC or NHWC uint8 -> CHW / NCHW float32, normalised: ``(x / 255 - mean) / std``.

        Transposes the uint8 pixels first (a quarter of the bytes) and applies the normalisation as
        one in-place multiply-add per channel: about 8x cheaper than the textbook order, which
        matters when decode threads share the CPU with the model.
        """
        std = np.asarray(self.std, dtype=np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32)[:, None, None]
        shift = (-np.asarray(self.mean, dtype=np.float64) / std).astype(np.float32)[:, None, None]
        x = np.ascontiguousarray(np.moveaxis(hwc_uint8, -1, -3)).astype(np.float32)
        x *= scale
        x += shift
        return x

    def load(self, path: str | Path) -> np.ndarray:
        """``path`` -> CHW float32 model input."""
        return self.normalize(self.load_uint8(path))

    def iter_batches(self, paths: Sequence[Path], batch_size: int, workers: int = 4) -> Iterator[np.ndarray]:
        """NCHW float32 batches of ``paths`` in order, decoded by a thread pool two batches ahead.

        Decoding overlaps whatever the consumer does with the previous batch (PIL releases the GIL).
        """
        chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = [[pool.submit(self.load, p) for p in c] for c in chunks[:2]]
            for k in range(len(chunks)):
                futures = pending.pop(0)
                if k + 2 < len(chunks):
                    pending.append([pool.submit(self.load, p) for p in chunks[k + 2]])
                yield np.stack([f.result() for f in futures])


def load_rgb(path: str | Path, draft_to: int | None = None) -> Image.Image:
    """Decode an image file as upright RGB; raise ``DataError`` naming the file when it is unusable.

    ``draft_to`` asks the JPEG decoder for the smallest DCT scale whose sides stay at or above
    that many pixels (a no-op for other formats).
    """
    try:
        with Image.open(path) as im:
            if draft_to is not None and im.format == "JPEG":
                w, h = im.size
                # keep the shorter side >= draft_to so the later resize still downsamples
                scale = min(w, h) / max(1, draft_to)
                if scale >= 2:
                    im.draft("RGB", (max(1, round(w / scale)), max(1, round(h / scale))))
            ImageOps.exif_transpose(im, in_place=True)  # decodes; no copy when upright
            return to_rgb(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc}); remove or replace the file") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Greyscale, palette, CMYK, 16-bit and alpha images -> 8-bit RGB (alpha composited on white)."""
    if im.mode == "RGB":
        im.load()
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = arr.max() or 1.0
        im = Image.fromarray((arr * (255.0 / peak)).astype(np.uint8), mode="L")
    return im.convert("RGB")
