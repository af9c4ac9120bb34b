"""GPU latency benchmark: the student and the resnet18d baseline on the torch CUDA backend.

Batch-1 and batch-256 latency (p50/p90/p99, block-interleaved, device-resident input) for each
torch variant, to find what measurably helps (the bench issue's GPU target: the student's batch-1
latency <= 0.25 ms on an H100); with --data, submit time and F1 over TrashNet's val split too; on
CUDA, each model's energy per image at every batch size from NVML's energy counter (gpu_energy.py;
`pip install 'edgeopt[gpu]'`), recorded with the reason where it cannot be read.

  python benchmarks/bench_gpu.py --student runs/bench/kd/best.pt --baseline runs/bench/baseline/best.pt

Variants: fp32 (eager, channels-last), fp16, fp16_graph (+ CUDA-graph replay), fp16_compile
(torch.compile, frozen weights: BN folded) and fp16_compile_graph (Inductor's CUDA graphs).
`--device cpu --variants fp32,compile` checks the script on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from edgeopt.bench.harness import BenchConfig, bench_artifacts

sys.path.insert(0, str(Path(__file__).parent))
from gpu_energy import energy_per_image, nvml_handle  # noqa: E402
from quantize_trashnet import materialise_split  # noqa: E402

VARIANTS = {
    "fp32": {},
    "compile": {"torch_compile": True},
    "fp16": {"torch_fp16": True},
    "fp16_graph": {"torch_fp16": True, "cuda_graph": True},
    "fp16_compile": {"torch_fp16": True, "torch_compile": True},
    "fp16_compile_graph": {"torch_fp16": True, "torch_compile": True, "cuda_graph": True},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, required=True, help="resnet18d checkpoint at 224 px")
    parser.add_argument("--data", type=Path, default=None, help="TrashNet folder: adds submit time and F1 on its val split")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--variants", default="fp32,fp16,fp16_graph,fp16_compile,fp16_compile_graph")
    parser.add_argument("--batch-sizes", default="1,256")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--target-ms", type=float, default=0.25, help="the student's batch-1 latency target")
    parser.add_argument("--energy-seconds", type=float, default=5.0, help="NVML window per model and batch size (0: skip)")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/bench_gpu.json"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    work = Path(tempfile.mkdtemp(prefix="edgeopt-bench-gpu-"))
    val_root = materialise_split(args.data, work)[1] if args.data else None
    rows, machine = {}, {}
    for variant in args.variants.split(","):
        report = bench_artifacts(BenchConfig(artifacts=(args.student,), baseline=str(args.baseline), data=val_root,
                                       backend="torch", device=args.device, batch_sizes=batch_sizes, runs=args.runs,
                                       warmup=20, out=work / variant, workers=8, **VARIANTS[variant]))
        student, base = report.rows
        rows[variant] = {"student": student.to_dict(), "baseline": base.to_dict(), "notes": report.notes}
        machine = report.machine
        print(f"{variant:20s} " + "  ".join(
            f"b{b}: student {student.latency[b].p50_ms:.3f} ms / baseline {base.latency[b].p50_ms:.3f} ms" for b in batch_sizes)
            + (f"  submit {student.submit.seconds:.2f}s (decode {student.submit.decode_seconds:.2f}s)" if student.submit else ""),
            flush=True)
    energy = measure_energy(args, batch_sizes)
    best = min(rows, key=lambda v: rows[v]["student"]["latency"][str(batch_sizes[0])]["p50_ms"])
    best_ms = rows[best]["student"]["latency"][str(batch_sizes[0])]["p50_ms"]
    summary = {"best_variant_b%d" % batch_sizes[0]: best, "student_p50_ms": best_ms,
               "target_ms": args.target_ms,  # a GPU target: not judged on a CPU dry run
               "target_met": best_ms <= args.target_ms if args.device.startswith("cuda") else None}
    result = {"summary": summary, "variants": rows, "energy": energy, "machine": machine, "device": args.device}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(summary, indent=2))
    return 0


def measure_energy(args: argparse.Namespace, batch_sizes: tuple[int, ...]) -> dict:
    """Energy per image of the student and the baseline (FP16, CUDA graphs: the fastest plain variant)
    at each batch size; on a machine NVML cannot measure, the reason instead of a number."""
    if not args.device.startswith("cuda") or args.energy_seconds <= 0:
        return {"measured": False, "why": f"energy is measured on CUDA only (device {args.device})"}
    handle, why = nvml_handle(int(args.device.partition(":")[2] or 0))
    if handle is None:
        return {"measured": False, "why": why}
    import numpy as np

    from edgeopt.artifacts import read_manifest
    from edgeopt.runtime import open_runner

    out = {"measured": True, "variant": "fp16_graph", "source": "nvmlDeviceGetTotalEnergyConsumption (whole board)"}
    for name, path in (("student", args.student), ("baseline", args.baseline)):
        size = int(read_manifest(path).preprocess["size"])
        runner = open_runner(path, backend="torch", device=args.device, fp16=True, cuda_graph=True)
        out[name] = {}
        for b in batch_sizes:
            batch = np.random.default_rng(0).standard_normal((b, 3, size, size)).astype(np.float32)
            out[name][str(b)] = energy_per_image(runner, batch, handle, args.energy_seconds)
            print(f"energy {name} b{b}: {out[name][str(b)]['millijoules_per_image']:.3f} mJ/image "
                  f"({out[name][str(b)]['mean_watts']:.0f} W)", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
