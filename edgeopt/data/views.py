"""Augmented views as explicit parameters: a crop box in the image's own coordinates, a flip, a brightness.

Distillation needs the teacher and the student to see the *same* view (Beyer et al., "Knowledge
distillation: A good teacher is patient and consistent", CVPR 2022), each at its own input size,
and a soft-label bank (FKD, Shen & Xing, ECCV 2022) needs to store that view so a student can crop
it again later without the teacher. So a view is six numbers, drawn from a seed of its own
(``view_seed``: the run's seed, the image's relative path, the view's index), and rendered from
any decoded copy of the image at any size by ``render_view``.

The box is drawn as torchvision's ``RandomResizedCrop.get_params`` draws it (area fraction in
``[scale_min, 1]``, log-uniform aspect ratio in ``[3/4, 4/3]``, ten tries, else the whole image),
in coordinates normalised to the image's width and height; the flip has probability 1/2; the
brightness factor is uniform in ``[1 - b, 1 + b]`` as ``ColorJitter(brightness=b)`` draws it.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

from edgeopt.train.config import Mix

VIEW_FIELDS = ("x0", "y0", "width", "height", "flip", "brightness")
RATIO = (3 / 4, 4 / 3)


def view_seed(seed: int, key: str, index: int) -> np.random.SeedSequence:
    """The seed of view ``index`` of the image at relative path ``key`` (independent of order and platform)."""
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode("utf-8")), int(index)])


def sample_view(seed: np.random.SeedSequence, scale_min: float, brightness: float, flip: bool = True) -> np.ndarray:
    """One view's six parameters (``VIEW_FIELDS``), float32."""
    rng = np.random.default_rng(seed)
    x0, y0, w, h = 0.0, 0.0, 1.0, 1.0
    for _ in range(10):
        area = rng.uniform(scale_min, 1.0)
        aspect = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        cw, ch = math.sqrt(area * aspect), math.sqrt(area / aspect)
        if 0 < cw <= 1 and 0 < ch <= 1:
            x0, y0, w, h = rng.uniform(0, 1 - cw), rng.uniform(0, 1 - ch), cw, ch
            break
    flipped = float(rng.random() < 0.5) if flip else 0.0
    factor = rng.uniform(1 - brightness, 1 + brightness) if brightness > 0 else 1.0
    return np.asarray([x0, y0, w, h, flipped, factor], dtype=np.float32)


def sample_views(seed: int, key: str, indices: range | list[int], scale_min: float, brightness: float) -> np.ndarray:
    """``len(indices) x 6`` views of one image."""
    return np.stack([sample_view(view_seed(seed, key, i), scale_min, brightness) for i in indices])


def pixel_box(view: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) in pixels of a normalised view box, inside the image and at least 1x1."""
    left = min(int(round(float(view[0]) * width)), width - 1)
    top = min(int(round(float(view[1]) * height)), height - 1)
    w = max(1, min(int(round(float(view[2]) * width)), width - left))
    h = max(1, min(int(round(float(view[3]) * height)), height - top))
    return top, left, h, w


def render_view(image: torch.Tensor, view: np.ndarray, size: int) -> torch.Tensor:
    """A uint8 ``3 x H x W`` image -> the view as float ``3 x size x size`` in [0, 1]."""
    from torchvision.transforms.v2 import functional as TF

    top, left, h, w = pixel_box(view, image.shape[-2], image.shape[-1])
    out = TF.resized_crop(image, top, left, h, w, [size, size], antialias=True).float().div_(255.0)
    if view[4] >= 0.5:
        out = out.flip(-1)
    if view[5] != 1.0:
        out = out.mul_(float(view[5])).clamp_(0.0, 1.0)  # ColorJitter's brightness on a float image
    return out


# -- blends: function matching's mixed views (Beyer et al.), stored as FKD/SRe2L store a crop ---------------------
MIX_MODES = tuple(m.value for m in Mix)  # train.config's ``Mix``
BLEND_FIELDS = ("partner", "lam", "bx0", "by0", "bwidth", "bheight")  # partner: an index into the set's images


def blend_seed(seed: int, key: str, index: int) -> np.random.SeedSequence:
    """The seed of the blend of view ``index`` of ``key``: apart from the view's own draws."""
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode("utf-8")), int(index), 1])


def sample_blend(seed: np.random.SeedSequence, images: int, mode: str, alpha: float) -> np.ndarray:
    """One view's blend (``BLEND_FIELDS``), float32: a partner among ``images``, a ratio ``lam`` ~ Beta(alpha,
    alpha), and for CutMix the partner's box (normalised; its area is 1 - lam, as timm's ``rand_bbox``
    draws it, clipped to the image, with ``lam`` set to what the clipped box leaves)."""
    rng = np.random.default_rng(seed)
    partner = int(rng.integers(images))
    lam = float(rng.beta(alpha, alpha))
    box = (0.0, 0.0, 0.0, 0.0)
    if mode == "cutmix":
        cut = math.sqrt(1.0 - lam)
        cx, cy = rng.uniform(0, 1), rng.uniform(0, 1)
        x0, x1 = max(0.0, cx - cut / 2), min(1.0, cx + cut / 2)
        y0, y1 = max(0.0, cy - cut / 2), min(1.0, cy + cut / 2)
        box = (x0, y0, x1 - x0, y1 - y0)
        lam = 1.0 - box[2] * box[3]
    return np.asarray([partner, lam, *box], dtype=np.float32)


def render_blend(view: torch.Tensor, partner_view: torch.Tensor, blend: np.ndarray) -> torch.Tensor:
    """Two rendered views (``3 x S x S`` in [0, 1]) blended as ``blend`` says: the partner's box pasted
    in (CutMix, a box of non-zero size), else ``lam * view + (1 - lam) * partner`` (mixup)."""
    size_h, size_w = view.shape[-2], view.shape[-1]
    if blend[4] > 0 and blend[5] > 0:
        left, top = int(round(float(blend[2]) * size_w)), int(round(float(blend[3]) * size_h))
        right = min(size_w, left + max(1, int(round(float(blend[4]) * size_w))))
        bottom = min(size_h, top + max(1, int(round(float(blend[5]) * size_h))))
        out = view.clone()
        out[..., top:bottom, left:right] = partner_view[..., top:bottom, left:right]
        return out
    lam = float(blend[1])
    return view * lam + partner_view * (1.0 - lam)
