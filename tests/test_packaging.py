"""What a non-editable install gets: the wheel's contents, and `edgeopt demo` run from the wheel in a fresh venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built from a copy of it (no build/ or egg-info left in the repository),
    with the setuptools already installed here (no network)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "edgeopt", src / "edgeopt", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (found,) = dist.glob("edgeopt-*.whl")
    return found


def test_the_wheel_holds_every_module_and_the_yaml_models(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "edgeopt").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= names, f"modules missing from the wheel: {sorted(modules - names)}"
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "edgeopt").rglob("*.yaml")}
    assert {"edgeopt/models/tiny_cnn.yaml", "edgeopt/data/taco_classes.yaml"} <= shipped <= names
    # every model the checkout's models/ offers is one the wheel ships
    assert {f"edgeopt/models/{p.name}" for p in (ROOT / "models").glob("*.yaml")} <= names
    # nothing else: no tests, no artifacts, no run folders
    assert not [n for n in names if n.startswith(("tests/", "runs/", "models/"))]
    assert not [n for n in names if n.endswith((".pt", ".onnx", ".engine", ".bank"))]
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "edgeopt = edgeopt.cli.app:main" in zipfile.ZipFile(wheel).read(meta).decode()


@pytest.mark.slow
def test_demo_runs_from_the_wheel_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    """`pip install` of the wheel alone (its dependencies are this venv's, through a .pth file: no copy of
    torch), then `edgeopt demo --epochs 1` run there, from a folder outside the checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies: this venv's site-packages as a plain path (its .pth files, the editable edgeopt's
    # among them, are not processed from there)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                             str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    where = subprocess.run([str(python), "-c", "import edgeopt; print(edgeopt.__file__)"], capture_output=True, text=True,
                           check=True, cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).is_relative_to(site) and not Path(where).is_relative_to(ROOT), where
    demo = subprocess.run([str(venv / "bin" / "edgeopt"), "demo", "--epochs", "1", "--out", str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=1500, cwd=tmp_path, env=env)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    assert (tmp_path / "demo" / "report.md").is_file()
    search = (tmp_path / "demo" / "steps" / "search.json").read_text()
    assert str(site / "edgeopt" / "models" / "tiny_cnn.yaml") in search  # the student came from the installed package
    assert "epoch   1/1  train loss" in demo.stdout  # every training shows its epochs


def test_the_docker_image_installs_at_the_pinned_versions() -> None:
    """The image installs with constraints.txt (the versions the suite passed with), and copies it in to do so."""
    text = (ROOT / "Dockerfile").read_text()
    install = next(line for line in text.splitlines() if line.startswith("RUN") and "pip install" in line)
    assert "-c constraints.txt" in install and '".[tensorrt]"' in install
    assert any(line.startswith("COPY") and "constraints.txt" in line.split() for line in text.splitlines())
    assert any(line.startswith("COPY edgeopt") for line in text.splitlines())  # the YAML models travel inside edgeopt/
