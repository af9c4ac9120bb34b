from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TRASHNET, needs_trashnet
from PIL import Image

from edgeopt.data.folder import scan_folder, split_scan, stratified_split
from edgeopt.errors import ConfigError, DataError


def _img(path: Path, mode: str = "RGB", size: tuple[int, int] = (20, 16), fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = {"RGB": (200, 10, 10), "L": 128, "CMYK": (0, 255, 255, 0), "RGBA": (0, 0, 255, 128), "LA": (90, 200)}[mode]
    Image.new(mode, size, colour).save(path, format=fmt)
    return path


def test_scan_keeps_order_counts_and_weights(tmp_path: Path) -> None:
    for i in range(3):
        _img(tmp_path / "b" / f"{i}.jpg")
    _img(tmp_path / "a" / "0.jpg")
    scan = scan_folder(tmp_path)
    assert scan.classes == ["a", "b"]
    assert scan.class_counts() == {"a": 1, "b": 3}
    np.testing.assert_allclose(scan.class_weights(), [2.0, 2 / 3], rtol=1e-6)
    assert scan.imbalance_ratio() == 3.0


def test_greyscale_cmyk_alpha_are_kept_and_counted(tmp_path: Path) -> None:
    _img(tmp_path / "a" / "grey.jpg", "L")
    _img(tmp_path / "a" / "cmyk.jpg", "CMYK")
    _img(tmp_path / "a" / "alpha.png", "RGBA", fmt="PNG")
    _img(tmp_path / "a" / "la.png", "LA", fmt="PNG")
    scan = scan_folder(tmp_path)
    assert len(scan.samples) == 4
    assert scan.converted == {"L": 1, "CMYK": 1, "RGBA": 1, "LA": 1}


def test_corrupt_truncated_and_non_images_are_skipped_with_a_warning(tmp_path: Path) -> None:
    good = _img(tmp_path / "a" / "good.jpg", size=(64, 64))
    data = good.read_bytes()
    (tmp_path / "a" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "a" / "garbage.png").write_bytes(b"this is not a png")
    (tmp_path / "a" / "notes.txt").write_text("hello")
    with pytest.warns(UserWarning, match="skipped 3 file"):
        scan = scan_folder(tmp_path)
    assert [s.path.name for s in scan.samples] == ["good.jpg"]
    assert scan.skipped["corrupt or truncated image"] == ["a/garbage.png", "a/truncated.jpg"]
    assert scan.skipped["not an image file"] == ["a/notes.txt"]


def test_empty_class_folder_is_an_error(tmp_path: Path) -> None:
    _img(tmp_path / "a" / "0.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"\['empty'\] hold no usable images"):
        scan_folder(tmp_path)
    assert scan_folder(tmp_path, allow_empty_classes=True).class_counts() == {"a": 1, "empty": 0}


def test_missing_flat_and_unknown_class_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        scan_folder(tmp_path / "nope")
    _img(tmp_path / "flat.jpg")
    with pytest.raises(DataError, match="no class sub-folders"):
        scan_folder(tmp_path)
    _img(tmp_path / "c" / "0.jpg")
    with pytest.raises(DataError, match="not among the model's classes"):
        scan_folder(tmp_path, classes=["a", "b"])


def test_stratified_split_is_deterministic_and_stratified() -> None:
    labels = np.repeat(np.arange(3), [50, 30, 5])
    a = stratified_split(labels, 0.2, seed=7)
    b = stratified_split(labels, 0.2, seed=7)
    c = stratified_split(labels, 0.2, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    train, val = a
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(labels)
    assert np.bincount(labels[val]).tolist() == [10, 6, 1]
    with pytest.raises(ConfigError, match="out of range"):
        stratified_split(labels, 1.5)


@needs_trashnet
def test_trashnet_loads_with_correct_counts_and_reproducible_split() -> None:
    scan = scan_folder(TRASHNET)
    expected = {"cardboard": 316, "glass": 400, "metal": 325, "paper": 481, "plastic": 369, "trash": 108}
    assert scan.class_counts() == expected
    assert len(scan.samples) == 1999 and not scan.skipped
    train, val = split_scan(scan, 0.2, seed=0)
    train2, val2 = split_scan(scan, 0.2, seed=0)
    assert [s.path for s in val.samples] == [s.path for s in val2.samples]
    counts = val.class_counts()
    for name, n in expected.items():
        assert counts[name] == round(n * 0.2)
    assert len(train.samples) + len(val.samples) == 1999
