"""A teacher assistant's weights as the student's start (progressive resizing), on TrashNet's test split.

The assistant is a MobileNetV2 at 96 px distilled from the Lite0@224 teacher's bank (Session 11:
``edgeopt train --model mobilenet_v2 --img-size 96 --soft-labels runs/recipes/bank_plain_v10_s0.bank
--epochs 40 --val-split 0 --bn-recalibrate --kd-temperature 4 --kd-alpha 0.7 --data runs/recipes/split/pool
--out runs/s11/ta96``). Each seed's student (MobileNetV2 at ``--size``) starts from the assistant's
weights instead of ImageNet's and learns from that seed's bank (``--banks``/``--bank-name``, ``{seed}``
filled in: the teacher's banks, or the assistant's own) on the whole pool, no selection, BatchNorm
recalibrated; it is scored once on the test split. ``--no-init`` starts from ImageNet's weights (the control).

A student folder that holds a ``best.pt`` already is scored as it is (a rerun records, it does not retrain).

  python benchmarks/assistant_trashnet.py --assistant runs/s11/ta96/best.pt --banks runs/recipes \\
      --bank-name bank_plain_v10_s{seed}.bank --size 48 --epochs 40 --tag init_t48
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from edgeopt.bench.machine import machine_info
from edgeopt.runtime.evaluate import evaluate_artifact
from edgeopt.train.config import KDConfig
from edgeopt.train.loop import TrainConfig, train_classifier

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assistant", type=Path, required=True, help="the 96 px MobileNetV2 checkpoint")
    parser.add_argument("--split", type=Path, default=Path("runs/recipes/split"), help="holds pool/ and test/")
    parser.add_argument("--banks", type=Path, required=True)
    parser.add_argument("--bank-name", default="bank_plain_v10_s{seed}.bank")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kd-temperature", type=float, default=4.0)
    parser.add_argument("--kd-alpha", type=float, default=0.7)
    parser.add_argument("--no-init", action="store_true", help="start from ImageNet's weights (the control)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", type=Path, default=Path("runs/s11"))
    parser.add_argument("--tag", required=True, help="student folders RUNS/TAG_sSEED; results/assistant_TAG.json")
    args = parser.parse_args(argv)
    pool, test = args.split / "pool", args.split / "test"
    record = {"command": "python benchmarks/assistant_trashnet.py " + " ".join(argv or sys.argv[1:]), "machine": machine_info(),
              "split": {"pool": str(pool), "test": str(test),
                        "note": "students train on the whole pool with no selection; every figure is test-split"},
              "assistant": {"checkpoint": str(args.assistant),
                            "test_macro_f1": round(evaluate_artifact(args.assistant, test).metrics.macro_f1, 4)},
              "student": f"mobilenet_v2@{args.size}", "epochs": args.epochs, "init": None if args.no_init else str(args.assistant),
              "kd": {"temperature": args.kd_temperature, "alpha": args.kd_alpha, "lr": args.lr}, "seeds": [], "test_macro_f1": [],
              "train_seconds": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        out = args.runs / f"{args.tag}_s{seed}"
        bank = args.banks / args.bank_name.format(seed=seed)
        if (out / "best.pt").is_file():
            seconds = round(sum(e["seconds"] for e in json.loads((out / "metrics.json").read_text())["history"]), 1)
            print(f"{out}: finished already, scored as it is")
        else:
            result = train_classifier(TrainConfig(
                model="mobilenet_v2", data=pool, out=out, init_checkpoint=None if args.no_init else args.assistant,
                pretrained=True, img_size=args.size, epochs=args.epochs, val_split=0.0, bn_recalibrate=True, seed=seed,
                device="cpu", workers=0, lr=args.lr,
                kd=KDConfig(temperature=args.kd_temperature, alpha=args.kd_alpha, soft_labels=bank)))
            seconds = round(result.seconds, 1)
        f1 = round(evaluate_artifact(out / "best.pt", test).metrics.macro_f1, 4)
        record["seeds"].append(seed)
        record["test_macro_f1"].append(f1)
        record["train_seconds"].append(seconds)
        print(f"seed {seed} (bank {bank}): test macro-F1 {f1:.4f}")
    f1s = record["test_macro_f1"]
    record.update(mean=round(statistics.mean(f1s), 4), stdev=round(statistics.stdev(f1s), 4) if len(f1s) > 1 else 0.0)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"assistant_{args.tag}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{args.tag}: {record['mean']:.4f} +- {record['stdev']:.4f} over seeds {record['seeds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
