"""Where a teacher's CPU epoch goes: decoding, the training views, and the training step by threads, batch and arithmetic.

The teacher ``optimize`` fine-tunes (Lite0 at 224 px on TrashNet's pool) costs most of its CPU time.
This times its parts as ``train`` runs them, on the pool of the split the other benchmarks use:

- ``decode``: reading every pool image once into the view cache (once per run);
- ``views``: the DataLoader making random-resized, flipped, jittered training views from that cache (per epoch);
- ``step``: forward, backward and optimizer step on one batch of views, for each setting in ``--steps``
  (threads, batch size, channels-last, bf16 autocast where the CPU has bf16 units), ``--repeats`` times
  after one warm-up step; reported per image.

Each row's epoch estimate is ``views + step`` per image times the pool. Figures from shared cores are
upper bounds; compare rows of one run only.

  python benchmarks/teacher_epoch_profile.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from edgeopt.bench.machine import machine_info
from edgeopt.data.folder import materialize_split, scan_folder
from edgeopt.data.loaders import cached_datasets
from edgeopt.models import create_model
from edgeopt.models.factory import preset_for_model

RESULTS = Path(__file__).resolve().parent / "results"
# (threads, batch, channels_last, bf16)
DEFAULT_STEPS = "2,64,0,0;1,64,0,0;2,32,0,0;2,16,0,0;2,64,1,0;2,64,1,1"


def _step_seconds(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, threads: int, channels_last: bool,
                  bf16: bool, repeats: int) -> list[float]:
    torch.set_num_threads(threads)
    net = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format).train()
    x = images.contiguous(memory_format=torch.channels_last) if channels_last else images.contiguous()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:  # the first step is warm-up (allocations, oneDNN primitive creation)
            times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "trashnet")
    parser.add_argument("--runs", type=Path, default=Path("runs/teacher_profile"))
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", default=DEFAULT_STEPS, help="THREADS,BATCH,CHANNELS_LAST,BF16 rows separated by ;")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="teacher_epoch_profile")
    args = parser.parse_args(argv)
    from edgeopt.train.soft_labels import teacher_precision

    pool, _ = materialize_split(args.data, args.runs / "split", test_fraction=0.2, seed=0)
    scan = scan_folder(pool)
    preprocess = preset_for_model(args.model, args.size)
    t0 = time.perf_counter()
    train_ds, _ = cached_datasets(scan, scan_folder(pool).subset([]), preprocess, args.size, 0.6, 0, brightness=0.2)
    decode = time.perf_counter() - t0
    loader = torch.utils.data.DataLoader(train_ds, batch_size=64, shuffle=True, num_workers=0)
    t0 = time.perf_counter()
    batches = [batch for _, batch in zip(range(4), loader)]
    views = (time.perf_counter() - t0) / sum(len(b[1]) for b in batches)
    record = {"command": "python benchmarks/teacher_epoch_profile.py " + " ".join(argv or sys.argv[1:]),
              "machine": machine_info(), "model": f"{args.model}@{args.size}", "pool_images": len(scan.samples),
              "decode_seconds": round(decode, 1), "views_ms_per_image": round(views * 1e3, 2), "steps": []}
    print(f"decode {len(scan.samples)} images into the cache: {decode:.1f} s (once per run); "
          f"training views: {views * 1e3:.2f} ms/image")
    bf16_ok = teacher_precision("auto", torch.device("cpu")) == "bf16"
    for row in args.steps.split(";"):
        threads, batch, channels_last, bf16 = (int(v) for v in row.split(","))
        if bf16 and not bf16_ok:
            print(f"skip {row}: this CPU has no bf16 units")
            continue
        model, _ = create_model(args.model, len(scan.classes), pretrained=False)
        images = torch.cat([b[0] for b in batches])[:batch].float()
        labels = torch.cat([b[1] for b in batches])[:batch]
        times = _step_seconds(model, images, labels, threads, bool(channels_last), bool(bf16), args.repeats)
        per_image = statistics.median(times) / batch
        epoch = (per_image + views) * len(scan.samples)
        entry = {"threads": threads, "batch": batch, "channels_last": bool(channels_last), "bf16": bool(bf16),
                 "step_ms_per_image": round(per_image * 1e3, 2), "epoch_seconds_estimate": round(epoch, 1),
                 "views_share": round(views / (views + per_image), 3), "step_seconds": [round(t, 3) for t in times]}
        record["steps"].append(entry)
        print(f"threads {threads} batch {batch:3d} channels-last {bool(channels_last)!s:5} bf16 {bool(bf16)!s:5}: "
              f"{per_image * 1e3:7.2f} ms/image step, epoch ~{epoch:.0f} s (views {entry['views_share']:.0%})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
