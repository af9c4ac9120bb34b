"""Training stage: ``train_classifier(TrainConfig) -> TrainResult``.

Writes ``best.pt`` (best validation macro-F1) and its manifest, ``last.pt`` (resumable),
``metrics.json`` and ``curve.png`` into ``config.out``. The settings live in ``train.config``, what a
run writes in ``train.checkpointing``, its setup before the first epoch in ``train.setup``;
``TrainConfig`` is imported from here too.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeopt.artifacts import atomic_write_json
from edgeopt.data.presets import Preprocess
from edgeopt.device import resolve_device
from edgeopt.errors import ConfigError
from edgeopt.metrics import classification_metrics
from edgeopt.models.checkpoint import read_checkpoint
from edgeopt.runtime.scoring import score_batches
from edgeopt.plots import plot_curve
from edgeopt.train.checkpointing import no_nan, save_best, save_last
from edgeopt.train.config import (
    Callbacks,
    EpochStats,
    TrainConfig,
    TrainResult,
)
from edgeopt.train.distill import DistillViews, kd_loss, view_for
from edgeopt.train.distributed import DistContext, all_gather, all_reduce_sum, init_distributed, shutdown
from edgeopt.train.setup import TrainingRun, prepare_run


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


@torch.no_grad()
def predict_loader(model: nn.Module, loader, preprocess: Preprocess, device: torch.device,
                   loss_fn=None) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, predictions, summed loss) over a loader of ([0, 1] views, labels), through the one scoring loop."""
    model.eval()
    scored = score_batches([lambda x: model(view_for(x.to(device, non_blocking=True), preprocess)).float()], loader)[0]
    if scored.labels is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0.0
    y = torch.from_numpy(scored.labels)
    loss_sum = float(loss_fn(torch.from_numpy(scored.logits), y)) * len(y) if loss_fn is not None else 0.0
    return scored.labels, scored.predictions, loss_sum


