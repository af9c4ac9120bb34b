"""Static "SAME" padding for export.

timm's TensorFlow-ported models (``tf_efficientnet_lite0`` ...) pad their convolutions "SAME",
computed from the input size at run time (``ceil(size / stride)``). Traced to ONNX that is a chain
of Shape/Div/Ceil/Pad ops, and onnxslim's simplification folds it into other paddings wherever an
odd feature map meets a stride-2 convolution (inputs that are not a multiple of 32, e.g. 40, 48 or
56 px), and the export's parity check then refuses the model (Lite0 at 40 px). An exported
artifact serves one input size, so its
paddings are constants: they are computed in Python at that size and frozen before tracing, and
no size arithmetic reaches the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _same_conv_class() -> type | None:
    try:
        from timm.layers import Conv2dSame
    except ImportError:
        return None
    return Conv2dSame


def same_pad(size: tuple[int, int], conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) that timm's ``pad_same`` gives ``conv`` at input ``size``."""
    from timm.layers.padding import get_same_padding

    ph = get_same_padding(int(size[0]), conv.kernel_size[0], conv.stride[0], conv.dilation[0])
    pw = get_same_padding(int(size[1]), conv.kernel_size[1], conv.stride[1], conv.dilation[1])
    return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)


def conv_with_frozen_pad(x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    return F.conv2d(F.pad(x, pad), weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


def freeze_same_padding(model: nn.Module, size: int) -> int:
    """Give every ``Conv2dSame`` (bare, or wrapped as a module's ``.layer``) the constant padding it
    uses at ``size`` px (``frozen_pad``); bare ones then pad with it. Returns how many were frozen."""
    same = _same_conv_class()
    if same is None:
        return 0
    targets: dict[nn.Module, nn.Conv2d] = {}
    for module in model.modules():
        inner = getattr(module, "layer", module)
        if isinstance(inner, same):
            targets[module] = inner
    if not targets:
        return 0
    seen: dict[nn.Module, tuple[int, int]] = {}

    def record(module: nn.Module, args: tuple) -> None:
        seen.setdefault(module, tuple(args[0].shape[-2:]))

    hooks = [m.register_forward_pre_hook(record) for m in targets]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
        model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    for module, conv in targets.items():
        if module in seen:
            conv.frozen_pad = same_pad(seen[module], conv)
            if module is conv:
                conv.__class__ = _FrozenSameConv2d
    return len(seen)


class _FrozenSameConv2d(nn.Conv2d):
    """A ``Conv2dSame`` whose padding was frozen at the artifact's input size."""

    frozen_pad: tuple[int, int, int, int]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_with_frozen_pad(x, self, self.weight, self.frozen_pad)
