"""The double is faithful where it matters: it fails the mistakes the real bindings fail.

Each test replays one of the crashes found by reading edgeopt against NVIDIA's binding source
(issue 11) and expects the double of the affected versions to reject it, so the conformance tests
that pass are able to fail.
"""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import trt_double

from edgeopt.trt.compat import parse_version

ROOT = Path(__file__).resolve().parents[2]


def _surface(version: str) -> dict:
    return json.loads(gzip.decompress((trt_double.SURFACES / f"tensorrt-{version}.json.gz").read_bytes()))


def test_every_required_version_has_a_surface() -> None:
    have = trt_double.versions()
    for required in ("8.6.1", "10.0.1", "10.4.0", "10.8.0.43", "10.9.0.34", "10.13.3.9", "10.16.1.11", "11.0.0.114", "11.4.0.106"):
        assert required in have
    for version in have:
        surface = _surface(version)
        assert surface["version"] == version and surface["source"]["wheel"].endswith(".whl")
        assert len(surface["source"]["sha256"]) == 64 and "createInferBuilder_INTERNAL" in surface["source"]["stubbed_symbols"]


def test_host_memory_has_the_buffer_protocol_and_no_len(trt_version: str) -> None:
    trt = trt_double.make_tensorrt(trt_version)
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    blob = builder.create_builder_config().create_timing_cache(b"").serialize()
    assert isinstance(blob, trt.IHostMemory) and blob.nbytes == len(memoryview(blob).tobytes()) > 0
    with pytest.raises(TypeError, match="has no len"):
        len(blob)  # finding 1: edgeopt called len() on build_serialized_network's result


def test_names_and_signatures_are_those_of_the_version(trt_version: str) -> None:
    trt = trt_double.make_tensorrt(trt_version)
    major_minor = parse_version(trt_version)
    assert hasattr(trt.BuilderFlag, "FP16") == (major_minor[0] < 11)
    assert hasattr(trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY") == (major_minor >= (10, 9))  # finding 3
    assert hasattr(trt, "IInt8EntropyCalibrator2") == (major_minor[0] < 11)
    config = trt.Builder(trt.Logger()).create_builder_config()
    cache = config.create_timing_cache(b"")
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_timing_cache(cache)  # ignore_mismatch is required
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_memory_pool_limit("WORKSPACE", 1 << 30)  # an enum member, not a string
    with pytest.raises(TypeError, match="No constructor defined"):
        trt.ICudaEngine()
    with pytest.raises(AttributeError):
        trt.no_such_name  # noqa: B018


def test_the_8x_parser_refuses_implicit_batch_networks(trt_version: str) -> None:
    trt = trt_double.make_tensorrt(trt_version)
    logger = trt.Logger()
    network = trt.Builder(logger).create_network(0)  # finding 5
    parser = trt.OnnxParser(network, logger)
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    ok = parser.parse(onnx.helper.make_model(graph).SerializeToString())
    assert ok == (parse_version(trt_version)[0] >= 10)
    if not ok:
        assert "explicit batch" in parser.get_error(0).desc()


def test_network_flags_are_what_each_version_wants(trt_version: str) -> None:
    """8.x needs EXPLICIT_BATCH; 10.x takes none; 11.x none either: STRONGLY_TYPED is deprecated and
    ignored there (review finding 7), every network being strongly typed."""
    from edgeopt.trt.compat import network_flags

    trt = trt_double.make_tensorrt(trt_version)
    flags = network_flags(trt)
    major = parse_version(trt_version)[0]
    assert flags == ((1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)) if major < 10 else 0)
    network = trt.Builder(trt.Logger()).create_network(flags)
    assert network._ignored_flags == set()


def test_an_inconsistent_profile_raises_as_the_binding_does(trt_version: str) -> None:
    """pyCore.cpp's set_shape raises RuntimeError (review finding 4: the double used to mark the
    profile invalid quietly)."""
    trt = trt_double.make_tensorrt(trt_version)
    profile = trt.Builder(trt.Logger()).create_optimization_profile()
    profile.set_shape("x", (1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8))
    with pytest.raises(RuntimeError, match="Shape provided for max is inconsistent"):
        profile.set_shape("x", (1, 3, 8, 8), (8, 3, 8, 8), (4, 3, 8, 8))
    with pytest.raises(RuntimeError, match="Shape provided for opt is inconsistent"):
        profile.set_shape("x", (1, 3, 8, 8), (1, 3, 8), (4, 3, 8, 8))


def _calibration_build(version: str, calibrator_cls, buffer_batch: int, opt: int):
    """Build an INT8 network with a legacy calibrator whose device buffer holds ``buffer_batch`` samples."""
    from onnx import TensorProto, helper

    memory = trt_double.Memory()
    trt = trt_double.make_tensorrt(version, memory)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    logger = trt.Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    assert trt.OnnxParser(network, logger).parse(helper.make_model(graph).SerializeToString())
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    profile.set_shape("x", (1, 4), (opt, 4), (64, 4))
    config.add_optimization_profile(profile)
    buffer = np.ones((buffer_batch, 4), np.float32)
    memory.register(buffer)
    config.int8_calibrator = calibrator_cls(trt, buffer)
    return builder.build_serialized_network(network, config)


