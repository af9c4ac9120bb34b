"""Training benchmark on TrashNet (fixed stratified 80/20 split, seed 0).

Stages (run one with --stage, or all in order):
  teacher   pretrained tf_efficientnet_lite0 at 96 px           (target: val macro-F1 >= 0.88)
  teacher_light  the same with light augmentation (no RandAugment, crops >= 60%) for short CPU runs
  student   mobilenetv3_small_075 at 96 px (8.4 M MACs), no KD   (the reference for the KD gain)
  kd        the same student distilled from the teacher           (target: >= 0.85 and >= +0.03)
  kd_mixup  KD with mixup and a long schedule ("patient, consistent teacher")
  baseline  resnet18d at 224 px from scratch (the bench baseline)
Each stage writes RESULTS/<stage>.json with F1, MACs, params, wall time and the machine;
`--collect` merges them into RESULTS/train_trashnet.json.

  python benchmarks/train_trashnet.py --data ../shared/data/trashnet --runs runs/bench --stage teacher
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edgeopt.train.distill import KDConfig
from edgeopt.bench.machine import machine_info
from edgeopt.train.loop import TrainConfig, train_classifier

STUDENT = "mobilenetv3_small_075"


def stage_configs(data: Path, runs: Path, device: str, scale: float, workers: int | None) -> dict[str, TrainConfig]:
    def ep(n: int) -> int:
        return max(1, int(round(n * scale)))

    common = dict(data=data, device=device, seed=0, val_split=0.2, workers=workers)
    teacher_ckpt = runs / "teacher" / "best.pt"
    return {
        "teacher": TrainConfig(model="tf_efficientnet_lite0", pretrained=True, img_size=96, epochs=ep(30), batch_size=64,
                               lr=1e-3, randaugment=7, out=runs / "teacher", **common),
        "teacher_light": TrainConfig(model="tf_efficientnet_lite0", pretrained=True, img_size=96, epochs=ep(30), batch_size=32,
                                     lr=1e-3, randaugment=0, scale_min=0.6, out=runs / "teacher_light", **common),
        "student": TrainConfig(model=STUDENT, img_size=96, epochs=ep(300), batch_size=128, lr=4e-3, randaugment=7,
                               out=runs / "student", **common),
        "kd": TrainConfig(model=STUDENT, img_size=96, epochs=ep(300), batch_size=128, lr=4e-3, randaugment=7,
                          kd=KDConfig(4.0, 0.7, "all", teachers=(teacher_ckpt,)), out=runs / "kd", **common),
        "kd_mixup": TrainConfig(model=STUDENT, img_size=96, epochs=ep(300), batch_size=128, lr=4e-3, randaugment=7,
                                mixup=0.4, kd=KDConfig(2.0, 0.9, "all", teachers=(teacher_ckpt,)), out=runs / "kd_mixup", **common),
        "baseline": TrainConfig(model="resnet18d", img_size=224, epochs=ep(60), batch_size=128, lr=2e-3, randaugment=7,
                                out=runs / "baseline", **common),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/trashnet"))
    parser.add_argument("--runs", type=Path, default=Path("runs/bench"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--stage", action="append", help="stage(s) to run; default all")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epoch-scale", type=float, default=1.0, help="multiply every stage's epochs (e.g. 0.1 on a CPU)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--epochs", action="append", default=[], metavar="STAGE=N", help="override one stage's epochs")
    parser.add_argument("--collect", action="store_true", help="merge the per-stage JSONs and print a table")
    args = parser.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    if args.collect:
        return collect(args.results)
    configs = stage_configs(args.data, args.runs, args.device, args.epoch_scale, args.workers)
    for item in args.epochs:
        stage, _, n = item.partition("=")
        configs[stage].epochs = int(n)
    for name in args.stage or list(configs):
        config = configs[name]
        t0 = time.perf_counter()
        result = train_classifier(config)
        record = {
            "stage": name, "model": config.model, "img_size": config.img_size, "epochs": config.epochs,
            "pretrained": config.pretrained, "teachers": [str(t) for t in config.teachers],
            "kd": vars(config.kd) if config.teachers else None, "mixup": config.mixup,
            "val_macro_f1": result.best_macro_f1, "best_epoch": result.best_epoch,
            "val_accuracy": max(h.val_accuracy for h in result.history if h.epoch == result.best_epoch),
            "macs": result.macs, "params": result.params, "wall_seconds": round(time.perf_counter() - t0, 1),
            "seconds_per_epoch": round(sum(h.seconds for h in result.history) / len(result.history), 2),
            "device": result.device, "machine": machine_info(), "checkpoint": str(result.best_checkpoint),
        }
        (args.results / f"train_{name}.json").write_text(json.dumps(record, indent=2))
        print(f"{name:9s} {config.model:24s} {config.img_size}px  F1 {result.best_macro_f1:.4f}  "
              f"{result.macs / 1e6:.1f}M MACs  {record['wall_seconds']}s on {result.device}", flush=True)
    return 0


def collect(results: Path) -> int:
    records = [json.loads(p.read_text()) for p in sorted(results.glob("train_*.json")) if p.name != "train_trashnet.json"]
    by_stage = {r["stage"]: r for r in records}
    summary = {"runs": records}
    if "student" in by_stage:
        for kd in ("kd", "kd_mixup"):
            if kd in by_stage:
                summary[f"{kd}_gain"] = round(by_stage[kd]["val_macro_f1"] - by_stage["student"]["val_macro_f1"], 4)
    (results / "train_trashnet.json").write_text(json.dumps(summary, indent=2))
    for r in records:
        print(f"{r['stage']:9s} {r['model']:24s} {r['img_size']}px ep{r['epochs']:<4d} F1 {r['val_macro_f1']:.4f} "
              f"{r['macs'] / 1e6:7.1f}M MACs {r['seconds_per_epoch']:6.2f}s/epoch on {r['device']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
