"""``edgeopt optimize``'s settings: one typed dataclass, read from flags or a YAML file, every value
checked before anything runs (``check_inputs`` then checks the data, models and machine they name)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgeopt.errors import ConfigError
from edgeopt.search.config import ASSISTANT, BANK_FINAL_EPOCHS, check_assistant
from edgeopt.bench.score import BASELINE_F1, BASELINE_MODEL
from edgeopt.settings import as_json, check_field, check_settings, choices, read_yaml_settings, setting


# auto: a TensorRT engine where TensorRT and a GPU are, else the CPU
Target = choices("Target", "auto", "tensorrt", "cpu", doc="Where the deployed model runs.")


def _macs(value: Any, key: str) -> int:
    from edgeopt.models.complexity import parse_macs

    return parse_macs(value, key)


_DATA = "Folder of <class>/<image> crops."


@dataclasses.dataclass(frozen=True)
class OptimizeConfig:
    data: Path = setting(help=_DATA)
    out: Path = setting(Path("runs/optimize"), help="The run folder: every artifact with its manifest, steps/, report.md.")
    test: Path | None = setting(None, help="Labelled crops to report on (default: `test_fraction` of `data` held out).")
    test_fraction: float = setting(0.2, help="Share of `data` held out of everything for the report.", low=0.05, high=0.5, example="0.2")
    teacher: Path | None = setting(None, help="A teacher checkpoint (default: fine-tune `teacher_model`).")
    teacher_model: str = setting("tf_efficientnet_lite0", help="The teacher's backbone, fine-tuned on the pool.")
    teacher_size: int = setting(224, help="The teacher's input size (its native resolution is best).", low=16, high=1024)
    teacher_epochs: int = setting(4, help="The teacher's epochs on the pool.", low=1, high=10_000)
    teacher_label_smoothing: float = setting(0.1, low=0.0, high=0.5, help="The teacher's label smoothing (0 with "
                                             "`teacher_mixup` 0.2: the teacher made to be distilled, docs/training.md).")
    teacher_mixup: float = setting(0.0, low=0.0, high=10.0, help="The teacher's mixup Beta alpha (0 = off).")
    views: int = setting(20, help="Augmented views per image in the soft-label bank.", low=1, high=10_000, example="20")
    backbones: tuple[str, ...] = setting(("mobilenet_v2",), help="Comma-separated student backbones to search.",
                                         example="mobilenet_v2,tf_efficientnet_lite0")
    sizes: tuple[int, ...] = setting((32, 48, 64), help="Comma-separated student input sizes to search.", low=16, high=1024,
                                     example="32,48,64")
    max_prune: float = setting(0.0, help="Largest channel-pruning share the search tries (0: none).", low=0.0, high=0.9)
    trials: int = setting(6, help="Search trials.", low=1, high=10_000, example="6")
    epochs: int = setting(12, help="Epochs per search trial.", low=1, high=10_000, example="12")
    final_epochs: int = setting(BANK_FINAL_EPOCHS, help="Epochs of the chosen student's final run (from the bank: patient "
                                "schedules pay).", low=1, high=100_000)
    bn_recalibrate: bool = setting(True, help="Recompute the final run's BatchNorm statistics on its images as deployed "
                                   "(FixRes; measured to pay on TrashNet).")
    assistant_size: int = setting(96, **ASSISTANT["assistant_size"])  # measured to pay on TrashNet (benchmarks, Session 11)
    assistant_for: int = setting(32, **ASSISTANT["assistant_for"])
    assistant_init: bool = setting(True, **ASSISTANT["assistant_init"])
    assistant_epochs: int = setting(40, **ASSISTANT["assistant_epochs"])
    max_macs: int | None = setting(None, help="MAC budget of the chosen student, e.g. 20M.", low=1, example="20M", parse=_macs)
    pretrained: bool = setting(True, help="Students and teacher from ImageNet weights, else from random ones.")
    max_f1_drop: float = setting(0.01, help="INT8 budget: macro-F1 drop on a slice held out of the final run.", low=0.0,
                                 high=1.0, high_open=True, example="0.01")
    int8_holdout: float = setting(0.1, help="Share of `data` held out of the final run to judge INT8.", low=0.02, high=0.5)
    adaround: bool = setting(True, help="AdaRound in the INT8 post-training quantization.")
    qat_epochs: int = setting(3, help="Quantization-aware epochs where post-training INT8 misses the budget.", low=1, high=10_000)
    target: Target = setting(Target.auto, help="auto (TensorRT engine where TensorRT and a GPU are, else cpu), tensorrt or cpu.")
    baseline: str = setting(BASELINE_MODEL, help="Baseline of the bench and the score.")
    baseline_f1: float = setting(BASELINE_F1, help="The baseline's macro-F1 for the score.", low=0.0, high=1.0, low_open=True,
                                 example=str(BASELINE_F1))
    batch_size: int = setting(64, help="Batch size.", low=1, high=65_536)
    device: str = setting("auto", help="auto, cpu or cuda.")
    seed: int = setting(0, help="Seed of the split, the bank, the search and every run.", low=0, high=2**32 - 1)

    def __post_init__(self) -> None:
        check_settings(self)
        check_assistant(self.assistant_size, self.assistant_for)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"`device` {self.device!r} is unknown: use one of auto, cpu, cuda")
        for name in ("backbones", "sizes"):
            if not getattr(self, name):
                raise ConfigError(f"`{name}` is empty: name at least one, e.g. {'mobilenet_v2' if name == 'backbones' else '48'}")
        if self.test is not None and self.test.resolve() == self.data.resolve():
            raise ConfigError(f"`test` {self.test} is `data` itself: report on images nothing trains on "
                              "(another folder, or leave `test` out to hold a share of `data` out)")

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def as_record(self) -> dict[str, Any]:
        """The settings as JSON values (paths as text, tuples as lists)."""
        return {k: as_json(v) for k, v in dataclasses.asdict(self).items()}


def read_yaml_config(path: Path, overrides: dict[str, Any]) -> OptimizeConfig:
    """An ``OptimizeConfig`` from a YAML file (keys as the flags, ``-`` or ``_``), ``overrides`` (flags
    given on the command line) on top. An unknown key is a one-line error with the closest known one;
    a bad value names its key and the file."""
    settings = read_yaml_settings(path, OptimizeConfig.fields())
    for name, value in list(settings.items()):
        if name in overrides:
            continue
        try:
            check_field(OptimizeConfig, name, value)
        except ConfigError as exc:  # said as the file's key, not as a flag
            raise ConfigError(f"{path}: key {name.replace('_', '-')!r}: " + str(exc).replace(f"`{name}` ", "", 1)) from None
    settings.update(overrides)
    if "data" not in settings:
        raise ConfigError(f"{path}: no 'data' (the folder of <class>/<image> crops)")
    return OptimizeConfig(**settings)
