from __future__ import annotations

from pathlib import Path

from edgeopt.data.folder import scan_folder
from edgeopt.data.synthetic import SYNTHETIC_CLASSES, is_synthetic, render_synthetic


def test_synthetic_dataset_is_deterministic_and_labelled(tmp_path: Path, synth_data: Path) -> None:
    scan = scan_folder(synth_data)
    assert scan.classes == list(SYNTHETIC_CLASSES) and all(c.startswith("synthetic_") for c in scan.classes)
    assert set(scan.class_counts().values()) == {12}
    assert is_synthetic(synth_data) and not is_synthetic(tmp_path)
    again = render_synthetic(tmp_path / "again", per_class=12, seed=0, max_side=96)
    a = sorted(p.relative_to(synth_data) for p in synth_data.rglob("*.jpg"))
    assert a == sorted(p.relative_to(again) for p in again.rglob("*.jpg"))
    assert all((synth_data / p).read_bytes() == (again / p).read_bytes() for p in a[:10])
