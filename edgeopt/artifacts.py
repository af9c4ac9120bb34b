"""Artifact manifests, hashing and atomic writes.

Every artifact ``X`` gets a JSON manifest ``X.json`` beside it saying what it is and where it
came from. Stages read their parent's manifest instead of asking again, and refuse a parent whose
sha256 no longer matches the manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeopt import __version__
from edgeopt.errors import ArtifactError, ConfigError
from edgeopt.formats import FORMATS, SUFFIX_KINDS

MANIFEST_SUFFIX = ".json"
SCHEMA_VERSION = 1
# the one suffix -> artifact-kind table (CLI, runtime and stages all ask it): the model formats' endings
# from ``edgeopt.formats.FORMATS``, and the artifacts that are not models
ARTIFACT_KINDS = {**SUFFIX_KINDS, ".bank": "soft-labels"}


def suffix_kind(path: str | os.PathLike[str]) -> str | None:
    """'checkpoint', 'onnx' or 'engine' from the file name, or None for anything else."""
    return ARTIFACT_KINDS.get(Path(path).suffix.lower())


def artifact_kind(path: str | os.PathLike[str]) -> str:
    """'checkpoint', 'onnx' or 'engine' from the file name; anything else is an error."""
    kind = suffix_kind(path)
    if kind is None:
        raise ArtifactError(
            f"{path}: unknown artifact type {Path(path).suffix or '(no suffix)'}; expected a checkpoint "
            f"({FORMATS['checkpoint'].suffix}), an ONNX model ({FORMATS['onnx'].suffix}) or a TensorRT engine "
            f"({FORMATS['engine'].suffix})"
        )
    return kind


def require_kind(path: str | os.PathLike[str], kind: str, what: str) -> None:
    """A one-line error unless ``path``'s name makes it a ``kind`` artifact (``what``: e.g. ``--out``)."""
    if suffix_kind(path) != kind:
        names = sorted(s for s, k in ARTIFACT_KINDS.items() if k == kind)
        raise ConfigError(f"{what} {path}: a {kind} artifact's name must end in {' or '.join(names)}")


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], allow_empty: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only on success.

    An interrupted or failed write leaves any previous ``final`` untouched and no partial file
    under the final name.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists() or (tmp.stat().st_size == 0 and not allow_empty):
            raise ArtifactError(f"refusing to write an empty artifact to {final}")
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it takes ``final``'s place.

    A previous ``final`` is moved aside and removed only once the new folder is in place; a failed
    write leaves it untouched and removes the temporary folder.
    """
    import shutil

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield staging
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.replaced")
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def atomic_write_bytes(final: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``final`` atomically and return the path."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def atomic_write_text(final: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``final`` atomically and return the path."""
    return atomic_write_bytes(final, text.encode("utf-8"))


def atomic_write_json(final: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``final`` atomically."""
    return atomic_write_text(final, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def manifest_path(artifact: str | os.PathLike[str]) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


def tool_versions(*names: str) -> dict[str, str]:
    """Versions of the named installed distributions (missing ones are left out)."""
    from importlib import metadata

    versions = {"edgeopt": __version__}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


@dataclasses.dataclass
class Manifest:
    """What an artifact is and where it came from."""

    kind: str  # "dataset", "checkpoint", "onnx", "engine", "soft-labels", "calibration", "bench"
    classes: list[str] = dataclasses.field(default_factory=list)
    preprocess: dict[str, Any] = dataclasses.field(default_factory=dict)
    arch: dict[str, Any] = dataclasses.field(default_factory=dict)
    precision: str | None = None
    format: str | None = None  # the conversion graph's row (``edgeopt.formats.FORMATS``): what the artifact is and runs on
    parent: dict[str, str] | None = None  # {"path": ..., "sha256": ...}
    sha256: str | None = None
    tools: dict[str, str] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    created: str = dataclasses.field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "manifest") -> Manifest:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ArtifactError(
                f"{source}: unknown manifest keys {unknown}; it was written by another tool or a "
                "newer edgeopt: re-run the stage that made it"
            )
        if "kind" not in data:
            raise ArtifactError(f"{source}: manifest has no 'kind'; re-run the stage that made it")
        # the shapes every reader relies on, checked once here instead of failing inside a reader
        shapes = {"kind": str, "classes": list, "preprocess": dict, "arch": dict, "precision": (str, type(None)),
                  "format": (str, type(None)), "parent": (dict, type(None)), "sha256": (str, type(None)), "tools": dict,
                  "metrics": dict, "extra": dict}
        for key, kind in shapes.items():
            if key in data and not isinstance(data[key], kind):
                raise ArtifactError(f"{source}: manifest key {key!r} is a {type(data[key]).__name__}, not what edgeopt "
                                    "writes; the manifest was edited or damaged: re-run the stage that made it")
        if not all(isinstance(c, str) for c in data.get("classes", [])):
            raise ArtifactError(f"{source}: manifest 'classes' holds a non-text name; re-run the stage that made it")
        return cls(**data)


def write_artifact_manifest(
    artifact: str | os.PathLike[str], manifest: Manifest, parent: str | os.PathLike[str] | None = None
) -> Path:
    """Hash ``artifact`` (and ``parent``), then write its manifest beside it atomically."""
    artifact = Path(artifact)
    manifest.sha256 = sha256_file(artifact)
    if parent is not None:
        parent = Path(parent)
        manifest.parent = {"path": str(parent), "sha256": sha256_file(parent)}
    return atomic_write_json(manifest_path(artifact), manifest.to_dict())


def read_manifest(
    artifact: str | os.PathLike[str], expect_kind: str | tuple[str, ...] | None = None, verify: bool = True
) -> Manifest:
    """Read the manifest beside ``artifact``; check its kind and that the artifact's hash matches."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise ArtifactError(f"{artifact}: no such file")
    mpath = manifest_path(artifact)
    if not mpath.exists():
        raise ArtifactError(
            f"{artifact}: no manifest {mpath.name} beside it; produce the artifact with edgeopt "
            "(train/export/calibrate/build-engine) so its classes and preprocessing are known"
        )
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{mpath}: not valid JSON ({exc}); re-run the stage that made it") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{mpath}: expected a JSON object; re-run the stage that made it")
    manifest = Manifest.from_dict(data, source=str(mpath))
    if expect_kind is not None:
        kinds = (expect_kind,) if isinstance(expect_kind, str) else expect_kind
        if manifest.kind not in kinds:
            raise ArtifactError(
                f"{artifact}: is a {manifest.kind!r} artifact, expected {' or '.join(kinds)}"
            )
    if verify and manifest.sha256 is not None:
        actual = sha256_file(artifact)
        if actual != manifest.sha256:
            raise ArtifactError(
                f"{artifact}: sha256 {actual[:12]}… does not match its manifest "
                f"({manifest.sha256[:12]}…); the file changed after it was made: re-run that stage"
            )
    return manifest
