"""In-memory image caches and augmentation for training (torchvision transforms v2).

Decoding is the costly part on a small CPU, so every image is decoded once: validation images
exactly as ``Preprocess`` prepares them, training images larger than the view size (``cache_size``)
so random-resized crops still have pixels to work with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from edgeopt.data.folder import FolderScan
from edgeopt.data.presets import Preprocess


def decode_all(paths: Sequence[Path], preprocess: Preprocess, workers: int | None = None) -> torch.Tensor:
    """N x 3 x S x S uint8 tensor of ``preprocess.load_uint8`` for every path (threads: PIL drops the GIL)."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(preprocess.load_uint8, paths))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class CachedImages(Dataset):
    """Decoded uint8 images + labels; ``transform`` maps a uint8 CHW tensor to a float [0, 1] view."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int], transform=None) -> None:
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i]
        x = self.transform(x) if self.transform is not None else x.float().div_(255.0)
        return x, self.labels[i]


def train_transform(view_size: int, scale_min: float = 0.35, randaugment: int = 0, flip: bool = True,
                    brightness: float = 0.0):
    """RandomResizedCrop + flip (+ brightness jitter, + RandAugment of the given magnitude) -> float [0, 1]."""
    from torchvision.transforms import v2

    ops = [v2.RandomResizedCrop(view_size, scale=(scale_min, 1.0), antialias=True)]
    if flip:
        ops.append(v2.RandomHorizontalFlip())
    if brightness > 0:
        ops.append(v2.ColorJitter(brightness=brightness))
    if randaugment > 0:
        ops.append(v2.RandAugment(num_ops=2, magnitude=randaugment))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(ops)


# Small inputs are cached at twice their size, so a random-resized crop (area 0.35-1) is a downsample
# along both axes, as the deployed input (one antialiased resize of a larger photo) is: at 1.15x, most
# views of a 32 px student were upsampled along an axis, softer than anything it sees deployed.
# Large inputs (teachers) keep 1.15x: their source photos are rarely twice their size anyway.
SMALL_INPUT = 128


def cache_size(view_size: int) -> int:
    """The size training caches an image at for views of ``view_size``."""
    return 2 * view_size if view_size <= SMALL_INPUT else max(view_size, int(round(view_size * 1.15)))


def cache_preprocess(preprocess: Preprocess) -> Preprocess:
    """How training caches an image for a model of ``preprocess``: squashed (or centre-cropped) to
    ``cache_size`` of its input size, so random-resized crops still have pixels to work with."""
    return preprocess.with_size(cache_size(preprocess.size))


def cached_datasets(
    train: FolderScan, val: FolderScan, preprocess: Preprocess, view_size: int, scale_min: float,
    randaugment: int, workers: int | None = None, brightness: float = 0.0, cache_scale: float | None = None,
) -> tuple[CachedImages, CachedImages]:
    """Training set cached at ``cache_size`` of the view size (or ``cache_scale`` times it), squashed;
    validation exactly as deployed."""
    size = cache_size(view_size) if cache_scale is None else max(view_size, int(round(view_size * cache_scale)))
    cache = preprocess.with_size(size)
    train_images = decode_all([s.path for s in train.samples], cache, workers)
    val_images = (decode_all([s.path for s in val.samples], preprocess, workers) if val.samples
                  else torch.zeros((0, 3, preprocess.size, preprocess.size), dtype=torch.uint8))
    return (
        CachedImages(train_images, train.labels, train_transform(view_size, scale_min, randaugment, brightness=brightness)),
        CachedImages(val_images, val.labels),
    )
