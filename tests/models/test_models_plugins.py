"""A user's own model: ``@edgeopt.register_model`` and an installed plugin found through its entry point."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edgeopt
from edgeopt.artifacts import read_manifest
from edgeopt.cli.app import app
from edgeopt.errors import ArtifactError, ConfigError
from edgeopt.models import plugins

runner = CliRunner()
NAME = "edgeopt_demo_plugin_net"
PLUGIN = f'''
import torch.nn as nn

import edgeopt


@edgeopt.register_model("{NAME}", preprocess={{"size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}})
def demo_net(num_classes):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, num_classes))
'''


@pytest.fixture()
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A plugin package as pip installs one: the package and a dist-info whose entry_points.txt names it."""
    site = tmp_path / "site"
    (site / "edgeopt_demo_plugin").mkdir(parents=True)
    (site / "edgeopt_demo_plugin" / "__init__.py").write_text(PLUGIN)
    info = site / "edgeopt_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edgeopt-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[edgeopt.models]\n{NAME} = edgeopt_demo_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "edgeopt_demo_plugin", raising=False)
    if NAME in plugins.MODELS:  # registered by an earlier test in this process: start unregistered
        monkeypatch.delitem(plugins.MODELS._items, NAME)
    return site


def _forget_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(plugins.MODELS._items, NAME)
    monkeypatch.delitem(sys.modules, "edgeopt_demo_plugin")


def test_a_plugin_model_trains_exports_evaluates_and_reloads(installed_plugin: Path, synth_data: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeopt.models.checkpoint import load_checkpoint

    assert NAME not in plugins.MODELS and NAME in plugins.plugin_names()  # found, not yet imported
    result = runner.invoke(app, ["train", "--model", NAME, "--data", str(synth_data), "--out", str(tmp_path / "run"),
                                 "--img-size", "32", "--epochs", "1", "--batch-size", "16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    best = tmp_path / "run" / "best.pt"
    manifest = read_manifest(best)
    assert manifest.arch["source"] == "registered" and manifest.arch["name"] == NAME
    assert manifest.arch["factory"] == "edgeopt_demo_plugin.demo_net"
    assert manifest.preprocess["mean"] == [0.5, 0.5, 0.5] and manifest.preprocess["std"] == [0.25, 0.25, 0.25]
    result = runner.invoke(app, ["export", str(best), "--out", str(tmp_path / "m.onnx"), "--data", str(synth_data)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(tmp_path / "m.onnx"), "--data", str(synth_data)])
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output
    # a new process: the registration is gone until the entry point is loaded again, by name
    _forget_registration(monkeypatch)
    model, _ = load_checkpoint(best)
    assert NAME in plugins.MODELS and sum(p.numel() for p in model.parameters()) > 0
    # the plugin uninstalled: one line naming the model and the factory that registered it
    _forget_registration(monkeypatch)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(installed_plugin)])
    importlib.invalidate_caches()
    with pytest.raises(ArtifactError, match=f"its model '{NAME}' was registered by edgeopt_demo_plugin.demo_net and no "
                                            "registration of it is present") as info:
        load_checkpoint(best)
    assert "\n" not in str(info.value)


def test_register_model_refuses_duplicates_and_bad_preprocessing(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.nn as nn

    from edgeopt.models import create_model
    from edgeopt.models.factory import preset_for_model

    def factory(num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, num_classes))

    monkeypatch.setattr(plugins, "MODELS", plugins.Registry("registered model"))
    edgeopt.register_model("flat_net", preprocess={"size": 16})(factory)
    model, arch = create_model("flat_net", 3)
    assert arch == {"source": "registered", "name": "flat_net", "num_classes": 3, "kwargs": {},
                    "factory": f"{__name__}.{factory.__qualname__}"}
    assert preset_for_model("flat_net", 16).mean == plugins.IMAGENET_MEAN
    with pytest.raises(ValueError, match="'flat_net' is already registered"):
        edgeopt.register_model("flat_net")(factory)
    with pytest.raises(ConfigError, match=r"`preprocess` keys \['crop'\] are unknown"):
        edgeopt.register_model("other", preprocess={"crop": 16})
    with pytest.raises(ConfigError, match="constructor argument 'width' is not one edgeopt passes to registered models"):
        create_model("flat_net", 3, width=2)
    with pytest.raises(ConfigError, match="unknown model 'flat_nett'; did you mean flat_net"):
        create_model("flat_nett", 3)
