"""A training run's setup, before its first epoch: the splits, the model, teachers or a soft-label bank,
the cached datasets and the loaders (``prepare_run``), in the order the run's seed expects."""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import torch
import torch.nn as nn

from edgeopt.data.folder import FolderScan, scan_folder, split_scan
from edgeopt.data.presets import Preprocess
from edgeopt.data.seen import record_training_images
from edgeopt.errors import ConfigError, EdgeoptWarning
from edgeopt.models.checkpoint import load_model_and_arch
from edgeopt.models.complexity import count_complexity
from edgeopt.models.factory import preset_for_model
from edgeopt.train.config import TrainConfig
from edgeopt.train.distill import DistillViews, load_teachers
from edgeopt.train.distributed import DistContext, per_rank_batch


@dataclasses.dataclass
class TrainingRun:
    """What a training run works with, set up once (``prepare_run``) before its first epoch."""

    dist: DistContext
    device: torch.device
    train_scan: FolderScan
    val_scan: FolderScan
    preprocess: Preprocess
    model: nn.Module
    arch: Any
    seen: dict[str, Any]  # the training images' record for best.pt's manifest
    complexity: Any
    teachers: list[Any]
    bank: Any
    train_ds: Any
    train_loader: Any
    val_loader: Any
    sampler: Any
    generator: torch.Generator

    @property
    def classes(self) -> list[str]:
        return self.train_scan.classes


def load_splits(config: TrainConfig) -> tuple[FolderScan, FolderScan]:
    """Train/val scans: a separate ``--val`` folder, or a stratified split of ``--data``."""
    scan = scan_folder(config.data)
    if config.val is not None:
        return scan, scan_folder(config.val, classes=scan.classes, allow_empty_classes=True)
    if config.val_split == 0:  # a final run on the whole pool: fixed epochs, no selection
        return scan, scan.subset([])
    return split_scan(scan, config.val_split, seed=config.seed)


def load_model(config: TrainConfig, classes: list[str]) -> tuple[nn.Module, Any, dict[str, Any] | None]:
    """The model to train (from ``init_checkpoint``, or made by ``create_model``), its architecture record,
    and the manifest extra of the checkpoint it started from."""
    from edgeopt.models import create_model

    if config.init_checkpoint is None:
        model, arch = create_model(config.model, len(classes), pretrained=config.pretrained)
        return model, arch, None
    model, init_manifest, arch = load_model_and_arch(config.init_checkpoint)
    if list(init_manifest.classes) != list(classes):
        raise ConfigError(f"{config.init_checkpoint} has classes {init_manifest.classes}, the data {classes}")
    return model, arch, init_manifest.extra


def make_loaders(config: TrainConfig, train_ds: Any, val_ds: Any, dist: DistContext,
                  device: torch.device) -> tuple[Any, Any, Any, torch.Generator]:
    """(train loader, val loader, the DDP sampler or None, the generator reseeded every epoch)."""
    batch = per_rank_batch(config.batch_size, len(train_ds), dist)
    workers = config.workers if config.workers is not None else (min(8, (os.cpu_count() or 2) - 1) if device.type == "cuda" else 0)
    generator = torch.Generator()
    sampler = None
    if dist.enabled:  # each process a disjoint shard, reshuffled per epoch with the run's seed
        sampler = torch.utils.data.DistributedSampler(train_ds, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                                      seed=config.seed, drop_last=True)
        val_ds = torch.utils.data.Subset(val_ds, list(range(dist.rank, len(val_ds), dist.world_size)))
    train_loader = torch.utils.data.DataLoader(
        train_ds, batch_size=batch, shuffle=sampler is None, sampler=sampler,
        drop_last=len(train_ds) // dist.world_size > batch, num_workers=workers, generator=generator,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0 and not config.distilled,
    )
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=max(64, batch), num_workers=0)
    return train_loader, val_loader, sampler, generator


