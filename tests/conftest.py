"""Shared fixtures: tiny datasets rendered in the test, and the real data in ../shared when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGEOPT_SHARED_DATA", ROOT.parent / "shared" / "data"))
TRASHNET = SHARED_DATA / "trashnet"
TACO_ANNOTATIONS = SHARED_DATA / "taco" / "annotations.json"

needs_trashnet = pytest.mark.skipif(
    not TRASHNET.is_dir(), reason=f"TrashNet not found at {TRASHNET} (set EDGEOPT_SHARED_DATA)"
)
needs_taco = pytest.mark.skipif(
    not TACO_ANNOTATIONS.is_file(), reason=f"TACO annotations not found at {TACO_ANNOTATIONS}"
)


@pytest.fixture(scope="session")
def trashnet() -> Path:
    """The real TrashNet pool in ../shared/data (skipped where it is absent)."""
    if not TRASHNET.is_dir():
        pytest.skip(f"TrashNet not found at {TRASHNET} (set EDGEOPT_SHARED_DATA)")
    return TRASHNET


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded synthetic dataset, 12 images per class (read-only for tests)."""
    from edgeopt.data.synthetic import render_synthetic

    return render_synthetic(tmp_path_factory.mktemp("synth"), per_class=12, seed=0, max_side=96)


@pytest.fixture(scope="session")
def tiny_ckpts(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One-epoch checkpoints of a YAML model and a timm model on the synthetic data (CPU, seconds)."""
    from edgeopt.train.loop import TrainConfig, train_classifier

    out = tmp_path_factory.mktemp("ckpts")
    ckpts = {}
    for key, model in (("yaml", str(ROOT / "models" / "tiny_cnn.yaml")), ("timm", "mobilenetv3_small_050")):
        config = TrainConfig(model=model, data=synth_data, out=out / key, img_size=32, epochs=1, batch_size=16,
                             device="cpu", workers=0)
        ckpts[key] = train_classifier(config).best_checkpoint
    return ckpts


@pytest.fixture(scope="session")
def tiny_onnx(tiny_ckpts: dict[str, Path], synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FP32 ONNX export of the YAML model."""
    from edgeopt.export.onnx import export_onnx

    return export_onnx(tiny_ckpts["yaml"], tmp_path_factory.mktemp("onnx") / "tiny.onnx", data=synth_data).path
