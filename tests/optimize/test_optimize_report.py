"""optimize's report: settings as a table (not a Python dict), the chosen point in words, every figure's split named."""

from __future__ import annotations

from pathlib import Path

from edgeopt.optimize.report import describe_point, markdown, write_report


def _record() -> dict:
    cand = {"f1_fp32": 0.9, "f1_int8": 0.89, "drop": 0.01, "top1_agreement": 0.98, "images": 20}
    return {
        "config": {"data": "crops", "out": "runs/optimize", "backbones": ["mobilenet_v2", "tiny.yaml"], "sizes": [32, 48],
                   "max_macs": None, "pretrained": True, "max_f1_drop": 0.02},
        "split": {"pool": "runs/optimize/split/pool", "test": "runs/optimize/split/test"},
        "teacher": {"checkpoint": "runs/optimize/teacher/best.pt"},
        "bank": {"images": 100, "views": 20, "bytes": 2e6, "path": "runs/optimize/soft-labels.bank"},
        "search": {"trials": 2, "chosen_trial": 1, "val_macro_f1": 0.93, "pareto": "pareto.json",
                   "params": {"backbone": "mobilenet_v2", "img_size": 48, "prune": 0.0, "lr": 0.0012, "kd_temperature": 4.0,
                              "kd_alpha": 0.7},
                   "final": {"epochs": 24, "trained_on": "final-split/pool", "macs": 5e6, "selection": "none",
                             "int8": {"judged_on": "final-split/test", "note": "held out", "max_drop": 0.02, "chosen": "ptq",
                                      "candidates": {"ptq": cand}}}},
        "deploy": {"target": "cpu", "artifact": "deploy/model.cpu-int8.onnx", "precision": "int8", "refused": None,
                   "judged": {"drop": 0.005}, "judged_on": "final-split/test", "how": "ORT CPU kernels", "candidates": {"minmax": cand}},
        "bench": {"teacher_test_macro_f1": 0.95, "time_basis": "submit", "notes": [],
                  "rows": [{"label": "model.onnx", "backend": "onnxruntime", "precision": "fp32", "macs": 5e6, "test_macro_f1": 0.91,
                            "latency_b1_p50_ms": 0.5, "score_time": 0.3, "score_macs": 0.1, "baseline": False},
                           {"label": "model.cpu-int8.onnx", "backend": "onnxruntime", "precision": "int8", "macs": 5e6,
                            "test_macro_f1": 0.905, "latency_b1_p50_ms": 0.3, "score_time": 0.2, "score_macs": 0.1, "baseline": False},
                           {"label": "resnet18d", "backend": "onnxruntime", "precision": "fp32", "macs": 2e9, "test_macro_f1": None,
                            "latency_b1_p50_ms": 5.0, "score_time": 1.0, "score_macs": 1.0, "baseline": True}]},
        "seconds_by_step": {"teacher": 10.0}, "seconds": 60.0, "machine": {"cpu": "a CPU"},
    }


def test_settings_read_as_a_table_and_the_point_in_words(tmp_path: Path) -> None:
    text = write_report(_record(), tmp_path).read_text()
    assert "| backbones | mobilenet_v2, tiny.yaml |" in text and "| max-macs | – |" in text and "| pretrained | yes |" in text
    assert "| max-f1-drop | 0.02 |" in text
    assert "{'" not in text and "['" not in text  # no Python dicts or lists anywhere
    assert "mobilenet_v2 at 48 px, prune 0.00, lr 0.0012, KD T 4.0 / alpha 0.70" in text
    assert describe_point({"backbone": "b", "img_size": 32, "width": 0.5}) == "b at 32 px, width 0.5"


def test_every_figure_names_its_split() -> None:
    lines = markdown(_record())
    results = lines[lines.index("## Results") + 4:lines.index("## Steps") - 1]
    assert len(results) == 5
    teacher, student, deployed, drop, val = results
    test = "test split `runs/optimize/split/test`"
    assert test in teacher and "**0.9500**" in teacher  # the teacher's test F1 beside the student's
    assert test in student and "**0.9100**" in student and "FP32" in student
    assert test in deployed and "INT8" in deployed and "**0.9050**" in deployed
    assert "held-out slice `final-split/test`" in drop and "**0.0050**" in drop and "budget 0.02" in drop
    assert "validation split" in val and "0.9300" in val
    assert any(line.startswith("## Bench (test split `runs/optimize/split/test`") for line in lines)
