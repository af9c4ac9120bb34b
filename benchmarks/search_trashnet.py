"""The accuracy-per-MAC frontier on TrashNet: a distillation teacher, then ``edgeopt search``, then test figures.

TrashNet is split once (stratified, seed 0) into a pool (80 %) and a test part (20 %). The teacher
(pretrained Lite0 at 96 px) trains on the whole pool; the search's trials train on 80 % of the pool
and select their checkpoint (and the search its points) on the other 20 % (validation). Every
finished trial is then evaluated once on the test part, which nothing trained or selected on: the
Pareto front and the targets below are read from those test figures.

The study starts with a few enqueued points (pretrained MobileNetV2 / Lite0 at reduced inputs,
some gently pruned), then Optuna's TPE sampler explores until the time budget is spent.

  python benchmarks/search_trashnet.py --data ../shared/data/trashnet --runs runs/search_trashnet --budget-s 420

Targets (issue 12): <= 20 M MACs at test macro-F1 >= 0.90, and <= 10 M MACs at >= 0.85.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

from edgeopt.data.folder import materialize_split, scan_folder
from edgeopt.train.distill import KDConfig
from edgeopt.runtime.evaluate import evaluate_artifact
from edgeopt.bench.machine import machine_info
from edgeopt.search import (
    SearchConfig,
    SearchSpace,
    TrialRecord,
    load_or_create_study,
    open_storage,
    pareto_front,
    plot_pareto,
    search_models,
    study_settings,
)
from edgeopt.train.loop import TrainConfig, train_classifier

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = ((20e6, 0.90), (10e6, 0.85))
# points worth trying first: pretrained nets at reduced inputs (resolution costs less than channels),
# and gentle pruning; each must lie in the search space below
START_POINTS = (
    # <= 20 M MACs (counted by edgeopt: mobilenet_v2 16.6 M at 48 px, Lite0 20.4 M at 40 px unpruned)
    {"backbone": "mobilenet_v2", "img_size": 48, "prune": 0.0},
    {"backbone": "mobilenet_v2", "img_size": 64, "prune": 0.2},
    {"backbone": "tf_efficientnet_lite0", "img_size": 64, "prune": 0.4},
    {"backbone": "tf_efficientnet_lite0", "img_size": 48, "prune": 0.1},
    # <= 10 M MACs
    {"backbone": "mobilenet_v2", "img_size": 32, "prune": 0.0},
    {"backbone": "tf_efficientnet_lite0", "img_size": 32, "prune": 0.0},
    {"backbone": "mobilenet_v2", "img_size": 40, "prune": 0.35},
    {"backbone": "mobilenet_v2", "img_size": 48, "prune": 0.4},
    # the upper end of the front
    {"backbone": "mobilenet_v2", "img_size": 64, "prune": 0.0},
    {"backbone": "mobilenet_v2", "img_size": 96, "prune": 0.0},
    {"backbone": "tf_efficientnet_lite0", "img_size": 96, "prune": 0.0},
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "trashnet")
    parser.add_argument("--runs", type=Path, default=Path("runs/search_trashnet"))
    parser.add_argument("--budget-s", type=float, default=420.0, help="wall-clock seconds for the whole script")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per trial")
    parser.add_argument("--teacher-epochs", type=int, default=12)
    parser.add_argument("--teacher-size", type=int, default=96)
    parser.add_argument("--sizes", default="32,40,48,56,64,80,96")
    parser.add_argument("--max-trials", type=int, default=60)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--name", default="search_trashnet")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--parallel", type=int, default=1, help="search workers on this machine (one study)")
    parser.add_argument("--loader-workers", type=int, default=None, help="DataLoader workers per trial")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    pool, test = materialize_split(args.data, args.runs / "split", test_fraction=0.2, seed=0)

    teacher_cfg = TrainConfig(model="tf_efficientnet_lite0", data=pool, pretrained=True, img_size=args.teacher_size,
                              epochs=args.teacher_epochs, val_split=0.0, device=args.device, out=args.runs / "teacher")
    teacher = train_classifier(teacher_cfg)
    teacher_test = evaluate_artifact(teacher.best_checkpoint, test, device=_eval_device(teacher.device))
    print(f"teacher: test macro-F1 {teacher_test.metrics.macro_f1:.4f} ({teacher.macs / 1e6:.1f} M MACs, "
          f"{teacher.seconds:.0f} s)", flush=True)

    sizes = tuple(int(s) for s in args.sizes.split(","))
    space = SearchSpace(backbones=("tf_efficientnet_lite0", "mobilenet_v2"), sizes=sizes, max_prune=0.5,
                        lr=(5e-4, 3e-3), kd_temperature=(2.0, 8.0), kd_alpha=(0.3, 0.9))
    reserve = 60.0  # evaluation on the test part and the report
    config = SearchConfig(data=pool, out=args.runs, study=args.name, trials=args.max_trials, space=space,
                          kd=KDConfig(teachers=(teacher.best_checkpoint,)), epochs=args.epochs, device=args.device, seed=0,
                          workers=args.loader_workers, timeout=max(1.0, args.budget_s - (time.perf_counter() - t0) - reserve))
    classes = scan_folder(pool).classes
    study = load_or_create_study(config, open_storage(config), study_settings(config, classes))
    if not study.trials:
        for point in START_POINTS:
            if point["img_size"] in sizes:
                study.enqueue_trial({**point, "lr": 1e-3, "kd_temperature": 4.0, "kd_alpha": 0.7})
    helpers = [_worker(config, seed) for seed in range(1, args.parallel)]  # more workers on the same study
    result = search_models(config)
    for helper in helpers:
        helper.wait()
    result = search_models(config, report_only=True)  # the report over every worker's trials, no new ones

    trials = []
    for r in sorted(result.trials, key=lambda r: r.number):
        ev = evaluate_artifact(Path(r.artifacts) / "best.pt", test, device=_eval_device(teacher.device))
        trials.append({**dataclasses.asdict(r), "test_macro_f1": ev.metrics.macro_f1, "test_accuracy": ev.metrics.accuracy})
    by_test = [dataclasses.replace(r, val_macro_f1=t["test_macro_f1"]) for r, t in
               zip(sorted(result.trials, key=lambda r: r.number), trials)]
    # the teacher is a point of the frontier too (trained on the whole pool, scored on the same test part): number -1
    by_test.append(TrialRecord(-1, {"backbone": "tf_efficientnet_lite0", "img_size": args.teacher_size, "prune": 0.0},
                               teacher_test.metrics.macro_f1, teacher.macs, teacher.params, None, float("nan"), "", ""))
    front = pareto_front(by_test)
    targets = []
    for macs, f1 in TARGETS:
        within = [t for t in trials if t["macs"] <= macs]
        best = max(within, key=lambda t: t["test_macro_f1"]) if within else None
        targets.append({"max_macs": macs, "min_test_macro_f1": f1, "met": bool(best and best["test_macro_f1"] >= f1),
                        "best_trial": best["number"] if best else None,
                        "best_test_macro_f1": best["test_macro_f1"] if best else None})
    args.results.mkdir(parents=True, exist_ok=True)
    plot = plot_pareto(by_test, args.results / f"{args.name}.png", f1_label="test macro-F1") if by_test else None
    record = {
        "command": "python benchmarks/search_trashnet.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "split": {"pool": str(pool), "test": str(test), "test_images": teacher_test.metrics.n, "seed": 0, "test_fraction": 0.2,
                  "selection": "each trial's checkpoint and the search on 20 % of the pool (validation); "
                               "figures marked test_ on the test part"},
        "teacher": {"checkpoint": str(teacher.best_checkpoint), "macs": teacher.macs, "epochs": args.teacher_epochs,
                    "img_size": args.teacher_size, "test_macro_f1": teacher_test.metrics.macro_f1},
        "search": {"epochs_per_trial": args.epochs, "space": dataclasses.asdict(space), "start_points": list(START_POINTS),
                   "failed_trials": result.failed, "study_report": str(result.report)},
        "trials": trials, "pareto_by_test": [r.number for r in front], "pareto_note": "-1 is the teacher",
        "targets": targets,
        "plot": plot.name if plot else None, "seconds": round(time.perf_counter() - t0, 1), "machine": machine_info(),
    }
    (args.results / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{'trial':>5} {'backbone':<22} {'px':>3} {'prune':>5} {'MACs':>7} {'val F1':>7} {'test F1':>7}")
    for t in sorted(trials, key=lambda t: t["macs"]):
        mark = " *" if t["number"] in {r.number for r in front} else ""
        print(f"{t['number']:>5} {t['params']['backbone']:<22} {t['params']['img_size']:>3} {t['params']['prune']:>5.2f} "
              f"{t['macs'] / 1e6:>6.1f}M {t['val_macro_f1']:>7.4f} {t['test_macro_f1']:>7.4f}{mark}")
    for t in targets:
        print(f"target <= {t['max_macs'] / 1e6:.0f}M MACs at test F1 >= {t['min_test_macro_f1']}: "
              f"{'met' if t['met'] else 'NOT met'} (best {t['best_test_macro_f1']}, trial {t['best_trial']})")
    return 0


def _worker(config: SearchConfig, seed: int) -> subprocess.Popen:
    """``edgeopt search`` on the same study, as a user would start another worker."""
    space = config.space
    args = ["--data", config.data, "--out", config.out, "--study", config.study, "--trials", config.trials,
            "--timeout", config.timeout, "--backbones", ",".join(space.backbones), "--sizes", ",".join(map(str, space.sizes)),
            "--max-prune", space.max_prune, "--lr", ",".join(map(str, space.lr)), "--teacher", config.teacher,
            "--kd-temperature", ",".join(map(str, space.kd_temperature)), "--kd-alpha", ",".join(map(str, space.kd_alpha)),
            "--epochs", config.epochs, "--batch-size", config.batch_size, "--val-split", config.val_split,
            "--seed", seed, "--device", config.device]
    if config.workers is not None:
        args += ["--workers", config.workers]
    return subprocess.Popen([sys.executable, "-m", "edgeopt", "search", *map(str, args)])


def _eval_device(train_device: str) -> str:
    return "cuda" if train_device.startswith("cuda") else "cpu"


if __name__ == "__main__":
    sys.exit(main())
