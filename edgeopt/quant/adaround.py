"""AdaRound (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", ICML 2020):
each weight's rounding (down or up) learned per layer to minimise the layer's output error on the
calibration images (see ``edgeopt.quant.ptq`` for where it runs and its settings)."""

from __future__ import annotations

import dataclasses

import numpy as np

from edgeopt.quant.layers import QMAX, Layer

ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch


def fake_quant(x, amax: float):
    """Symmetric int8 quantize-dequantize of an activation at ``amax`` (scale amax / 127)."""
    import torch

    scale = max(float(amax), 1e-8) / QMAX
    return torch.clamp(torch.round(x / scale), -QMAX - 1, QMAX) * scale


def _recon(output, target):
    """AIMET's reconstruction loss: squared error summed over channels, averaged over images and positions."""
    return (output - target).pow(2).sum(1).mean()


def _h(v):
    import torch

    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


@dataclasses.dataclass
class AdaroundResult:
    name: str
    loss_nearest: float
    loss_adaround: float
    kept: bool  # the learned rounding beat nearest rounding and was kept
    flipped: float  # fraction of weights rounded the other way than nearest


def adaround_layer(layer: Layer, x_fp32, x_quant, iterations: int, seed: int = 0,
                   batch: int = 32, reg: float = 0.01, lr: float = 1e-2) -> tuple[np.ndarray, AdaroundResult]:
    """Learned integer weights of ``layer``: inputs ``x_quant`` (quantized as the engine will see them)
    should give the float layer's output on ``x_fp32``. Returns (int weights, result)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    w = torch.from_numpy(layer.weight.astype(np.float32))
    s = torch.from_numpy(layer.scale().astype(np.float32)).reshape(-1, *([1] * (w.ndim - 1)))
    with torch.no_grad():
        target = layer.forward(x_fp32, w)
    w_floor = torch.floor(w / s)
    rest = (w / s - w_floor).clamp(1e-4, 1 - 1e-4)
    v = torch.nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))  # h(v) == rest: starts at the float weight
    optimizer = torch.optim.Adam([v], lr=lr)
    n = x_quant.shape[0]
    warmup = int(0.2 * iterations)
    for step in range(iterations):
        idx = torch.randint(0, n, (min(batch, n),), generator=generator)
        w_soft = s * torch.clamp(w_floor + _h(v), -QMAX, QMAX)
        recon = _recon(layer.forward(x_quant[idx], w_soft), target[idx])
        if step < warmup:
            loss = recon
        else:
            beta = 2 + (20 - 2) * (1 - (step - warmup) / max(1, iterations - warmup))
            loss = recon + reg * (1 - (2 * _h(v) - 1).abs().pow(beta)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        nearest = torch.clamp(torch.round(w / s), -QMAX, QMAX)
        learned = torch.clamp(w_floor + (_h(v) >= 0.5).float(), -QMAX, QMAX)

        def error(q) -> float:
            parts = [_recon(layer.forward(x_quant[i:i + 64], s * q), target[i:i + 64]) * min(64, n - i) for i in range(0, n, 64)]
            return float(sum(parts) / n)

        loss_nearest, loss_learned = error(nearest), error(learned)
    kept = loss_learned < loss_nearest
    chosen = learned if kept else nearest
    result = AdaroundResult(layer.name, loss_nearest, loss_learned, kept, float((learned != nearest).float().mean()))
    return chosen.numpy().astype(np.int8), result
