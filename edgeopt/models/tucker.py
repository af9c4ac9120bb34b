"""Tucker-2 factorisation of a convolution into three (1x1, kxk core, 1x1), and its rebuild from ranks."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeopt.errors import ConfigError


def energy_rank(matrix: np.ndarray, energy: float) -> int:
    """The smallest rank whose singular values keep ``energy`` of the squared sum."""
    s = np.linalg.svd(matrix, compute_uv=False)
    kept = np.cumsum(s ** 2) / max(float(np.sum(s ** 2)), 1e-30)
    return int(np.searchsorted(kept, energy - 1e-9) + 1)


def vbmf_rank(matrix: np.ndarray) -> int:
    """Rank by empirical variational Bayesian matrix factorisation (EVBMF, noise variance estimated).

    The global analytic solution of Nakajima, Sugiyama, Babacan and Tomioka (JMLR 2013,
    "Global analytic solution of fully-observed variational Bayesian matrix factorization"): the
    noise variance minimises the free energy (bounded scalar search), and the singular values
    above ``sqrt(M * sigma2 * (1 + tau) * (1 + alpha / tau))`` (tau = 2.5129 sqrt(alpha),
    alpha = L / M) are the retained components. This is how the competition's Tucker entries
    chose ranks (as in Kim et al., ICLR 2016). At least 1.
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(matrix, dtype=np.float64)
    if y.shape[0] > y.shape[1]:
        y = y.T
    rows, cols = y.shape
    s = np.linalg.svd(y, compute_uv=False)
    alpha = rows / cols
    tau_bar = 2.5129 * np.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    residual = max(float(np.sum(y ** 2) - np.sum(s ** 2)), 0.0)  # zero: all L components are kept in s
    upper = (np.sum(s ** 2) + residual) / (rows * cols)
    bound_rank = int(min(np.ceil(rows / (1 + alpha)) - 1, rows)) - 1
    lower = max(s[bound_rank + 1] ** 2 / (cols * x_bar), float(np.mean(s[bound_rank + 1:] ** 2)) / cols)
    if not upper > lower > 0:
        return max(1, int(np.sum(s > 1e-12 * max(float(s[0]), 1e-30))))

    def free_energy(sigma2: float) -> float:
        x = s ** 2 / (cols * sigma2)
        big, small = x[x > x_bar], x[x <= x_bar]
        tau = 0.5 * (big - (1 + alpha) + np.sqrt((big - (1 + alpha)) ** 2 - 4 * alpha))
        return float(np.sum(small - np.log(small)) + np.sum(big - tau) + np.sum(np.log((tau + 1) / big))
                     + alpha * np.sum(np.log(tau / alpha + 1)) + residual / (cols * sigma2))

    sigma2 = minimize_scalar(free_energy, bounds=(lower, upper), method="bounded").x
    threshold = np.sqrt(cols * sigma2 * (1 + tau_bar) * (1 + alpha / tau_bar))
    return max(1, int(np.sum(s > threshold)))


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
