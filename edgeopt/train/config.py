"""``edgeopt train``'s settings (``TrainConfig``), what a run returns, and its progress hooks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgeopt.data.presets import Resize
from edgeopt.errors import ConfigError
from edgeopt.settings import as_json, check_settings, choices, setting


Mix = choices("Mix", "none", "mixup", "cutmix",
              doc="Function matching's blends: none, mixup (a weighted average) or cutmix (a pasted box).")


KDMode = choices("KDMode", "all", "true-label",
                 doc="Where the KD term applies: on every image, or only where the teacher is right.")


KDLoss = choices("KDLoss", "kl", "dist",
                 doc="KL to the softened targets (Hinton), or DIST's Pearson relations (Huang et al., NeurIPS 2022).")


KD_MODES = tuple(m.value for m in KDMode)
KD_LOSSES = tuple(m.value for m in KDLoss)


@dataclasses.dataclass(frozen=True)
class KDConfig:
    """Distillation: the loss (temperature, weight, mode) and where the soft targets come from, for
    ``train``, ``prune``/``decompose`` fine-tuning, ``qat`` and ``search`` alike: ``teachers`` run
    online on every step, or ``soft_labels``, a bank of their stored targets (``edgeopt soft-labels``),
    so no teacher runs. Neither: no distillation (a stage with a teacher of its own, e.g. the
    uncompressed model for fine-tuning, puts it in with ``with_teachers``). Users type the settings
    with ``kd_`` in front (``--kd-temperature``)."""

    temperature: float = setting(4.0, key="kd_temperature", low=0.0, low_open=True, high=100.0, example="4",
                                 help="The softmax temperature of teacher and student in the KD term.")
    alpha: float = setting(0.7, key="kd_alpha", low=0.0, high=1.0, example="0.7",
                           help="Weight of the KD term (1: KD alone, function matching).")
    mode: KDMode = setting(KDMode.all, key="kd", help="all or true-label (KD only where the teacher is right).")
    teachers: tuple[Path, ...] = setting((), key="teacher", help="Teacher checkpoint(s) for distillation; repeat to average several.")
    soft_labels: Path | None = setting(None, help="Distil from a soft-label bank (edgeopt soft-labels) instead of running teachers.")
    loss: KDLoss = setting(KDLoss.kl, key="kd_loss", help="kl (KL to the softened targets) or dist (DIST's Pearson relations).")
    class_weighted: bool = setting(False, key="kd_class_weighted",
                                   help="Weigh each image's KD term by its class's weight (rare classes count more).")
    mix: Mix = setting(Mix.none, key="kd_mix", help="Function matching: none, mixup or cutmix (each view blended with another "
                       "image's; teacher and student see the same blend; needs `kd_alpha` 1).")
    mix_alpha: float = setting(1.0, key="kd_mix_alpha", low=0.0, low_open=True, high=100.0, example="1",
                               help="The blend ratio's Beta(alpha, alpha).")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.soft_labels is not None and self.teachers:
            raise ConfigError("soft labels come from teachers online or from a bank, not both: pass `teacher` or `soft_labels`")
        if self.loss == "dist" and self.mode != "all":
            raise ConfigError(f"`kd_loss` dist with `kd` {self.mode}: DIST matches relations across the whole batch "
                              "(each class's column too), so it cannot leave out the images the teacher gets wrong; use `kd` all")
        if self.loss == "dist" and self.class_weighted:
            raise ConfigError("`kd_loss` dist with `kd_class_weighted`: DIST's relations have no per-image term to weigh; "
                              "use `kd_loss` kl for class-weighted KD")
        if self.mix != "none" and self.alpha != 1.0:
            raise ConfigError(f"`kd_mix` {self.mix} with `kd_alpha` {self.alpha}: a blend of two images has no single label "
                              "to learn; function matching learns the teacher alone: use `kd_alpha` 1")
        if self.loss == "dist" and self.alpha == 0:
            raise ConfigError("`kd_loss` dist with `kd_alpha` 0: the distillation term would have no weight; "
                              "give `kd_alpha` > 0 (1: DIST alone)")

    @property
    def enabled(self) -> bool:
        return bool(self.teachers) or self.soft_labels is not None

    def with_teachers(self, *teachers: str | Path) -> KDConfig:
        """This config with ``teachers`` online, unless a bank already supplies the targets."""
        return self if self.soft_labels is not None else dataclasses.replace(self, teachers=tuple(Path(t) for t in teachers))

    def to_dict(self) -> dict:
        return {name: as_json(getattr(self, name)) for name in ("temperature", "alpha", "mode", "loss", "class_weighted", "mix",
                                                                 "mix_alpha", "teachers", "soft_labels")}


Optimizer = choices("Optimizer", "adamw", "sgd")


Schedule = choices("Schedule", "cosine", "onecycle", doc="The learning-rate schedule: cosine (with warm-up) or onecycle.")


Loss = choices("Loss", "ce", "weighted", "focal", doc="The hard-label loss: ce, weighted (class-weighted CE) or focal.")


OPTIMIZERS, SCHEDULES, LOSSES = (tuple(m.value for m in e) for e in (Optimizer, Schedule, Loss))
_DATA = "Folder of <class>/<image> crops."


@dataclasses.dataclass
class TrainConfig:
    model: str = setting(help="timm/torchvision name, a registered model (edgeopt.register_model, an installed plugin) or NAME.yaml.")
    data: Path = setting(help=_DATA)
    out: Path = setting(Path("runs/train"), help="Run folder for best.pt, last.pt, metrics.json, curve.png (default: runs/train, "
                        "or the next free runs/trainN).")
    val: Path | None = setting(None, help="Separate validation folder (else `val_split`).")
    val_split: float = setting(0.2, low=0.0, high=0.9, help="Stratified validation fraction of `data`; 0 trains on all of it for "
                               "`epochs` (the final epoch is the result).")
    img_size: int = setting(96, low=16, high=1024, help="Input size in pixels.")
    epochs: int = setting(10, low=1, high=100_000, help="Epochs.")
    batch_size: int = setting(64, low=1, high=65_536, help="Batch size.")
    lr: float | None = setting(None, low=1e-7, high=10.0, help="Peak learning rate (default: 1e-3 with `pretrained`, else 2e-3).")
    weight_decay: float = setting(0.05, low=0.0, high=1.0, help="AdamW's decoupled weight decay (SGD's L2).")
    optimizer: Optimizer = setting(Optimizer.adamw, help="adamw or sgd.")
    schedule: Schedule = setting(Schedule.cosine, help="cosine (with warm-up) or onecycle.")
    warmup_epochs: float = setting(1.0, low=0.0, high=1000.0, help="Linear warm-up epochs of the cosine schedule.")
    label_smoothing: float = setting(0.1, low=0.0, high=0.5, help="Label smoothing of the hard-label loss (0 for a teacher "
                                     "made to be distilled: its targets then carry more than the label).")
    loss: Loss = setting(Loss.weighted, help="ce, weighted (class-weighted CE) or focal.")
    focal_gamma: float = setting(2.0, low=0.0, high=10.0, help="The focal loss's gamma.")
    randaugment: int = setting(0, low=0, high=30, help="RandAugment magnitude (0 = off).")
    scale_min: float | None = setting(None, low=0.05, high=1.0, help="Smallest random crop, as a share of the image (default: 0.6 "
                                      "with `pretrained`, else 0.35).")
    brightness: float | None = setting(None, low=0.0, high=1.0, help="Brightness jitter (default: 0.2 with `pretrained`, else 0).")
    mixup: float = setting(0.0, low=0.0, high=10.0, help="Mixup Beta alpha (0 = off).")
    pretrained: bool = setting(False, help="Start from ImageNet weights.")
    resize: Resize = setting(Resize.squash, help="How images meet the input size: squash or center_crop.")
    kd: KDConfig = dataclasses.field(default_factory=KDConfig)  # with its teachers or soft-label bank: distillation
    device: str = setting("auto", help="auto, cpu or cuda.")
    seed: int = setting(0, low=0, high=2**32 - 1, help="Seed of the split, the views and the initialisation.")
    workers: int | None = setting(None, low=0, high=256, help="DataLoader workers (default: 0 on CPU).")
    resume: bool = setting(False, help="Continue from OUT/last.pt.")
    amp: bool = True
    init_checkpoint: Path | None = None  # start from this checkpoint's architecture and weights (e.g. a pruned model)
    bn_recalibrate: bool = setting(False, help="After training, recompute best.pt's BatchNorm statistics on the training images "
                                   "as deployed (FixRes).")
    cache_scale: float | None = setting(None, low=1.0, high=4.0, help="Training images cached at this multiple of `img_size` "
                                        "(default: 2 up to 128 px, so every view is a downsample, else 1.15).")
    warn_view_repeats: bool = True  # warn when the epochs outnumber a bank's views (a caller that chose both says it itself)

    def __post_init__(self) -> None:
        # fine-tuning keeps what pretraining gives: a lower lr and milder crops (figures in benchmarks/README.md)
        if self.lr is None:
            self.lr = 1e-3 if self.pretrained else 2e-3
        if self.scale_min is None:
            self.scale_min = 0.6 if self.pretrained else 0.35
        if self.brightness is None:
            self.brightness = 0.2 if self.pretrained else 0.0
        check_settings(self)
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
        return {k: (v.to_dict() if isinstance(v, KDConfig) else as_json(v)) for k, v in d.items()}

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
