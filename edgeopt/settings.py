"""Settings declared once.

A config dataclass (``TrainConfig``, ``SoftLabelConfig``, ``SearchConfig``, ``OptimizeConfig``, ...)
declares each setting with :func:`setting`: its default, its help, and its range or choices. Everything
else is derived from that one declaration:

- :func:`check_settings` (each config's ``__post_init__``) coerces every field to its declared type
  (a flag's text, a YAML scalar or list, a plain string for a choice) and checks its range or choices,
  with one error line that names the setting, the value and what is valid;
- :func:`read_yaml_settings` reads a YAML file of settings (keys as the flags) with the same checks;
- the CLI's options (``edgeopt.cli.common.option``) take their default and help from the field.

A leaf module: it imports nothing of edgeopt's but the error classes.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import typing
from pathlib import Path
from typing import Any, Callable

from edgeopt.errors import ConfigError

MISSING = dataclasses.MISSING


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a setting accepts, kept in its field's metadata."""

    help: str = ""
    low: float | None = None  # inclusive unless ``low_open``
    high: float | None = None  # inclusive unless ``high_open``
    low_open: bool = False
    high_open: bool = False
    key: str | None = None  # the name users type (flag, YAML key) where it differs from the field's
    example: str | None = None
    parse: Callable[[Any, str], Any] | None = None  # text or number -> value (e.g. "20M" -> 20_000_000)

    def describe_range(self) -> str:
        """``1..100`` for an inclusive range, ``(0, 1]`` where a bound is left out."""
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        if not (self.low_open or self.high_open):
            return f"{low}..{high}"
        return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting(default: Any = MISSING, *, help: str = "", low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, key: str | None = None, example: str | None = None,
            parse: Callable[[Any, str], Any] | None = None, default_factory: Any = MISSING) -> Any:
    """A config field with its rule: ``epochs: int = setting(10, help="Epochs.", low=1, high=100_000)``.

    A field typed as an ``enum.StrEnum`` takes its choices from the enum; the config holds the choice's text."""
    rule = Rule(help=help, low=low, high=high, low_open=low_open, high_open=high_open, key=key, example=example, parse=parse)
    metadata = {"setting": rule}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def choices(name: str, *values: str, doc: str = "") -> Any:
    """A setting's fixed set of values, as a ``StrEnum`` named ``name`` whose members are named after
    the values (``-`` as ``_``, ``+`` as ``_plus``): ``Mix = choices("Mix", "none", "mixup", "cutmix")``.
    Typed on a field, it gives the setting its choices (the config holds the chosen text)."""
    kind = enum.StrEnum(name, [(v.replace("-", "_").replace("+", "_plus"), v) for v in values])
    kind.__doc__ = doc or f"{name}: {', '.join(values)}."
    return kind


def rule_of(field: dataclasses.Field) -> Rule:
    return field.metadata.get("setting") or Rule()


def key_of(field: dataclasses.Field) -> str:
    """The name users type for ``field`` (its flag without ``--``, its YAML key), with ``_``."""
    return rule_of(field).key or field.name


def field_of(cls: type, name: str) -> dataclasses.Field:
    for field in dataclasses.fields(cls):
        if field.name == name:
            return field
    raise KeyError(f"{cls.__name__} has no setting {name!r}")  # a bug: a caller named a field that does not exist


def default_of(field: dataclasses.Field) -> Any:
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    return MISSING


def check_settings(config: Any) -> None:
    """Coerce each field of ``config`` (a dataclass, frozen or not) to its declared type and check it
    against its rule; one ``ConfigError`` line naming the first setting that is wrong."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        checked = check_value(key_of(field), value, hints[field.name], rule_of(field))
        if checked is not value:
            object.__setattr__(config, field.name, checked)


def check_field(cls: type, name: str, value: Any) -> Any:
    """``value`` checked as ``cls``'s setting ``name`` would be (a YAML key's value, before the config is made)."""
    field = field_of(cls, name)
    return check_value(key_of(field), value, typing.get_type_hints(cls)[name], rule_of(field))


def check_value(key: str, value: Any, kind: Any, rule: Rule) -> Any:
    """``value`` as type ``kind``, within ``rule``'s range: the one check behind every setting."""
    value = coerce(key, value, kind, rule)
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            _check_range(key, item, rule)
    return value


