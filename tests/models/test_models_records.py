"""Forged architecture records: one error line, nothing allocated beyond the model, no other file opened.

Each forgery is what a forger would write: a valid ``weights_only`` checkpoint whose record was
edited and whose manifest's sha256 was updated, so every earlier check passes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from typer.testing import CliRunner

from edgeopt.artifacts import read_manifest, write_artifact_manifest
from edgeopt.models.checkpoint import load_checkpoint
from edgeopt.cli.app import app
from edgeopt.errors import ArtifactError, ConfigError
from edgeopt.models import create_model
from edgeopt.models.records import check_constructor_args

runner = CliRunner()
_opened: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], (str, bytes, Path)):
        _opened.append(str(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one records only while _opened is a list


class _LargestTensor(TorchFunctionMode):
    """Records the element count of the largest real (non-meta) tensor any torch call returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and not out.is_meta:
            self.largest = max(self.largest, out.numel())
        return out


def _forge(source: Path, dest: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dest)
    write_artifact_manifest(dest, read_manifest(source))  # the forger updates the manifest's sha256 too
    return dest


def _first_conv(state: dict[str, torch.Tensor]) -> str:
    return next(k[: -len(".weight")] for k, v in state.items() if k.endswith(".weight") and v.ndim == 4 and v.shape[1] > 1)


def _huge_layer(ckpt: dict[str, Any]) -> None:
    ckpt["arch"]["layer_shapes"] = {_first_conv(ckpt["state_dict"]): [10**6, 10**6, 3, 3, 1]}


def _hostile_kwargs(hostile: Path) -> Callable[[dict[str, Any]], None]:
    def edit(ckpt: dict[str, Any]) -> None:
        ckpt["arch"]["kwargs"] = {"checkpoint_path": str(hostile)}
    return edit


def _huge_ranks(ckpt: dict[str, Any]) -> None:
    ckpt["arch"]["decomposed"] = {_first_conv(ckpt["state_dict"]): [10**6, 10**6]}


def _huge_head(ckpt: dict[str, Any]) -> None:
    ckpt["arch"]["num_classes"] = 10**9


def _no_such_layer(ckpt: dict[str, Any]) -> None:
    ckpt["arch"]["layer_shapes"] = {"not.a.layer": [4, 3, 3, 3, 1]}


FORGERIES = {"huge pruned layer": ("timm", _huge_layer, "pruned layer"),
             "hostile constructor argument": ("timm", None, "'checkpoint_path' is not one edgeopt passes"),
             "huge decomposition ranks": ("yaml", _huge_ranks, "does not match its weights"),
             "huge classifier head": ("timm", _huge_head, "does not match its weights"),
             "yaml pruned layer that is not there": ("yaml", _no_such_layer, "'not.a.layer' is recorded")}


@pytest.mark.parametrize("case", FORGERIES)
def test_a_forged_record_is_one_line_before_any_allocation_or_file_access(
        case: str, tiny_ckpts: dict[str, Path], synth_data: Path, tmp_path: Path) -> None:
    global _opened
    key, edit, message = FORGERIES[case]
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(b"not to be opened")
    forged = _forge(tiny_ckpts[key], tmp_path / "forged.pt", edit or _hostile_kwargs(hostile))
    own_size = sum(v.numel() for v in torch.load(forged, weights_only=True)["state_dict"].values())
    mode = _LargestTensor()
    _opened = []
    try:
        with mode:
            result = runner.invoke(app, ["eval", str(forged), "--data", str(synth_data)])
        opened = list(_opened)
    finally:
        _opened = None
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and message in result.output and "Traceback" not in result.output, result.output
    assert len(" ".join(lines)) < 400  # one (soft-wrapped) line
    assert mode.largest <= own_size, f"allocated {mode.largest} elements for a model of {own_size}"
    assert not any(Path(p).name == hostile.name for p in opened), opened
    assert not any(Path(p).suffix == ".jpg" for p in opened)  # refused before any image was read


def test_a_true_record_still_loads(tiny_ckpts: dict[str, Path]) -> None:
    for key in ("yaml", "timm"):
        model, manifest = load_checkpoint(tiny_ckpts[key])
        assert sum(p.numel() for p in model.parameters()) == manifest.metrics["params"]


def test_constructor_arguments_are_declared_per_library() -> None:
    assert check_constructor_args("timm", {"drop_rate": 0.2}) == {"drop_rate": 0.2}
    for kwargs, message in (({"checkpoint_path": "x"}, "'checkpoint_path' is not one"), ({"drop_rate": "0.2"}, "float in"),
                            ({"drop_rate": float("nan")}, "float in"), ({"drop_rate": True}, "float in")):
        with pytest.raises(ConfigError, match=message):
            check_constructor_args("timm", kwargs)
    with pytest.raises(ConfigError, match="allowed: dropout"):
        create_model("mobilenet_v2", 3, weights="IMAGENET1K_V1")
    with pytest.raises(ConfigError, match="checkpoint_path"):
        create_model("mobilenetv3_small_050", 3, checkpoint_path="/etc/hostname")


def test_a_record_of_the_wrong_type_is_refused(tiny_ckpts: dict[str, Path], tmp_path: Path) -> None:
    def listy(ckpt: dict[str, Any]) -> None:
        ckpt["arch"] = ["timm", "resnet18d"]

    def stringy(ckpt: dict[str, Any]) -> None:
        ckpt["arch"]["layer_shapes"] = {"conv_stem": ["16", 3, 3, 3, 1]}

    for i, edit in enumerate((listy, stringy)):
        forged = _forge(tiny_ckpts["timm"], tmp_path / f"f{i}.pt", edit)
        with pytest.raises(ArtifactError, match="altered or is not from edgeopt"):
            load_checkpoint(forged)
