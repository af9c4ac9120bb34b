"""The soft-label bank on TrashNet: what it costs, how much faster a student epoch gets, what students reach.

TrashNet is split once (stratified, seed 0) into a pool (80 %) and a test part (20 %), as in
``finetune_trashnet.py``. On the pool:

1. a teacher is fine-tuned (pretrained, ``--teacher-size``, whole pool, fixed epochs), unless
   ``--teacher CKPT`` is given (repeat it for an ensemble: the bank averages their probabilities);
   each teacher's test-split macro-F1 is recorded;
2. ``edgeopt soft-labels`` makes a bank of ``--views`` views per image (time, teacher passes/s, size);
3. one student epoch with the teacher online and one from the bank, side by side, ``--speed-rounds``
   times alternating (median seconds of each);
4. students are trained from the bank on the whole pool for each ``--epochs`` value and each seed
   (no checkpoint selection) and scored once on the test part: mean and spread over the seeds.

  python benchmarks/soft_labels_trashnet.py --runs runs/bank --teacher-size 160 --teacher-epochs 6 \\
      --views 30 --student mobilenet_v2 --student-size 48 --epochs 30 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from edgeopt.data.folder import materialize_split
from edgeopt.train.distill import KDConfig
from edgeopt.runtime.evaluate import evaluate_artifact
from edgeopt.bench.machine import machine_info
from edgeopt.train.soft_labels import SoftLabelConfig, make_soft_labels
from edgeopt.train.loop import TrainConfig, train_classifier

RESULTS = Path(__file__).resolve().parent / "results"


def _write(record: dict, name: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "trashnet")
    parser.add_argument("--runs", type=Path, default=Path("runs/bank"))
    parser.add_argument("--teacher", type=Path, action="append", default=[],
                        help="an existing teacher checkpoint, repeatable: an ensemble (else one is fine-tuned)")
    parser.add_argument("--teacher-model", default="tf_efficientnet_lite0")
    parser.add_argument("--teacher-size", type=int, default=224)
    parser.add_argument("--teacher-epochs", type=int, default=12)
    parser.add_argument("--views", type=int, default=30)
    parser.add_argument("--student", default="mobilenet_v2")
    parser.add_argument("--student-size", type=int, default=48)
    parser.add_argument("--epochs", default="30", help="comma-separated student epoch counts")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--speed-rounds", type=int, default=2, help="0 skips the online-vs-bank epoch timing")
    parser.add_argument("--kd-temperature", type=float, default=4.0)
    parser.add_argument("--kd-alpha", type=float, default=0.7)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--name", default="soft_labels_trashnet")
    args = parser.parse_args(argv)
    record: dict = {"command": "python benchmarks/soft_labels_trashnet.py " + " ".join(argv or sys.argv[1:]),
                    "machine": machine_info()}
    pool, test = materialize_split(args.data, args.runs / "split", test_fraction=0.2, seed=0)
    record["split"] = {"pool": str(pool), "test": str(test), "seed": 0, "test_fraction": 0.2,
                       "note": "students and teacher train on the whole pool (no selection); figures are test-split"}

    teachers = list(args.teacher)
    if not teachers:
        t0 = time.perf_counter()
        result = train_classifier(TrainConfig(model=args.teacher_model, data=pool, pretrained=True, img_size=args.teacher_size,
                                              epochs=args.teacher_epochs, val_split=0.0, device=args.device, workers=0,
                                              out=args.runs / f"teacher_{args.teacher_size}"))
        teachers = [result.best_checkpoint]
        record["teacher_train_seconds"] = round(time.perf_counter() - t0, 1)
    record["teachers"] = []
    for teacher in teachers:
        t_eval = evaluate_artifact(teacher, test)
        manifest = json.loads(Path(str(teacher) + ".json").read_text())
        record["teachers"].append({"checkpoint": str(teacher), "model": manifest["arch"].get("name"),
                                   "img_size": manifest["preprocess"]["size"], "test_macro_f1": t_eval.metrics.macro_f1})
        print(f"teacher {teacher}: test macro-F1 {t_eval.metrics.macro_f1:.4f}")
    record["teacher"] = record["teachers"][0]
    teacher = teachers[0]
    _write(record, args.name)

    bank_path = args.runs / (f"views{args.views}.bank" if len(teachers) == 1 else f"views{args.views}_{len(teachers)}teachers.bank")
    bank = make_soft_labels(SoftLabelConfig(teachers=teachers, data=pool, out=bank_path, views=args.views, scale_min=0.6,
                                     brightness=0.2, device=args.device))
    record["bank"] = {"path": str(bank_path), "images": bank.images, "views": bank.views, "seconds": round(bank.seconds, 1),
                      "teacher_passes_per_second": round(bank.views_per_second, 1), "bytes": bank.bytes,
                      "resumed_chunks": bank.resumed_chunks, "reused": bank.reused}
    print(f"bank: {bank.images} x {bank.views} views in {bank.seconds:.0f}s ({bank.views_per_second:.0f} passes/s, "
          f"{bank.bytes / 1e6:.1f} MB)")
    _write(record, args.name)

    common = dict(model=args.student, data=pool, pretrained=True, img_size=args.student_size, val_split=0.0,
                  device=args.device, workers=0)
    kd = KDConfig(args.kd_temperature, args.kd_alpha)
    if args.speed_rounds:
        times: dict[str, list[float]] = {"online": [], "bank": []}
        for r in range(args.speed_rounds):
            for mode in ("online", "bank"):
                source = {"teachers": tuple(teachers)} if mode == "online" else {"soft_labels": bank_path}
                result = train_classifier(TrainConfig(epochs=1, out=args.runs / f"speed_{mode}_{r}",
                                                      kd=dataclasses.replace(kd, **source), **common))
                times[mode].append(result.history[0].seconds)
        online, banked = statistics.median(times["online"]), statistics.median(times["bank"])
        record["epoch_seconds"] = {"online_teacher": times["online"], "bank": times["bank"],
                                   "speedup_median": round(online / banked, 2)}
        print(f"student epoch: {online:.1f}s with the teacher online, {banked:.1f}s from the bank ({online / banked:.2f}x)")
        _write(record, args.name)

    record["students"] = []
    for epochs in (int(e) for e in args.epochs.split(",")):
        f1s = []
        for seed in (int(s) for s in args.seeds.split(",")):
            out = args.runs / f"student_{args.student}_{args.student_size}_e{epochs}_s{seed}"
            result = train_classifier(TrainConfig(epochs=epochs, seed=seed, out=out, kd=dataclasses.replace(kd, soft_labels=bank_path),
                                                  **common))
            f1 = evaluate_artifact(result.best_checkpoint, test).metrics.macro_f1
            f1s.append(f1)
            print(f"student {args.student}@{args.student_size} {epochs} epochs seed {seed}: test macro-F1 {f1:.4f} "
                  f"({result.macs / 1e6:.1f} M MACs, {result.seconds / epochs:.1f} s/epoch)")
        record["students"].append({"model": args.student, "img_size": args.student_size, "epochs": epochs,
                                   "macs": result.macs, "seeds": args.seeds, "test_macro_f1": f1s,
                                   "mean": statistics.mean(f1s), "stdev": statistics.stdev(f1s) if len(f1s) > 1 else 0.0})
        _write(record, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
