"""INT8 that keeps accuracy: post-training Q/DQ per method, per-layer fallback, QAT, and the CPU target.

Figures are macro-F1 on the TrashNet **test split** of `benchmarks/finetune_trashnet.py` (400 images the
checkpoint neither trained on nor was selected on). Calibration uses 512 pool images; the
fallback's sensitivity search (`--max-f1-drop`) uses another 400 pool images (training images of
the checkpoint: the test split stays out of every choice). INT8 Q/DQ accuracy is emulated Q/DQ
(quantize-dequantize around float ops in ONNX Runtime); the CPU target is timed and scored with
ONNX Runtime's real int8 kernels. Latency: batch 1 and 32, median of 200 / 30 runs, on this machine;
the JSON's machine record says whether its CPU has VNNI (``cpu_flags``), which decides what ONNX
Runtime's int8 kernels can do.

  python benchmarks/int8_trashnet.py --checkpoint runs/finetune/finetune_lite0_96/best.pt --split runs/finetune/split
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgeopt.quant.calibrate import calibrate_onnx
from edgeopt.data.folder import materialize_split
from edgeopt.runtime.evaluate import evaluate_artifact
from edgeopt.export.onnx import export_onnx
from edgeopt.quant.fallback import FallbackConfig
from edgeopt.bench.machine import machine_info
from edgeopt.quant.qat import QatConfig, finetune_qat

RESULTS = Path(__file__).resolve().parent / "results"


def latency_ms(path: Path, batch: int, size: int, runs: int) -> float:
    """Median wall time of one ONNX Runtime call (CPU, default threads) at ``batch``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    for _ in range(10):
        session.run(None, {name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--split", type=Path, default=Path("runs/finetune/split"), help="pool/ and test/ from finetune_trashnet.py")
    parser.add_argument("--work", type=Path, default=Path("runs/int8"))
    parser.add_argument("--name", default="int8_trashnet")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.005)
    parser.add_argument("--skip", action="append", default=[], help="ptq, fallback, qat or cpu")
    args = parser.parse_args(argv)
    pool, test = args.split / "pool", args.split / "test"
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    _, eval_part = materialize_split(pool, work / "eval_split", test_fraction=0.25, seed=1)
    fp32 = export_onnx(args.checkpoint, work / "fp32.onnx", data=test).path
    size = int(json.loads((work / "fp32.onnx.json").read_text())["preprocess"]["size"])
    f1_fp32 = evaluate_artifact(fp32, test).metrics.macro_f1
    record: dict = {"command": "python benchmarks/int8_trashnet.py " + " ".join(argv or sys.argv[1:]),
                    "checkpoint": str(args.checkpoint), "test_split": str(test), "eval_data_for_fallback": str(eval_part),
                    "f1_fp32_test": f1_fp32, "rows": [], "machine": machine_info()}

    def row(name: str, path: Path, exec_: str = "emulate", **extra) -> None:
        f1 = evaluate_artifact(path, test, int8_exec=exec_).metrics.macro_f1
        entry = {"name": name, "path": str(path), "f1_test": round(f1, 4), "drop": round(f1_fp32 - f1, 4), **extra}
        record["rows"].append(entry)
        print(json.dumps(entry), flush=True)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")  # after every row

    if "ptq" not in args.skip:
        for method in ("entropy", "minmax", "percentile"):
            q = calibrate_onnx(fp32, pool, work / f"ptq_{method}.onnx", num_images=512, method=method)
            row(f"PTQ {method} (emulated Q/DQ)", q.path)
    if "fallback" not in args.skip:
        t0 = time.perf_counter()
        q = calibrate_onnx(fp32, pool, work / "fallback.onnx", num_images=512, method="entropy",
                           fallback=FallbackConfig(args.budget, eval_part))
        row(f"PTQ entropy + fallback --max-f1-drop {args.budget} (emulated Q/DQ)", q.path,
            float_layers=q.fallback.float_layers, eval_f1=q.fallback.summary(), seconds=round(time.perf_counter() - t0, 1))
    if "qat" not in args.skip:
        t0 = time.perf_counter()
        q = finetune_qat(QatConfig(checkpoint=args.checkpoint, data=pool, out=work / "qat.onnx", epochs=args.qat_epochs))
        row(f"QAT {args.qat_epochs} epochs (emulated Q/DQ)", q.path, seconds=round(time.perf_counter() - t0, 1))
    if "cpu" not in args.skip:
        for target in ("cpu", "cpu-vnni"):
            q = calibrate_onnx(fp32, pool, work / f"{target}.onnx", num_images=512, target=target)
            lat = {f"b{b}_ms": {"fp32": round(latency_ms(fp32, b, size, runs), 3), "int8": round(latency_ms(q.path, b, size, runs), 3)}
                   for b, runs in ((1, 200), (32, 30))}
            row(f"--target {target} (ONNX Runtime int8 kernels)", q.path, exec_="kernels", latency=lat)
        ptq = work / "ptq_entropy.onnx"
        if ptq.exists():
            row("PTQ entropy Q/DQ on ONNX Runtime's int8 kernels", ptq, exec_="kernels",
                latency={"b1_ms": round(latency_ms(ptq, 1, size, 200), 3)})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
