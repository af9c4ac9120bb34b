from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeopt.artifacts import (
    Manifest,
    atomic_path,
    atomic_write_json,
    manifest_path,
    read_manifest,
    sha256_file,
    write_artifact_manifest,
)
from edgeopt.errors import ArtifactError


def test_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    f = tmp_path / "a.bin"
    f.write_bytes(b"edgeopt" * 1000)
    assert sha256_file(f) == hashlib.sha256(b"edgeopt" * 1000).hexdigest()


def test_atomic_write_keeps_previous_file_when_interrupted(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]  # no temp file left behind


def test_atomic_write_refuses_empty_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="empty"):
        with atomic_path(tmp_path / "model.engine"):
            pass
    assert not (tmp_path / "model.engine").exists()


def test_manifest_roundtrip_and_parent_hash(tmp_path: Path) -> None:
    parent = tmp_path / "best.pt"
    parent.write_bytes(b"weights")
    child = tmp_path / "model.onnx"
    child.write_bytes(b"graph")
    m = Manifest(kind="onnx", classes=["a", "b"], preprocess={"size": 64}, precision="fp32")
    write_artifact_manifest(child, m, parent=parent)
    assert manifest_path(child).name == "model.onnx.json"
    back = read_manifest(child, expect_kind="onnx")
    assert back.classes == ["a", "b"]
    assert back.parent == {"path": str(parent), "sha256": sha256_file(parent)}
    assert back.sha256 == sha256_file(child)


def test_manifest_detects_changed_artifact(tmp_path: Path) -> None:
    child = tmp_path / "model.onnx"
    child.write_bytes(b"graph")
    write_artifact_manifest(child, Manifest(kind="onnx"))
    child.write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="does not match"):
        read_manifest(child)


def test_manifest_wrong_kind_and_missing(tmp_path: Path) -> None:
    child = tmp_path / "best.pt"
    child.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="no manifest"):
        read_manifest(child)
    write_artifact_manifest(child, Manifest(kind="checkpoint"))
    with pytest.raises(ArtifactError, match="expected onnx"):
        read_manifest(child, expect_kind="onnx")


def test_manifest_rejects_unknown_keys_and_bad_json(tmp_path: Path) -> None:
    child = tmp_path / "m.onnx"
    child.write_bytes(b"x")
    atomic_write_json(manifest_path(child), {"kind": "onnx", "colour": "red"})
    with pytest.raises(ArtifactError, match="unknown manifest keys"):
        read_manifest(child)
    manifest_path(child).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_manifest(child)
    assert json.loads(json.dumps(Manifest(kind="x").to_dict()))["kind"] == "x"
