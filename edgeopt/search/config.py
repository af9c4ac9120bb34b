"""The search's settings, its space and the records of its trials."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgeopt.bench.score import BASELINE_F1, BASELINE_MODEL
from edgeopt.errors import ConfigError
from edgeopt.quant.int8_path import Int8PathConfig
from edgeopt.train.distill import KDConfig


OBJECTIVES = ("pareto", "score")


DEFAULT_BACKBONES = ("tf_efficientnet_lite0", "mobilenet_v2")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What a trial samples. A one-element choice (or an equal range) is fixed."""

    backbones: tuple[str, ...] = DEFAULT_BACKBONES
    sizes: tuple[int, ...] = (48, 64, 80, 96)
    max_prune: float = 0.5  # largest fraction of MACs removed by pruning; 0: no pruning
    lr: tuple[float, float] = (3e-4, 3e-3)
    kd_temperature: tuple[float, float] = (1.0, 8.0)
    kd_alpha: tuple[float, float] = (0.0, 0.9)

    def __post_init__(self) -> None:
        if not self.backbones:
            raise ConfigError("`backbones` is empty: name at least one model, e.g. tf_efficientnet_lite0")
        if not self.sizes or any(not 16 <= s <= 1024 for s in self.sizes):
            raise ConfigError(f"`sizes` {list(self.sizes)}: give input sizes in 16..1024, e.g. 48,64,96")
        if not 0.0 <= self.max_prune < 0.95:
            raise ConfigError(f"`max_prune` {self.max_prune} is out of range: use 0 (no pruning) up to 0.9")
        for flag, (lo, hi), floor, ceil in (("`lr`", self.lr, 1e-6, 1.0), ("`kd_temperature`", self.kd_temperature, 0.1, 100.0),
                                            ("`kd_alpha`", self.kd_alpha, 0.0, 1.0)):
            if not floor <= lo <= hi <= ceil:
                raise ConfigError(f"{flag} {lo}..{hi} is not a range within {floor}..{ceil}: give LOW,HIGH")


# a final run from a soft-label bank: where longer schedules stopped paying for their cost on TrashNet
# (benchmarks/README.md, the soft-label bank sessions)
BANK_FINAL_EPOCHS = 100


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    data: Path
    out: Path = Path("runs/search")
    study: str = "edgeopt"
    storage: str | None = None  # default: sqlite:///OUT/search.db
    trials: int = 20  # finished trials the study should hold (all workers together)
    timeout: float | None = None  # seconds this worker searches before it stops
    space: SearchSpace = SearchSpace()
    objective: str = "pareto"
    # where the soft targets come from (teachers online, or a soft-label bank: then no teacher runs);
    # each trial's temperature and weight are sampled from the space, the config's are not used
    kd: KDConfig = dataclasses.field(default_factory=KDConfig)
    epochs: int = 12
    batch_size: int = 64
    val_split: float = 0.2
    schedule: str = "cosine"
    # >0: train the chosen point again on all of --data for this many epochs; None: BANK_FINAL_EPOCHS
    # from a soft-label bank (an epoch costs the student alone), else 0 (no final run)
    final_epochs: int | None = None
    int8: Int8PathConfig | None = None  # the final run holds out a slice and picks PTQ or QAT by the drop measured on it
    # the final run's BatchNorm statistics recomputed on its images as deployed (FixRes; TrainConfig.bn_recalibrate)
    bn_recalibrate: bool = False
    pretrained: bool = True
    baseline: str = BASELINE_MODEL
    baseline_f1: float = BASELINE_F1
    max_macs: int | None = None  # the chosen point: best val F1 within this budget
    latency_runs: int = 50
    heartbeat: int = 60  # seconds; a trial without a heartbeat for 2x this is failed and retried
    seed: int | None = None  # the sampler's; give each worker of a study its own
    device: str = "auto"
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.final_epochs is None:
            object.__setattr__(self, "final_epochs", BANK_FINAL_EPOCHS if self.kd.soft_labels is not None else 0)
        if self.int8 is not None and not self.final_epochs:
            raise ConfigError("`int8_max_drop` judges the final run's INT8: give `final_epochs` too")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"`objective` {self.objective!r} is unknown: use pareto or score")
        if self.trials < 1 or self.epochs < 1 or self.final_epochs < 0:
            raise ConfigError(f"`trials` {self.trials} / `epochs` {self.epochs} / `final_epochs` {self.final_epochs}: "
                              "trials and epochs must be >= 1, final epochs >= 0")
        if not 0.0 < self.val_split < 0.9:
            raise ConfigError(f"`val_split` {self.val_split}: a search selects on validation images; use 0.1..0.5")
        from edgeopt.train.config import SCHEDULES  # checked here, not once per trial

        if self.schedule not in SCHEDULES:
            raise ConfigError(f"`schedule` {self.schedule!r} is unknown: use one of {', '.join(SCHEDULES)}")
        if not 1 <= self.batch_size <= 65_536:
            raise ConfigError(f"`batch_size` {self.batch_size} is out of range: use 1..65536")
        if self.heartbeat < 1 or self.latency_runs < 1:
            raise ConfigError(f"`heartbeat` {self.heartbeat} / `latency_runs` {self.latency_runs}: both must be >= 1")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"`timeout` {self.timeout} must be positive (seconds)")
        if not self.study or any(c in self.study for c in "/\\") or self.study.startswith("."):
            raise ConfigError(f"`study` {self.study!r}: use a plain name (it is also a folder under `out`)")

    @property
    def study_dir(self) -> Path:
        return Path(self.out) / self.study

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(Path(self.out) / 'search.db').resolve()}"


@dataclasses.dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    val_macro_f1: float
    macs: int
    params_count: int
    latency_ms: float | None
    score: float
    host: str
    artifacts: str
    worker: str = ""
    pareto: bool = False


@dataclasses.dataclass
class SearchResult:
    study: str
    storage: str  # password masked
    trials: list[TrialRecord]
    failed: int
    chosen: TrialRecord | None
    chosen_dir: Path | None
    report: Path
    plot: Path | None
    baseline: dict[str, Any]
    final: dict[str, Any] | None = None
