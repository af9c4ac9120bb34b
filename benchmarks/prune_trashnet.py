"""Structured pruning of the fine-tuned Lite0 to a MAC target, scored on the TrashNet test split.

Uses the split and checkpoint of `finetune_trashnet.py`: prune to `--target-macs`, fine-tune on the
whole pool (`--val-split 0`, fixed epochs, distilled from the unpruned model), score once on the
400 test images.

  python benchmarks/prune_trashnet.py --checkpoint runs/finetune/finetune_lite0_96/best.pt --target-macs 20M
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edgeopt.compress import FinetuneOptions
from edgeopt.evaluate import evaluate_artifact
from edgeopt.machine import machine_info
from edgeopt.prune import PruneConfig, parse_macs, prune_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--split", type=Path, default=Path("runs/finetune/split"))
    parser.add_argument("--target-macs", default="20M")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--importance", default="l2")
    parser.add_argument("--global", dest="global_pruning", action="store_true")
    parser.add_argument("--runs", type=Path, default=Path("runs/prune"))
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    name = args.name or f"prune_lite0_{args.target_macs}_{args.importance}{'_global' if args.global_pruning else ''}"
    t0 = time.perf_counter()
    result = prune_checkpoint(PruneConfig(checkpoint=args.checkpoint, data=args.split / "pool", out=args.runs / name,
                                          target_macs=parse_macs(args.target_macs), importance=args.importance,
                                          global_pruning=args.global_pruning,
                                          finetune=FinetuneOptions(epochs=args.epochs, val_split=0.0, device="cpu", workers=0)))
    seconds = time.perf_counter() - t0
    metrics = evaluate_artifact(result.best_checkpoint, args.split / "test").metrics
    pruned_only = evaluate_artifact(result.pruned_checkpoint, args.split / "test").metrics
    record = {"command": "python benchmarks/prune_trashnet.py " + " ".join(argv or sys.argv[1:]),
              "checkpoint": str(args.checkpoint), "test_split": str(args.split / "test"),
              "macs_before": result.macs_before, "macs_after": result.macs_after, "params_after": result.params_after,
              "test_macro_f1_right_after_pruning": pruned_only.macro_f1, "test_macro_f1": metrics.macro_f1,
              "epochs": args.epochs, "seconds": round(seconds, 1), "machine": machine_info()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{name}: {result.macs_after / 1e6:.1f} M MACs, test macro-F1 {pruned_only.macro_f1:.3f} right after pruning, "
          f"{metrics.macro_f1:.3f} after {args.epochs} epochs ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
