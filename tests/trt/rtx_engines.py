"""The engines TensorRT-RTX built in this test session, for the summary line tests/trt/conftest.py prints."""

from __future__ import annotations

import json
from pathlib import Path

BUILT: list[dict] = []


def record(engine: Path) -> None:
    """Count a real engine: a non-empty file whose manifest says TensorRT-RTX built it."""
    engine = Path(engine)
    extra = json.loads(Path(f"{engine}.json").read_text())["extra"]
    size = engine.stat().st_size
    assert extra["builder"] == "tensorrt-rtx" and size > 0, f"{engine} is not a TensorRT-RTX engine"
    BUILT.append({"path": str(engine), "bytes": size, "seconds": float(extra["build_seconds"]), "version": extra["builder_version"]})


def summary() -> str | None:
    if not BUILT:
        return None
    megabytes = sum(e["bytes"] for e in BUILT) / 1e6
    seconds = sum(e["seconds"] for e in BUILT)
    return (f"TensorRT-RTX {BUILT[0]['version']}: {len(BUILT)} real engines built by NVIDIA's parser and builder "
            f"({megabytes:.1f} MB, {seconds:.1f} s of building, no GPU needed)")
