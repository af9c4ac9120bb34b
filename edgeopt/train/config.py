"""``edgeopt train``'s settings (``TrainConfig``), what a run returns, and its progress hooks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgeopt.data.presets import RESIZE_RULES
from edgeopt.errors import ConfigError
from edgeopt.train.distill import KDConfig


OPTIMIZERS = ("adamw", "sgd")


SCHEDULES = ("cosine", "onecycle")


LOSSES = ("ce", "weighted", "focal")


@dataclasses.dataclass
class TrainConfig:
    model: str
    data: Path
    out: Path = Path("runs/train")
    val: Path | None = None
    val_split: float = 0.2
    img_size: int = 96
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None  # default: 1e-3 for a pretrained backbone, 2e-3 from scratch
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    loss: str = "weighted"
    focal_gamma: float = 2.0
    randaugment: int = 0  # magnitude; 0 = off
    scale_min: float | None = None  # random-resized-crop area from this to 100 %; default 0.6 pretrained, 0.35 scratch
    brightness: float | None = None  # ColorJitter brightness; default 0.2 pretrained, 0 scratch
    mixup: float = 0.0  # Beta(alpha, alpha); 0 = off
    pretrained: bool = False
    resize: str = "squash"
    kd: KDConfig = dataclasses.field(default_factory=KDConfig)  # with its teachers or soft-label bank: distillation
    device: str = "auto"
    seed: int = 0
    workers: int | None = None
    resume: bool = False
    amp: bool = True
    init_checkpoint: Path | None = None  # start from this checkpoint's architecture and weights (e.g. a pruned model)
    bn_recalibrate: bool = False  # FixRes: best.pt's BatchNorm statistics recomputed on the training images as deployed
    cache_scale: float | None = None  # training images cached at this multiple of img_size; None: ``data.loaders.cache_size``
    warn_view_repeats: bool = True  # warn when the epochs outnumber a bank's views (a caller that chose both says it itself)

    def __post_init__(self) -> None:
        # fine-tuning keeps what pretraining gives: a lower lr and milder crops (figures in benchmarks/README.md)
        if self.lr is None:
            self.lr = 1e-3 if self.pretrained else 2e-3
        if self.scale_min is None:
            self.scale_min = 0.6 if self.pretrained else 0.35
        if self.brightness is None:
            self.brightness = 0.2 if self.pretrained else 0.0
        checks = [
            ("`epochs`", self.epochs, 1, 100_000), ("`batch_size`", self.batch_size, 1, 65_536),
            ("`img_size`", self.img_size, 16, 1024), ("`lr`", self.lr, 1e-7, 10.0),
            ("`weight_decay`", self.weight_decay, 0.0, 1.0), ("`label_smoothing`", self.label_smoothing, 0.0, 0.5),
            ("`randaugment`", self.randaugment, 0, 30), ("`scale_min`", self.scale_min, 0.05, 1.0),
            ("`mixup`", self.mixup, 0.0, 10.0), ("`warmup_epochs`", self.warmup_epochs, 0.0, 1000.0),
            ("`val_split`", self.val_split, 0.0, 0.9), ("`brightness`", self.brightness, 0.0, 1.0),
            ("`cache_scale`", self.cache_scale if self.cache_scale is not None else 1.0, 1.0, 4.0),
        ]
        for name, value, lo, hi in checks:
            if not lo <= value <= hi:
                raise ConfigError(f"{name} {value} is out of range: use {lo}..{hi}")
        for name, value, valid in (("`optimizer`", self.optimizer, OPTIMIZERS), ("`schedule`", self.schedule, SCHEDULES),
                                   ("`loss`", self.loss, LOSSES), ("`resize`", self.resize, RESIZE_RULES)):
            if value not in valid:
                raise ConfigError(f"{name} {value!r} is unknown: use one of {', '.join(valid)}")
        self.data, self.out = Path(self.data), Path(self.out)
        self.val = Path(self.val) if self.val else None
        if self.kd.enabled and self.randaugment:
            raise ConfigError(f"`randaugment` {self.randaugment} with distillation: the teacher must see the student's view "
                              "(crop, flip, brightness); drop `randaugment`")
        if self.kd.mix != "none" and self.mixup:
            raise ConfigError(f"`mixup` {self.mixup} with `kd_mix` {self.kd.mix}: the views are blended already; drop `mixup`")
        if self.kd.mix != "none" and not self.kd.enabled:
            raise ConfigError(f"`kd_mix` {self.kd.mix} blends distillation's views: give `teacher` or `soft_labels`")
        if self.kd.soft_labels is not None and self.mixup:
            raise ConfigError(f"`mixup` {self.mixup} with `soft_labels`: a bank holds targets for single views, not for "
                              "blends; drop `mixup` or distil from `teacher` online")
        self.init_checkpoint = Path(self.init_checkpoint) if self.init_checkpoint else None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: (v.to_dict() if isinstance(v, KDConfig) else str(v) if isinstance(v, Path) else v) for k, v in d.items()}

    @property
    def distilled(self) -> bool:
        return self.kd.enabled


@dataclasses.dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_macro_f1: float
    val_accuracy: float
    lr: float
    seconds: float
    best: bool = False


@dataclasses.dataclass
class TrainResult:
    best_checkpoint: Path
    last_checkpoint: Path
    best_macro_f1: float
    best_epoch: int
    history: list[EpochStats]
    macs: int
    params: int
    seconds: float
    device: str
    distributed: dict[str, Any] | None = None  # {"world_size": 2, "backend": "gloo"} under torchrun
    is_main: bool = True  # the process that wrote the files (rank 0)


class Callbacks:
    """Progress hooks; the CLI renders them with rich, library users may ignore them."""

    def on_start(self, config: TrainConfig, steps_per_epoch: int, device: str, start_epoch: int) -> None: ...
    def on_batch(self, epoch: int, step: int, loss: float) -> None: ...
    def on_epoch(self, stats: EpochStats) -> None: ...
