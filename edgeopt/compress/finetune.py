"""What pruning and decomposition share: loading the checkpoint to compress, and the distillation
fine-tuning of the compressed model from the original, or from a soft-label bank (``edgeopt train``'s loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeopt.compress.config import FinetuneConfig
from edgeopt.errors import ConfigError


def load_original(checkpoint: Path) -> tuple[Any, Any, dict[str, Any], Any, Any]:
    """(model, manifest, architecture record, preprocessing, complexity) of an uncompressed checkpoint."""
    from edgeopt.models.checkpoint import load_model_and_arch
    from edgeopt.data.presets import Preprocess
    from edgeopt.models.complexity import count_complexity

    model, manifest, arch = load_model_and_arch(checkpoint)
    if arch.get("decomposed"):
        raise ConfigError(f"{checkpoint} is Tucker-decomposed already: compress the original checkpoint "
                          "(prune first, then decompose)")
    preprocess = Preprocess.from_dict(manifest.preprocess)
    return model, manifest, arch, preprocess, count_complexity(model, preprocess.size)


def distill_finetune(compressed: Path, original: Path, data: Path, out: Path, arch: dict[str, Any], preprocess: Any,
                     options: FinetuneConfig) -> tuple[Path | None, float | None]:
    """Fine-tune ``compressed`` into ``out/best.pt``, distilled from ``original`` (or the bank of
    ``options.kd``, or its own teachers); (best, val macro-F1)."""
    if options.epochs == 0:
        return None, None
    from edgeopt.train.loop import TrainConfig, train_classifier

    result = train_classifier(TrainConfig(
        model=str(arch.get("name")), data=data, out=out, init_checkpoint=compressed, img_size=preprocess.size,
        epochs=options.epochs, batch_size=options.batch_size, lr=options.lr, scale_min=0.6, brightness=0.2,
        kd=options.kd if options.kd.teachers else options.kd.with_teachers(original), val_split=options.val_split,
        device=options.device, seed=options.seed, workers=options.workers, resize=preprocess.resize))
    return result.best_checkpoint, result.best_macro_f1
