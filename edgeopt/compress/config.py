"""``edgeopt prune``'s and ``edgeopt decompose``'s settings (``PruneConfig``, ``DecomposeConfig``) and
the distillation fine-tuning both end with (``FinetuneConfig``). Torch-free, so the CLI builds its
options from them without loading the compression code."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgeopt.settings import check_settings, choices, setting
from edgeopt.train.config import KDConfig


Importance = choices("Importance", "l2", "taylor",
                     doc="How pruning ranks channels: weight magnitude, or first-order Taylor on the data.")


RankRule = choices("RankRule", "energy", "vbmf",
                   doc="How decomposition picks each channel mode's rank: an energy threshold, or VBMF per layer.")


def _macs(value: Any, key: str) -> int:
    from edgeopt.models.complexity import parse_macs

    return parse_macs(value, key)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Distillation fine-tuning after compression (``epochs=0``: compress only)."""

    epochs: int = setting(10, low=0, high=100_000, example="10, or 0 to compress only",
                          help="Distillation fine-tuning epochs (0: compress only, no fine-tuning).")
    lr: float = setting(1e-3, low=1e-7, high=10.0, help="Fine-tuning learning rate.")
    batch_size: int = setting(64, low=1, high=65_536, help="Batch size.")
    kd: KDConfig = dataclasses.field(default_factory=KDConfig)  # teachers: the uncompressed model, unless a bank is given
    val_split: float = setting(0.2, low=0.0, high=0.9, help="Stratified validation fraction of `data`; 0 fine-tunes on all "
                               "of it for `epochs`.")
    device: str = setting("auto", help="auto, cpu or cuda.")
    seed: int = setting(0, low=0, high=2**32 - 1, help="Seed of the split, the views and the fine-tuning.")
    workers: int | None = setting(None, low=0, high=256, help="DataLoader workers (default: 0 on CPU).")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PruneConfig:
    checkpoint: Path  # the CLI's argument, not a setting of its own
    data: Path = setting(help="Crops to fine-tune on.")
    out: Path = setting(Path("runs/prune"), help="Run folder: pruned.pt, then best.pt after fine-tuning.")
    target_macs: int = setting(low=1, parse=_macs, example="20M", help="MACs to prune down to, e.g. 20M.")
    importance: Importance = setting(Importance.l2, help="l2 (weight magnitude) or taylor (first-order, on `data`).")
    global_pruning: bool = setting(False, help="Rank channels across layers, or prune each layer alike.")
    finetune: FinetuneConfig = FinetuneConfig()

    def __post_init__(self) -> None:
        check_settings(self)


@dataclasses.dataclass(frozen=True)
class DecomposeConfig:
    checkpoint: Path  # the CLI's argument, not a setting of its own
    data: Path = setting(help="Crops to fine-tune on.")
    out: Path = setting(Path("runs/decompose"), help="Run folder: decomposed.pt, then best.pt after fine-tuning.")
    energy: float = setting(0.9, low=0.0, low_open=True, high=1.0, example="0.9, the share of squared singular values kept",
                            help="Share of squared singular values each channel mode keeps (`ranks` energy).")
    ranks: RankRule = setting(RankRule.energy, help="energy (threshold `energy`) or vbmf (empirical variational Bayes per layer).")
    pointwise: bool = setting(False, help="Decompose 1x1 convolutions too (MobileNet-style nets are mostly 1x1).")
    finetune: FinetuneConfig = FinetuneConfig()

    def __post_init__(self) -> None:
        check_settings(self)
