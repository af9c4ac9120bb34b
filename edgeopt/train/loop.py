"""Training stage: ``train_classifier(TrainConfig) -> TrainResult``.

Writes ``best.pt`` (best validation macro-F1) and its manifest, ``last.pt`` (resumable),
``metrics.json`` and ``curve.png`` into ``config.out``. The settings live in ``train.config``, what a
run writes in ``train.checkpointing``; ``TrainConfig`` is imported from here too.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeopt.artifacts import atomic_write_json
from edgeopt.models.checkpoint import load_model_and_arch, read_checkpoint
from edgeopt.data.folder import FolderScan, scan_folder, split_scan
from edgeopt.data.seen import record as train_record
from edgeopt.data.presets import Preprocess
from edgeopt.train.distill import DistillViews, kd_loss, load_teachers, view_for
from edgeopt.train.distributed import (
    DistContext,
    all_gather,
    all_reduce_sum,
    init_distributed,
    per_rank_batch,
    shutdown,
)
from edgeopt.errors import ConfigError, EdgeoptWarning
from edgeopt.metrics import classification_metrics
from edgeopt.runtime.predict import predict
from edgeopt.models.complexity import count_complexity
from edgeopt.models.registry import preset_for_model
from edgeopt.device import resolve_device
from edgeopt.train.checkpointing import no_nan, plot_curve, save_best, save_last
from edgeopt.train.config import (
    Callbacks,
    EpochStats,
    TrainConfig,
    TrainResult,
)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _hard_loss(config: TrainConfig, class_weights: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    weight = class_weights if config.loss in ("weighted", "focal") else None
    if config.loss == "focal":
        def focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            logp = F.log_softmax(logits.float(), 1)
            ce = F.nll_loss(logp, target, weight=weight, reduction="none")
            pt = logp.gather(1, target[:, None]).squeeze(1).exp()
            return ((1 - pt) ** config.focal_gamma * ce).mean()
        return focal
    return lambda logits, target: F.cross_entropy(logits.float(), target, weight=weight, label_smoothing=config.label_smoothing)


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def _make_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, pct_start=0.25)
    warmup = int(config.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def load_splits(config: TrainConfig) -> tuple[FolderScan, FolderScan]:
    """Train/val scans: a separate ``--val`` folder, or a stratified split of ``--data``."""
    scan = scan_folder(config.data)
    if config.val is not None:
        return scan, scan_folder(config.val, classes=scan.classes, allow_empty_classes=True)
    if config.val_split == 0:  # a final run on the whole pool: fixed epochs, no selection
        return scan, scan.subset([])
    return split_scan(scan, config.val_split, seed=config.seed)


@torch.no_grad()
def predict_loader(model: nn.Module, loader, preprocess: Preprocess, device: torch.device,
                   loss_fn=None) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, predictions, summed loss) over a loader of [0, 1] views."""
    model.eval()
    labels = []

    def run(batch) -> torch.Tensor:
        x, y = batch
        labels.append(y)
        return model(view_for(x.to(device, non_blocking=True), preprocess)).float()

    logits = predict(run, loader)
    if not labels:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0.0
    y = torch.cat(labels)
    loss_sum = float(loss_fn(torch.from_numpy(logits), y)) * len(y) if loss_fn is not None else 0.0
    return y.numpy(), logits.argmax(1), loss_sum


def evaluate(model: nn.Module, loader, preprocess: Preprocess, device: torch.device, classes: list[str],
                   loss_fn=None, dist: DistContext | None = None) -> tuple[Any, float]:
    """Macro-F1 & co. (and the mean loss when ``loss_fn`` is given); under DDP each process evaluates its
    shard and the shards are gathered, so every process computes the same metrics."""
    y_true, y_pred, loss_sum = predict_loader(model, loader, preprocess, device, loss_fn)
    parts = all_gather((y_true, y_pred, loss_sum), dist or DistContext())
    y_true = np.concatenate([p[0] for p in parts])
    y_pred = np.concatenate([p[1] for p in parts])
    loss = sum(p[2] for p in parts) / len(y_true) if loss_fn is not None and len(y_true) else float("nan")
    return classification_metrics(y_true, y_pred, classes), loss


BatchLoss = Callable[[nn.Module, Any, int], tuple[torch.Tensor, int]]  # (net, batch, epoch) -> (loss, images)


