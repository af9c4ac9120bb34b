"""Fixtures that put the TensorRT test double of one real version where edgeopt imports ``tensorrt``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds trt_double.py

import trt_double  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # rtx_engines.py

VERSIONS = trt_double.versions()


@pytest.fixture(params=VERSIONS)
def trt_version(request) -> str:
    return request.param


@pytest.fixture
def fake_trt(trt_version: str, monkeypatch: pytest.MonkeyPatch):
    """``import tensorrt`` gives the double of ``trt_version``; edgeopt's device seam gives host memory."""
    memory = trt_double.Memory()
    module = trt_double.make_tensorrt(trt_version, memory)
    device = trt_double.HostDevice(memory)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr("edgeopt.trt.build.default_device", lambda: device)
    monkeypatch.setattr("edgeopt.trt.runner.default_device", lambda: device)
    module.device = device
    return module


@pytest.fixture(scope="session")
def tiny_qdq(tiny_onnx: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny export calibrated once to Q/DQ INT8 (TensorRT form), for tests that only build from it."""
    from edgeopt.quant.calibrate import calibrate_onnx

    return calibrate_onnx(tiny_onnx, synth_data, tmp_path_factory.mktemp("qdq") / "tiny.int8.onnx", num_images=32,
                          batch_size=16).path


# -- TensorRT for RTX: the real NVIDIA parser and builder, on this CPU -----------------------------
@pytest.fixture(scope="session")
def rtx():
    """The real ``tensorrt_rtx_bindings`` (``make install`` installs it: the dev install takes the tensorrt-rtx extra)."""
    return pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX is not installed: pip install 'edgeopt[tensorrt-rtx]'")


def pytest_terminal_summary(terminalreporter) -> None:
    """How many real engines TensorRT-RTX built in this session (tests/trt/test_trt_rtx.py)."""
    import rtx_engines

    line = rtx_engines.summary()
    if line:
        terminalreporter.write_line(line)
