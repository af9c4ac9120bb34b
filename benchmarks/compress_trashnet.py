"""Pruning or Tucker-2 decomposition of the fine-tuned Lite0, scored on the TrashNet test split.

Uses the split and checkpoint of `finetune_trashnet.py`: compress (prune to `--target-macs`, or
decompose with `--ranks energy|vbmf [--pointwise]`), fine-tune on the whole pool (`--val-split 0`,
fixed epochs, distilled from the uncompressed model), score once on the 400 test images, right
after compression and after fine-tuning.

  python benchmarks/compress_trashnet.py --checkpoint runs/finetune/finetune_lite0_96/best.pt --target-macs 20M
  python benchmarks/compress_trashnet.py --checkpoint runs/finetune/finetune_lite0_96/best.pt --decompose --ranks vbmf --pointwise

(Named `prune_trashnet.py` before decomposition was added; its records keep that command.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edgeopt.compress.finetune import FinetuneConfig
from edgeopt.compress.decompose import DecomposeConfig, decompose_checkpoint
from edgeopt.runtime.evaluate import evaluate_artifact
from edgeopt.bench.machine import machine_info
from edgeopt.compress.prune import PruneConfig, prune_checkpoint
from edgeopt.models.complexity import parse_macs

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--split", type=Path, default=Path("runs/finetune/split"))
    parser.add_argument("--decompose", action="store_true", help="Tucker-2 instead of pruning")
    parser.add_argument("--target-macs", default="20M", help="pruning")
    parser.add_argument("--importance", default="l2", help="pruning")
    parser.add_argument("--global", dest="global_pruning", action="store_true", help="pruning")
    parser.add_argument("--ranks", default="energy", help="decomposition: energy or vbmf")
    parser.add_argument("--energy", type=float, default=0.9, help="decomposition")
    parser.add_argument("--pointwise", action="store_true", help="decomposition: 1x1 convolutions too")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=Path, default=Path("runs/prune"))
    parser.add_argument("--name", default=None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.decompose:
        rule = "vbmf" if args.ranks == "vbmf" else f"energy{args.energy}"
        name = args.name or f"decompose_lite0_{rule}{'_pointwise' if args.pointwise else ''}"
    else:
        name = args.name or f"prune_lite0_{args.target_macs}_{args.importance}{'_global' if args.global_pruning else ''}"
    finetune = FinetuneConfig(epochs=args.epochs, val_split=0.0, device=args.device, workers=0 if args.device == "cpu" else None)
    t0 = time.perf_counter()
    if args.decompose:
        result = decompose_checkpoint(DecomposeConfig(checkpoint=args.checkpoint, data=args.split / "pool", out=args.runs / name,
                                                      energy=args.energy, ranks=args.ranks, pointwise=args.pointwise,
                                                      finetune=finetune))
        compressed, params = result.decomposed_checkpoint, None
    else:
        result = prune_checkpoint(PruneConfig(checkpoint=args.checkpoint, data=args.split / "pool", out=args.runs / name,
                                              target_macs=parse_macs(args.target_macs), importance=args.importance,
                                              global_pruning=args.global_pruning, finetune=finetune))
        compressed, params = result.pruned_checkpoint, result.params_after
    seconds = time.perf_counter() - t0
    eval_device = "cuda" if args.device.startswith("cuda") else "cpu"
    metrics = evaluate_artifact(result.best_checkpoint, args.split / "test", device=eval_device).metrics
    right_after = evaluate_artifact(compressed, args.split / "test", device=eval_device).metrics
    record = {"command": "python benchmarks/compress_trashnet.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "checkpoint": str(args.checkpoint), "test_split": str(args.split / "test"),
              "method": "tucker2" if args.decompose else "prune",
              "macs_before": result.macs_before, "macs_after": result.macs_after, "params_after": params,
              "test_macro_f1_right_after_compression": right_after.macro_f1, "test_macro_f1": metrics.macro_f1,
              "epochs": args.epochs, "seconds": round(seconds, 1), "machine": machine_info()}
    if args.decompose:
        record["decomposed_layers"] = len(result.layers)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{name}: {result.macs_after / 1e6:.1f} M MACs, test macro-F1 {right_after.macro_f1:.3f} right after compression, "
          f"{metrics.macro_f1:.3f} after {args.epochs} epochs ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
