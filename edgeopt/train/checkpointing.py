"""What a training run writes: ``best.pt`` (with its manifest), the resumable ``last.pt``, the learning curve."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from edgeopt.artifacts import atomic_path
from edgeopt.models.checkpoint import CHECKPOINT_FORMAT, cpu_state, save_checkpoint


def no_nan(obj: Any) -> Any:
    """NaN (no validation) as JSON null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [no_nan(v) for v in obj]
    return obj


def save_best(path: Path, model, arch, classes, preprocess, complexity, metrics, stats, config, synthetic, teachers,
               distributed, soft_labels=None, train_images=None) -> None:
    save_checkpoint(
        path, model, arch, classes, preprocess, epoch=stats.epoch, complexity=complexity,
        metrics={"val_macro_f1": metrics.macro_f1, "val_accuracy": metrics.accuracy, "val_per_class_f1": metrics.per_class_f1,
                 "epoch": stats.epoch} if metrics is not None else
                {"epoch": stats.epoch, "selection": "final epoch (no validation split: `val_split` 0)"},
        extra={"train_config": config.to_dict(), "data": str(config.data), "synthetic_data": synthetic, "teachers": teachers,
               **({"soft_labels": soft_labels} if soft_labels else {}), **({"distributed": distributed} if distributed else {}),
               **(train_images or {})},
    )


def save_last(path: Path, model, optimizer, scheduler, identity, epoch, history, best_f1, best_epoch) -> None:
    state = {"format": CHECKPOINT_FORMAT, "state_dict": cpu_state(model), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "identity": identity, "epoch": epoch,
             "history": [dataclasses.asdict(h) for h in history], "best_f1": best_f1, "best_epoch": best_epoch}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
