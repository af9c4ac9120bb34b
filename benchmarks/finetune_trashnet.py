"""The pretrained fine-tuning recipe, measured on a TrashNet test split nothing trains or selects on.

TrashNet is split once (stratified, seed 0) into a pool (80 %) and a test part (20 %). The model is
trained on the whole pool for a fixed number of epochs with the CLI's defaults for a pretrained
backbone (`--val-split 0`: no checkpoint selection), then evaluated once on the test part.

  python benchmarks/finetune_trashnet.py --data ../shared/data/trashnet --runs runs/finetune
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edgeopt.data.folder import materialize_split
from edgeopt.train.distill import KDConfig
from edgeopt.runtime.evaluate import evaluate_artifact
from edgeopt.bench.machine import machine_info
from edgeopt.train.loop import TrainConfig, train_classifier

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "trashnet")
    parser.add_argument("--runs", type=Path, default=Path("runs/finetune"))
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--img-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--name", default="finetune_lite0_96")
    parser.add_argument("--schedule", default=None, help="cosine or onecycle (default: the CLI's)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--resize", default="squash", help="squash or center_crop (the whole pipeline's rule)")
    parser.add_argument("--teacher", type=Path, action="append", default=[], help="distill from this checkpoint (repeatable)")
    parser.add_argument("--kd-temperature", type=float, default=4.0)
    parser.add_argument("--kd-alpha", type=float, default=0.7)
    args = parser.parse_args(argv)
    pool, test = materialize_split(args.data, args.runs / "split", test_fraction=0.2, seed=0)
    extra = {"schedule": args.schedule} if args.schedule else {}
    if args.teacher:
        extra |= {"kd": KDConfig(args.kd_temperature, args.kd_alpha, teachers=tuple(args.teacher))}
    config = TrainConfig(model=args.model, data=pool, pretrained=True, img_size=args.img_size, epochs=args.epochs,
                         batch_size=args.batch_size, val_split=0.0, device=args.device, out=args.runs / args.name,
                         workers=0, resize=args.resize, **extra)
    t0 = time.perf_counter()
    result = train_classifier(config)
    seconds = time.perf_counter() - t0
    test_eval = evaluate_artifact(result.best_checkpoint, test)
    record = {
        "command": "python benchmarks/finetune_trashnet.py " + " ".join(argv or sys.argv[1:]),
        "split": {"pool": str(pool), "test": str(test), "test_images": test_eval.metrics.n, "seed": 0, "test_fraction": 0.2},
        "config": config.to_dict(), "checkpoint": str(result.best_checkpoint), "macs": result.macs, "params": result.params,
        "train_seconds": round(seconds, 1), "seconds_per_epoch": round(seconds / args.epochs, 1),
        "test_macro_f1": test_eval.metrics.macro_f1, "test_accuracy": test_eval.metrics.accuracy,
        "test_per_class_f1": test_eval.metrics.per_class_f1, "machine": machine_info(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{args.name}: test macro-F1 {test_eval.metrics.macro_f1:.4f} on {test_eval.metrics.n} held-out images "
          f"({result.macs / 1e6:.1f} M MACs, {seconds / args.epochs:.1f} s/epoch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
