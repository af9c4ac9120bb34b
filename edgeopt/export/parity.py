"""Parity: an exported or converted graph must reproduce its source's logits on real or seeded inputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgeopt.data.presets import Preprocess
from edgeopt.errors import VerificationError

INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclasses.dataclass
class Parity:
    max_abs_diff: float
    top1_agreement: float
    images: int
    source: str  # "data" or "random"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parity_inputs(preprocess: Preprocess, data: Path | None, classes: list[str], count: int = 32, seed: int = 0) -> tuple[np.ndarray, str]:
    """Real images from ``data`` (a deterministic spread over classes) or seeded random inputs."""
    if data is not None:
        from edgeopt.data.folder import scan_folder, select_subset

        scan = scan_folder(data, classes=classes, allow_empty_classes=True)
        picked = select_subset(scan, min(count, len(scan.samples)), seed)
        return np.stack([preprocess.load(s.path) for s in picked]), "data"
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, 3, preprocess.size, preprocess.size)).astype(np.float32), "random"


def check_parity(reference: np.ndarray, candidate: np.ndarray, atol: float, min_agreement: float, source: str) -> Parity:
    """Compare logits; raise ``VerificationError`` beyond tolerance."""
    diff = float(np.abs(reference - candidate).max())
    agree = float((reference.argmax(1) == candidate.argmax(1)).mean())
    parity = Parity(diff, agree, len(reference), source)
    if diff > atol or agree < min_agreement:
        raise VerificationError(
            f"parity check failed: max |Δlogit| {diff:.3g} (tolerance {atol:g}), top-1 agreement {agree:.2%} "
            f"(needs {min_agreement:.0%}); the exported graph does not reproduce the model"
        )
    return parity
