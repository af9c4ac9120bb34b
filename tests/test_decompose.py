"""Tucker-2 decomposition: exact at full rank, cheaper at lower energy, rebuilt from its record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.compress import FinetuneOptions
from edgeopt.errors import ConfigError
from edgeopt.models.tucker import energy_rank, tucker_sequence

runner = CliRunner()


def test_energy_rank_and_full_rank_tucker_is_exact() -> None:
    rng = np.random.default_rng(0)
    low = rng.standard_normal((16, 3)) @ rng.standard_normal((3, 20))  # rank 3
    assert energy_rank(low, 0.999999) == 3 and energy_rank(np.eye(4), 0.5) == 2
    conv = torch.nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=True)
    seq = tucker_sequence(conv, 8, 12)  # full ranks: the factorisation is exact
    x = torch.randn(2, 8, 9, 9, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(seq(x), conv(x), atol=1e-4, rtol=1e-4)


def test_decompose_finetune_and_rebuild(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.artifacts import read_manifest
    from edgeopt.checkpoint import load_checkpoint
    from edgeopt.export import export_onnx

    out = tmp_path / "dec"
    result = runner.invoke(app, ["decompose", str(tiny_ckpts["yaml"]), "--data", str(synth_data), "--energy", "0.6",
                                 "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    before = read_manifest(tiny_ckpts["yaml"]).arch["macs"]
    manifest = read_manifest(out / "best.pt")
    assert manifest.arch["macs"] < before and manifest.arch["decomposed"]
    model, _ = load_checkpoint(out / "best.pt")  # rebuilt from the ranks: weights_only, no pickled module
    assert any(isinstance(m, torch.nn.Sequential) and len(m) == 3 for m in model.modules())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 6)
    assert export_onnx(out / "best.pt", tmp_path / "dec.onnx", data=synth_data).parity.top1_agreement == 1.0


def test_decompose_bad_inputs(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.decompose import DecomposeConfig, decompose_checkpoint

    with pytest.raises(ConfigError, match="--energy 1.5 is out of range"):
        DecomposeConfig(checkpoint=tiny_ckpts["yaml"], data=synth_data, out=tmp_path, energy=1.5)
    with pytest.raises(ConfigError, match="no convolution gets cheaper"):
        decompose_checkpoint(DecomposeConfig(checkpoint=tiny_ckpts["yaml"], data=synth_data, out=tmp_path / "x",
                                             energy=1.0, finetune=FinetuneOptions(epochs=0)), log=lambda m: None)
