"""INT8 on the compact students users ship: every post-training method side by side, over seeds.

Students are checkpoints trained on the whole pool of ``soft_labels_trashnet.py``'s split (no
checkpoint selection), e.g. MobileNetV2 at 48 px from the soft-label bank, one per seed. For each
student and each method: calibrate on 512 pool images (TensorRT Q/DQ target), then score the INT8
model on the **test split** (400 images no choice was made on) with emulated Q/DQ: macro-F1, its
drop against FP32, top-1 agreement with FP32 and the mean KL divergence of the softmaxes. The CPU
target (``--target cpu``) is scored on ONNX Runtime's real int8 kernels. The JSON gets every row and
the mean and spread over the students.

The fallback part needs images the model did not train on that are not the test split: a student
is trained on 80 % of the pool (``--judge-epochs``; the other 20 % is its judge slice, held out of
its training) and the fallback runs with the label-free budget (``--max-disagreement``) on 256
judge images; its time is the sensitivity pass's cost. Handing the fallback the pool (the
student's own training images) is refused, and the JSON records the one-line error.

  python benchmarks/int8_students.py --split runs/bank/split --bank runs/bank/views20.bank \\
      --students runs/bank/student_mobilenet_v2_48_e40_s0/best.pt,runs/bank/student_mobilenet_v2_48_e40_s1/best.pt,...
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from edgeopt.quant.calibrate import calibrate_onnx
from edgeopt.data.folder import materialize_split
from edgeopt.errors import ConfigError
from edgeopt.export.onnx import export_onnx
from edgeopt.quant.fallback import FallbackConfig, eval_images
from edgeopt.runtime.judge import ParentJudge
from edgeopt.runtime.scoring import ImageSet
from edgeopt.bench.machine import machine_info
from edgeopt.quant.ptq import PtqConfig

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = {
    "entropy": dict(method="entropy"),
    "percentile": dict(method="percentile"),
    "minmax": dict(method="minmax"),
    "entropy + equalize": dict(method="entropy", ptq=PtqConfig(equalize=True)),
    "entropy + bias correction": dict(method="entropy", ptq=PtqConfig(bias_correction=True)),
    "entropy + adaround": dict(method="entropy", ptq=PtqConfig(adaround=True)),
    "entropy + adaround + bias correction": dict(method="entropy", ptq=PtqConfig(adaround=True, bias_correction=True)),
    "--target cpu (ONNX Runtime int8 kernels)": dict(target="cpu"),
    "qat": {},  # edgeopt qat: --qat-epochs of fake-quantized fine-tuning distilled from the FP32 student itself
}


def _write(record: dict, name: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", type=Path, default=Path("runs/bank/split"))
    parser.add_argument("--students", required=True, help="comma-separated checkpoints (one per seed)")
    parser.add_argument("--work", type=Path, default=Path("runs/int8_students"))
    parser.add_argument("--qat-epochs", type=int, default=5)
    parser.add_argument("--methods", default=",".join(m for m in METHODS if m not in ("entropy + adaround + bias correction", "qat")),
                        help="comma-separated subset of the methods")
    parser.add_argument("--bank", type=Path, default=None, help="soft-label bank for the judge student (else no fallback part)")
    parser.add_argument("--judge-epochs", type=int, default=40)
    parser.add_argument("--max-disagreement", type=float, default=0.02)
    parser.add_argument("--name", default="int8_students")
    args = parser.parse_args(argv)
    pool, test = args.split / "pool", args.split / "test"
    record: dict = {"command": "python benchmarks/int8_students.py " + " ".join(argv or sys.argv[1:]), "machine": machine_info(),
                    "split": {"calibration": f"{pool} (512 images)", "scored_on": f"{test} (test split)"}, "students": []}
    methods = [m for m in args.methods.split(",") if m]
    for index, checkpoint in enumerate(Path(c) for c in args.students.split(",")):
        work = args.work / f"student{index}"
        work.mkdir(parents=True, exist_ok=True)
        fp32 = export_onnx(checkpoint, work / "fp32.onnx", data=test).path
        manifest = json.loads((work / "fp32.onnx.json").read_text())
        from edgeopt.data.presets import Preprocess

        config = FallbackConfig(0.0, test)  # the test split, labelled, to score on
        paths, labels = eval_images(config, manifest["classes"])
        judge = ParentJudge(fp32, ImageSet(paths, labels), classes=manifest["classes"],
                            preprocess=Preprocess.from_dict(manifest["preprocess"]), batch_size=64)
        f1_fp32 = judge.f1_parent
        entry = {"checkpoint": str(checkpoint), "macs": manifest["arch"].get("macs"), "f1_fp32_test": round(f1_fp32, 4), "rows": []}
        record["students"].append(entry)
        for name in methods:
            options = dict(METHODS[name])
            t0 = time.perf_counter()
            if name == "qat":
                from edgeopt.quant.qat import QatConfig, finetune_qat

                q = finetune_qat(QatConfig(checkpoint=checkpoint, data=pool, out=work / "qat.onnx", epochs=args.qat_epochs))
            else:
                q = calibrate_onnx(fp32, pool, work / f"{name.split(' ')[0].strip('-')}_{len(entry['rows'])}.onnx", num_images=512,
                                   **options)
            seconds = time.perf_counter() - t0
            if options.get("target") == "cpu":
                from edgeopt.runtime.evaluate import evaluate_artifact

                result = evaluate_artifact(q.path, test, int8_exec="kernels")
                f1, agree, kl = result.metrics.macro_f1, float("nan"), float("nan")
            else:
                judged = judge.judge(q.path)
                f1, agree, kl = judged.f1_candidate, judged.agreement, judged.mean_kl
            row = {"method": name, "f1_test": round(f1, 4), "drop": round(f1_fp32 - f1, 4), "top1_agreement": round(agree, 4),
                   "kl": round(kl, 5), "seconds": round(seconds, 1)}
            entry["rows"].append(row)
            print(json.dumps({"student": index, **row}), flush=True)
            _write(record, args.name)
    record["summary"] = []
    for name in methods:
        drops = [r["drop"] for s in record["students"] for r in s["rows"] if r["method"] == name]
        agrees = [r["top1_agreement"] for s in record["students"] for r in s["rows"] if r["method"] == name]
        record["summary"].append({"method": name, "drop_mean": round(statistics.mean(drops), 4),
                                  "drop_stdev": round(statistics.stdev(drops), 4) if len(drops) > 1 else 0.0,
                                  "agreement_mean": round(statistics.mean(agrees), 4) if not np.isnan(agrees).any() else None,
                                  "students": len(drops)})
    _write(record, args.name)
    if args.bank is not None:
        record["fallback"] = judge(args, pool, test)
        _write(record, args.name)
    return 0


def judge(args: argparse.Namespace, pool: Path, test: Path) -> dict:
    """A student with a judge slice held out of its training; the fallback measured on that slice."""
    from edgeopt.train.distill import KDConfig
    from edgeopt.train.loop import TrainConfig, train_classifier

    train_part, judge_part = materialize_split(pool, args.work / "judge_split", test_fraction=0.2, seed=1)
    first = Path(args.students.split(",")[0])
    arch = json.loads(Path(str(first) + ".json").read_text())
    size = int(arch["preprocess"]["size"])
    result = train_classifier(TrainConfig(model=arch["arch"]["name"], data=train_part, pretrained=True, img_size=size, val_split=0.0,
                                          epochs=args.judge_epochs, device="cpu", workers=0,
                                          kd=KDConfig(4.0, 0.7, soft_labels=args.bank), out=args.work / "judge_student"))
    work = args.work / "judge"
    work.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(result.best_checkpoint, work / "fp32.onnx", data=test).path
    out: dict = {"student": str(result.best_checkpoint), "trained_on": str(train_part), "judge_slice": str(judge_part)}
    try:
        calibrate_onnx(fp32, pool, work / "refused.onnx", fallback=FallbackConfig(None, pool, max_disagreement=args.max_disagreement))
        out["pool_as_eval_data"] = "accepted (unexpected)"
    except ConfigError as exc:
        out["pool_as_eval_data"] = f"refused: {exc}"
    from edgeopt.runtime.evaluate import evaluate_artifact

    f1_fp32 = evaluate_artifact(fp32, test).metrics.macro_f1
    for name, options in (("entropy", {}),):
        t0 = time.perf_counter()
        q = calibrate_onnx(fp32, pool, work / f"fallback_{len(out)}.onnx", method="entropy",
                           fallback=FallbackConfig(None, judge_part, max_disagreement=args.max_disagreement, eval_images=256),
                           **options)
        f1 = evaluate_artifact(q.path, test, int8_exec="emulate").metrics.macro_f1
        out[name] = {"seconds_total": round(time.perf_counter() - t0, 1), "fallback": q.fallback.summary(),
                     "f1_fp32_test": round(f1_fp32, 4), "f1_int8_test": round(f1, 4), "drop_test": round(f1_fp32 - f1, 4)}
        print(json.dumps({name: out[name]}), flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
