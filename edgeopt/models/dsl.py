"""The competition's YAML model DSL.

A model is ``input_channel``, ``depth_multiple``, ``width_multiple``, ``INPUT_SIZE`` and a
``backbone`` list of ``[repeat, module, args]`` rows. Modules resolve through ``MODULES`` only
(no ``eval``, no ``globals()``); files are read with ``yaml.safe_load``. ``repeat`` scales with
``depth_multiple`` and channel counts with ``width_multiple``, except ``FixedConv`` and the final
``Linear``; the last ``Linear``/``FixedConv`` gets the dataset's number of classes.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from edgeopt.errors import ConfigError
from edgeopt.registries import Registry

ACTIVATIONS: dict[str | None, Callable[[], nn.Module]] = {
    None: nn.Identity,
    "Identity": nn.Identity,
    "ReLU": lambda: nn.ReLU(inplace=True),
    "ReLU6": lambda: nn.ReLU6(inplace=True),
    "Hardswish": lambda: nn.Hardswish(inplace=True),
    "HardSwish": lambda: nn.Hardswish(inplace=True),
    "SiLU": lambda: nn.SiLU(inplace=True),
    "Swish": lambda: nn.SiLU(inplace=True),
    "Sigmoid": nn.Sigmoid,
}


def make_activation(name: Any) -> nn.Module:
    if name not in ACTIVATIONS:
        choices = [k for k in ACTIVATIONS if k]
        lowered = {c.lower(): c for c in choices}
        close = [lowered[m] for m in difflib.get_close_matches(str(name).lower(), list(lowered), n=1)]
        raise ValueError(
            f"unknown activation {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; valid: {', '.join(choices)} or null"
        )
    return ACTIVATIONS[name]()


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without dropping more than 10%."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def autopad(kernel: int, padding: int | None) -> int:
    return kernel // 2 if padding is None else padding


class Conv(nn.Sequential):
    """Conv2d + BatchNorm + activation. args: out_ch, kernel=1, stride=1, padding=None, groups=1, act='ReLU'."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, padding: int | None = None,
                 groups: int = 1, act: str | None = "ReLU") -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, autopad(kernel, padding), groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            make_activation(act),
        )


