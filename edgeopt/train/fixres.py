"""FixRes's cheapest part (Touvron et al., "Fixing the train-test resolution discrepancy", NeurIPS 2019):
random-resized crops make objects larger in training than in the deployed full-image input, and the
BatchNorm statistics learnt on those views are off for it. After training, every BatchNorm's running
mean and variance are recomputed on the training images as deployment prepares them (full image,
the model's own resize rule, no augmentation); no weight changes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn


def recalibrate_bn(model: nn.Module, batches: Any, device: torch.device | str = "cpu") -> int:
    """Recompute the running statistics of every BatchNorm of ``model`` over ``batches`` (normalised
    images as deployed) with PyTorch's own ``torch.optim.swa_utils.update_bn``: statistics reset, each
    layer normalising with its batch's statistics, the running values the average over batches.
    Returns the number of images. Weights, biases and every other parameter stay as they are; the
    model is left in eval mode."""
    from torch.optim.swa_utils import update_bn

    tensors = [torch.as_tensor(b) for b in batches]
    update_bn(tensors, model, device=torch.device(device))
    model.eval()
    return sum(len(t) for t in tensors)


def recalibrate_checkpoint(checkpoint: Path, images: Sequence[Path], batch_size: int = 64) -> int:
    """``recalibrate_bn`` on a saved checkpoint over ``images`` prepared by its own preprocessing; the
    checkpoint is rewritten (atomically) with a record of it in its manifest."""
    from edgeopt.artifacts import read_manifest
    from edgeopt.data.presets import Preprocess
    from edgeopt.models.checkpoint import load_model_and_arch, save_checkpoint

    model, manifest, arch = load_model_and_arch(checkpoint)
    preprocess = Preprocess.from_dict(manifest.preprocess)
    seen = recalibrate_bn(model, preprocess.iter_batches(list(images), batch_size))
    previous = read_manifest(checkpoint)
    metrics = {k: v for k, v in previous.metrics.items() if k not in ("macs", "params")}
    save_checkpoint(checkpoint, model, arch, list(manifest.classes), preprocess, metrics=metrics,
                    extra={**previous.extra, "bn_recalibrated": {"images": seen, "preprocess": preprocess.to_dict(),
                                                                 "why": "FixRes: BN statistics of the deployed input"}},
                    epoch=int(metrics.get("epoch", 0) or 0))
    return seen
