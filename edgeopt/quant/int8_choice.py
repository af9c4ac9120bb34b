"""INT8 for a final run: post-training quantization, or QAT where PTQ loses too much, chosen by the
drop measured on images held out of that run.

A final run trains on all of its data with no selection, so no labelled image is left that it did
not learn. ``split_for_judging`` holds a slice out first (stratified, deterministic, as hard links);
the run trains on the rest; then ``choose_int8`` calibrates (entropy ranges, AdaRound by default:
the remedy measured to work on depthwise students, ``benchmarks/README.md``) on the training part,
judges FP32 against INT8 on the held-out slice, and, when the macro-F1 drop is over budget, runs
QAT (distilled from the FP32 model) and keeps whichever of the two lost less, provided it is within
the budget: a candidate over it is never chosen (``chosen`` is then None). The record says which
images judged and that they trained nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeopt.settings import check_settings, setting


@dataclasses.dataclass(frozen=True)
class Int8ChoiceConfig:
    max_drop: float = setting(key="max_f1_drop", low=0.0, high=1.0, high_open=True, example="0.005",
                              help="INT8 budget: the largest macro-F1 drop on the slice held out of the final run.")
    holdout: float = setting(0.1, key="int8_holdout", low=0.02, high=0.5,
                             help="Share of `data` held out of the final run to judge INT8.")
    adaround: bool = setting(True, help="AdaRound in the INT8 post-training quantization.")
    qat_epochs: int = setting(3, key="int8_qat_epochs", low=1, high=10_000, help="QAT epochs when PTQ misses `max_f1_drop`.")

    def __post_init__(self) -> None:
        check_settings(self)


def split_for_judging(data: Path, out: Path, holdout: float, seed: int = 0) -> tuple[Path, Path]:
    """``out/pool`` (what the final run trains on) and ``out/test`` (the judge slice), from ``data``."""
    from edgeopt.data.folder import materialize_split

    return materialize_split(data, out, test_fraction=holdout, seed=seed)


def choose_int8(checkpoint: Path, fp32_onnx: Path, train_data: Path, judge_data: Path, folder: Path, config: Int8ChoiceConfig,
                log: Callable[[str], None] = print, device: str = "cpu") -> dict[str, Any]:
    """PTQ, then QAT if PTQ's drop on ``judge_data`` is over budget; the record of both and the choice."""
    from edgeopt.artifacts import read_manifest
    from edgeopt.convert import convert_artifact
    from edgeopt.data.presets import Preprocess
    from edgeopt.quant.ptq import PtqConfig
    from edgeopt.quant.qat import QatConfig, finetune_qat
    from edgeopt.runtime.judge import judge_against_parent

    manifest = read_manifest(fp32_onnx, expect_kind="onnx")
    preprocess = Preprocess.from_dict(manifest.preprocess)

    def judged(candidate: Path) -> dict[str, Any]:
        return judge_against_parent(candidate, fp32_onnx, judge_data, classes=list(manifest.classes),
                                    preprocess=preprocess).int8_record()

    candidates: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    ptq = convert_artifact(fp32_onnx, "int8-qdq", folder / "model.int8.onnx", data=train_data, ptq=PtqConfig(adaround=config.adaround)).path
    candidates["ptq"] = {"onnx": str(ptq), "method": "entropy" + (" + adaround" if config.adaround else ""),
                         "seconds": round(time.perf_counter() - t0, 1),
                         **judged(ptq)}
    log(f"INT8 by PTQ: macro-F1 drop {candidates['ptq']['drop']:.4f} on {candidates['ptq']['images']} held-out images "
        f"(budget {config.max_drop})")
    if candidates["ptq"]["drop"] > config.max_drop:
        t0 = time.perf_counter()
        qat = finetune_qat(QatConfig(checkpoint=checkpoint, data=train_data, out=folder / "model.qat.onnx", epochs=config.qat_epochs,
                                     device=device), log=log)
        candidates["qat"] = {"onnx": str(qat.path), "epochs": config.qat_epochs, "seconds": round(time.perf_counter() - t0, 1),
                             **judged(qat.path)}
        log(f"INT8 by QAT ({config.qat_epochs} epochs): macro-F1 drop {candidates['qat']['drop']:.4f}")
    within = [k for k in candidates if candidates[k]["drop"] <= config.max_drop + 1e-12]
    chosen = min(within, key=lambda k: (candidates[k]["drop"], k != "ptq")) if within else None  # a tie keeps PTQ
    if chosen is None:
        log(f"no INT8 candidate is within the budget of {config.max_drop}: none is chosen (keep the model in float)")
    return {"chosen": chosen, "onnx": candidates[chosen]["onnx"] if chosen else None, "met_budget": chosen is not None,
            "max_drop": config.max_drop, "candidates": candidates, "judged_on": str(judge_data),
            "note": f"judged on {candidates['ptq']['images']} images held out of the final run (it did not train on them)"}
