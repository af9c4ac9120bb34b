"""build-engine --verify: the engine against its FP32 source ONNX on real images, through the CLI, on every version's double."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeopt.cli.app import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A toy model whose INT8 form loses (a planted channel outlier, see tests/quant/test_quant_fallback.py), as FP32 and Q/DQ ONNX."""
    from quant.test_quant_fallback import plant_int8_outlier  # tests/ is on sys.path (conftest)

    from edgeopt.quant.calibrate import calibrate_onnx
    from edgeopt.data.synthetic import render_synthetic
    from edgeopt.runtime.evaluate import evaluate_artifact
    from edgeopt.export.onnx import export_onnx
    from edgeopt.train.loop import TrainConfig, train_classifier

    base = tmp_path_factory.mktemp("verify")
    data = render_synthetic(base / "data", per_class=12, seed=0, max_side=96)
    evaluation = render_synthetic(base / "eval", per_class=10, seed=1, max_side=96)
    run = train_classifier(TrainConfig(model=str(ROOT / "models" / "tiny_cnn.yaml"), data=data, out=base / "run", img_size=32,
                                       epochs=20, batch_size=16, lr=5e-3, device="cpu", workers=0))
    fp32 = export_onnx(plant_int8_outlier(run.best_checkpoint, data, base / "planted.pt"), base / "m.onnx", data=data).path
    with pytest.warns(Warning):
        qdq = calibrate_onnx(fp32, data, base / "m.int8.onnx", num_images=24, batch_size=8, method="minmax").path
    f1_fp32, f1_int8 = (evaluate_artifact(p, evaluation).metrics.macro_f1 for p in (fp32, qdq))
    assert f1_fp32 - f1_int8 > 0.1, f"premise: INT8 of every layer cannot hold the planted outlier ({f1_fp32} -> {f1_int8})"
    flat = base / "unlabelled"
    flat.mkdir()
    for i, p in enumerate(sorted(evaluation.rglob("*.jpg"))):
        (flat / f"{i:03d}.jpg").write_bytes(p.read_bytes())
    return {"fp32": fp32, "qdq": qdq, "eval": evaluation, "unlabelled": flat}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "unverified" in p.name)


def test_a_verified_engine_is_handed_over_with_its_comparison(fake_trt, planted: dict[str, Path], tmp_path: Path) -> None:
    engine = tmp_path / "m.fp16.engine"
    result = runner.invoke(app, ["build-engine", str(planted["fp32"]), "--fp16", "--out", str(engine), "--max-batch", "8",
                                 "--verify", str(planted["eval"])])
    assert result.exit_code == 0, result.output
    assert "verified against the FP32 ONNX it was built from" in result.output
    record = json.loads((tmp_path / "m.fp16.engine.json").read_text())["extra"]["verification"]
    assert record["labelled"] and record["passed"] and record["images"] == 60
    assert record["drop"] <= 0.01 and record["reference"] == str(planted["fp32"])
    assert engine.is_file() and _leftovers(tmp_path) == []


def test_an_engine_past_its_budget_is_refused_and_nothing_is_written(fake_trt, planted: dict[str, Path], tmp_path: Path) -> None:
    engine = tmp_path / "m.int8.engine"
    result = runner.invoke(app, ["build-engine", str(planted["qdq"]), "--int8", "--out", str(engine), "--max-batch", "8",
                                 "--verify", str(planted["eval"]), "--max-f1-drop", "0.05"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "engine refused" in errors[0] and "budget 0.05" in errors[0], result.output
    assert not engine.exists() and not (tmp_path / "m.int8.engine.json").exists() and _leftovers(tmp_path) == []


def test_unlabelled_images_judge_by_top1_agreement(fake_trt, planted: dict[str, Path], tmp_path: Path) -> None:
    ok = runner.invoke(app, ["build-engine", str(planted["fp32"]), "--fp16", "--out", str(tmp_path / "a.engine"), "--max-batch", "8",
                             "--verify", str(planted["unlabelled"]), "--max-disagreement", "0"])
    assert ok.exit_code == 0, ok.output
    record = json.loads((tmp_path / "a.engine.json").read_text())["extra"]["verification"]
    assert record["labelled"] is False and "f1_engine" not in record and record["top1_agreement"] == 1.0
    # the INT8 engine is judged against the Q/DQ model's FP32 parent, not the Q/DQ model itself
    bad = runner.invoke(app, ["build-engine", str(planted["qdq"]), "--int8", "--out", str(tmp_path / "b.engine"), "--max-batch", "8",
                              "--verify", str(planted["unlabelled"]), "--max-disagreement", "0.01"])
    assert bad.exit_code == 1 and "top-1 class changed on" in bad.output, bad.output
    assert not (tmp_path / "b.engine").exists() and _leftovers(tmp_path) == []
