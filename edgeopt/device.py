"""Which torch device a setting means: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; never a silent fallback."""

from __future__ import annotations

import torch

from edgeopt.errors import ConfigError, MissingDependencyError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present else CPU; asking for CUDA without one is an error, not a fallback."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device {device!r}: use auto, cpu or cuda")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MissingDependencyError(f"`device` {device} asked for, but PyTorch sees no CUDA GPU; use `device` cpu")
    return torch.device(device)
