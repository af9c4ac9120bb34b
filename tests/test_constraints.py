"""constraints.txt (what the suite last passed with) stays inside pyproject.toml's ranges and is what is installed."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli", reason="reads pyproject.toml")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not a name==version pin"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_declared_dependency_is_pinned_inside_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    pins = _pins()
    for req in declared:
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared but not pinned in constraints.txt (make constraints)"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints.txt pins {req.name}=={pins[name]} outside {req}"
    assert pins["torch"] == "2.14.1"  # the newest torch this workplace installs; the declared range must admit it


def test_the_suite_runs_on_the_pinned_versions() -> None:
    """make install/test install with -c constraints.txt: what runs is what is pinned."""
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("not the .venv that make install builds from constraints.txt")
    pins = _pins()
    for name in ("torch", "onnx", "onnxruntime", "onnxslim", "timm", "numpy", "optuna"):
        assert metadata.version(name) == pins[name], f"{name} {metadata.version(name)} installed, {pins[name]} pinned"
