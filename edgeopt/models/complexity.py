"""MACs and parameter counts at any input size (``torch.utils.flop_counter``)."""

from __future__ import annotations

import dataclasses
import re

import torch
import torch.nn as nn

from edgeopt.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Complexity:
    macs: int  # multiply-accumulates for one image
    params: int
    input_size: int

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def count_complexity(model: nn.Module, input_size: int, channels: int = 3) -> Complexity:
    """MACs of one forward pass on a ``channels x size x size`` image (FLOPs / 2), and parameters."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, channels, input_size, input_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return Complexity(macs=int(counter.get_total_flops() // 2), params=int(params), input_size=input_size)


def parse_macs(text: str | float, setting: str = "target_macs") -> int:
    """``"20M"`` / ``"1.5G"`` / ``20000000`` -> MACs; an error names ``setting`` (the value's own)."""
    if isinstance(text, bool):
        raise ConfigError(f"`{setting}` {text!r}: use a number with an optional K/M/G suffix, e.g. 20M")
    if isinstance(text, (int, float)):
        if not text == text or text in (float("inf"), float("-inf")) or text <= 0:
            raise ConfigError(f"`{setting}` {text!r}: use a positive number of MACs, e.g. 20M")
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"`{setting}` {text!r}: use a positive number with an optional K/M/G suffix, e.g. 20M")
    scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)
