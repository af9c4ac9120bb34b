from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from edgeopt.errors import ConfigError
from edgeopt.models import count_complexity, create_model, rebuild_model
from edgeopt.models.dsl import build_from_yaml_text, yaml_input_size

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
SHIPPED = sorted(MODELS_DIR.glob("*.yaml"))


def test_there_are_shipped_models() -> None:
    assert len(SHIPPED) >= 3


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_yaml_builds_and_runs(path: Path) -> None:
    model, arch = create_model(path, 4)
    size = yaml_input_size(path.read_text())
    assert size is not None
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 4)
    again = rebuild_model(arch)
    again.load_state_dict(model.state_dict())
    assert count_complexity(model, size).macs > 0


def test_depth_and_width_multiples_scale_the_model() -> None:
    base = {"depth_multiple": 1.0, "width_multiple": 1.0, "backbone": [
        [3, "Conv", [32, 3, 1]], [1, "GlobalAvgPool", []], [1, "Flatten", []], [1, "Linear", [6]]]}
    small = dict(base, depth_multiple=0.34, width_multiple=0.5)
    m_big = build_from_yaml_text(yaml.safe_dump(base), 6)
    m_small = build_from_yaml_text(yaml.safe_dump(small), 6)
    assert len(m_big) == 3 + 3 and len(m_small) == 1 + 3
    assert m_small[0][0].out_channels == 16 and m_small[-1][0].out_features == 6


def _yaml(rows, **top) -> str:
    return yaml.safe_dump({"backbone": rows, **top})


@pytest.mark.parametrize(
    "text,match",
    [
        (_yaml([[1, "Conv", [8]], [1, "GlobalAvgPool", []], [1, "Flaten", []], [1, "Linear", [2]]]), r"row 2 .*did you mean 'Flatten'"),
        (_yaml([[1, "Conv", ["x", 3]], [1, "Linear", [2]]]), r"row 0 .*argument 0 \(output channels\)"),
        (_yaml([[1, "Conv", [8, 3, 1, None, 1, "Relu"]], [1, "GlobalAvgPool", []], [1, "Flatten", []], [1, "Linear", [2]]]), r"row 0 .*did you mean 'ReLU'"),
        (_yaml([[1, "Conv", [8]], [1, "Linear", [2]]]), "do not fit together"),
        (_yaml([[1, "Conv", [8]]]), "no Linear or FixedConv"),
        (_yaml([[1, "Conv", [8]], [1, "GlobalAvgPool", []], [1, "Flatten", []], [1, "Linear", [2]]], width_multipel=1), "did you mean 'width_multiple'"),
        (_yaml([[1, "Conv", [8]]], depth_multiple=-1), "depth_multiple=-1 is out of range"),
        (_yaml([["two", "Conv", [8]], [1, "Linear", [2]]]), "repeat must be a positive integer"),
        (_yaml([[1, "InvertedResidualv2", [8, 6, 3]], [1, "Linear", [2]]]), "stride must be 1 or 2"),
        ("backbone: [", "not valid YAML"),
        ("- 1\n- 2\n", "a mapping"),
    ],
)
def test_bad_yaml_errors_name_the_row_and_argument(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_from_yaml_text(text, 2)


def test_yaml_never_executes_python(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("backbone: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        create_model(evil, 2)
    with pytest.raises(ConfigError, match="no such model file"):
        create_model(tmp_path / "missing.yaml", 2)
