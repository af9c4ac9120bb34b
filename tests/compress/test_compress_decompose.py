"""Tucker-2 decomposition: exact at full rank, cheaper at lower energy, rebuilt from its record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgeopt.models.checkpoint import load_checkpoint
from edgeopt.cli.app import app
from edgeopt.compress.finetune import FinetuneConfig
from edgeopt.errors import ConfigError
from edgeopt.models.tucker import energy_rank, tucker_sequence, vbmf_rank

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


@pytest.mark.parametrize("rank", [1, 5, 12])
@pytest.mark.parametrize("shape", [(20, 60), (64, 288), (96, 96)])
def test_vbmf_finds_the_rank_under_noise_where_an_energy_threshold_does_not(rank: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(rank * 1000 + shape[0])
    signal = rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1]))
    noisy = signal + 0.1 * rng.standard_normal(shape)
    assert vbmf_rank(noisy) == rank and vbmf_rank(noisy.T) == rank
    assert vbmf_rank(rng.standard_normal(shape)) <= 2  # noise alone: (almost) nothing to keep


def test_vbmf_ranks_decompose_a_low_rank_convolution(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.compress.decompose import DecomposeConfig, decompose_checkpoint

    result = decompose_checkpoint(DecomposeConfig(checkpoint=tiny_ckpts["yaml"], data=synth_data, out=tmp_path / "v",
                                                  ranks="vbmf", finetune=FinetuneConfig(epochs=0)), log=lambda m: None)
    from edgeopt.models.checkpoint import load_model_and_arch

    _, _, arch = load_model_and_arch(result.decomposed_checkpoint)
    assert arch["decomposition"]["ranks"] == "vbmf" and result.macs_after < result.macs_before
    original, _, _ = load_model_and_arch(tiny_ckpts["yaml"])
    for name, (r_in, r_out) in result.layers.items():  # each rank is VBMF's on that layer's unfolding
        w = dict(original.named_modules())[name].weight.detach().numpy()
        assert r_out == vbmf_rank(w.reshape(w.shape[0], -1))
        assert r_in == vbmf_rank(w.transpose(1, 0, 2, 3).reshape(w.shape[1], -1))


def test_pointwise_decomposition_acts_on_1x1_convolutions_and_is_exact_at_full_rank(
        tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.compress.decompose import DecomposeConfig, decompose_checkpoint

    conv = torch.nn.Conv2d(16, 24, 1, bias=True)
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        assert torch.allclose(tucker_sequence(conv, 16, 24)(x), conv(x), atol=1e-4)
    options = {"checkpoint": tiny_ckpts["yaml"], "data": synth_data, "energy": 0.8, "finetune": FinetuneConfig(epochs=0)}
    plain = decompose_checkpoint(DecomposeConfig(out=tmp_path / "a", **options), log=lambda m: None)
    both = decompose_checkpoint(DecomposeConfig(out=tmp_path / "b", pointwise=True, **options), log=lambda m: None)
    model, _ = load_checkpoint(both.decomposed_checkpoint)
    pointwise = [n for n in both.layers if dict(model.named_modules())[n][1].kernel_size == (1, 1)]
    assert pointwise and set(plain.layers) < set(both.layers) and both.macs_after < plain.macs_after


def test_decompose_finetune_and_rebuild(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.artifacts import read_manifest
    from edgeopt.models.checkpoint import load_checkpoint
    from edgeopt.export.onnx import export_onnx

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
    from edgeopt.compress.decompose import DecomposeConfig, decompose_checkpoint

    with pytest.raises(ConfigError, match="`ranks` 'svd' is unknown"):
        DecomposeConfig(checkpoint=tiny_ckpts["yaml"], data=synth_data, out=tmp_path, ranks="svd")
    with pytest.raises(ConfigError, match="`energy` 1.5 is out of range"):
        DecomposeConfig(checkpoint=tiny_ckpts["yaml"], data=synth_data, out=tmp_path, energy=1.5)
    with pytest.raises(ConfigError, match="no convolution gets cheaper"):
        decompose_checkpoint(DecomposeConfig(checkpoint=tiny_ckpts["yaml"], data=synth_data, out=tmp_path / "x",
                                             energy=1.0, finetune=FinetuneConfig(epochs=0)), log=lambda m: None)
