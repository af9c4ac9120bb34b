"""``optimize``'s deploy step: the model in the form the target runs, judged itself on the slice held
out of the final run, against the same ``max_f1_drop`` as the INT8 candidates. An INT8 form past the
budget is refused, and the float model is deployed instead with the reason recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeopt.convert import convert_artifact
from edgeopt.errors import VerificationError
from edgeopt.formats import get_format

# ONNX Runtime's CPU INT8 is made from the FP32 model (the TensorRT-form Q/DQ candidates saturate its
# kernels on CPUs without VNNI); its calibration methods, tried in turn until one is within budget
CPU_METHODS = ("minmax", "percentile")


def deploy_cpu(final: dict[str, Any], folder: Path, max_f1_drop: float, log: Callable[[str], None]) -> dict[str, Any]:
    """INT8 for ONNX Runtime's CPU kernels, calibrated on what the final run trained on and judged on
    its held-out slice; the FP32 ONNX when no calibration method is within ``max_f1_drop``."""
    from edgeopt.artifacts import read_manifest
    from edgeopt.data.presets import Preprocess
    from edgeopt.runtime.judge import judge_against_parent

    fp32, judge, train = Path(final["onnx"]), Path(final["int8"]["judged_on"]), Path(final["trained_on"])
    cpu = get_format("int8-cpu")
    form = f"{cpu.quant.form}, weights {cpu.quant.weights}" if cpu.quant else "int8"
    manifest = read_manifest(fp32, expect_kind="onnx")
    preprocess = Preprocess.from_dict(manifest.preprocess)
    candidates: dict[str, dict[str, Any]] = {}
    for method in CPU_METHODS:
        out = folder / (("model" if method == CPU_METHODS[0] else f"model-{method}") + cpu.suffix)
        log(f"[5/6] deploy: INT8 for ONNX Runtime's CPU kernels ({method} calibration), judged on {judge}")
        path = convert_artifact(fp32, cpu.name, out, log=log, data=train, method=method).path
        judged = judge_against_parent(path, fp32, judge, classes=list(manifest.classes), preprocess=preprocess)
        candidates[method] = {"onnx": str(path), **judged.int8_record()}
        log(f"CPU INT8 ({method}): macro-F1 drop {candidates[method]['drop']:.4f} on {candidates[method]['images']} "
            f"held-out images (budget {max_f1_drop})")
        if candidates[method]["drop"] <= max_f1_drop + 1e-12:
            break
    within = {m: r for m, r in candidates.items() if r["drop"] <= max_f1_drop + 1e-12}
    if within:
        method = min(within, key=lambda m: within[m]["drop"])
        judged = within[method]
        return {"target": "cpu", "artifact": judged["onnx"], "precision": "int8", "refused": None, "judged": judged,
                "candidates": candidates, "judged_on": str(judge),
                "how": f"ONNX Runtime CPU kernels (`target` {cpu.target}: {form}, {method} calibration on the final "
                       f"run's training images), judged itself on the held-out slice: macro-F1 drop {judged['drop']:.4f} "
                       f"(budget {max_f1_drop})"}
    best = min(candidates.values(), key=lambda r: r["drop"])
    lost = ", ".join(f"{r['drop']:.4f} ({m})" for m, r in candidates.items())
    reason = f"the CPU INT8 forms lost {lost} macro-F1 on the held-out slice, over the budget of {max_f1_drop}"
    log(f"deploy: INT8 refused: {reason}; the FP32 ONNX is deployed")
    return {"target": "cpu", "artifact": str(fp32), "precision": "fp32", "refused": reason,
            "judged": {"images": best["images"], "f1_fp32": best["f1_fp32"], "f1_int8": None, "drop": 0.0},
            "candidates": candidates, "judged_on": str(judge),
            "how": f"the FP32 ONNX: {reason} (a larger max-f1-drop would deploy INT8)"}


def deploy_tensorrt(final: dict[str, Any], folder: Path, max_f1_drop: float, log: Callable[[str], None]) -> dict[str, Any]:
    """The chosen INT8 Q/DQ model as an engine, verified on the held-out slice within ``max_f1_drop``;
    an FP16 engine, verified alike, when no INT8 candidate was chosen or the engine was refused."""
    from edgeopt.trt.plan import BuildConfig
    from edgeopt.trt.verify import VerifyConfig

    int8, judge = final["int8"], Path(final["int8"]["judged_on"])
    suffix = get_format("engine").suffix
    verify = VerifyConfig(judge, max_f1_drop=max_f1_drop)
    refused = None if int8["onnx"] else f"no INT8 candidate was within the budget of {max_f1_drop} on the held-out slice"
    if int8["onnx"]:
        log(f"[5/6] deploy: TensorRT INT8 engine of {int8['onnx']}, verified on {judge}")
        try:
            built = convert_artifact(int8["onnx"], "engine", folder / f"model.int8{suffix}", log=log, build=BuildConfig("int8"),
                            verify=verify)
            judged = built.results["engine"].verification
            return {"target": "tensorrt", "artifact": str(built.path), "precision": "int8", "refused": None, "judged": judged,
                    "judged_on": str(judge),
                    "how": f"TensorRT engine of the chosen INT8 Q/DQ model ({int8['chosen']}), verified against the FP32 ONNX "
                           f"on the held-out slice: macro-F1 drop {judged['drop']:.4f} (budget {max_f1_drop})"}
        except VerificationError as exc:
            refused = f"the INT8 engine was refused: {exc}"
    log(f"deploy: {refused}; an FP16 engine is deployed")
    built = convert_artifact(final["onnx"], "engine", folder / f"model.fp16{suffix}", log=log, build=BuildConfig("fp16"), verify=verify)
    judged = built.results["engine"].verification
    return {"target": "tensorrt", "artifact": str(built.path), "precision": "fp16", "refused": refused, "judged": judged,
            "judged_on": str(judge),
            "how": f"TensorRT FP16 engine ({refused}), verified on the held-out slice: macro-F1 drop {judged['drop']:.4f}"}
