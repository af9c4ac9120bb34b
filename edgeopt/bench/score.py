"""The competition's score formulas (lower is better)."""

from __future__ import annotations

import math

from edgeopt.errors import ConfigError

# The competition's baseline (COMPETITION.md): the server's reference model and the macro-F1 the
# score compares with, one preset every default reads
BASELINE_MODEL = "resnet18d"
BASELINE_F1 = 0.884


def _check(name: str, value: float, baseline: float) -> None:
    if not baseline > 0:
        raise ConfigError(f"baseline {name} must be positive, got {baseline}: check the baseline run")
    if value < 0:
        raise ConfigError(f"{name} must be non-negative, got {value}")


def score_time(time: float, time_baseline: float, f1: float, f1_baseline: float) -> float:
    """``0.5 * time / time_baseline + sigmoid(20 * (f1_baseline - f1))``."""
    _check("time", time, time_baseline)
    return 0.5 * time / time_baseline + 1.0 / (1.0 + math.exp(-20.0 * (f1_baseline - f1)))


def score_f1(f1: float, f1_baseline: float) -> float:
    """``1 - f1/f1_baseline`` below the baseline's F1, ``0.5 * (1 - f1/f1_baseline)`` at or above it."""
    _check("f1", f1, f1_baseline)
    ratio = 1.0 - f1 / f1_baseline
    return ratio if f1 < f1_baseline else 0.5 * ratio


def score_macs(macs: float, macs_baseline: float, f1: float, f1_baseline: float) -> float:
    """``macs / macs_baseline + score_f1``."""
    _check("macs", macs, macs_baseline)
    return macs / macs_baseline + score_f1(f1, f1_baseline)
