"""Quantization-aware fine-tuning: a checkpoint -> a Q/DQ INT8 ONNX in the form TensorRT takes.

Where post-training quantization loses too much, a few epochs with the quantization in the
forward pass let the weights adapt to it:

1. BatchNorm is folded into the convolutions first (what the export does anyway), so the weights
   that get quantized are the ones the engine runs; the folded model must match the original.
2. Every Conv2d/Linear gets fake quantization: its input per tensor (symmetric int8, amax
   calibrated on real images with TensorRT's entropy rule and then kept fixed), its weights per
   output channel (symmetric int8, amax from the current weights). Gradients pass straight through.
3. Fine-tuning (AdamW, a low learning rate, cosine), distilled from the unquantized model.
4. Export: the fake quantizers become QuantizeLinear/DequantizeLinear pairs; weight quantizers are
   folded into int8 initializers (as ``edgeopt calibrate`` writes them) and the result must pass the
   same Q/DQ rules (``check_qdq``) and match the QAT model in ONNX Runtime.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeopt.artifacts import (
    Manifest,
    atomic_path,
    require_kind,
    tool_versions,
    write_artifact_manifest,
)
from edgeopt.quant.qat_config import QatConfig
from edgeopt.train.config import KDConfig
from edgeopt.errors import ConfigError, VerificationError
from edgeopt.models.padding import conv_with_frozen_pad


@dataclasses.dataclass
class QatResult:
    path: Path
    quantized_layers: int
    history: list[float]
    seconds: float


class FakeQuant(nn.Module):
    """A Conv2d or Linear with fake-quantized input (per tensor) and weights (per output channel)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("input_amax", torch.tensor(0.0))
        self.calibrating = False
        self.samples: list[torch.Tensor] = []
        self.weight_scale: torch.Tensor | None = None  # fixed by freeze(), for the export

    def freeze(self) -> None:
        """Fix the weight scales (an export then writes them as constants, not as ops on the weights)."""
        self.weight_scale = self.layer.weight.detach().abs().flatten(1).amax(1).clamp(min=1e-8) / 127.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self.samples.append(x.detach().abs().flatten().float())
            return self.layer(x)
        scale = torch.clamp(self.input_amax, min=1e-8) / 127.0
        x = torch.fake_quantize_per_tensor_affine(x, scale, 0, -128, 127)
        w = self.layer.weight
        w_scale = self.weight_scale if self.weight_scale is not None else w.detach().abs().flatten(1).amax(1).clamp(min=1e-8) / 127.0
        w = torch.fake_quantize_per_channel_affine(w, w_scale, torch.zeros_like(w_scale, dtype=torch.int32), 0, -128, 127)
        layer = self.layer
        if isinstance(layer, nn.Linear):
            return F.linear(x, w, layer.bias)
        if getattr(layer, "frozen_pad", None) is not None:  # for export: see edgeopt.models.padding
            return conv_with_frozen_pad(x, layer, w, layer.frozen_pad)
        if type(layer).forward is not nn.Conv2d.forward:  # timm's Conv2dSame pads per input, TensorFlow-style
            from timm.layers import conv2d_same

            return conv2d_same(x, w, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)
        return layer._conv_forward(x, w, layer.bias)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a Conv2d (in module order) into it; returns how many.

    A timm ``BatchNormAct2d`` keeps its activation (and dropout): only the normalisation is folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for parent in model.modules():
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = parent._modules[a], parent._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels:
                parent._modules[a] = fuse_conv_bn_eval(conv, bn)
                act = getattr(bn, "act", None)
                drop = getattr(bn, "drop", None)
                rest = [m for m in (drop, act) if isinstance(m, nn.Module) and not isinstance(m, nn.Identity)]
                parent._modules[b] = nn.Sequential(*rest) if rest else nn.Identity()
                folded += 1
    return folded


def insert_fake_quant(model: nn.Module) -> list[FakeQuant]:
    """Wrap every Conv2d and Linear; a Conv2d subclass with a forward of its own other than timm's
    ``Conv2dSame`` is refused (its arithmetic would be lost)."""
    wrapped = []
    for parent in list(model.modules()):
        if isinstance(parent, FakeQuant):
            continue
        for name, child in list(parent._modules.items()):
            if isinstance(child, (nn.Conv2d, nn.Linear)) and not isinstance(parent, FakeQuant):
                custom = isinstance(child, nn.Conv2d) and type(child).forward is not nn.Conv2d.forward
                if custom and type(child).__name__ != "Conv2dSame":
                    raise ConfigError(f"QAT cannot quantize {type(child).__name__} (a Conv2d with its own forward)")
                parent._modules[name] = FakeQuant(child)
                wrapped.append(parent._modules[name])
    return wrapped


