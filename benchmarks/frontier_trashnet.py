"""The accuracy-per-MAC frontier from every recorded TrashNet model, with CPU latency measured here.

Collects the recorded runs (`results/*.json` of `finetune_trashnet.py`, `compress_trashnet.py`,
`search_trashnet.py`, the distilled students, `soft_labels_trashnet.py`'s students from the
soft-label bank with their teachers, `distill_recipes_trashnet.py`'s arms, the final-run recipe's
seeds and `assistant_trashnet.py`'s students), all scored on the same 400-image test split. A point of
several seeds is their mean, with the sample standard deviation and the seed count beside it; the
targets are judged on points of at least 3 seeds only (single seeds move by about 0.02). Each
model whose checkpoint is still on this machine is exported to ONNX and timed with ONNX Runtime
on this CPU (batch 1, median, one model at a time); the search's trials ran elsewhere and keep
their MACs and F1 only. Writes `results/frontier_trashnet.json` and `.png` (test macro-F1 against
MACs and against latency, each panel's Pareto front joined).

  python benchmarks/frontier_trashnet.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from edgeopt.export.onnx import export_onnx
from edgeopt.bench.machine import machine_info
from edgeopt.search import TrialRecord, pareto_front, plot_pareto
from edgeopt.bench.timing import onnx_cpu_latency_ms

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = ((20e6, 0.88), (10e6, 0.86))  # issue 31: test macro-F1, mean over >= 3 seeds
MIN_SEEDS = 3


def _records(results: Path) -> list[dict]:
    """(label, MACs, test F1, checkpoint, source) of every recorded model."""
    import re

    rows = []
    # the runs scored on finetune_trashnet.py's test split (older train_*/quantize_* records used a validation split)
    paths = sorted(p for pattern in ("finetune_*.json", "student_*.json", "prune_*.json", "decompose_*.json",
                                     "search_trashnet*.json") for p in results.glob(pattern))
    for path in paths:
        data = json.loads(path.read_text())
        if "test_macro_f1" in data and "macs" in data and "checkpoint" in data:  # finetune_trashnet.py
            rows.append({"label": path.stem, "macs": data["macs"], "test_macro_f1": data["test_macro_f1"],
                         "checkpoint": data["checkpoint"], "source": path.name})
        elif "test_macro_f1" in data and "macs" in data and "config" in data:  # a student recorded from the CLI
            rows.append({"label": path.stem, "macs": data["macs"], "test_macro_f1": data["test_macro_f1"],
                         "checkpoint": str(Path(data["config"]["out"]) / "best.pt"), "source": path.name})
        elif "macs_after" in data and "test_macro_f1" in data:  # compress_trashnet.py / prune_trashnet.py
            runs = re.search(r"--runs (\S+)", data.get("command", ""))
            run = Path(runs.group(1) if runs else "runs/prune") / path.stem
            rows.append({"label": path.stem, "macs": data["macs_after"], "test_macro_f1": data["test_macro_f1"],
                         "checkpoint": str(run / "best.pt"), "source": path.name})
        elif "trials" in data and "teacher" in data:  # search_trashnet.py: trials ran on the device machine
            for t in data["trials"]:
                p = t["params"]
                label = f"{path.stem}#{t['number']} {p['backbone']}@{p['img_size']} prune {p['prune']:.2f}"
                rows.append({"label": label, "macs": t["macs"], "test_macro_f1": t["test_macro_f1"], "checkpoint": None,
                             "source": path.name})
    seen = {(r["macs"], round(r["test_macro_f1"], 4)) for r in rows}
    rows += [r for r in _bank_records(results) if (r["macs"], round(r["test_macro_f1"], 4)) not in seen]  # a teacher run twice
    rows += _recipe_records(results) + _seeded_records(results)
    for row in rows:
        row.setdefault("seeds", 1)
        row.setdefault("stdev", None)
    return rows


def _bank_records(results: Path) -> list[dict]:
    """Students trained from a soft-label bank (mean and spread over their seeds), and each bank's teachers."""
    from edgeopt.models import count_complexity, create_model

    rows, teachers = [], {}
    for path in sorted(results.glob("soft_labels_*.json")):
        data = json.loads(path.read_text())
        names = data.get("teachers") or [data["teacher"]]
        tag = "+".join(f"{t['model'].replace('tf_efficientnet_', '')}@{t['img_size']}" for t in names)
        for t in names:
            key = (t["model"], t["img_size"], round(t["test_macro_f1"], 4))
            if key not in teachers:
                model, _ = create_model(t["model"], 6, pretrained=False)
                teachers[key] = {"label": f"teacher {t['model']}@{t['img_size']}", "macs": count_complexity(model, t["img_size"]).macs,
                                 "test_macro_f1": t["test_macro_f1"], "checkpoint": t.get("checkpoint"), "source": path.name}
        for s in data["students"]:
            scores = s["test_macro_f1"] if isinstance(s["test_macro_f1"], list) else [s["test_macro_f1"]]
            rows.append({"label": f"bank[{tag}] {s['model']}@{s['img_size']} e{s['epochs']}", "macs": s["macs"],
                         "test_macro_f1": sum(scores) / len(scores), "seeds": len(scores),
                         "stdev": s.get("stdev") if len(scores) > 1 else None, "checkpoint": None, "source": path.name})
    return rows + list(teachers.values())


