"""Structured channel pruning of a trained checkpoint to a MAC target, then distillation fine-tuning.

Torch-Pruning builds the dependency graph (depthwise groups, squeeze-excitation blocks and
residual adds stay consistent) and removes the least important channels, L2 magnitude or first
order Taylor, uniformly per layer or globally, in small steps until the model's MACs (counted by
edgeopt, as every manifest counts them) reach the target. The pruned model is saved as a normal
checkpoint whose architecture record lists every layer's pruned shape, so ``best.pt`` rebuilds
with ``torch.load(weights_only=True)`` and no pickled module; then it is fine-tuned, distilled from
the unpruned model, with ``edgeopt train``'s loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeopt.compress.config import PruneConfig
from edgeopt.compress.finetune import distill_finetune, load_original
from edgeopt.data import seen
from edgeopt.errors import ConfigError, MissingDependencyError


STEPS = 40


@dataclasses.dataclass
class PruneResult:
    pruned_checkpoint: Path
    best_checkpoint: Path | None
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    best_macro_f1: float | None


def prune_checkpoint(config: PruneConfig, log: Callable[[str], None] = print) -> PruneResult:
    """Prune to ``target_macs``, save ``out/pruned.pt``, fine-tune into ``out/best.pt``."""
    from edgeopt.models.checkpoint import save_checkpoint

    model, manifest, arch, preprocess, before = load_original(config.checkpoint)
    batches = _taylor_batches(config, manifest, preprocess) if config.importance == "taylor" else None
    after = prune_to_macs(model, arch, preprocess.size, config.target_macs, importance=config.importance,
                          global_pruning=config.global_pruning, batches=batches, num_classes=len(manifest.classes))
    arch["pruned"] = {"from": str(config.checkpoint), "importance": config.importance, "global": config.global_pruning,
                      "macs_before": before.macs, "target_macs": config.target_macs}
    config.out.mkdir(parents=True, exist_ok=True)
    pruned = save_checkpoint(config.out / "pruned.pt", model, arch, list(manifest.classes), preprocess, complexity=after,
                             extra={"pruned_from": str(config.checkpoint), **seen.carried(manifest.extra)})
    log(f"pruned {before.macs / 1e6:.2f}M -> {after.macs / 1e6:.2f}M MACs ({before.params / 1e6:.3f}M -> "
        f"{after.params / 1e6:.3f}M params) -> {pruned}")
    best, f1 = distill_finetune(pruned, config.checkpoint, config.data, config.out, arch, preprocess, config.finetune)
    return PruneResult(pruned, best, before.macs, after.macs, before.params, after.params, f1)


def prune_to_macs(model: nn.Module, arch: dict[str, Any], size: int, target_macs: int, *, importance: str = "l2",
                  global_pruning: bool = False, batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                  num_classes: int | None = None) -> Any:
    """Prune ``model`` in place until it has at most ``target_macs`` at ``size`` px; its complexity after.

    ``arch`` gains ``layer_shapes`` (so the pruned model rebuilds from its record). ``batches``
    (labelled) drive Taylor importance. The classifier is never pruned.
    """
    try:
        import torch_pruning as tp
    except ImportError:
        raise MissingDependencyError("pruning needs Torch-Pruning: pip install torch-pruning") from None
    from edgeopt.models.complexity import count_complexity
    from edgeopt.models.factory import layer_shapes

    before = count_complexity(model, size)
    if target_macs >= before.macs:
        raise ConfigError(f"`target_macs` {target_macs / 1e6:.2f}M is not below the model's "
                          f"{before.macs / 1e6:.2f}M MACs at {size} px: nothing to prune")
    example = torch.zeros(2, 3, size, size)
    classifier = _classifier(model)
    scorer = tp.importance.GroupMagnitudeImportance(p=2) if importance == "l2" else tp.importance.GroupTaylorImportance()
    try:
        pruner = tp.pruner.MetaPruner(model, example, importance=scorer, pruning_ratio=0.95, iterative_steps=STEPS,
                                      ignored_layers=[classifier], global_pruning=global_pruning)
    except Exception as exc:  # noqa: BLE001 - Torch-Pruning raises many types for graphs it cannot follow
        raise ConfigError(f"Torch-Pruning cannot prune {_describe(arch)}: {str(exc).splitlines()[0][:200]}") from None
    macs = before.macs
    for step in range(STEPS):
        try:
            if batches is not None:
                model.zero_grad()
                x, y = batches[step % len(batches)]
                nn.functional.cross_entropy(model(x), y).backward()
            pruner.step()
            macs = count_complexity(model, size).macs
        except Exception as exc:  # noqa: BLE001 - a graph Torch-Pruning followed but could not keep consistent
            raise ConfigError(
                f"Torch-Pruning could not prune {_describe(arch)} consistently "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}): it has layers whose channels it cannot "
                "follow (attention heads, channel shuffles, custom parameters); prune a convolutional backbone instead"
            ) from None
        if macs <= target_macs:
            break
    else:
        raise ConfigError(f"`target_macs` {target_macs / 1e6:.2f}M is below what this network can reach by channel "
                          f"pruning: its floor is about {macs / 1e6:.2f}M MACs at {size} px (try a smaller input)")
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        out = model(example)
    if num_classes is not None and tuple(out.shape) != (2, num_classes):
        raise ConfigError("the pruned model's output lost its classes: the classifier was pruned")
    arch["layer_shapes"] = layer_shapes(model)
    return count_complexity(model, size)


def _describe(arch: dict[str, Any]) -> str:
    return f"the {arch.get('source', '')} model {arch['name']}".replace("  ", " ") if arch.get("name") else "this model"


def _classifier(model: nn.Module) -> nn.Module:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, nn.Module) and not isinstance(head, nn.Identity):
        return head
    linears = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not linears:
        raise ConfigError("the model has no Linear or Conv2d layer to keep as its classifier")
    return linears[-1]


def _taylor_batches(config: PruneConfig, manifest: Any, preprocess: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A few labelled batches for first-order Taylor importance."""
    from edgeopt.data.folder import scan_folder

    scan = scan_folder(config.data, classes=manifest.classes, allow_empty_classes=True)
    paths, labels = [s.path for s in scan.samples[:128]], scan.labels[:128]
    batches = []
    for i, x in enumerate(preprocess.iter_batches(paths, 32)):
        y = torch.as_tensor(labels[i * 32:i * 32 + len(x)])
        batches.append((torch.from_numpy(x), y))
    return batches