def finetune_qat(config: QatConfig, log: Callable[[str], None] = print) -> QatResult:
    """Fold BN, calibrate, fine-tune with fake quantization, export a Q/DQ ONNX with its manifest."""
    from edgeopt.data.folder import scan_folder
    from edgeopt.data.loaders import cached_datasets
    from edgeopt.data.presets import Preprocess
    from edgeopt.data.seen import record_training_images
    from edgeopt.device import resolve_device
    from edgeopt.models.checkpoint import load_checkpoint

    require_kind(config.out, "onnx", "`out`")
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    model, manifest = load_checkpoint(config.checkpoint)
    preprocess = Preprocess.from_dict(manifest.preprocess)
    teacher = copy.deepcopy(model).eval()
    folded = fold_batchnorm_checked(model, preprocess.size)
    layers = insert_fake_quant(model)
    if not layers:
        raise ConfigError(f"{config.checkpoint}: no Conv2d or Linear layer to quantize")
    scan = scan_folder(config.data, classes=manifest.classes, allow_empty_classes=True)
    train_ds, _ = cached_datasets(scan, scan.subset([]), preprocess, preprocess.size, 0.6, 0)
    seen = calibrate_input_ranges(model, layers, train_ds, preprocess, config)
    log(f"QAT: folded {folded} BatchNorm layers, {len(layers)} quantized layers, activation ranges from {seen} images")
    history = _finetune(model, teacher, scan, train_ds, preprocess, config, device, log)
    model.to("cpu").eval()
    for layer in layers:
        layer.freeze()
    _export_qdq(model, manifest, preprocess, config, len(layers), history,
                record_training_images([s.path for s in scan.samples], manifest.extra))
    return QatResult(config.out, len(layers), history, time.perf_counter() - t0)


def fold_batchnorm_checked(model: nn.Module, size: int) -> int:
    """``fold_batchnorm``, refused when the folded model's outputs differ from the model's on a probe input."""
    reference_input = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(reference_input)
    folded = fold_batchnorm(model)
    with torch.no_grad():
        after = model(reference_input)
    if not torch.allclose(before, after, atol=1e-3 * max(1.0, float(before.abs().max()))):
        raise VerificationError("folding BatchNorm into the convolutions changed the model's outputs: this architecture "
                                "orders its layers in a way edgeopt's QAT does not handle")
    return folded


def calibrate_input_ranges(model: nn.Module, layers: list[FakeQuant], train_ds: Any, preprocess: Any, config: QatConfig) -> int:
    """Each quantized layer's input amax: TensorRT's entropy rule (``quant.ranges``) on a histogram of
    |x| over ``config.num_calib_images`` training images; returns how many images it saw."""
    from edgeopt.quant.ranges import abs_histogram, amax_for, histogram_edges
    from edgeopt.train.distill import view_for

    calib = torch.utils.data.DataLoader(train_ds, batch_size=config.batch_size, shuffle=True,
                                        generator=torch.Generator().manual_seed(config.seed))
    for layer in layers:
        layer.calibrating = True
    seen = 0
    model.eval()
    with torch.no_grad():
        for x, _ in calib:
            model(view_for(x, preprocess))
            seen += len(x)
            if seen >= config.num_calib_images:
                break
    for layer in layers:
        values = torch.cat(layer.samples).numpy()
        top = float(values.max()) if values.size else 1.0
        layer.input_amax.fill_(amax_for("entropy", abs_histogram(values, top), histogram_edges(top)))
        layer.calibrating, layer.samples = False, []
    return seen