def validate(model: nn.Module, loader, preprocess: Preprocess, device: torch.device, classes: list[str],
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


@dataclasses.dataclass
class _Progress:
    """Where a run stands: its epochs so far and the best one (what ``last.pt`` keeps for a resume)."""

    history: list[EpochStats] = dataclasses.field(default_factory=list)
    best_f1: float = -1.0
    best_epoch: int = -1
    start_epoch: int = 0


def _resume(config: TrainConfig, last_path: Any, identity: dict[str, Any], model: nn.Module, optimizer, scheduler) -> _Progress:
    """Where ``last.pt`` left off (its weights, optimizer and schedule restored), or a fresh start."""
    if not config.resume:
        return _Progress()
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
    return _Progress([EpochStats(**h) for h in state["history"]], state["best_f1"], state["best_epoch"], state["epoch"] + 1)


def _validate(run: TrainingRun, val_loss: Callable) -> tuple[Any, float, float, float]:
    """(metrics, mean loss, macro-F1, accuracy) on the validation images; NaNs and no metrics without any."""
    if not len(run.val_scan.samples):  # no validation: the final epoch is the result
        return None, float("nan"), float("nan"), float("nan")
    # the bare model, not the DDP wrapper: shards differ in length, and DDP's forward syncs buffers
    metrics, loss = validate(run.model, run.val_loader, run.preprocess, run.device, run.classes, val_loss, run.dist)
    return metrics, loss, metrics.macro_f1, metrics.accuracy


def _write_epoch(config: TrainConfig, run: TrainingRun, progress: _Progress, stats: EpochStats, metrics: Any, optimizer, scheduler,
                 identity: dict[str, Any]) -> None:
    """After an epoch: ``best.pt`` when it is the best so far (the same on every process), ``last.pt`` and
    ``metrics.json`` (by the main process)."""
    from edgeopt.data.synthetic import is_synthetic

    out, dist = config.out, run.dist
    if stats.val_macro_f1 > progress.best_f1 or (metrics is None and stats.epoch == config.epochs):
        progress.best_f1, progress.best_epoch, stats.best = stats.val_macro_f1, stats.epoch, True
        if dist.is_main:
            save_best(out / "best.pt", run.model, run.arch, run.classes, run.preprocess, run.complexity, metrics, stats, config,
                      is_synthetic(config.data), [str(t.path) for t in run.teachers], dist.record(),
                      run.bank.record() if run.bank is not None else None, train_images=run.seen)
    progress.history.append(stats)
    if dist.is_main:
        save_last(out / "last.pt", run.model, optimizer, scheduler, identity, stats.epoch - 1, progress.history,
                  progress.best_f1, progress.best_epoch)
        atomic_write_json(out / "metrics.json", no_nan({
            "config": config.to_dict(), "best_macro_f1": progress.best_f1, "best_epoch": progress.best_epoch,
            "macs": run.complexity.macs, "params": run.complexity.params, "distributed": dist.record(),
            "validation": bool(len(run.val_scan.samples)), "history": [dataclasses.asdict(h) for h in progress.history]}))


def train_classifier(config: TrainConfig, callbacks: Callbacks | None = None) -> TrainResult:
    """Train, validate every epoch, keep the best checkpoint by validation macro-F1."""
    callbacks = callbacks or Callbacks()
    t_start = time.perf_counter()
    dist, device = init_distributed(resolve_device(config.device))
    if not dist.is_main:
        callbacks = Callbacks()  # one process reports progress
    _seed_everything(config.seed)
    run = prepare_run(config, dist, device)
    model = run.model
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    net = model  # what trains: the model itself, or its DDP wrapper (gradients all-reduced)
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = _make_optimizer(config, model)
    scheduler = _make_schedule(config, optimizer, len(run.train_loader))
    class_weights = torch.as_tensor(run.train_scan.class_weights(), device=device)
    hard_loss = _hard_loss(config, class_weights)
    plain_loss = lambda logits, y: F.cross_entropy(logits, y)  # noqa: E731  (val loss: unweighted CE)
    if dist.is_main:
        config.out.mkdir(parents=True, exist_ok=True)
    identity = {"model": str(config.model), "classes": run.classes, "img_size": config.img_size, "epochs": config.epochs}
    progress = _resume(config, config.out / "last.pt", identity, model, optimizer, scheduler)
    callbacks.on_start(config, len(run.train_loader), str(device), progress.start_epoch)
    batch_loss = make_batch_loss(config, run.preprocess, device, hard_loss, run.teachers, run.bank, class_weights)

    for epoch in range(progress.start_epoch, config.epochs):
        t_epoch = time.perf_counter()
        # per-epoch seed: a resumed run replays the same batches; each process its own augmentation stream
        _seed_everything(config.seed * 100_003 + epoch + 1_000_003 * dist.rank)
        run.generator.manual_seed(config.seed * 100_003 + epoch)
        if run.sampler is not None:
            run.sampler.set_epoch(epoch)
        if isinstance(run.train_ds, DistillViews):
            run.train_ds.epoch = epoch
        total, count = train_one_epoch(net, run.train_loader, optimizer, scheduler, batch_loss, epoch, callbacks)
        total, count = all_reduce_sum([total, count], dist)
        metrics, val_loss, f1, acc = _validate(run, plain_loss)
        stats = EpochStats(epoch + 1, total / max(count, 1), val_loss, f1, acc,
                           optimizer.param_groups[0]["lr"], time.perf_counter() - t_epoch)
        _write_epoch(config, run, progress, stats, metrics, optimizer, scheduler, identity)
        callbacks.on_epoch(stats)
    _finish_run(config, run, progress)
    return TrainResult(config.out / "best.pt", config.out / "last.pt", progress.best_f1, progress.best_epoch, progress.history,
                       run.complexity.macs, run.complexity.params, time.perf_counter() - t_start, str(device), dist.record(),
                       dist.is_main)


def _finish_run(config: TrainConfig, run: TrainingRun, progress: _Progress) -> None:
    """The curve, BatchNorm recalibrated on the deployed input when asked (main process), then the process group's end."""
    if progress.history and run.dist.is_main:
        plot_curve(progress.history, config.out / "curve.png")
        if config.bn_recalibrate:
            from edgeopt.train.fixres import recalibrate_checkpoint

            recalibrate_checkpoint(config.out / "best.pt", [s.path for s in run.train_scan.samples],
                                   batch_size=max(32, config.batch_size))
    shutdown(run.dist)
