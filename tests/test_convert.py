"""The conversion graph: the FORMATS table, its walk, and convert_artifact() running real stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeopt.artifacts import Manifest, read_manifest
from edgeopt.convert import convert_artifact
from edgeopt.errors import ConfigError
from edgeopt.formats import FORMATS, conversion_path, format_of, get_format, stem_of


def _names(rows) -> list[str]:
    return [r.name for r in rows]


def test_the_walk_takes_the_shortest_way_through_the_table() -> None:
    assert _names(conversion_path("checkpoint", "int8-cpu")) == ["onnx", "int8-cpu"]
    assert _names(conversion_path("checkpoint", "int8-qdq-fp16")) == ["onnx", "int8-qdq", "int8-qdq-fp16"]
    # an engine is built from any ONNX for TensorRT; its build plan asks for what the version needs
    assert _names(conversion_path("checkpoint", "engine")) == ["onnx", "engine"]
    assert _names(conversion_path("int8-qdq", "engine")) == ["engine"]
    assert conversion_path("onnx", "onnx") == []
    with pytest.raises(ConfigError, match="no conversion from int8-cpu to engine: .* TensorRT needs the Q/DQ form"):
        conversion_path("int8-cpu", "engine")
    with pytest.raises(ConfigError, match="no conversion from int8-qdq to int8-cpu: int8-cpu is made from onnx$"):
        conversion_path("int8-qdq", "int8-cpu")
    with pytest.raises(ConfigError, match="no conversion from engine to onnx"):
        conversion_path("engine", "onnx")
    with pytest.raises(ConfigError, match="did you mean 'int8-cpu'"):
        get_format("int8_cpu")


def test_every_row_is_reachable_from_a_checkpoint_and_names_a_known_parent() -> None:
    for row in FORMATS.values():
        assert all(p in FORMATS for p in row.parents), row
        if row.name != "checkpoint":
            assert conversion_path("checkpoint", row.name)[-1] is row
    assert {r.suffix for r in FORMATS.values()}.__len__() == len(FORMATS)  # a suffix names one format


def test_format_of_reads_the_field_and_infers_it_for_older_manifests() -> None:
    assert format_of(Manifest(kind="onnx", precision="int8", format="int8-cpu-vnni")).target == "cpu-vnni"
    older = {"kind": "onnx", "precision": "int8"}
    assert format_of(Manifest(**older, extra={"quantization": {"target": "cpu"}})).name == "int8-cpu"
    assert format_of(Manifest(**older, extra={"quantization": {"target": "tensorrt"}})).name == "int8-qdq"
    assert format_of(Manifest(**older, extra={"float_precision": "fp16"})).name == "int8-qdq-fp16"
    assert format_of(Manifest(kind="onnx", precision="fp16")).name == "onnx-fp16"
    assert format_of(Manifest(kind="engine")).name == "engine"
    assert not format_of(Manifest(kind="onnx", precision="int8", format="int8-cpu")).for_tensorrt
    with pytest.raises(ConfigError, match="not a model format"):
        format_of(Manifest(kind="soft-labels"))


def test_intermediate_artifacts_are_named_from_the_output_stem() -> None:
    assert stem_of(Path("d/m.int8.engine"), FORMATS["engine"]) == Path("d/m")
    assert stem_of(Path("d/student.cpu-int8.onnx"), FORMATS["int8-cpu"]) == Path("d/student")
    assert stem_of(Path("d/lite0_0.5x.onnx"), FORMATS["onnx"]) == Path("d/lite0_0.5x")


def test_convert_chains_export_and_calibration_with_a_manifest_chain(tiny_ckpts: dict, synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.cpu-int8.onnx"
    result = convert_artifact(tiny_ckpts["yaml"], "int8-cpu", out, data=synth_data, num_images=24, batch_size=8)
    assert result.path == out and list(result.artifacts) == ["checkpoint", "onnx", "int8-cpu"]
    onnx = tmp_path / "tiny.onnx"
    assert result.artifacts["onnx"] == onnx
    # each artifact says what it is and where it came from, so the chain reads back from the last one
    m_int8, m_onnx = read_manifest(out), read_manifest(onnx)
    assert (m_int8.format, m_onnx.format) == ("int8-cpu", "onnx")
    assert Path(m_int8.parent["path"]) == onnx and Path(m_onnx.parent["path"]) == tiny_ckpts["yaml"]
    assert json.loads(Path(str(out) + ".json").read_text())["format"] == "int8-cpu"
    assert result.results["int8-cpu"].target == "cpu" and result.results["onnx"].parity.top1_agreement == 1.0
    # from the ONNX on, only the calibration runs again
    again = convert_artifact(onnx, "int8-qdq", tmp_path / "tiny.int8.onnx", data=synth_data, num_images=24, batch_size=8)
    assert list(again.artifacts) == ["onnx", "int8-qdq"] and read_manifest(again.path).format == "int8-qdq"


def test_convert_refuses_options_no_stage_takes_and_missing_images(tiny_ckpts: dict, tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"option 'num_image' is not taken .*\(onnx -> int8-qdq\).*did you mean 'num_images'"):
        convert_artifact(tiny_onnx, "int8-qdq", tmp_path / "m.int8.onnx", num_image=8)
    with pytest.raises(ConfigError, match="is calibrated on images: pass data=DIR"):
        convert_artifact(tiny_onnx, "int8-qdq", tmp_path / "m.int8.onnx")
    with pytest.raises(ConfigError, match="needs its build options"):
        convert_artifact(tiny_onnx, "engine", tmp_path / "m.engine")
    # an intermediate never replaces the output or the source
    with pytest.raises(ConfigError, match=r"its intermediate m\.onnx would replace the output; name the output .*\.int8\.onnx"):
        convert_artifact(tiny_ckpts["yaml"], "int8-qdq", tmp_path / "m.onnx", data=tmp_path)
    with pytest.raises(ConfigError, match="is onnx already: nothing to convert"):
        convert_artifact(tiny_onnx, "onnx", tmp_path / "copy.onnx")
    assert not list(tmp_path.iterdir())
