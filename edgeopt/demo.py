"""``edgeopt demo``: the whole pipeline on the embedded synthetic dataset (or ``--data``), in minutes on a CPU.

render data -> train a small teacher -> distill a smaller student -> train the resnet18d baseline
briefly -> export -> calibrate INT8 -> build engines where TensorRT exists (else INT8 for ONNX
Runtime's CPU kernels, the form that runs here) -> bench against the baseline -> score table.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

from edgeopt.bench import BenchConfig, BenchReport, run_bench
from edgeopt.calibrate import calibrate_onnx
from edgeopt.data.folder import materialize_split
from edgeopt.data.synthetic import render_synthetic
from edgeopt.distill import KDConfig
from edgeopt.export import export_onnx
from edgeopt.train import TrainConfig, train_classifier

REPO_MODELS = Path(__file__).resolve().parents[1] / "models"


@dataclasses.dataclass
class DemoResult:
    report: BenchReport
    artifacts: dict[str, Path]
    tensorrt: bool


def run_demo(out: Path = Path("demo"), data: Path | None = None, student: str | None = None, teacher: str = "mobilenetv3_small_075",
             epochs: int = 12, img_size: int = 48, log: Callable[[str], None] = print) -> DemoResult:
    """Run every stage once and bench the student (FP32 + INT8) against a briefly trained resnet18d."""
    out = Path(out)
    if student is None:
        student = str(REPO_MODELS / "tiny_cnn.yaml")
    if data is None:
        data = render_synthetic(out / "data", per_class=40, seed=0)
        log(f"[1/7] rendered the SYNTHETIC demo dataset -> {data}")
    else:
        log(f"[1/7] using {data}")
    # headline figures come from images nothing was trained or selected on
    source = data
    data, test = materialize_split(source, out / "split", test_fraction=0.25, seed=0)
    log(f"      held out {sum(1 for _ in test.rglob('*.*'))} images in {test} for the bench; training uses {data}")
    common = dict(data=data, device="auto", seed=0, workers=0, batch_size=32)
    log(f"[2/7] training teacher {teacher} at {img_size + 16} px")
    t = train_classifier(TrainConfig(model=teacher, img_size=img_size + 16, epochs=epochs, lr=3e-3, out=out / "teacher", **common))
    log(f"      teacher val macro-F1 {t.best_macro_f1:.3f}")
    log(f"[3/7] distilling student {Path(student).name} at {img_size} px")
    s = train_classifier(TrainConfig(model=student, img_size=img_size, epochs=epochs * 2, lr=5e-3,
                                     kd=KDConfig(4.0, 0.7, "all", teachers=(t.best_checkpoint,)), out=out / "student", **common))
    log(f"      student val macro-F1 {s.best_macro_f1:.3f} ({s.macs / 1e6:.2f} M MACs)")
    log(f"[4/7] training the resnet18d baseline briefly at {img_size} px")
    b = train_classifier(TrainConfig(model="resnet18d", img_size=img_size, epochs=max(2, epochs // 3), lr=2e-3, out=out / "baseline", **common))
    log(f"      baseline val macro-F1 {b.best_macro_f1:.3f}")
    log("[5/7] exporting to ONNX and calibrating INT8 (Q/DQ)")
    fp32 = export_onnx(s.best_checkpoint, out / "student.onnx", data=data).path
    int8 = calibrate_onnx(fp32, data, out / "student.int8.onnx", num_images=128, batch_size=16, calibration_dir=out / "calibration").path
    artifacts = {"fp32": fp32, "int8": int8}
    has_trt = importlib.util.find_spec("tensorrt") is not None
    if has_trt:
        from edgeopt.trt.build import build_engine
        from edgeopt.trt.plan import BuildOptions

        log("[6/7] building TensorRT FP16 and INT8 engines")
        artifacts["fp16_engine"] = build_engine(fp32, out / "student.fp16.engine", BuildOptions("fp16"), log=log).path
        artifacts["int8_engine"] = build_engine(int8, out / "student.int8.engine", BuildOptions("int8"), log=log).path
        benched = int8
    else:
        # the INT8 form follows where it runs: the TensorRT-form Q/DQ model on ONNX Runtime's CPU int8
        # kernels saturates on CPUs without VNNI, so the CPU bench gets the CPU target's model
        log("[6/7] TensorRT is not installed here: skipping engines; INT8 for ONNX Runtime's CPU kernels (--target cpu) "
            "to bench here (pip install 'edgeopt[tensorrt]' on an NVIDIA GPU machine to build engines)")
        benched = artifacts["cpu_int8"] = calibrate_onnx(fp32, data, out / "student.cpu-int8.onnx", num_images=128, batch_size=16,
                                                         calibration_dir=out / "calibration", target="cpu").path
    log(f"[7/7] benching student FP32 and INT8 against the resnet18d baseline (ONNX Runtime, CPU) on the held-out {test}")
    report = run_bench(BenchConfig(artifacts=(fp32, benched), baseline="resnet18d", baseline_checkpoint=b.best_checkpoint,
                                   data=test, batch_sizes=(1, 32), runs=20, warmup=3, out=out / "bench",
                                   json_path=out / "bench.json", plot_path=out / "bench.png"))
    return DemoResult(report, artifacts, has_trt)
