"""Tucker-2 factorisation of a convolution into three (1x1, kxk core, 1x1), and its rebuild from ranks."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgeopt.errors import ConfigError


def energy_rank(matrix: np.ndarray, energy: float) -> int:
    """The smallest rank whose singular values keep ``energy`` of the squared sum."""
    s = np.linalg.svd(matrix, compute_uv=False)
    kept = np.cumsum(s ** 2) / max(float(np.sum(s ** 2)), 1e-30)
    return int(np.searchsorted(kept, energy - 1e-9) + 1)


def tucker_sequence(conv: nn.Conv2d, r_in: int, r_out: int, weights: bool = True) -> nn.Sequential:
    """The three convolutions replacing ``conv`` (weights from partial Tucker when ``weights``)."""
    first = nn.Conv2d(conv.in_channels, r_in, 1, bias=False)
    core = copy.deepcopy(conv)  # keeps stride, padding, dilation and a same-padding subclass's rule
    core.in_channels, core.out_channels = r_in, r_out
    core.weight = nn.Parameter(torch.empty(r_out, r_in, *conv.kernel_size))
    core.bias = None
    last = nn.Conv2d(r_out, conv.out_channels, 1, bias=conv.bias is not None)
    if weights:
        from tensorly.decomposition import partial_tucker

        w = conv.weight.detach().cpu().numpy().astype(np.float64)
        (kernel, (u_out, u_in)), _ = partial_tucker(w, rank=[r_out, r_in], modes=[0, 1], init="svd", n_iter_max=100)
        with torch.no_grad():
            first.weight.copy_(torch.from_numpy(u_in.T[:, :, None, None].copy()).float())
            core.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)).float())
            last.weight.copy_(torch.from_numpy(u_out[:, :, None, None].copy()).float())
            if conv.bias is not None:
                last.bias.copy_(conv.bias.detach())
    return nn.Sequential(first, core, last)


def apply_decomposition(model: nn.Module, layers: dict[str, list[int]]) -> None:
    """Replace the named convolutions by their (uninitialised) Tucker-2 sequences: for rebuilding."""
    replace_modules(model, {name: tucker_sequence(_module(model, name), r_in, r_out, weights=False)
                     for name, (r_in, r_out) in layers.items()})


def _module(model: nn.Module, name: str) -> Any:
    module = dict(model.named_modules()).get(name)
    if not isinstance(module, nn.Conv2d):
        raise ConfigError(f"decomposed layer {name!r} is not a convolution of this model: the checkpoint's record does not fit")
    return module


def replace_modules(model: nn.Module, replacements: dict[str, nn.Module]) -> None:
    for name, new in replacements.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        parent._modules[child] = new