def _calibrator(trt, buffer, write: bool = True):
    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.left = 2

        def get_batch_size(self) -> int:
            return len(buffer)

        def get_batch(self, names):
            self.left -= 1
            return [int(buffer.ctypes.data)] if self.left >= 0 else None

        def read_calibration_cache(self):
            return None

    if write:
        Calibrator.write_calibration_cache = lambda self, cache: None
    return Calibrator()


@pytest.mark.parametrize("version", [v for v in trt_double.versions() if not v.startswith("11.")])
def test_calibration_reads_the_opt_batch_and_needs_every_override(version: str) -> None:
    assert _calibration_build(version, _calibrator, buffer_batch=32, opt=32) is not None
    with pytest.raises(trt_double.DoubleViolation, match="past the buffer"):
        _calibration_build(version, _calibrator, buffer_batch=32, opt=64)  # finding 4
    with pytest.raises(trt_double.DoubleViolation, match="does not override write_calibration_cache"):
        _calibration_build(version, lambda trt, buf: _calibrator(trt, buf, write=False), buffer_batch=32, opt=32)  # finding 2


def test_a_subclass_must_call_the_base_init(trt_version: str) -> None:
    trt = trt_double.make_tensorrt(trt_version)

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            pass

        def log(self, severity, msg) -> None:
            pass

    with pytest.raises(TypeError, match="must be called when overriding __init__"):
        Logger()


# -- a static check of module-level TensorRT names, class by class ---------------------------
def _trt_chains(source: str, rtx: bool = False, trt11: bool = False) -> list[tuple[str, int, bool]]:
    """``trt.A.B`` chains in edgeopt/trt (name, line, only-before-11) from the AST; chains inside functions
    ending in ``_rtx`` (TensorRT-RTX only) are listed with ``rtx=True``, those in functions ending in ``_trt11``
    (11.x and TensorRT-RTX) with ``trt11=True``, and each left out otherwise."""
    found = []

    def visit(node, before11: bool, in_rtx: bool = False, in_11: bool = False) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.endswith("_trt10"):
            before11 = True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.endswith("_rtx"):
            in_rtx = True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.endswith("_trt11"):
            in_11 = True
        if isinstance(node, ast.Attribute) and not isinstance(getattr(node, "_parent", None), ast.Attribute):
            parts, cur = [], node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "trt" and in_rtx == rtx and in_11 == trt11:
                found.append((".".join(reversed(parts)), node.lineno, before11))
        for child in ast.iter_child_nodes(node):
            child._parent = node  # type: ignore[attr-defined]
            visit(child, before11, in_rtx, in_11)

    visit(ast.parse(source), False)
    return found


def _resolves(chain: str, trt) -> bool:
    obj = trt
    for part in chain.split("."):
        if part == "__version__":
            return True
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def test_module_level_names_exist_in_every_version_they_run_on() -> None:
    problems = []
    modules = {version: trt_double.make_tensorrt(version) for version in trt_double.versions()}
    for path in sorted((ROOT / "edgeopt" / "trt").glob("*.py")):
        for chain, line, before11 in _trt_chains(path.read_text()):
            for version in trt_double.versions():
                if before11 and version.startswith("11."):
                    continue
                if not _resolves(chain, modules[version]):
                    problems.append(f"{path.name}:{line}: trt.{chain} is not in TensorRT {version}")
    for path in sorted((ROOT / "edgeopt" / "trt").glob("*.py")):  # _trt11 functions: 11.x only
        for chain, line, _ in _trt_chains(path.read_text(), trt11=True):
            for version in (v for v in trt_double.versions() if v.startswith("11.")):
                if not _resolves(chain, modules[version]):
                    problems.append(f"{path.name}:{line}: trt.{chain} is not in TensorRT {version}")
    assert problems == []


def test_tensorrt_rtx_names_exist_in_tensorrt_rtx() -> None:
    """Names used in ``_rtx`` functions and every name the shared code uses, on the real TensorRT-RTX module."""
    rtx = pytest.importorskip("tensorrt_rtx_bindings", reason="pip install 'edgeopt[tensorrt-rtx]'")
    problems = []
    for path in sorted((ROOT / "edgeopt" / "trt").glob("*.py")):
        source = path.read_text()
        for chain, line, before11 in _trt_chains(source, rtx=True) + _trt_chains(source) + _trt_chains(source, trt11=True):
            if not before11 and not _resolves(chain, rtx):
                problems.append(f"{path.name}:{line}: trt.{chain} is not in TensorRT-RTX {rtx.__version__}")
    assert _trt_chains("def pick_rtx(trt):\n    return trt.ComputeCapability.SM86\n", rtx=True) == [("ComputeCapability.SM86", 2, False)]
    assert problems == []


def test_the_static_check_catches_a_removed_name() -> None:
    bad = "def configure(trt, config):\n    config.set_flag(trt.BuilderFlag.FP16)\n"
    chains = _trt_chains(bad)
    assert chains == [("BuilderFlag.FP16", 2, False)]
    assert not _resolves("BuilderFlag.FP16", trt_double.make_tensorrt("11.4.0.106"))
    assert _resolves("BuilderFlag.FP16", trt_double.make_tensorrt("10.13.3.9"))
