"""Students past their teacher? One change at a time against a fixed control, on TrashNet's test split.

TrashNet is split once (stratified, seed 0) into a pool (80 %) and a test part (20 %), the split
``edgeopt optimize`` and the other benchmarks make. A given teacher (``--teacher``, trained on that
pool) labels a soft-label bank per student seed (the bank's view seed follows the student's, so the
seeds do not share one set of views; ``--bank-precision auto``: bf16 where the CPU has bf16 units, the
same for every arm); each arm trains a student from its bank on the whole pool (no
selection) for ``--epochs`` and is scored once on the test part. Arms (``--arms``):

- ``control``: the recipe before these changes: views from a cache 1.15x the input, KL at T 4 with
  alpha 0.7, a bank of plain views;
- ``cache2x``: views from a cache twice the input (every crop a downsample, as deployed);
- ``cache2x_fm``: and function matching's loss: pure KL (alpha 1) at T 1;
- ``cache2x_dist``: and DIST (T 1, alpha 0.5);
- ``cache2x_bn``: and FixRes's BatchNorm recalibration on the deployed input after training;
- ``cache2x_tta``: and a bank of flip-averaged teacher logits;
- ``bn_tta``, ``bn_fm_cutmix``, ``bn_fm_mixup``, ``bn_dist``: ``cache2x_bn`` (the recipe ``optimize`` ships)
  with one more change: a flip-averaged bank; function matching from a bank of CutMix or mixup blends
  (pure KL at T 1 on exactly the blends the teacher labelled); DIST.

  python benchmarks/distill_recipes_trashnet.py --teacher runs/optimize_trashnet/teacher/best.pt \\
      --arms control,cache2x,cache2x_fm --seeds 0,1,2 --epochs 40 --views 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from edgeopt.bench.machine import machine_info
from edgeopt.data.folder import materialize_split
from edgeopt.runtime.evaluate import evaluate_artifact
from edgeopt.train.distill import KDConfig
from edgeopt.train.loop import TrainConfig, train_classifier
from edgeopt.train.soft_labels import SoftLabelConfig, make_soft_labels

RESULTS = Path(__file__).resolve().parent / "results"
# arm -> (student settings, KD settings, bank settings), each a change against the control
ARMS: dict[str, tuple[dict, dict, dict]] = {
    "control": ({"cache_scale": 1.15}, {"temperature": 4.0, "alpha": 0.7}, {}),
    "cache2x": ({}, {"temperature": 4.0, "alpha": 0.7}, {}),
    "cache2x_fm": ({}, {"temperature": 1.0, "alpha": 1.0}, {}),
    "cache2x_dist": ({}, {"temperature": 1.0, "alpha": 0.5, "loss": "dist"}, {}),
    "cache2x_bn": ({"bn_recalibrate": True}, {"temperature": 4.0, "alpha": 0.7}, {}),
    "cache2x_tta": ({}, {"temperature": 4.0, "alpha": 0.7}, {"tta_flip": True}),
    # the recipe optimize ships (2x cache, BN recalibrated) with one more change each
    "bn_tta": ({"bn_recalibrate": True}, {"temperature": 4.0, "alpha": 0.7}, {"tta_flip": True}),
    "bn_fm_cutmix": ({"bn_recalibrate": True}, {"temperature": 1.0, "alpha": 1.0, "mix": "cutmix"}, {"mix": "cutmix"}),
    "bn_fm_mixup": ({"bn_recalibrate": True}, {"temperature": 1.0, "alpha": 1.0, "mix": "mixup"}, {"mix": "mixup"}),
    "bn_dist": ({"bn_recalibrate": True}, {"temperature": 1.0, "alpha": 0.5, "loss": "dist"}, {}),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "trashnet")
    parser.add_argument("--runs", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--teacher", type=Path, required=True, help="a teacher checkpoint trained on the pool of this split")
    parser.add_argument("--arms", default="control,cache2x")
    parser.add_argument("--student", default="mobilenet_v2")
    parser.add_argument("--student-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--scratch", action="store_true", help="students from random weights (a YAML student)")
    parser.add_argument("--bank-precision", default="auto", help="the teacher's arithmetic in every arm's bank (fp32, bf16, auto)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--name", default="distill_recipes_trashnet")
    args = parser.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}: use {', '.join(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    out_json = RESULTS / f"{args.name}.json"
    record = json.loads(out_json.read_text()) if out_json.exists() else {}
    record.update({"command": "python benchmarks/distill_recipes_trashnet.py " + " ".join(argv or sys.argv[1:]),
                   "machine": machine_info()})
    pool, test = materialize_split(args.data, args.runs / "split", test_fraction=0.2, seed=0)
    record["split"] = {"pool": str(pool), "test": str(test), "seed": 0, "test_fraction": 0.2,
                       "note": "students train on the whole pool with no selection; every figure is test-split"}
    record["teacher"] = {"checkpoint": str(args.teacher), "test_macro_f1": round(evaluate_artifact(args.teacher, test).metrics.macro_f1, 4)}
    print(f"teacher {args.teacher}: test macro-F1 {record['teacher']['test_macro_f1']:.4f}")
    record.setdefault("arms", {})
    for arm in arms:
        student, kd, bank_settings = ARMS[arm]
        f1s, seconds = [], []
        for seed in seeds:
            tag = "tta" if bank_settings.get("tta_flip") else bank_settings.get("mix", "plain")
            bank_path = args.runs / f"bank_{tag}_v{args.views}_s{seed}.bank"
            t0 = time.perf_counter()
            make_soft_labels(SoftLabelConfig(teachers=[args.teacher], data=pool, out=bank_path, views=args.views, scale_min=0.6,
                                      brightness=0.2, seed=seed, device=args.device, precision=args.bank_precision,
                                      **bank_settings))
            bank_seconds = time.perf_counter() - t0
            out = args.runs / f"{arm}_{args.student}{args.student_size}_e{args.epochs}_s{seed}"
            derived = args.runs / f"cache2x_{args.student}{args.student_size}_e{args.epochs}_s{seed}"
            plain = ({k: v for k, v in student.items() if k != "bn_recalibrate"}, kd, bank_settings) == ARMS["cache2x"]
            if student.get("bn_recalibrate") and plain and (derived / "best.pt").is_file():
                # the cache2x run with its BatchNorm recalibrated afterwards: what bn_recalibrate does at the end of it
                import shutil

                from edgeopt.train.fixres import recalibrate_checkpoint
                from edgeopt.data.folder import scan_folder

                out.mkdir(parents=True, exist_ok=True)
                for name in ("best.pt", "best.pt.json"):
                    shutil.copy2(derived / name, out / name)
                t1 = time.perf_counter()
                recalibrate_checkpoint(out / "best.pt", [x.path for x in scan_folder(pool).samples])
                f1 = evaluate_artifact(out / "best.pt", test).metrics.macro_f1
                f1s.append(round(f1, 4))
                seconds.append(round(time.perf_counter() - t1, 1))
                print(f"{arm} seed {seed}: test macro-F1 {f1:.4f} (cache2x's run, BatchNorm recalibrated)")
                continue
            result = train_classifier(TrainConfig(
                model=args.student, data=pool, pretrained=not args.scratch, img_size=args.student_size, val_split=0.0, epochs=args.epochs,
                seed=seed, device=args.device, workers=0, out=out,
                kd=KDConfig(soft_labels=bank_path, **kd), **student))
            f1 = evaluate_artifact(result.best_checkpoint, test).metrics.macro_f1
            f1s.append(round(f1, 4))
            seconds.append(round(result.seconds + bank_seconds, 1))
            print(f"{arm} seed {seed}: test macro-F1 {f1:.4f} ({result.macs / 1e6:.1f} M MACs, {result.seconds:.0f} s training)")
        record["arms"][arm] = {"student": f"{args.student}@{args.student_size}", "epochs": args.epochs, "views": args.views,
                               "change": {**student, **{f"kd_{k}": v for k, v in kd.items()}, **bank_settings},
                               "seeds": seeds, "test_macro_f1": f1s, "mean": round(statistics.mean(f1s), 4),
                               "stdev": round(statistics.stdev(f1s), 4) if len(f1s) > 1 else 0.0, "seconds": seconds}
        RESULTS.mkdir(exist_ok=True)
        out_json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"{arm}: {record['arms'][arm]['mean']:.4f} +- {record['arms'][arm]['stdev']:.4f} over seeds {seeds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
