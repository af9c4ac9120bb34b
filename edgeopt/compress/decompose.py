"""Tucker-2 decomposition of a checkpoint's convolutions, then distillation fine-tuning.

Every ordinary k x k convolution (not depthwise; 1 x 1 ones with ``--pointwise``) whose weight W (out, in, k, k) keeps
``energy`` of its squared singular values in ranks r_out < out and r_in < in on the two channel
modes is replaced by three convolutions: 1 x 1 in -> r_in, the k x k core r_in -> r_out (with the
original stride, padding and same-padding rule), and 1 x 1 r_out -> out (with the bias), computed by
TensorLy's partial Tucker. It is kept only where it lowers the MACs. The ranks go into the
architecture record (``decomposed``), so ``best.pt`` rebuilds with ``weights_only=True``, and the
model is fine-tuned, distilled from the original, with ``edgeopt train``'s loop.

Ranks come from an energy threshold (``--ranks energy --energy 0.9``) or from empirical
variational Bayesian matrix factorisation of each channel-mode unfolding (``--ranks vbmf``, the
competition's choice: no threshold to tune, the noise level is estimated per layer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import nn

from edgeopt.compress.config import DecomposeConfig
from edgeopt.compress.finetune import distill_finetune, load_original
from edgeopt.data import seen
from edgeopt.errors import ConfigError, MissingDependencyError
from edgeopt.models.tucker import (
    energy_rank,
    replace_modules,
    tucker_sequence,
    vbmf_rank,
)

@dataclasses.dataclass
class DecomposeResult:
    decomposed_checkpoint: Path
    best_checkpoint: Path | None
    layers: dict[str, list[int]]
    macs_before: int
    macs_after: int
    best_macro_f1: float | None


def decompose_checkpoint(config: DecomposeConfig, log: Callable[[str], None] = print) -> DecomposeResult:
    """Decompose, save ``out/decomposed.pt``, fine-tune into ``out/best.pt``."""
    try:
        import tensorly  # noqa: F401
    except ImportError:
        raise MissingDependencyError("edgeopt decompose needs TensorLy: pip install tensorly") from None
    from edgeopt.models.checkpoint import save_checkpoint
    from edgeopt.models.complexity import count_complexity

    model, manifest, arch, preprocess, before = load_original(config.checkpoint)
    layers: dict[str, list[int]] = {}
    replacements: dict[str, nn.Module] = {}
    for name, conv in model.named_modules():
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or (conv.kernel_size == (1, 1) and not config.pointwise):
            continue
        w = conv.weight.detach().cpu().numpy()
        out_c, in_c = w.shape[:2]
        r_out, r_in = (_rank(w.reshape(out_c, -1), config), _rank(w.transpose(1, 0, 2, 3).reshape(in_c, -1), config))
        k = int(np.prod(conv.kernel_size))
        if in_c * r_in + r_in * r_out * k + r_out * out_c >= in_c * out_c * k:
            continue  # no cheaper than the original
        layers[name] = [r_in, r_out]
        replacements[name] = tucker_sequence(conv, r_in, r_out)
    if not layers:
        rule = f"`energy` {config.energy}" if config.ranks == "energy" else "VBMF ranks"
        skipped = "depthwise convolutions are" if config.pointwise else "depthwise and 1x1 convolutions are"
        raise ConfigError(f"{config.checkpoint}: no convolution gets cheaper with {rule} ({skipped} not decomposed): "
                          f"lower `energy`{'' if config.pointwise else ', add `pointwise`'} or prune instead")
    replace_modules(model, replacements)
    model.eval()
    after = count_complexity(model, preprocess.size)
    arch["decomposed"] = layers
    arch["decomposition"] = {"from": str(config.checkpoint), "method": "tucker2", "ranks": config.ranks,
                             "pointwise": config.pointwise,
                             **({"energy": config.energy} if config.ranks == "energy" else {}), "macs_before": before.macs}
    config.out.mkdir(parents=True, exist_ok=True)
    saved = save_checkpoint(config.out / "decomposed.pt", model, arch, list(manifest.classes), preprocess, complexity=after,
                            extra={"decomposed_from": str(config.checkpoint), **seen.carried(manifest.extra)})
    log(f"Tucker-2 on {len(layers)} convolutions: {before.macs / 1e6:.2f}M -> {after.macs / 1e6:.2f}M MACs -> {saved}")
    best, f1 = distill_finetune(saved, config.checkpoint, config.data, config.out, arch, preprocess, config.finetune)
    return DecomposeResult(saved, best, layers, before.macs, after.macs, f1)


def _rank(unfolding: np.ndarray, config: DecomposeConfig) -> int:
    return energy_rank(unfolding, config.energy) if config.ranks == "energy" else vbmf_rank(unfolding)
