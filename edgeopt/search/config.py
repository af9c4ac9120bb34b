"""The search's settings, its space and the records of its trials."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgeopt.bench.score import BASELINE_F1, BASELINE_MODEL
from edgeopt.errors import ConfigError
from edgeopt.quant.int8_choice import Int8ChoiceConfig
from edgeopt.settings import check_settings, choices, setting
from edgeopt.train.config import KDConfig, Schedule


def _macs(value: Any, key: str) -> int:
    from edgeopt.models.complexity import parse_macs

    return parse_macs(value, key)


Objective = choices("Objective", "pareto", "score",
                    doc="What a trial is ranked by: pareto (val macro-F1 up, MACs down) or score (the competition's MAC score).")


OBJECTIVES = tuple(o.value for o in Objective)
DEFAULT_BACKBONES = ("tf_efficientnet_lite0", "mobilenet_v2")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What a trial samples. A one-element choice (or an equal range) is fixed."""

    backbones: tuple[str, ...] = setting(DEFAULT_BACKBONES, help="Comma-separated models to choose from.",
                                         example="tf_efficientnet_lite0,mobilenet_v2")
    sizes: tuple[int, ...] = setting((48, 64, 80, 96), low=16, high=1024, example="48,64,96",
                                     help="Comma-separated input sizes to choose from.")
    max_prune: float = setting(0.5, low=0.0, high=0.9, help="Largest fraction of MACs pruned away (0: never prune).")
    lr: tuple[float, float] = setting((3e-4, 3e-3), low=1e-6, high=1.0, example="3e-4,3e-3",
                                     help="Learning rate, or LOW,HIGH (log-uniform).")
    kd_temperature: tuple[float, float] = setting((1.0, 8.0), low=0.1, high=100.0, example="1,8",
                                                 help="KD temperature, or LOW,HIGH.")
    kd_alpha: tuple[float, float] = setting((0.0, 0.9), low=0.0, high=1.0, example="0,0.9",
                                           help="KD weight, or LOW,HIGH.")

    def __post_init__(self) -> None:
        if not self.backbones:
            raise ConfigError("`backbones` is empty: name at least one model, e.g. tf_efficientnet_lite0")
        if not self.sizes:
            raise ConfigError("`sizes` is empty: give input sizes in 16..1024, e.g. 48,64,96")
        check_settings(self)
        for name in ("lr", "kd_temperature", "kd_alpha"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ConfigError(f"`{name}` {low}..{high} is not a range: give LOW,HIGH with LOW <= HIGH")


# The teacher assistant's settings, shared by search and optimize (each with its own defaults): bounds and help.
ASSISTANT: dict[str, dict[str, Any]] = {
    "assistant_size": {"low": 0, "high": 1024, "help": "A teacher assistant's input size: the chosen backbone at this size "
                       "learns from the bank first, and its own bank teaches a final run at `assistant_for` px or below "
                       "(0: none; needs a soft-label bank)."},
    "assistant_for": {"low": 1, "high": 1024, "help": "The largest student input size (px) a teacher assistant teaches."},
    "assistant_init": {"help": "A final run below `assistant_size` starts from the teacher assistant's weights (progressive "
                       "resizing; unpruned students)."},
    "assistant_epochs": {"low": 1, "high": 100_000, "help": "The teacher assistant's epochs from the bank."},
}


def check_assistant(size: int, largest_student: int) -> None:
    """A teacher assistant (``size`` px, 0: none) teaches students at ``largest_student`` px or below: smaller than itself."""
    if size and largest_student >= size:
        raise ConfigError(f"`assistant_for` {largest_student} is not below `assistant_size` {size}: an assistant teaches "
                          "students smaller than itself; lower `assistant_for` or raise `assistant_size`")


# a final run from a soft-label bank: where longer schedules stopped paying for their cost on TrashNet
# (benchmarks/README.md, the soft-label bank sessions)
BANK_FINAL_EPOCHS = 100


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    data: Path = setting(help="Crops to train and validate on.")
    out: Path = setting(Path("runs/search"), help="Trial folders, search.db, pareto.json/png, chosen/.")
    study: str = setting("edgeopt", help="Study name; workers on one `storage` with the same name share it.")
    storage: str | None = setting(None, help="Optuna storage URL (default sqlite:///OUT/search.db; postgresql://... for many machines).")
    trials: int = setting(20, low=1, high=100_000, help="Finished trials the study should hold (all workers together).")
    timeout: float | None = setting(None, low=0.0, low_open=True, help="Seconds this worker searches before it stops.")
    space: SearchSpace = SearchSpace()
    objective: Objective = setting(Objective.pareto, help="pareto (val macro-F1 up, MACs down) or score (competition MAC score).")
    # where the soft targets come from (teachers online, or a soft-label bank: then no teacher runs);
    # each trial's temperature and weight are sampled from the space, the config's are not used
    kd: KDConfig = dataclasses.field(default_factory=KDConfig)
    epochs: int = setting(12, low=1, high=100_000, help="Training epochs per trial.")
    batch_size: int = setting(64, low=1, high=65_536, help="Batch size.")
    val_split: float = setting(0.2, low=0.0, low_open=True, high=0.9, high_open=True,
                               help="Share of `data` that validates (selects) every trial.")
    schedule: Schedule = setting(Schedule.cosine, help="Learning-rate schedule of every trial: cosine or onecycle.")
    final_epochs: int | None = setting(None, low=0, high=100_000, help="Train the chosen point again on all of `data` for N epochs "
                                       f"(0: no); default {BANK_FINAL_EPOCHS} with `soft_labels`, else 0.")
    int8: Int8ChoiceConfig | None = None  # the final run holds out a slice and picks PTQ or QAT by the drop measured on it
    assistant_size: int = setting(0, **ASSISTANT["assistant_size"])  # search: none unless asked (it needs a bank)
    assistant_for: int = setting(32, **ASSISTANT["assistant_for"])
    assistant_init: bool = setting(False, **ASSISTANT["assistant_init"])
    assistant_epochs: int = setting(40, **ASSISTANT["assistant_epochs"])
    bn_recalibrate: bool = setting(False, help="After the final run, recompute its BatchNorm statistics on its images as "
                                   "deployed (FixRes).")
    pretrained: bool = setting(True, help="Start from ImageNet weights (offline where edgeopt ships them).")
    baseline: str = setting(BASELINE_MODEL, help="Baseline model of the score (MACs at its own input size).")
    baseline_f1: float = setting(BASELINE_F1, low=0.0, low_open=True, high=1.0, help="Baseline macro-F1 of the score.")
    max_macs: int | None = setting(None, low=1, example="20M", parse=_macs,
                                   help="Choose the best val F1 within this budget, e.g. 20M (default: best score).")
    latency_runs: int = setting(50, low=1, high=100_000, help="Timed runs of each trial's latency.")
    heartbeat: int = setting(60, low=1, high=86_400, help="Seconds between trial heartbeats; a silent trial is retried after 2x.")
    seed: int | None = setting(None, low=0, high=2**32 - 1, help="Sampler seed (give each worker its own).")
    device: str = setting("auto", help="auto, cpu or cuda.")
    workers: int | None = setting(None, low=0, high=256, help="DataLoader workers per trial (default: 0 on CPU).")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.final_epochs is None:
            object.__setattr__(self, "final_epochs", BANK_FINAL_EPOCHS if self.kd.soft_labels is not None else 0)
        if self.assistant_size and self.kd.soft_labels is None:
            raise ConfigError(f"`assistant_size` {self.assistant_size}: a teacher assistant learns from a soft-label bank; "
                              "give `soft_labels` (a bank from `edgeopt soft-labels`) or leave `assistant_size` 0")
        check_assistant(self.assistant_size, self.assistant_for)
        if self.int8 is not None and not self.final_epochs:
            raise ConfigError("`int8_max_drop` judges the final run's INT8: give `final_epochs` too")
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