def prepare_run(config: TrainConfig, dist: DistContext, device: torch.device) -> TrainingRun:
    """Data, model, teachers or bank, datasets and loaders, in the order the run's seed expects."""
    from edgeopt.data.loaders import cached_datasets

    train_scan, val_scan = load_splits(config)
    classes = train_scan.classes
    preprocess = preset_for_model(config.model, config.img_size, config.resize)
    model, arch, init_extra = load_model(config, classes)
    seen = record_training_images([s.path for s in train_scan.samples], init_extra) if dist.is_main else {}
    complexity = count_complexity(model, config.img_size)
    teachers = load_teachers(config.kd.teachers, classes, device)
    bank = open_bank(config, train_scan)
    train_ds, val_ds = cached_datasets(train_scan, val_scan, preprocess, config.img_size, config.scale_min, config.randaugment,
                                        config.workers, brightness=config.brightness, cache_scale=config.cache_scale)
    if config.distilled:
        train_ds = distill_views(config, train_scan, train_ds, teachers, bank)
    if len(train_ds) < 2:
        raise ConfigError(f"{config.data}: only {len(train_ds)} training image(s); need at least 2")
    train_loader, val_loader, sampler, generator = make_loaders(config, train_ds, val_ds, dist, device)
    return TrainingRun(dist, device, train_scan, val_scan, preprocess, model, arch, seen, complexity, teachers, bank,
                train_ds, train_loader, val_loader, sampler, generator)


def open_bank(config: TrainConfig, train_scan: FolderScan) -> Any:
    """The soft-label bank and the bank row of each training image (checked against the data), or None."""
    if config.kd.soft_labels is None:
        return None
    from edgeopt.train.soft_labels import read_bank

    bank = read_bank(config.kd.soft_labels)
    bank.rows = bank.rows_for(train_scan)
    made = bank.manifest.extra.get("mix") or {"mode": "none"}
    if made["mode"] != config.kd.mix or (made["mode"] != "none" and made.get("alpha") != config.kd.mix_alpha):
        said = "views without blends" if made["mode"] == "none" else f"{made['mode']} blends (alpha {made.get('alpha')})"
        raise ConfigError(f"`kd_mix` {config.kd.mix}" + (f" (alpha {config.kd.mix_alpha})" if config.kd.mix != "none" else "")
                          + f" with a bank of {said} ({config.kd.soft_labels}): the student learns the views the bank "
                          "stores; use the bank's setting, or make a bank with `mix` as wanted")
    if config.epochs > bank.num_views and config.warn_view_repeats:
        warnings.warn(f"{config.kd.soft_labels} holds {bank.num_views} view(s) per image and the run trains {config.epochs} "
                      f"epochs: views repeat from epoch {bank.num_views + 1} (make a bank with `views` {config.epochs} "
                      "for a new view every epoch)", EdgeoptWarning, stacklevel=3)
    return bank


def distill_views(config: TrainConfig, train_scan: FolderScan, cached: Any, teachers: list[Any], bank: Any) -> DistillViews:
    """Distillation's views over the cached training images: the bank's, or drawn for the online teachers."""
    from edgeopt.data.loaders import cache_preprocess, decode_all
    from edgeopt.train.soft_labels import image_keys

    keys = image_keys(train_scan)
    if bank is not None:
        return DistillViews(cached.images, train_scan.labels, keys, config.img_size, bank=bank, rows=bank.rows)
    paths = [s.path for s in train_scan.samples]
    teacher_images = [decode_all(paths, cache_preprocess(t.preprocess), config.workers) for t in teachers]
    return DistillViews(cached.images, train_scan.labels, keys, config.img_size, seed=config.seed,
                        scale_min=float(config.scale_min), brightness=float(config.brightness),
                        teacher_images=teacher_images, teacher_sizes=[t.preprocess.size for t in teachers],
                        mix=config.kd.mix, mix_alpha=config.kd.mix_alpha)