def _recipe_records(results: Path) -> list[dict]:
    """``distill_recipes_trashnet.py``'s arms: each a student from a bank, one recipe, its seeds' mean and spread."""
    from edgeopt.models import count_complexity, create_model

    rows, macs = [], {}
    for path in sorted(results.glob("distill_recipes_*.json")):
        data = json.loads(path.read_text())
        teacher = "/".join(Path(data["teacher"]["checkpoint"]).parts[-3:-1])  # runs/X/best.pt: X
        for arm, a in data.get("arms", {}).items():
            model, size = a["student"].rsplit("@", 1)
            if a["student"] not in macs:
                macs[a["student"]] = count_complexity(create_model(model, 6, pretrained=False)[0], int(size)).macs
            rows.append({"label": f"recipe {arm} [{teacher}] {a['student']} e{a['epochs']}", "macs": macs[a["student"]],
                         "test_macro_f1": a["mean"], "seeds": len(a["test_macro_f1"]), "stdev": a["stdev"],
                         "checkpoint": None, "source": path.name})
    return rows


def _seeded_records(results: Path) -> list[dict]:
    """One student over several seeds per file: the final-run recipe (``final_run_recipe_*``) and the students
    that start from a teacher assistant's weights (``assistant_trashnet.py``)."""
    from edgeopt.models import count_complexity, create_model

    rows = []
    for path in sorted(p for pattern in ("final_run_recipe_*.json", "assistant_*.json") for p in results.glob(pattern)):
        data = json.loads(path.read_text())
        model, size = data["student"].rsplit("@", 1)
        macs = data.get("macs") or count_complexity(create_model(model, 6, pretrained=False)[0], int(size)).macs
        rows.append({"label": f"{path.stem} {data['student']} e{data['epochs']}", "macs": macs, "test_macro_f1": data["mean"],
                     "seeds": len(data["test_macro_f1"]), "stdev": data["stdev"], "checkpoint": None, "source": path.name})
    return rows


def _latency_ms(checkpoint: Path, runs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return onnx_cpu_latency_ms(export_onnx(checkpoint, Path(tmp) / "m.onnx").path, runs=runs, warmup=20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--runs", type=int, default=200, help="timed runs per model")
    args = parser.parse_args(argv)
    rows = [r for r in _records(args.results) if r["test_macro_f1"] is not None]
    if not rows:
        print(f"no recorded TrashNet test-split runs in {args.results}")
        return 1
    for row in rows:
        ckpt = Path(row["checkpoint"]) if row["checkpoint"] else None
        row["latency_ms"] = _latency_ms(ckpt, args.runs) if ckpt and ckpt.is_file() else None
    records = [TrialRecord(i, {"label": r["label"]}, r["test_macro_f1"], r["macs"], 0, r["latency_ms"], float("nan"), "", "")
               for i, r in enumerate(rows)]
    front = {r.number for r in pareto_front(records)}
    latency_front = {r.number for r in pareto_front([r for r in records if r.latency_ms is not None],
                                                    cost=lambda r: r.latency_ms)}
    for i, row in enumerate(rows):
        row["front_macs"], row["front_latency"] = i in front, i in latency_front
    targets = []
    for macs, f1 in TARGETS:
        within = [r for r in rows if r["macs"] <= macs and r["seeds"] >= MIN_SEEDS]
        best = max(within, key=lambda r: r["test_macro_f1"]) if within else None
        targets.append({"max_macs": macs, "min_test_macro_f1": f1, "min_seeds": MIN_SEEDS,
                        "met": bool(best and best["test_macro_f1"] >= f1),
                        "best": best["label"] if best else None, "best_test_macro_f1": best["test_macro_f1"] if best else None})
    plot = plot_pareto(records, args.results / "frontier_trashnet.png", f1_label="test macro-F1", log_x=True, f1_floor=0.65)
    (args.results / "frontier_trashnet.json").write_text(json.dumps({
        "command": "python benchmarks/frontier_trashnet.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "split": "TrashNet test split (400 images, seed 0) of finetune_trashnet.py: no model trained or was selected on it",
        "latency": "ONNX Runtime CPU, batch 1, p50, this machine, one model at a time (null: checkpoint not here)",
        "models": rows, "plot": plot.name, "plot_labels": "point #i is models[i]", "targets": targets,
        "machine": machine_info()}, indent=2) + "\n")
    print(f"{'#':>3} {'model':<58} {'MACs':>7} {'test F1':>7} {'± sd':>6} {'seeds':>5} {'CPU ms':>7}")
    for i, r in sorted(enumerate(rows), key=lambda ir: ir[1]["macs"]):
        latency = f"{r['latency_ms']:.3f}" if r["latency_ms"] is not None else "-"
        sd = f"{r['stdev']:.3f}" if r["stdev"] is not None else "-"
        mark = " *" if r["front_macs"] else ""
        print(f"{i:>3} {r['label'][:58]:<58} {r['macs'] / 1e6:>6.1f}M {r['test_macro_f1']:>7.4f} {sd:>6} {r['seeds']:>5} "
              f"{latency:>7}{mark}")
    for t in targets:
        best = f"{t['best_test_macro_f1']:.4f}: {t['best']}" if t["best"] else "no model within the budget"
        print(f"target <= {t['max_macs'] / 1e6:.0f}M MACs at test F1 >= {t['min_test_macro_f1']} (mean of >= {MIN_SEEDS} seeds): "
              f"{'met' if t['met'] else 'NOT met'} ({best})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
