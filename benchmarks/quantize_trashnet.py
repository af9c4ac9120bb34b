"""Quantization benchmark on TrashNet's validation split (stratified 80/20, seed 0).

For each checkpoint: export FP32 ONNX (parity vs PyTorch on every val image), calibrate INT8 with
each method on the *training* split, evaluate FP32 and INT8 macro-F1 on the val split, and time
ONNX Runtime CPU latency (median of repeated runs after warm-up) at batch 1 and 32. INT8 F1 is
measured twice: with exact Q/DQ arithmetic (what a TensorRT engine of the model computes) and with
ONNX Runtime's CPU int8 kernels (which saturate on AVX2 CPUs without VNNI).

  python benchmarks/quantize_trashnet.py --checkpoint runs/bench/teacher/best.pt --checkpoint runs/bench/kd/best.pt
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeopt.artifacts import read_manifest
from edgeopt.quant.calibrate import calibrate_onnx
from edgeopt.data.folder import scan_folder, split_scan
from edgeopt.data.presets import Preprocess
from edgeopt.runtime.evaluate import evaluate_artifact
from edgeopt.export.onnx import export_onnx
from edgeopt.bench.machine import machine_info
from edgeopt.runtime import open_runner


def materialise_split(data: Path, workdir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Symlink the stratified train/val split into two ImageFolder trees."""
    train, val = split_scan(scan_folder(data), 0.2, seed)
    roots = []
    for name, part in (("train", train), ("val", val)):
        root = workdir / name
        for s in part.samples:
            dest = root / part.classes[s.label] / s.path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                dest.symlink_to(s.path.resolve())
        roots.append(root)
    return roots[0], roots[1]


def latency_ms(path: Path, batch: int, size: int, runs: int, warmup: int = 10) -> float:
    runner = open_runner(path)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    for _ in range(warmup):
        runner.run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/trashnet"))
    parser.add_argument("--checkpoint", type=Path, action="append", required=True)
    parser.add_argument("--methods", default="minmax,entropy,percentile")
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/quantize_trashnet.json"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="edgeopt-quant-"))
    train_root, val_root = materialise_split(args.data, work)
    records = []
    for ckpt in args.checkpoint:
        name = ckpt.parent.name
        size = Preprocess.from_dict(read_manifest(ckpt).preprocess).size
        fp32 = export_onnx(ckpt, work / f"{name}.onnx", data=val_root)
        torch_eval = evaluate_artifact(ckpt, val_root)
        fp32_eval = evaluate_artifact(fp32.path, val_root)
        record = {
            "checkpoint": str(ckpt), "input_size": size, "export_parity": fp32.parity.to_dict(),
            "torch_macro_f1": torch_eval.metrics.macro_f1, "fp32_macro_f1": fp32_eval.metrics.macro_f1,
            "fp32_vs_torch_top1_agreement": float((fp32_eval.predictions == torch_eval.predictions).mean()),
            "latency_ms": {"fp32": {b: latency_ms(fp32.path, b, size, args.runs) for b in (1, 32)}}, "int8": {},
        }
        for method in args.methods.split(","):
            q = calibrate_onnx(fp32.path, train_root, work / f"{name}.{method}.onnx", num_images=args.num_images,
                               method=method, calibration_dir=work / "calibration")
            q_eval = evaluate_artifact(q.path, val_root)  # exact Q/DQ arithmetic: the accuracy TensorRT gets
            q_kernels = evaluate_artifact(q.path, val_root, int8_exec="kernels")  # ORT's CPU int8 kernels on this CPU
            record["int8"][method] = {
                "macro_f1": q_eval.metrics.macro_f1, "delta_f1": q_eval.metrics.macro_f1 - fp32_eval.metrics.macro_f1,
                "ort_int8_kernels_macro_f1": q_kernels.metrics.macro_f1,
                "top1_agreement_with_fp32": float((q_eval.predictions == fp32_eval.predictions).mean()),
                "calibration_images": q.num_images, "size_bytes": q.path.stat().st_size,
            }
            record["latency_ms"][f"int8_{method}"] = {b: latency_ms(q.path, b, size, args.runs) for b in (1, 32)}
            print(f"{name:10s} {method:10s} FP32 F1 {fp32_eval.metrics.macro_f1:.4f}  INT8 F1 {q_eval.metrics.macro_f1:.4f} "
                  f"(ORT CPU int8 kernels {q_kernels.metrics.macro_f1:.4f})", flush=True)
        print(f"{name:10s} latency ms (batch 1 / 32): " + ", ".join(
            f"{k} {v[1]:.2f}/{v[32]:.2f}" for k, v in record["latency_ms"].items()), flush=True)
        records.append(record)
    result = {"machine": machine_info(), "val_images": sum(1 for _ in val_root.rglob("*.jpg")), "models": records}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
