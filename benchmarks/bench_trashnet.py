"""Bench benchmark on TrashNet's validation split (stratified 80/20, seed 0), ONNX Runtime on this CPU.

The compact student (FP32 and INT8) against the resnet18d baseline at 224 px, both trained by
benchmarks/train_trashnet.py: engine latency at batch 1 and 32 (interleaved), submit time over the
val images vs a decode-only pass, macro-F1 and the competition score.

  python benchmarks/bench_trashnet.py --student runs/bench/kd/best.pt --baseline runs/bench/baseline/best.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from edgeopt.bench.harness import BenchConfig, bench_artifacts
from edgeopt.quant.calibrate import calibrate_onnx
from edgeopt.export.onnx import export_onnx

sys.path.insert(0, str(Path(__file__).parent))
from quantize_trashnet import materialise_split  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/trashnet"))
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, required=True, help="resnet18d checkpoint at 224 px")
    parser.add_argument("--method", default="entropy")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--submit-runs", type=int, default=5, help="rounds of decode-only + full passes (medians)")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/bench_trashnet.json"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="edgeopt-bench-"))
    train_root, val_root = materialise_split(args.data, work)
    fp32 = export_onnx(args.student, work / "student.onnx", data=val_root).path
    int8 = calibrate_onnx(fp32, train_root, work / "student.int8.onnx", num_images=512, method=args.method,
                          calibration_dir=work / "calibration").path
    base = export_onnx(args.baseline, work / "baseline_resnet18d.onnx", data=val_root).path
    # INT8 timed with ORT's real int8 kernels; its F1 here is therefore the kernels' F1 (see notes)
    report = bench_artifacts(BenchConfig(artifacts=(fp32, int8), baseline=str(base), data=val_root, batch_sizes=(1, 32),
                                   runs=args.runs, warmup=10, workers=args.workers, out=work / "out",
                                   submit_runs=args.submit_runs))
    rows = {r.name: r for r in report.rows}
    student, base_row = rows["student.onnx"], rows[f"baseline {base.name}"]
    summary = {
        "student_latency_ratio_b1": student.latency[1].p50_ms / base_row.latency[1].p50_ms,
        "student_int8_latency_ratio_b1": rows["student.int8.onnx"].latency[1].p50_ms / base_row.latency[1].p50_ms,
        "student_submit_over_decode": student.submit.seconds / student.submit.decode_seconds,
        "student_int8_submit_over_decode": rows["student.int8.onnx"].submit.seconds / rows["student.int8.onnx"].submit.decode_seconds,
    }
    result = {"summary": summary, **report.to_dict()}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2, default=str))
    for r in report.rows:
        print(f"{r.name:28s} {r.precision:5s} F1 {r.f1 if r.f1 is None else round(r.f1, 4)}  b1 p50 {r.latency[1].p50_ms:.3f} ms  "
              f"b32 p50 {r.latency[32].p50_ms:.2f} ms  submit {r.submit.seconds:.2f}s (decode {r.submit.decode_seconds:.2f}s)  "
              f"ratio {r.time_ratio:.3f}  score {r.score_time if r.score_time is None else round(r.score_time, 3)}")
    print(json.dumps(summary, indent=2))
    for note in report.notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