def _check_range(key: str, value: float, rule: Rule) -> None:
    too_low = rule.low is not None and (value <= rule.low if rule.low_open else value < rule.low)
    too_high = rule.high is not None and (value >= rule.high if rule.high_open else value > rule.high)
    if too_low or too_high:
        example = f", e.g. {rule.example}" if rule.example else ""
        raise ConfigError(f"`{key}` {value} is out of range: use {rule.describe_range()}{example}")


def coerce(key: str, value: Any, kind: Any, rule: Rule | None = None) -> Any:
    """``value`` as the setting's type (from a flag's text or a YAML scalar/list); one line naming the
    setting when it is not one. Types this function does not know (a nested config) pass through."""
    rule = rule or Rule()
    args = typing.get_args(kind)
    if type(None) in args:  # X | None
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    if rule.parse is not None:
        return rule.parse(value, key)
    if typing.get_origin(kind) is tuple:  # tuple[X, ...]: a list, comma-separated text, or one value
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            items = [items]
        if Ellipsis not in args and len(items) == 1:  # a fixed pair (LOW,HIGH) given one value: LOW = HIGH
            items = list(items) * len(args)
        if Ellipsis not in args and len(items) != len(args):
            raise ConfigError(f"`{key}` {value!r}: give {len(args)} values, e.g. {rule.example or 'LOW,HIGH'}")
        return tuple(coerce(key, item, args[0], rule) for item in items)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return _choice(key, value, kind)
    if kind not in _WHAT:
        return value
    bad = ConfigError(f"`{key}` {value!r}: expected {_WHAT[kind]}" + (f", e.g. {rule.example}" if rule.example else ""))
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
        if kind is int and isinstance(value, float) and value.is_integer():  # YAML's 10.0
            value = int(value)
        allowed = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed) or not math.isfinite(value):
            raise bad
        return value if type(value) is kind else kind(value)
    if kind is str:
        if not isinstance(value, str) or not value.strip():
            raise bad
        return value if value == value.strip() else value.strip()
    if isinstance(value, Path):  # kind is Path
        return value
    if not isinstance(value, str) or not value.strip():
        raise bad
    return Path(value)


def _choice(key: str, value: Any, kind: type[enum.Enum]) -> str:
    """A choice's value as plain text (what checkpoints, manifests and digests hold), checked against the enum."""
    names = [member.value for member in kind]
    if isinstance(value, kind):
        return value.value
    if isinstance(value, str) and value.strip() in names:
        return value.strip()
    close = difflib.get_close_matches(str(value), names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"`{key}` {value!r} is unknown{hint}: use one of {', '.join(names)}")


_WHAT = {bool: "true or false", int: "a whole number", float: "a finite number", str: "a name", Path: "a path"}


def as_json(value: Any) -> Any:
    """A setting's value as JSON (paths and choices as text, tuples as lists)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [as_json(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def read_yaml_settings(path: str | Path, known: typing.Iterable[str]) -> dict[str, Any]:
    """A YAML file of settings as ``{name: value}`` (keys as the flags, ``-`` or ``_``); an unknown key
    is a one-line error with the closest of ``known``. Values are checked by whoever takes them."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a readable YAML file ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings (key: value), got {type(raw).__name__}")
    known = list(known)
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(f"{path}: unknown setting {key!r}" + (f"; did you mean {close[0].replace('_', '-')!r}?" if close else
                                                                    f"; known: {', '.join(k.replace('_', '-') for k in known)}"))
        settings[name] = value
    return settings
