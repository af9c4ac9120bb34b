"""Which images a model trained on, by content: so that what judges it is not what taught it.

Every stage that trains (``train`` and the fine-tuning of ``prune``/``decompose``, ``qat``) records
the sha256 (first 16 hex digits: 64 bits) of each training image in its artifact's manifest, under
``extra["train_images"]``, together with what the stages before it trained on; ``export`` and
``calibrate`` carry the record on. A copy of a training image in another folder has the same
digest, so a split materialised into new folders is still recognised.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgeopt.artifacts import sha256_file

KEY = "train_images"
DIGITS = 16


def digest(path: str | Path) -> str:
    return sha256_file(path)[:DIGITS]


def record_training_images(paths: Iterable[str | Path], *inherited: dict[str, Any] | None) -> dict[str, Any]:
    """``{"train_images": {"count", "sha256_16"}}`` for a manifest's extra: ``paths`` plus what the
    artifacts a stage started from (their ``extra``) trained on."""
    digests = {digest(p) for p in paths}
    for extra in inherited:
        digests |= trained_on(extra) or set()
    return {KEY: {"count": len(digests), "sha256_16": sorted(digests)}}


def trained_on(extra: dict[str, Any] | None) -> set[str] | None:
    """The digests a manifest's extra records; None when it records none (an older or foreign artifact)."""
    entry = (extra or {}).get(KEY)
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256_16"), list):
        return None
    return {d for d in entry["sha256_16"] if isinstance(d, str)}


def carried(extra: dict[str, Any] | None) -> dict[str, Any]:
    """The record of ``extra`` to copy into a derived artifact's extra (empty when there is none)."""
    entry = (extra or {}).get(KEY)
    return {KEY: entry} if trained_on(extra) is not None else {}


def overlap(paths: Iterable[Path], extra: dict[str, Any] | None) -> tuple[list[Path], bool]:
    """(the given images the model trained on, whether the manifest says what it trained on)."""
    seen = trained_on(extra)
    if seen is None:
        return [], False
    return [p for p in paths if digest(p) in seen], True
