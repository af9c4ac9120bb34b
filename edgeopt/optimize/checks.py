"""Everything ``optimize`` can check before its first step: the folders, the images, the models and
budgets the settings name, and whether the target runs here. A run that would fail at step 4 fails
here instead, before anything is written into ``out`` and before half an hour of teacher and bank."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from edgeopt.errors import ArtifactError, ConfigError, DataError, MissingDependencyError


@dataclasses.dataclass(frozen=True)
class CheckedInputs:
    """What the checks found, so the steps need not look again."""

    classes: list[str]
    data_digest: str
    test_digest: str | None
    target: str  # "tensorrt" or "cpu" (auto resolved)
    space: Any  # the search space less what cannot fit ``max_macs`` (``edgeopt.search.fitting_space``)


def tensorrt_available() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    import torch

    return torch.cuda.is_available()


def file_digests(root: Path) -> dict[Path, str]:
    """Every file under ``root`` (hidden ones left out) and the digest of its bytes (``data.seen.digest``)."""
    from edgeopt.data.seen import digest

    return {p: digest(p) for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def folder_digest(root: Path, digests: dict[Path, str] | None = None) -> str:
    """Content digest of every file under ``root``: relative path and sha256 of its bytes (a changed
    image changes it; a copied or touched folder with the same images does not). ``digests``: the
    folder's ``file_digests`` when the caller has them already."""
    h = hashlib.sha256()
    for p, d in (digests if digests is not None else file_digests(root)).items():
        h.update(f"{p.relative_to(root).as_posix()}\0{d}\n".encode())
    return h.hexdigest()


def check_inputs(config: Any) -> CheckedInputs:
    """Refuse, in one line each, what would fail later or give figures that mean nothing."""
    from edgeopt.data.folder import scan_folder
    from edgeopt.search import SearchSpace, fitting_space

    c = config
    if c.out.exists() and not c.out.is_dir():
        raise ConfigError(f"`out` {c.out} is a file: name a folder for the run (it holds every artifact and the report)")
    scan = scan_folder(c.data)
    if len(scan.classes) < 2:
        raise DataError(f"`data` {c.data} has one class folder ({scan.classes[0]}): a classifier needs at least two")
    data_files, test_digest = file_digests(c.data), None  # each image read and hashed once
    if c.test is not None:
        test_scan = scan_folder(c.test, classes=scan.classes, allow_empty_classes=True)
        test_files = file_digests(c.test)
        pool = {data_files[s.path] for s in scan.samples}
        shared = [s.path for s in test_scan.samples if test_files[s.path] in pool]
        if shared:
            raise DataError(f"`test` {c.test} shares {len(shared)} image(s) with `data` (e.g. {shared[0]}, same content): "
                            "report on images nothing trains on, or leave `test` out to hold a share of `data` out")
        test_digest = folder_digest(c.test, test_files)
    if c.teacher is not None:
        _check_teacher(c.teacher, scan.classes)
    from edgeopt.device import resolve_device

    resolve_device(c.device)
    num_classes = len(scan.classes)
    if c.teacher is None:  # a bad name or missing weights, now rather than after the split
        _build("teacher_model", c.teacher_model, num_classes, c.pretrained)
    for backbone in c.backbones:
        _build("backbones", backbone, num_classes, c.pretrained)
    _check_baseline(c.baseline, num_classes)
    space = fitting_space(SearchSpace(backbones=c.backbones, sizes=c.sizes, max_prune=c.max_prune), c.max_macs, num_classes)
    target = c.target
    if target == "auto":
        target = "tensorrt" if tensorrt_available() else "cpu"
    elif target == "tensorrt" and not tensorrt_available():
        raise MissingDependencyError("`target` tensorrt needs TensorRT and an NVIDIA GPU on this machine "
                                     "(pip install 'edgeopt[tensorrt]'); use `target` cpu or auto here")
    return CheckedInputs(list(scan.classes), folder_digest(c.data, data_files), test_digest, target, space)


def _check_teacher(path: Path, classes: list[str]) -> None:
    from edgeopt.artifacts import read_manifest

    if not path.is_file():
        raise ConfigError(f"`teacher` {path}: no such checkpoint; train one with edgeopt train, or leave `teacher` out")
    try:
        manifest = read_manifest(path, expect_kind="checkpoint")
    except ArtifactError as exc:
        raise ArtifactError(f"`teacher` {exc}") from None
    if list(manifest.classes) != list(classes):
        raise DataError(f"`teacher` {path} was trained on classes {manifest.classes}, `data` has {classes}: "
                        "use a teacher of these classes, or leave `teacher` out to fine-tune one")


def _check_baseline(name: str, num_classes: int) -> None:
    """The bench's baseline: an artifact used as is, or a model (name or YAML file) the factory builds."""
    from edgeopt.artifacts import suffix_kind

    path = Path(name)
    if path.exists() and suffix_kind(path) is not None:
        return
    _build("baseline", name, num_classes, False)


def _build(setting: str, name: str, num_classes: int, pretrained: bool) -> None:
    """Build the model ``setting`` names (with its weights when ``pretrained``); its error names the setting."""
    from edgeopt.errors import EdgeoptError
    from edgeopt.models import create_model

    try:
        create_model(name, num_classes, pretrained=pretrained)
    except EdgeoptError as exc:
        raise type(exc)(f"`{setting}` {name}: {exc}") from None