def make_batch_loss(config: TrainConfig, preprocess: Preprocess, device: torch.device, hard_loss, teachers: list[Any],
                    bank: Any, class_weights: torch.Tensor | None = None) -> BatchLoss:
    """The loss of one training batch: cross-entropy on the labels, plus distillation from the
    teachers run on the same views or from the bank's stored logits (``config.kd``), mixup on both."""
    use_amp = config.amp and device.type == "cuda"
    mixup = torch.distributions.Beta(config.mixup, config.mixup) if config.mixup > 0 else None

    def batch_loss(net: nn.Module, batch: Any, epoch: int) -> tuple[torch.Tensor, int]:
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        soft = batch[2] if len(batch) > 2 else None  # teachers' views, or a bank's logits
        y2, lam = y, 1.0
        if mixup is not None:
            lam = float(mixup.sample())
            perm = torch.randperm(len(y), device=device)
            x, y2 = lam * x + (1 - lam) * x[perm], y[perm]
            if teachers:  # the teachers see the same blend
                soft = [lam * v.to(device) + (1 - lam) * v.to(device)[perm] for v in soft]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = net(view_for(x, preprocess).contiguous(memory_format=torch.channels_last))
            hard = lam * hard_loss(logits, y) + (1 - lam) * hard_loss(logits, y2) if mixup else hard_loss(logits, y)
            if bank is not None:
                loss = kd_loss(logits, list(soft.to(device).unbind(1)), y, config.kd, hard, class_weights)
            elif teachers:
                with torch.no_grad():
                    t_logits = [t.model(view_for(v.to(device, non_blocking=True), t.preprocess)) for t, v in zip(teachers, soft)]
                loss = kd_loss(logits, t_logits, y, config.kd, hard, class_weights)
            else:
                loss = hard
        if not torch.isfinite(loss):
            raise ConfigError(f"training diverged at epoch {epoch + 1} (loss {float(loss)}); lower `lr`")
        return loss, len(y)

    return batch_loss