class DWConv(Conv):
    """Depthwise(-ish) conv: groups = gcd(in, out). args: out_ch, kernel=1, stride=1, padding=None, act='ReLU'."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, padding: int | None = None,
                 act: str | None = "ReLU") -> None:
        super().__init__(c_in, c_out, kernel, stride, padding, groups=math.gcd(c_in, c_out), act=act)


class FixedConv(nn.Module):
    """A 1x1-style conv whose width is not scaled (a classifier head); output flattened when 1x1."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, padding: int | None = None,
                 groups: int = 1, act: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, autopad(kernel, padding), groups=groups, bias=True)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))
        return y.flatten(1) if y.shape[-1] == 1 and y.shape[-2] == 1 else y


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = make_divisible(channels / reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class InvertedResidualv2(nn.Module):
    """MobileNetV2 block. args: out_ch, expansion, stride."""

    def __init__(self, c_in: int, c_out: int, expansion: float = 6, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(c_in * expansion))
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(Conv(c_in, hidden, 1, act="ReLU6"))
        layers += [Conv(hidden, hidden, 3, stride, groups=hidden, act="ReLU6"), Conv(hidden, c_out, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class InvertedResidualv3(nn.Module):
    """MobileNetV3 block. args: kernel, expansion, out_ch, use_se, use_hs, stride."""

    def __init__(self, c_in: int, kernel: int, expansion: float, c_out: int, use_se: int, use_hs: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = make_divisible(c_in * expansion)
        act = "Hardswish" if use_hs else "ReLU"
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers.append(Conv(c_in, hidden, 1, act=act))
        layers.append(Conv(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if use_se:
            layers.append(SqueezeExcite(hidden))
        layers.append(Conv(hidden, c_out, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


@dataclasses.dataclass(frozen=True)
class ModuleSpec:
    """How a DSL module is built: its channel argument's position and whether width scales it."""

    build: Callable[..., nn.Module]
    out_index: int | None  # index of the output-channel arg, None = keeps channels
    scale_width: bool = True
    flattens: bool = False


MODULES: Registry[ModuleSpec] = Registry("DSL module")
MODULES.register("Conv", ModuleSpec(Conv, 0))
MODULES.register("DWConv", ModuleSpec(DWConv, 0))
MODULES.register("FixedConv", ModuleSpec(FixedConv, 0, scale_width=False))
MODULES.register("InvertedResidualv2", ModuleSpec(InvertedResidualv2, 0))
MODULES.register("InvertedResidualv3", ModuleSpec(lambda c_in, c_out, k, t, _c, se, hs, s: InvertedResidualv3(c_in, k, t, c_out, se, hs, s), 2))
MODULES.register("GlobalAvgPool", ModuleSpec(lambda c_in: nn.AdaptiveAvgPool2d(1), None))
MODULES.register("Flatten", ModuleSpec(lambda c_in: nn.Flatten(1), None, flattens=True))
MODULES.register("Linear", ModuleSpec(lambda c_in, c_out, act=None: nn.Sequential(nn.Linear(c_in, c_out), make_activation(act)), 0, scale_width=False))
MODULES.register("Dropout", ModuleSpec(lambda c_in, p=0.2: nn.Dropout(p), None))

TOP_KEYS = {"input_channel", "depth_multiple", "width_multiple", "INPUT_SIZE", "input_size", "backbone", "name", "description"}


def read_model_yaml(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such model file; pass a timm name or an existing models/*.yaml")
    return path.read_text("utf-8")


def parse_model_yaml(text: str, source: str = "model yaml") -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: a model file is a mapping with a 'backbone' list")
    for key in cfg:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
            raise ConfigError(
                f"{source}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; valid keys: {', '.join(sorted(TOP_KEYS))}"
            )
    for key, lo, hi in (("depth_multiple", 0.01, 10.0), ("width_multiple", 0.01, 10.0)):
        value = cfg.get(key, 1.0)
        if not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ConfigError(f"{source}: {key}={value!r} is out of range: use a number in {lo}..{hi}")
    if not isinstance(cfg.get("backbone"), list) or not cfg["backbone"]:
        raise ConfigError(f"{source}: 'backbone' must be a non-empty list of [repeat, module, args] rows")
    return cfg


def yaml_input_size(text: str) -> int | None:
    """The ``INPUT_SIZE`` a YAML model was designed for (first side), if it says."""
    cfg = parse_model_yaml(text)
    size = cfg.get("INPUT_SIZE", cfg.get("input_size"))
    if isinstance(size, (list, tuple)) and size:
        return int(size[0])
    return int(size) if isinstance(size, int) else None


def build_from_yaml_text(text: str, num_classes: int, source: str = "model yaml") -> nn.Module:
    """Build the ``nn.Sequential`` a YAML definition describes; errors name the row and argument."""
    cfg = parse_model_yaml(text, source)
    depth, width = float(cfg.get("depth_multiple", 1.0)), float(cfg.get("width_multiple", 1.0))
    c_in = int(cfg.get("input_channel", 3))
    rows = cfg["backbone"]
    classifier_row = max(
        (i for i, r in enumerate(rows) if isinstance(r, list) and len(r) == 3 and r[1] in ("Linear", "FixedConv")),
        default=None,
    )
    if classifier_row is None:
        raise ConfigError(f"{source}: the backbone has no Linear or FixedConv classifier row")
    layers: list[nn.Module] = []
    for i, row in enumerate(rows):
        where = f"{source}: backbone row {i} {row!r}"
        if not isinstance(row, list) or len(row) != 3:
            raise ConfigError(f"{where}: each row is [repeat, module, args]")
        repeat, name, args = row
        if not isinstance(repeat, int) or repeat < 1:
            raise ConfigError(f"{where}: repeat must be a positive integer")
        if not isinstance(name, str) or name not in MODULES:
            raise ConfigError(f"{where}: " + _module_hint(name))
        if not isinstance(args, list):
            raise ConfigError(f"{where}: args must be a list")
        spec = MODULES.get(name)
        args = list(args)
        if spec.out_index is not None:
            if len(args) <= spec.out_index or not isinstance(args[spec.out_index], int) or args[spec.out_index] < 1:
                raise ConfigError(f"{where}: argument {spec.out_index} (output channels) must be a positive integer")
            if i == classifier_row:
                args[spec.out_index] = num_classes
            elif spec.scale_width:
                args[spec.out_index] = make_divisible(args[spec.out_index] * width)
        n = max(round(repeat * depth), 1) if repeat > 1 else 1
        for _ in range(n):
            if spec.out_index is None:
                call_args, c_out = args, c_in
            else:
                # builders take (c_in, *args) when the channel arg comes first, else (c_in, c_out, *args)
                c_out = args[spec.out_index]
                call_args = args if spec.out_index == 0 else [c_out, *args]
            try:
                layers.append(spec.build(c_in, *call_args))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: bad arguments for {name} ({exc})") from None
            c_in = c_out
    model = nn.Sequential(*layers)
    _check_forward(model, int(cfg.get("input_channel", 3)), yaml_input_size(text) or 64, num_classes, source)
    return model


def _check_forward(model: nn.Module, channels: int, size: int, num_classes: int, source: str) -> None:
    """A dry run so shape mistakes (e.g. Linear before Flatten) fail at build time with the cause."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, channels, size, size))
    except RuntimeError as exc:
        raise ConfigError(f"{source}: the layers do not fit together ({str(exc).splitlines()[0]})") from None
    if out.dim() != 2 or out.shape[1] != num_classes:
        raise ConfigError(
            f"{source}: the model outputs shape {tuple(out.shape)}, expected (N, {num_classes}); "
            "end the backbone with GlobalAvgPool, Flatten and Linear (or a 1x1 FixedConv)"
        )
    model.train()


def _module_hint(name: Any) -> str:
    close = difflib.get_close_matches(str(name), MODULES.names(), n=1)
    return f"unknown module {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + f"; valid: {', '.join(MODULES.names())}"
