"""Triton model-repository entries, each ``config.pbtxt`` parsed with Triton's own model-config schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeopt.artifacts import read_manifest
from edgeopt.cli.app import app

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="Triton's schema ships in tritonclient[grpc] (pip install 'edgeopt[dev]')")
runner = CliRunner()


def parse_config(path: Path):
    """``config.pbtxt`` -> Triton's ``ModelConfig`` message (unknown fields or bad values raise)."""
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def check_against_artifact(config, artifact: Path, platform: str, max_batch: int) -> None:
    manifest = read_manifest(artifact)
    assert config.platform == platform and config.max_batch_size == max_batch
    (inp,), (out,) = config.input, config.output
    assert inp.name == "input" and out.name == "logits"
    assert model_config_pb2.DataType.Name(inp.data_type) == "TYPE_FP32"
    size = manifest.preprocess["size"]
    assert list(inp.dims) == ([3, size, size] if max_batch else [1, 3, size, size])
    assert list(out.dims) == ([len(manifest.classes)] if max_batch else [1, len(manifest.classes)])
    assert out.label_filename == "labels.txt"
    assert json.loads(config.parameters["edgeopt_preprocess"].string_value) == manifest.preprocess
    assert json.loads(config.parameters["edgeopt_source"].string_value)["sha256"] == manifest.sha256


def test_onnx_entry(tiny_onnx: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    result = runner.invoke(app, ["triton", str(tiny_onnx), "--repo", str(repo), "--preferred-batch-sizes", "8,16", "--cpu"])
    assert result.exit_code == 0, result.output
    config = parse_config(repo / "tiny" / "config.pbtxt")
    assert config.name == "tiny" and list(config.version_policy.specific.versions) == [1]
    check_against_artifact(config, tiny_onnx, "onnxruntime_onnx", 32)
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.instance_group[0].count == 1 and model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_CPU"
    assert (repo / "tiny" / "1" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert (repo / "tiny" / "labels.txt").read_text().split() == read_manifest(tiny_onnx).classes


def test_existing_model_is_refused_unless_forced(tiny_onnx: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert runner.invoke(app, ["triton", str(tiny_onnx), "--repo", str(repo), "--name", "m"]).exit_code == 0
    (repo / "m" / "keep.txt").write_text("user file")
    result = runner.invoke(app, ["triton", str(tiny_onnx), "--repo", str(repo), "--name", "m", "--max-batch-size", "8"])
    assert result.exit_code == 1 and "already holds another model named 'm'" in result.output and "--force" in result.output
    assert parse_config(repo / "m" / "config.pbtxt").max_batch_size == 32 and (repo / "m" / "keep.txt").exists()
    result = runner.invoke(app, ["triton", str(tiny_onnx), "--repo", str(repo), "--name", "m", "--max-batch-size", "8", "--force"])
    assert result.exit_code == 0, result.output
    assert parse_config(repo / "m" / "config.pbtxt").max_batch_size == 8 and not (repo / "m" / "keep.txt").exists()
    assert sorted(p.name for p in repo.iterdir()) == ["m"]  # no staging folders left behind


def test_fixed_batch_artifact_cannot_be_batched_dynamically(tiny_ckpts: dict, tmp_path: Path) -> None:
    from edgeopt.export.onnx import export_onnx

    static = export_onnx(tiny_ckpts["yaml"], tmp_path / "static.onnx", static_batch=True, batch_size=1).path
    result = runner.invoke(app, ["triton", str(static), "--repo", str(tmp_path / "r")])
    assert result.exit_code == 1 and "has no batch axis" in result.output and "--no-dynamic-batching" in result.output
    assert not (tmp_path / "r" / "static").exists()
    result = runner.invoke(app, ["triton", str(static), "--repo", str(tmp_path / "r"), "--no-dynamic-batching"])
    assert result.exit_code == 0, result.output
    config = parse_config(tmp_path / "r" / "static" / "config.pbtxt")
    check_against_artifact(config, static, "onnxruntime_onnx", 0)
    assert not config.HasField("dynamic_batching")


def test_checkpoints_and_bad_names_are_refused(tiny_ckpts: dict, tiny_onnx: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["triton", str(tiny_ckpts["yaml"]), "--repo", str(tmp_path / "r")])
    assert result.exit_code == 1 and "export the checkpoint first" in result.output
    result = runner.invoke(app, ["triton", str(tiny_onnx), "--repo", str(tmp_path / "r"), "--name", "my model!"])
    assert result.exit_code == 1 and "--name 'my model!'" in result.output


def test_any_classifier_onnx_is_served_as_build_engine_takes_it(tiny_onnx: Path, tmp_path: Path) -> None:
    """No manifest: metadata_props, else --img-size/--mean/--std/--classes, else unknown with a warning."""
    import onnx

    manifest = read_manifest(tiny_onnx)
    model = onnx.load(str(tiny_onnx))
    with_meta, foreign = tmp_path / "with_meta.onnx", tmp_path / "foreign.onnx"
    onnx.save(model, str(with_meta))  # edgeopt's metadata_props, no manifest beside it
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    repo = tmp_path / "repo"

    result = runner.invoke(app, ["triton", str(with_meta), "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    config = parse_config(repo / "with_meta" / "config.pbtxt")
    assert json.loads(config.parameters["edgeopt_preprocess"].string_value) == manifest.preprocess
    assert json.loads(config.parameters["edgeopt_source"].string_value)["described_by"] == "metadata"
    assert (repo / "with_meta" / "labels.txt").read_text().split() == manifest.classes

    result = runner.invoke(app, ["triton", str(foreign), "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert "warning: foreign.onnx has no edgeopt manifest or metadata" in result.output
    assert "clients of the Triton model will need them" in result.output
    assert not (repo / "foreign" / "labels.txt").exists()
    assert parse_config(repo / "foreign" / "config.pbtxt").output[0].label_filename == ""

    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(manifest.classes) + "\n")
    pre = manifest.preprocess
    result = runner.invoke(app, ["triton", str(foreign), "--repo", str(repo), "--name", "described", "--img-size",
                                 str(pre["size"]), "--mean", ",".join(map(str, pre["mean"])),
                                 "--std", ",".join(map(str, pre["std"])), "--classes", str(classes)])
    assert result.exit_code == 0, result.output
    config = parse_config(repo / "described" / "config.pbtxt")
    described = json.loads(config.parameters["edgeopt_preprocess"].string_value)
    assert described["size"] == pre["size"] and described["mean"] == pytest.approx(pre["mean"])
    assert json.loads(config.parameters["edgeopt_source"].string_value)["described_by"] == "flags"
    assert (repo / "described" / "labels.txt").read_text().split() == manifest.classes

    result = runner.invoke(app, ["triton", str(foreign), "--repo", str(repo), "--name", "bad", "--img-size", "99",
                                 "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"])
    assert result.exit_code == 1 and "--img-size 99 does not match the ONNX input" in result.output
    assert not (repo / "bad").exists()
