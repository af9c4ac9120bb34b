"""A Triton entry for an engine built through the TensorRT double, parsed with Triton's schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeopt.cli.app import app

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="Triton's schema ships in tritonclient[grpc]")
runner = CliRunner()


@pytest.mark.parametrize("trt_version", ["8.6.1", "10.13.3.9", "11.4.0.106"])
def test_engine_entry(fake_trt, tiny_onnx: Path, tmp_path: Path) -> None:
    from serve.test_serve_triton import check_against_artifact, parse_config  # tests/ is on sys.path (conftest)

    engine = tmp_path / "tiny.engine"
    assert runner.invoke(app, ["build-engine", str(tiny_onnx), "--fp16", "--out", str(engine), "--max-batch", "16"]).exit_code == 0
    result = runner.invoke(app, ["triton", str(engine), "--repo", str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    config = parse_config(tmp_path / "repo" / "tiny" / "config.pbtxt")
    check_against_artifact(config, engine, "tensorrt_plan", 16)  # max_batch_size from the engine's profile
    assert (tmp_path / "repo" / "tiny" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    too_big = runner.invoke(app, ["triton", str(engine), "--repo", str(tmp_path / "r2"), "--max-batch-size", "64"])
    assert too_big.exit_code == 1 and "above the engine profile's max 16" in too_big.output
