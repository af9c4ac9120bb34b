"""Deploy what was judged: the CPU target's INT8 is judged itself on the held-out slice and refused past
the budget (then FP32 ships, and the record says why)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the planted-outlier model of the quant tests
from quant.test_quant_fallback import trained  # noqa: E402,F401  (a module-scoped fixture, used by name)

from edgeopt.optimize.deploy import CPU_METHODS, deploy_cpu  # noqa: E402


def _final(trained: dict[str, Path]) -> dict:
    return {"onnx": str(trained["onnx"]), "trained_on": str(trained["data"]), "int8": {"judged_on": str(trained["eval"])}}


def test_a_cpu_int8_past_the_budget_is_refused_and_fp32_deployed(trained: dict[str, Path], tmp_path: Path) -> None:
    record = deploy_cpu(_final(trained), tmp_path, max_f1_drop=0.01, log=lambda m: None)
    drops = {m: c["drop"] for m, c in record["candidates"].items()}
    assert list(drops) == list(CPU_METHODS) and all(d > 0.01 for d in drops.values()), \
        f"premise: no CPU INT8 of the planted outlier holds the budget ({drops})"
    assert record["precision"] == "fp32" and record["artifact"] == str(trained["onnx"])
    assert "over the budget of 0.01" in record["refused"] and "the FP32 ONNX" in record["how"]
    assert all(Path(c["onnx"]).is_file() for c in record["candidates"].values())  # judged, kept beside, not shipped


def test_a_cpu_int8_within_the_budget_ships_with_its_own_judged_drop(trained: dict[str, Path], tmp_path: Path) -> None:
    from edgeopt.artifacts import read_manifest
    from edgeopt.formats import format_of

    record = deploy_cpu(_final(trained), tmp_path, max_f1_drop=0.99, log=lambda m: None)
    assert record["precision"] == "int8" and record["refused"] is None and list(record["candidates"]) == [CPU_METHODS[0]]
    deployed = Path(record["artifact"])
    assert format_of(read_manifest(deployed)).name == "int8-cpu"
    assert record["judged"]["drop"] == record["candidates"][CPU_METHODS[0]]["drop"] and record["judged"]["images"] == \
        len(list(Path(trained["eval"]).rglob("*.jpg")))
    # calibrated on what the final run trained on, never on the slice that judges it
    calib = read_manifest(deployed).extra["quantization"]["calibration_manifest"]
    import json

    assert json.loads(Path(calib).read_text())["data_root"] == str(trained["data"])
