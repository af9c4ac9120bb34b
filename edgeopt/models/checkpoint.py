"""Checkpoints: the one place they are written and read (``torch.load(weights_only=True)``).

A checkpoint is a plain dict (format tag, state dict, architecture, classes, preprocessing,
epoch) with a manifest beside it; the architecture rebuilds the model, so no module is pickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgeopt.artifacts import (
    Manifest,
    atomic_path,
    read_manifest,
    tool_versions,
    write_artifact_manifest,
)
from edgeopt.data.presets import Preprocess
from edgeopt.errors import ArtifactError
from edgeopt.models.complexity import Complexity, count_complexity

CHECKPOINT_FORMAT = "edgeopt-checkpoint-1"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded without executing code (``weights_only=True``)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unsafe-global errors all mean: not our checkpoint
        raise ArtifactError(f"{path}: not a loadable edgeopt checkpoint ({type(exc).__name__}); pass a best.pt from edgeopt train") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(f"{path}: not an edgeopt checkpoint; pass a best.pt written by edgeopt train")
    return ckpt


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, Manifest]:
    """Rebuild the model of a checkpoint, load its weights, return it in eval mode with its manifest."""
    model, manifest, _ = load_model_and_arch(path, device)
    return model, manifest


def load_model_and_arch(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, Manifest, dict[str, Any]]:
    """``load_checkpoint`` plus the full architecture record (which rebuilds the model; the manifest's
    copy leaves out a YAML model's text), from one read of the file."""
    from edgeopt.models.factory import rebuild_model

    manifest = read_manifest(path, expect_kind="checkpoint")
    ckpt = read_checkpoint(path)
    model = rebuild_model(ckpt.get("arch"), ckpt.get("state_dict"), where=str(path))
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model.to(device).eval(), manifest, dict(ckpt["arch"])


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(path: Path, model: nn.Module, arch: dict[str, Any], classes: list[str], preprocess: Preprocess,
                    metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None, epoch: int = 0,
                    complexity: Complexity | None = None) -> Path:
    """Write a loadable checkpoint (weights_only-safe) and its manifest, atomically.

    ``complexity`` is counted at ``preprocess.size`` when the caller has not counted it already.
    """
    if complexity is None:
        complexity = count_complexity(model, preprocess.size)
    ckpt = {"format": CHECKPOINT_FORMAT, "state_dict": cpu_state(model), "arch": arch, "classes": list(classes),
            "preprocess": preprocess.to_dict(), "epoch": epoch}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    manifest = Manifest(
        kind="checkpoint", classes=list(classes), preprocess=preprocess.to_dict(),
        arch={k: v for k, v in arch.items() if k != "yaml"} | {"macs": complexity.macs, "params": complexity.params},
        precision="fp32", format="checkpoint", tools=tool_versions("torch", "torchvision", "timm"),
        metrics={**(metrics or {}), "macs": complexity.macs, "params": complexity.params}, extra=extra or {},
    )
    write_artifact_manifest(path, manifest)
    return path
