"""``edgeopt qat``'s settings (``QatConfig``), torch-free, so the CLI builds its options from them
without loading the QAT code (``edgeopt.quant.qat``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgeopt.errors import ConfigError
from edgeopt.settings import check_settings, setting
from edgeopt.train.config import KDConfig


@dataclasses.dataclass(frozen=True)
class QatConfig:
    checkpoint: Path  # the CLI's argument, not a setting of its own
    data: Path = setting(help="Training crops (<class>/<image>).")
    out: Path = setting(help="Output Q/DQ INT8 .onnx path (default: beside the checkpoint, best.pt -> best.qat.onnx).")
    epochs: int = setting(3, low=1, high=1000, help="Fine-tuning epochs with fake quantization.")
    lr: float = setting(1e-4, low=1e-8, high=1.0, help="Learning rate (low: the weights only adapt).")
    batch_size: int = setting(32, low=1, high=65_536, help="Batch size.")
    num_calib_images: int = setting(256, key="num_images", low=1, high=100_000, help="Images for the activation ranges.")
    kd: KDConfig = dataclasses.field(default_factory=KDConfig)  # the unquantized model teaches, unless a bank is given
    # the library stays on the CPU unless told (a caller's GPU is its choice); the CLI picks the GPU where there is one
    device: str = setting("cpu", help="auto, cpu or cuda.")
    seed: int = setting(0, low=0, high=2**32 - 1, help="Seed of the calibration subset, the views and the fine-tuning.")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.kd.teachers:
            raise ConfigError("QAT distils from the unquantized model itself, or from a soft-label bank (`soft_labels`); "
                              "it takes no other teacher")
