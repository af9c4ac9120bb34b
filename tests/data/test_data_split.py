"""data split: pool/judge/test, stratified and seeded, as links; one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeopt.data.folder import scan_folder
from edgeopt.data.split import split_folder
from edgeopt.errors import ConfigError, DataError


def _names(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_three_disjoint_stratified_parts_that_cover_the_source(synth_data: Path, tmp_path: Path) -> None:
    result = split_folder(synth_data, tmp_path / "s", test=0.25, judge=0.25, seed=3)
    parts = {p: _names(result.parts[p]) for p in ("pool", "judge", "test")}
    assert not (parts["pool"] & parts["judge"]) and not (parts["pool"] & parts["test"]) and not (parts["judge"] & parts["test"])
    source = {s.path.relative_to(synth_data).as_posix() for s in scan_folder(synth_data).samples}
    assert parts["pool"] | parts["judge"] | parts["test"] == source
    for name in result.classes:  # 12 per class: 3 test, 3 judge (a quarter of the 12), 6 pool
        assert (result.counts["test"][name], result.counts["judge"][name], result.counts["pool"][name]) == (3, 3, 6)
    record = json.loads(result.record.read_text())
    assert record["seed"] == 3 and record["fractions"] == {"test": 0.25, "judge": 0.25} and record["counts"] == result.counts
    # links, not copies: the same file
    some = next(iter(parts["test"]))
    assert (result.parts["test"] / some).stat().st_ino == (synth_data / some).stat().st_ino


def test_same_seed_same_split_other_seed_other_split(synth_data: Path, tmp_path: Path) -> None:
    a = split_folder(synth_data, tmp_path / "a", seed=1)
    b = split_folder(synth_data, tmp_path / "b", seed=1)
    c = split_folder(synth_data, tmp_path / "c", seed=2)
    assert _names(a.parts["test"]) == _names(b.parts["test"]) != _names(c.parts["test"])
    assert "judge" not in split_folder(synth_data, tmp_path / "d", judge=0).parts


def test_refusals(synth_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="`judge`"):
        split_folder(synth_data, tmp_path / "x", test=0.6, judge=0.5)
    with pytest.raises(ConfigError, match="`test`"):
        split_folder(synth_data, tmp_path / "x", test=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not an empty folder"):
        split_folder(synth_data, tmp_path / "full")
    small = tmp_path / "small"
    for name, n in (("a", 5), ("b", 2)):
        (small / name).mkdir(parents=True)
        for i in range(n):
            (small / name / f"{i}.jpg").write_bytes(_one_image(synth_data).read_bytes())
    with pytest.raises(DataError, match=r"b \(2 image"):
        split_folder(small, tmp_path / "y")
    assert not (tmp_path / "y").exists()  # refused before anything is written


def _one_image(folder: Path) -> Path:
    return scan_folder(folder).samples[0].path
