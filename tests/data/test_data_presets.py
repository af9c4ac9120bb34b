from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeopt.data.presets import Preprocess, load_rgb
from edgeopt.errors import ConfigError, DataError


def test_squash_and_center_crop_shapes(tmp_path: Path) -> None:
    p = tmp_path / "x.jpg"
    Image.new("RGB", (300, 100), (255, 0, 0)).save(p)
    for rule in ("squash", "center_crop"):
        x = Preprocess(size=32, resize=rule).load(p)
        assert x.shape == (3, 32, 32) and x.dtype == np.float32


def test_normalisation_values(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    Image.new("RGB", (40, 40), (255, 0, 128)).save(p)
    pre = Preprocess(size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = pre.load(p)
    np.testing.assert_allclose(x[:, 0, 0], [1.0, -1.0, 128 / 255 * 2 - 1], atol=1e-6)


def test_normalize_matches_torchvision_for_images_and_batches() -> None:
    import torch
    from torchvision.transforms import v2

    pre = Preprocess(size=16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    hwc = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    ref = v2.Normalize(pre.mean, pre.std)(torch.from_numpy(hwc).permute(0, 3, 1, 2).float() / 255).numpy()
    batch = pre.normalize(hwc)
    assert batch.shape == (4, 3, 8, 8) and batch.dtype == np.float32 and batch.flags.c_contiguous
    np.testing.assert_allclose(batch, ref, atol=2e-6)
    np.testing.assert_allclose(pre.normalize(hwc[1]), ref[1], atol=2e-6)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    p = tmp_path / "rot.jpg"
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(p, exif=exif)
    assert load_rgb(p).size == (20, 40)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(p)
    assert load_rgb(p).getpixel((0, 0)) == (255, 255, 255)


def test_draft_decoding_keeps_enough_pixels(tmp_path: Path) -> None:
    p = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 1200), (10, 200, 10)).save(p)
    im = Preprocess(size=96).load_rgb(p)
    assert min(im.size) >= 96 and im.size[0] < 1600


def test_bad_values_and_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="resize rule"):
        Preprocess(resize="stretch")
    with pytest.raises(ConfigError, match="out of range"):
        Preprocess(size=4)
    with pytest.raises(ConfigError, match="unknown preprocessing keys"):
        Preprocess.from_dict({"size": 32, "colour": 1})
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8nope")
    with pytest.raises(DataError, match="cannot decode"):
        Preprocess(size=32).load(bad)
    assert Preprocess.from_dict(Preprocess(size=40).to_dict()) == Preprocess(size=40)