def _finetune(model: nn.Module, teacher: nn.Module, scan: Any, train_ds: Any, preprocess: Any, config: QatConfig,
              device: torch.device, log: Callable[[str], None]) -> list[float]:
    """Fine-tune with fake quantization through training's epoch loop (``train_one_epoch``), distilled from
    the unquantized model (or a soft-label bank); the mean loss of each epoch."""
    from edgeopt.train.config import Callbacks
    from edgeopt.train.loop import train_one_epoch

    model.to(device)
    teacher.to(device)
    bank_ds = None
    if config.kd.soft_labels is not None:  # the bank's views and targets instead of the unquantized model online
        from edgeopt.train.distill import DistillViews
        from edgeopt.train.soft_labels import image_keys, read_bank

        bank = read_bank(config.kd.soft_labels)
        bank_ds = DistillViews(train_ds.images, scan.labels, image_keys(scan), preprocess.size, bank=bank,
                               rows=bank.rows_for(scan))
    loader = torch.utils.data.DataLoader(bank_ds if bank_ds is not None else train_ds, batch_size=config.batch_size, shuffle=True,
                                         drop_last=len(train_ds) > config.batch_size,
                                         generator=torch.Generator().manual_seed(config.seed + 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * len(loader))
    batch_loss = _qat_batch_loss(model, teacher, preprocess, config.kd, device, banked=bank_ds is not None)
    history: list[float] = []
    t_epochs = time.perf_counter()
    for epoch in range(config.epochs):
        if bank_ds is not None:
            bank_ds.epoch = epoch
        total, count = train_one_epoch(model, loader, optimizer, scheduler, batch_loss, epoch, Callbacks())
        history.append(total / max(count, 1))
        spent = time.perf_counter() - t_epochs
        left = spent / (epoch + 1) * (config.epochs - epoch - 1)
        log(f"QAT epoch {epoch + 1}/{config.epochs}: loss {history[-1]:.4f}"
            + (f"  ETA {int(left) // 3600}:{int(left) % 3600 // 60:02d}:{int(left) % 60:02d}" if epoch + 1 < config.epochs else ""))
    return history


def _qat_batch_loss(model: nn.Module, teacher: nn.Module, preprocess: Any, kd: KDConfig, device: torch.device,
                    banked: bool) -> Callable[[nn.Module, Any, int], tuple[torch.Tensor, int]]:
    """One QAT batch's loss: distillation from the bank's logits or the unquantized model on the same view,
    blended with label-smoothed cross-entropy."""
    from edgeopt.train.distill import kd_loss, view_for

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def batch_loss(net: nn.Module, batch: Any, epoch: int) -> tuple[torch.Tensor, int]:
        for m in norms:  # BN is folded; any other norm keeps its running statistics (the epoch loop set train mode)
            m.eval()
        x, y = batch[0].to(device), batch[1].to(device)
        view = view_for(x, preprocess)
        logits = net(view)
        if banked:
            targets = list(batch[2].to(device).unbind(1))
        else:
            with torch.no_grad():
                targets = [teacher(view)]
        return kd_loss(logits, targets, y, kd, F.cross_entropy(logits, y, label_smoothing=0.1)), len(y)

    return batch_loss


def _export_qdq(model: nn.Module, manifest: Manifest, preprocess: Any, config: QatConfig, layers: int, history: list[float],
                train_images: dict[str, Any]) -> None:
    """The export's tracing and checks (``export.onnx``), the fake quantizers as Q/DQ pairs with int8 weights,
    the TensorRT Q/DQ rules, and a close match with the QAT model in ONNX Runtime."""
    import onnx

    from edgeopt.export.onnx import check_onnx, trace_to_onnx, write_metadata
    from edgeopt.export.parity import INPUT_NAME, OUTPUT_NAME, check_parity, parity_inputs
    from edgeopt.quant.writers import check_qdq
    from edgeopt.runtime.ort_runner import make_session

    with atomic_path(config.out) as tmp:
        trace_to_onnx(model, tmp, preprocess.size)  # a copy: the parity check compares the export with the fine-tuned model
        graph = fold_weight_quantizers(constants_to_initializers(onnx.load(str(tmp))))
        write_metadata(graph, manifest.classes, preprocess, "int8")
        onnx.save(graph, str(tmp))
        check_onnx(tmp)
        problems = check_qdq(graph)
        if problems:
            raise VerificationError(f"the QAT export breaks the TensorRT Q/DQ rules: {problems[0]}")
        # float summation order differs between torch and ONNX Runtime, so a value near a rounding
        # boundary can land one int8 step apart: a close match (90 % top-1, 5 % of the logit scale)
        probe, source = parity_inputs(preprocess, Path(config.data), manifest.classes, count=32, seed=1)
        with torch.no_grad():
            reference = model(torch.from_numpy(probe)).numpy()
        candidate = make_session(tmp, optimize=False).run(None, {INPUT_NAME: probe})[0]
        parity = check_parity(reference, candidate, 5e-2 * max(1.0, float(np.abs(reference).max())), 0.9, source)
    out_manifest = Manifest(
        kind="onnx", classes=manifest.classes, preprocess=preprocess.to_dict(), arch=manifest.arch, precision="int8",
        format="int8-qdq", tools=tool_versions("torch", "onnx", "onnxruntime"), metrics={"parity": parity.to_dict()},
        extra={"input": INPUT_NAME, "output": OUTPUT_NAME, "dynamic_batch": True, "opset": 17,
               "quantization": {"format": "QDQ", "target": "tensorrt", "method": "qat",
                                "activations": "int8 symmetric per-tensor (entropy-calibrated, fixed)",
                                "weights": "int8 symmetric per-channel (output-channel axis)", "layers": layers,
                                "epochs": config.epochs, "lr": config.lr, "loss_history": [round(h, 5) for h in history],
                                "data": str(config.data)}, **train_images},
    )
    write_artifact_manifest(config.out, out_manifest, parent=config.checkpoint)


def constants_to_initializers(model: Any) -> Any:
    """``Constant`` nodes (how the exporter writes scales and zero-points) become initializers."""
    graph = model.graph
    for node in list(graph.node):
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            graph.node.remove(node)
    return model


def fold_weight_quantizers(model: Any) -> Any:
    """``initializer -> QuantizeLinear -> DequantizeLinear`` becomes ``int8 initializer -> DequantizeLinear``."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers_out = {o: n for n in graph.node for o in n.output}
    remove = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        q = producers_out.get(node.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in inits:
            continue
        w = numpy_helper.to_array(inits[q.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[q.input[1]]) if q.input[1] in inits else None
        if scale is None:
            continue
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.size > 1:
            shape[axis] = -1
        qw = np.clip(np.round(w / scale.reshape(shape)), -128, 127).astype(np.int8)  # round half to even, as QuantizeLinear
        name = q.input[0] + "_int8"
        graph.initializer.append(numpy_helper.from_array(qw, name))
        node.input[0] = name
        remove.append(q)
    for q in remove:
        graph.node.remove(q)
    used = {i for n in graph.node for i in n.input}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)
    return model
