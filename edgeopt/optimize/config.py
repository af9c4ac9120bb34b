"""``edgeopt optimize``'s settings: one typed dataclass, read from flags or a YAML file, every value
checked before anything runs (``check_inputs`` then checks the data, models and machine they name)."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from pathlib import Path
from typing import Any

from edgeopt.errors import ConfigError
from edgeopt.search import BANK_FINAL_EPOCHS
from edgeopt.bench.score import BASELINE_F1, BASELINE_MODEL

TARGETS = ("auto", "tensorrt", "cpu")
DEVICES = ("auto", "cpu", "cuda")


@dataclasses.dataclass(frozen=True)
class OptimizeConfig:
    data: Path
    out: Path = Path("runs/optimize")
    test: Path | None = None  # a labelled folder to report on; default: test_fraction of --data held out
    test_fraction: float = 0.2
    teacher: Path | None = None  # an existing teacher checkpoint; default: fine-tune teacher_model
    teacher_model: str = "tf_efficientnet_lite0"
    teacher_size: int = 224
    teacher_epochs: int = 4
    views: int = 20
    backbones: tuple[str, ...] = ("mobilenet_v2",)
    sizes: tuple[int, ...] = (32, 48, 64)
    max_prune: float = 0.0
    trials: int = 6
    epochs: int = 12
    final_epochs: int = BANK_FINAL_EPOCHS  # from a bank an epoch costs the student alone
    bn_recalibrate: bool = True  # FixRes: the final run's BN statistics on the deployed input (benchmarks/README.md, Session 9)
    max_macs: int | None = None
    pretrained: bool = True
    max_f1_drop: float = 0.01
    int8_holdout: float = 0.1
    adaround: bool = True
    qat_epochs: int = 3
    target: str = "auto"
    baseline: str = BASELINE_MODEL
    baseline_f1: float = BASELINE_F1
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, coerce(field.name, getattr(self, field.name), hints[field.name]))
        for name, low, high in RANGES:
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise ConfigError(f"`{name}` {value} is out of range: use {low}..{high}")
        if not 0 <= self.max_f1_drop < 1:
            raise ConfigError(f"`max_f1_drop` {self.max_f1_drop} is out of range: use a macro-F1 drop in [0, 1), e.g. 0.01")
        if not 0 < self.baseline_f1 <= 1:
            raise ConfigError(f"`baseline_f1` {self.baseline_f1} is out of range: a macro-F1 in (0, 1], e.g. {BASELINE_F1}")
        for name, choices in (("target", TARGETS), ("device", DEVICES)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"`{name}` {getattr(self, name)!r} is unknown: use one of {', '.join(choices)}")
        for name in ("backbones", "sizes"):
            if not getattr(self, name):
                raise ConfigError(f"`{name}` is empty: name at least one, e.g. {'mobilenet_v2' if name == 'backbones' else '48'}")
        if any(not 16 <= s <= 1024 for s in self.sizes):
            raise ConfigError(f"`sizes` {list(self.sizes)}: give input sizes in 16..1024, e.g. 32,48,64")
        if self.test is not None and self.test.resolve() == self.data.resolve():
            raise ConfigError(f"`test` {self.test} is `data` itself: report on images nothing trains on "
                              "(another folder, or leave `test` out to hold a share of `data` out)")

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def as_record(self) -> dict[str, Any]:
        """The settings as JSON values (paths as text, tuples as lists)."""
        return {k: as_json(v) for k, v in dataclasses.asdict(self).items()}


# (setting, lowest, highest), inclusive
RANGES = (("test_fraction", 0.05, 0.5), ("teacher_size", 16, 1024), ("teacher_epochs", 1, 10_000), ("views", 1, 10_000),
          ("trials", 1, 10_000), ("epochs", 1, 10_000), ("final_epochs", 1, 100_000), ("max_prune", 0.0, 0.9),
          ("max_macs", 1, 10**15), ("int8_holdout", 0.02, 0.5), ("qat_epochs", 1, 10_000), ("batch_size", 1, 65_536),
          ("seed", 0, 2**32 - 1))


def as_json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [as_json(v) for v in value]
    return value


def coerce(name: str, value: Any, kind: Any) -> Any:
    """``value`` as the setting's type (from a flag's text or a YAML scalar/list); one line naming the
    setting when it is not one."""
    args = typing.get_args(kind)
    if type(None) in args:  # X | None
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    if name == "max_macs":
        from edgeopt.models.complexity import parse_macs

        return parse_macs(value, "max_macs")
    if typing.get_origin(kind) is tuple:  # tuple[X, ...]: a list, or comma-separated text
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"`{name}` {value!r}: give a list, e.g. {_EXAMPLES.get(name, 'a,b')}")
        return tuple(coerce(name, item, args[0]) for item in items)
    bad = ConfigError(f"`{name}` {value!r}: expected {_WHAT[kind]}" + (f", e.g. {_EXAMPLES[name]}" if name in _EXAMPLES else ""))
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if kind in (int, float):  # a number, or its text (a flag); never a bool (YAML's true is not 1)
        if isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise bad from None
        allowed = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed) or not math.isfinite(value):
            raise bad
        return kind(value)
    if kind is str:
        if not isinstance(value, str) or not value.strip():
            raise bad
        return value.strip()
    if kind is Path:
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value.strip():
            raise bad
        return Path(value)
    raise TypeError(f"no coercion for {name}: {kind}")  # a bug: a field of a type this function does not know


_WHAT = {bool: "true or false", int: "a whole number", float: "a finite number", str: "a name", Path: "a path"}
_EXAMPLES = {"sizes": "32,48,64", "backbones": "mobilenet_v2,tf_efficientnet_lite0", "max_macs": "20M", "views": "20",
             "test_fraction": "0.2", "max_f1_drop": "0.01", "epochs": "12", "trials": "6"}


def read_yaml_config(path: Path, overrides: dict[str, Any]) -> OptimizeConfig:
    """An ``OptimizeConfig`` from a YAML file (keys as the flags, ``-`` or ``_``), ``overrides`` (flags
    given on the command line) on top. An unknown key is a one-line error with the closest known one;
    a bad value names its key and the file."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a readable YAML file ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings (key: value), got {type(raw).__name__}")
    known = OptimizeConfig.fields()
    hints = typing.get_type_hints(OptimizeConfig)
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(f"{path}: unknown setting {key!r}" + (f"; did you mean {close[0].replace('_', '-')!r}?" if close else
                                                                    f"; known: {', '.join(k.replace('_', '-') for k in known)}"))
        if name in overrides:
            continue
        try:
            settings[name] = coerce(name, value, hints[name])
        except ConfigError as exc:  # said as the file's key, not as a flag
            raise ConfigError(f"{path}: key {key!r}: " + str(exc).replace(f"`{name}` ", "", 1)) from None
    settings.update(overrides)
    if "data" not in settings:
        raise ConfigError(f"{path}: no 'data' (the folder of <class>/<image> crops)")
    return OptimizeConfig(**settings)