def train_one_epoch(net: nn.Module, loader, optimizer: torch.optim.Optimizer, scheduler, batch_loss: BatchLoss, epoch: int,
                    callbacks: Callbacks) -> tuple[float, int]:
    """One pass over ``loader``: a step per batch; the summed loss and the number of images."""
    net.train()
    total, count = 0.0, 0
    for step, batch in enumerate(loader):
        loss, images = batch_loss(net, batch, epoch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_value = loss.item()
        total += loss_value * images
        count += images
        callbacks.on_batch(epoch, step, loss_value)
    return total, count


def train_classifier(config: TrainConfig, callbacks: Callbacks | None = None) -> TrainResult:
    """Train, validate every epoch, keep the best checkpoint by validation macro-F1."""
    from edgeopt.data.loaders import cached_datasets
    from edgeopt.data.synthetic import is_synthetic
    from edgeopt.models import create_model

    callbacks = callbacks or Callbacks()
    t_start = time.perf_counter()
    dist, device = init_distributed(resolve_device(config.device))
    if not dist.is_main:
        callbacks = Callbacks()  # one process reports progress
    _seed_everything(config.seed)
    train_scan, val_scan = load_splits(config)
    classes = train_scan.classes
    preprocess = preset_for_model(config.model, config.img_size, config.resize)
    init_extra = None
    if config.init_checkpoint is not None:
        model, init_manifest, arch = load_model_and_arch(config.init_checkpoint)
        if list(init_manifest.classes) != list(classes):
            raise ConfigError(f"{config.init_checkpoint} has classes {init_manifest.classes}, the data {classes}")
        init_extra = init_manifest.extra
    else:
        model, arch = create_model(config.model, len(classes), pretrained=config.pretrained)
    seen = train_record([s.path for s in train_scan.samples], init_extra) if dist.is_main else {}
    complexity = count_complexity(model, config.img_size)
    teachers = load_teachers(config.kd.teachers, classes, device)
    bank = _open_bank(config, train_scan)
    train_ds, val_ds = cached_datasets(train_scan, val_scan, preprocess, config.img_size, config.scale_min, config.randaugment,
                                        config.workers, brightness=config.brightness, cache_scale=config.cache_scale)
    if config.distilled:
        train_ds = _distill_views(config, train_scan, train_ds, teachers, bank)
    if len(train_ds) < 2:
        raise ConfigError(f"{config.data}: only {len(train_ds)} training image(s); need at least 2")
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
    steps = len(train_loader)

    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    net = model  # what trains: the model itself, or its DDP wrapper (gradients all-reduced)
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = _make_optimizer(config, model)
    scheduler = _make_schedule(config, optimizer, steps)
    class_weights = torch.as_tensor(train_scan.class_weights(), device=device)
    hard_loss = _hard_loss(config, class_weights)
    plain_loss = lambda logits, y: F.cross_entropy(logits, y)  # noqa: E731  (val loss: unweighted CE)
    out = config.out
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    best_path, last_path = out / "best.pt", out / "last.pt"
    history: list[EpochStats] = []
    best_f1, best_epoch, start_epoch = -1.0, -1, 0
    identity = {"model": str(config.model), "classes": classes, "img_size": config.img_size, "epochs": config.epochs}
    if config.resume:
        if not last_path.exists():
            raise ConfigError(f"`resume`: no {last_path} to resume from; run without `resume` first")
        state = read_checkpoint(last_path)
        if state["identity"] != identity:
            raise ConfigError(
                f"`resume`: {last_path} was made with {state['identity']}, this run is {identity}; "
                "resume with the same model, data classes, size and epochs, or start a new `out`"
            )
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = [EpochStats(**h) for h in state["history"]]
        best_f1, best_epoch, start_epoch = state["best_f1"], state["best_epoch"], state["epoch"] + 1
    callbacks.on_start(config, steps, str(device), start_epoch)
    batch_loss = make_batch_loss(config, preprocess, device, hard_loss, teachers, bank, class_weights)

    for epoch in range(start_epoch, config.epochs):
        t_epoch = time.perf_counter()
        # per-epoch seed: a resumed run replays the same batches; each process its own augmentation stream
        _seed_everything(config.seed * 100_003 + epoch + 1_000_003 * dist.rank)
        generator.manual_seed(config.seed * 100_003 + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        if isinstance(train_ds, DistillViews):
            train_ds.epoch = epoch
        total, count = train_one_epoch(net, train_loader, optimizer, scheduler, batch_loss, epoch, callbacks)
        total, count = all_reduce_sum([total, count], dist)
        # the bare model, not the DDP wrapper: shards differ in length, and DDP's forward syncs buffers
        if len(val_scan.samples):
            metrics, val_loss = evaluate(model, val_loader, preprocess, device, classes, plain_loss, dist)
            f1, acc = metrics.macro_f1, metrics.accuracy
        else:  # no validation: the final epoch is the result
            metrics, val_loss, f1, acc = None, float("nan"), float("nan"), float("nan")
        stats = EpochStats(epoch + 1, total / max(count, 1), val_loss, f1, acc,
                           optimizer.param_groups[0]["lr"], time.perf_counter() - t_epoch)
        if f1 > best_f1 or (metrics is None and epoch + 1 == config.epochs):  # the same on every process
            best_f1, best_epoch, stats.best = f1, epoch + 1, True
            if dist.is_main:
                save_best(best_path, model, arch, classes, preprocess, complexity, metrics, stats, config,
                           is_synthetic(config.data), [str(t.path) for t in teachers], dist.record(),
                           bank.record() if bank is not None else None, train_images=seen)
        history.append(stats)
        if dist.is_main:
            save_last(last_path, model, optimizer, scheduler, identity, epoch, history, best_f1, best_epoch)
            atomic_write_json(out / "metrics.json", no_nan({
                "config": config.to_dict(), "best_macro_f1": best_f1, "best_epoch": best_epoch, "macs": complexity.macs,
                "params": complexity.params, "distributed": dist.record(), "validation": bool(len(val_scan.samples)),
                "history": [dataclasses.asdict(h) for h in history]}))
        callbacks.on_epoch(stats)
    if history and dist.is_main:
        plot_curve(history, out / "curve.png")
        if config.bn_recalibrate:
            from edgeopt.train.fixres import recalibrate_checkpoint

            recalibrate_checkpoint(best_path, [s.path for s in train_scan.samples], batch_size=max(32, config.batch_size))
    shutdown(dist)
    return TrainResult(best_path, last_path, best_f1, best_epoch, history, complexity.macs, complexity.params,
                       time.perf_counter() - t_start, str(device), dist.record(), dist.is_main)


def _open_bank(config: TrainConfig, train_scan: FolderScan) -> Any:
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


def _distill_views(config: TrainConfig, train_scan: FolderScan, cached: Any, teachers: list[Any], bank: Any) -> DistillViews:
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


