"""Runner backends: a registry, the formats' rows say which run what, and a second ONNX backend agrees with the first."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeopt.artifacts import Manifest, read_manifest, write_artifact_manifest
from edgeopt.cli.app import app
from edgeopt.errors import ConfigError
from edgeopt.formats import FORMATS
from edgeopt.runtime import RUNNERS, backend_names, open_runner

runner = CliRunner()


def test_every_format_runs_on_registered_backends_and_every_backend_runs_a_format() -> None:
    for row in FORMATS.values():
        assert row.backends, f"{row.name} lists no backend"
        assert all(b in RUNNERS for b in row.backends), row
    assert set(RUNNERS.names()) == {b for row in FORMATS.values() for b in row.backends}
    assert backend_names()[0] == "auto" and "onnx-reference" in backend_names()
    with pytest.raises(ValueError, match="already registered"):
        RUNNERS.register("onnxruntime", lambda path, **_: None)


def test_onnx_runs_the_same_on_onnxruntime_and_the_reference_evaluator(tiny_onnx: Path) -> None:
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    ort = open_runner(tiny_onnx)
    reference = open_runner(tiny_onnx, backend="onnx-reference")
    assert (ort.backend, reference.backend, reference.precision) == ("onnxruntime", "onnx-reference", "fp32")
    expected = ort.run(x)
    assert expected.shape == (3, 6)
    np.testing.assert_allclose(reference.run(x), expected, atol=1e-4)


def test_unknown_and_unfit_backends_are_one_line_errors(tiny_onnx: Path, tiny_ckpts: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown backend 'onnx-referense'; did you mean onnx-reference") as info:
        open_runner(tiny_onnx, backend="onnx-referense")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"\(onnx\) runs on the onnxruntime backend, not torch; "
                                          "use `backend` onnxruntime or onnx-reference$"):
        open_runner(tiny_onnx, backend="torch")
    with pytest.raises(ConfigError, match=r"\(checkpoint\) runs on the torch backend, not onnx-reference; "
                                          r"convert it to onnx first \(edgeopt export\) or use `backend` torch$"):
        open_runner(tiny_ckpts["yaml"], backend="onnx-reference")
    # a CPU INT8 model's QLinear* kernels are ONNX Runtime's: the reference evaluator is refused before loading it
    cpu = tmp_path / "m.cpu-int8.onnx"
    shutil.copy(tiny_onnx, cpu)
    write_artifact_manifest(cpu, Manifest(kind="onnx", precision="int8", format="int8-cpu",
                                          classes=read_manifest(tiny_onnx).classes))
    with pytest.raises(ConfigError, match=r"\(int8-cpu\) runs on the onnxruntime backend, not onnx-reference; "
                                          "use `backend` onnxruntime$"):
        open_runner(cpu, backend="onnx-reference")


def test_cli_eval_on_the_reference_backend_and_a_wrong_one(tiny_onnx: Path, synth_data: Path) -> None:
    result = runner.invoke(app, ["eval", str(tiny_onnx), "--data", str(synth_data), "--backend", "onnx-reference"])
    assert result.exit_code == 0, result.output
    assert "onnx-reference" in result.output
    result = runner.invoke(app, ["eval", str(tiny_onnx), "--data", str(synth_data), "--backend", "tensorrt"])
    assert result.exit_code == 1
    assert ("runs on the onnxruntime backend, not tensorrt; convert it to engine first (edgeopt build-engine) "
            "or use --backend onnxruntime or onnx-reference") in result.output
    assert "onnx-reference" in runner.invoke(app, ["eval", "--help"]).output
