"""``edgeopt optimize``: from a folder of crops and a budget to a benchmarked INT8 model, in one run folder.

The steps, each a stage edgeopt already has, in ``OUT/``:

1. ``split/``: a test split held out of everything (``test_fraction``), so the report's figures come
   from images nothing trained on or was chosen on (or ``test``, a folder of its own);
2. ``teacher/``: a pretrained teacher fine-tuned at its native resolution on the pool (or ``teacher``);
3. ``soft-labels.bank``: the teacher's soft labels of ``views`` augmented views per pool image;
4. ``search/``: the Optuna search of students from the bank, within ``max_macs`` (points that cannot
   fit it are never trained); the chosen point's final run on the pool less a held-out slice, and its
   INT8 by PTQ or QAT, whichever loses less on that slice within ``max_f1_drop`` (none over it);
5. ``deploy/``: the model in the form the target runs, itself judged on that slice against
   ``max_f1_drop``: a verified TensorRT engine where TensorRT and an NVIDIA GPU are present, else the
   INT8 ONNX for ONNX Runtime's CPU kernels (``--target cpu``). An INT8 form past the budget is refused
   and the FP32 model is deployed instead, with the reason in the report;
6. ``bench/``: the FP32 student and the deployed model against the baseline on the test split;
7. ``report.md`` and ``report.json``: what every step produced and measured, and how long it took.

Every input is checked before step 1 (``checks.check_inputs``). Each step is skipped, resumed or run
from scratch by the inputs it records (``steps``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeopt.artifacts import manifest_path, sha256_file
from edgeopt.optimize.checks import CheckedInputs, check_inputs
from edgeopt.optimize.config import OptimizeConfig
from edgeopt.optimize.steps import Steps


@dataclasses.dataclass
class OptimizeResult:
    report: Path
    record: dict[str, Any]


def optimize_classifier(config: OptimizeConfig, log: Callable[[str], None] = print, callbacks: Any = None,
                 bank_progress: Callable[[int, int], None] | None = None) -> OptimizeResult:
    """Run (or resume, or finish) the whole pipeline for ``config``; every input checked first.

    ``callbacks``: ``train_classifier``'s progress hooks, for the teacher, every trial and the final run;
    ``bank_progress(done, total)``: the soft-label bank's."""
    from edgeopt.bench.machine import machine_info
    from edgeopt.optimize.report import write_report

    c = config
    checked = check_inputs(c)  # before anything is written
    c.out.mkdir(parents=True, exist_ok=True)
    steps = Steps(c.out, c, log)
    record: dict[str, Any] = {"config": c.as_record(), "seconds_by_step": {}}
    t_start = time.perf_counter()

    def timed(name: str, outputs: dict[str, Any]) -> dict[str, Any]:
        record["seconds_by_step"][name] = outputs.get("seconds")
        return outputs

    pool, test, pool_id, test_id = _split(c, checked, steps, log, timed)
    record["split"] = {"pool": str(pool), "test": str(test), "note": "the test split trains, selects and judges nothing"}
    record["teacher"] = timed("teacher", _teacher(c, pool, pool_id, steps, log, callbacks))
    teacher_sha = sha256_file(record["teacher"]["checkpoint"])
    record["bank"] = timed("bank", _bank(c, pool, pool_id, record["teacher"]["checkpoint"], teacher_sha, steps, log,
                                         bank_progress))
    record["search"] = timed("search", _search(c, checked, pool, pool_id, record["bank"]["path"], steps, log, callbacks))
    record["deploy"] = timed("deploy", _deploy(c, checked, record["search"]["final"], steps, log))
    record["bench"] = timed("bench", _bench(c, test, test_id, record, teacher_sha, steps, log))
    record["seconds"] = round(time.perf_counter() - t_start, 1)
    record["machine"] = machine_info()
    report = write_report(record, c.out)
    log(f"report -> {report}")
    return OptimizeResult(report, record)


def _split(c: OptimizeConfig, checked: CheckedInputs, steps: Steps, log: Callable[[str], None],
           timed: Callable[[str, dict[str, Any]], dict[str, Any]]) -> tuple[Path, Path, str, str]:
    """(pool, test, and content ids of both): ``test`` as given, or a share of ``data`` held out."""
    if c.test is not None:
        log(f"[1/6] pool {c.data}, test folder {c.test} (no image in common, checked by content)")
        return c.data, c.test, checked.data_digest, str(checked.test_digest)
    from edgeopt.data.folder import materialize_split

    inputs = steps.inputs("split", data=checked.data_digest)

    def body(s: Any, resume: bool) -> tuple[dict[str, Any], list[str]]:
        t0 = time.perf_counter()
        pool, test = materialize_split(c.data, c.out / "split", test_fraction=s.test_fraction, seed=0)
        return {"pool": str(pool), "test": str(test), "seconds": round(time.perf_counter() - t0, 1)}, [str(pool), str(test)]

    done = timed("split", steps.run("split", inputs, [c.out / "split"], body))
    log(f"[1/6] pool {done['pool']}, test split {done['test']}")
    split_id = sha256_text(repr(inputs))  # the split is a function of the data's content and the fraction
    return Path(done["pool"]), Path(done["test"]), split_id + ":pool", split_id + ":test"


def sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _teacher(c: OptimizeConfig, pool: Path, pool_id: str, steps: Steps, log: Callable[[str], None],
             callbacks: Any = None) -> dict[str, Any]:
    if c.teacher is not None:
        log(f"[2/6] teacher: {c.teacher} (given)")
        return {"checkpoint": str(c.teacher), "given": True}
    folder = c.out / "teacher"

    def body(s: Any, resume: bool) -> tuple[dict[str, Any], list[str]]:
        from edgeopt.train.loop import TrainConfig, train_classifier

        log(f"[2/6] teacher: {s.teacher_model} at {s.teacher_size} px, {s.teacher_epochs} epochs on the pool -> {folder}")
        result = train_classifier(TrainConfig(model=s.teacher_model, data=pool, out=folder, pretrained=s.pretrained,
                                              img_size=s.teacher_size, epochs=s.teacher_epochs, val_split=0.0, device=s.device,
                                              label_smoothing=s.teacher_label_smoothing, mixup=s.teacher_mixup,
                                              seed=s.seed, batch_size=s.batch_size, resume=resume and (folder / "last.pt").exists()),
                                  callbacks)
        outputs = {"checkpoint": str(result.best_checkpoint), "model": s.teacher_model, "img_size": s.teacher_size,
                   "macs": result.macs, "seconds": round(result.seconds, 1), "given": False}
        return outputs, [str(result.best_checkpoint)]

    return steps.run("teacher", steps.inputs("teacher", pool=pool_id), [folder], body)


def _bank(c: OptimizeConfig, pool: Path, pool_id: str, teacher: str, teacher_sha: str, steps: Steps,
          log: Callable[[str], None], progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    path = c.out / "soft-labels.bank"

    def body(s: Any, resume: bool) -> tuple[dict[str, Any], list[str]]:
        from edgeopt.train.soft_labels import SoftLabelConfig, make_soft_labels

        log(f"[3/6] soft-label bank: {s.views} views per pool image -> {path}")
        # the bank's views follow the run's seed, so runs of several seeds do not share one set of views
        bank = make_soft_labels(SoftLabelConfig(teachers=[Path(teacher)], data=pool, out=path, views=s.views, scale_min=0.6,
                                         brightness=0.2, seed=s.seed, batch_size=s.batch_size, device=s.device),
                         progress=progress)
        return ({"path": str(path), "images": bank.images, "views": bank.views, "bytes": bank.bytes,
                 "seconds": round(bank.seconds, 1)}, [str(path)])

    return steps.run("bank", steps.inputs("bank", teacher=teacher_sha, pool=pool_id),
                     [path, manifest_path(path), path.with_name(path.name + ".partial")], body)


def _search(c: OptimizeConfig, checked: CheckedInputs, pool: Path, pool_id: str, bank: str, steps: Steps,
            log: Callable[[str], None], callbacks: Any = None) -> dict[str, Any]:
    folder = c.out / "search"

    def body(s: Any, resume: bool) -> tuple[dict[str, Any], list[str]]:
        from edgeopt.errors import VerificationError
        from edgeopt.quant.int8_choice import Int8ChoiceConfig
        from edgeopt.search import SearchConfig, search_models
        from edgeopt.train.config import KDConfig

        t0 = time.perf_counter()
        log(f"[4/6] search: {s.trials} trials of {', '.join(checked.space.backbones)} at {list(checked.space.sizes)} px from "
            f"the bank, then the final run ({s.final_epochs} epochs) and INT8 within a macro-F1 drop of {s.max_f1_drop}")
        config = SearchConfig(data=pool, out=folder, space=checked.space, trials=s.trials, epochs=s.epochs,
                              final_epochs=s.final_epochs, bn_recalibrate=s.bn_recalibrate, assistant_size=s.assistant_size,
                              assistant_for=s.assistant_for, assistant_init=s.assistant_init,
                              assistant_epochs=s.assistant_epochs, max_macs=s.max_macs, kd=KDConfig(soft_labels=Path(bank)),
                              pretrained=s.pretrained, baseline=s.baseline, baseline_f1=s.baseline_f1,
                              int8=Int8ChoiceConfig(max_drop=s.max_f1_drop, holdout=s.int8_holdout, adaround=s.adaround,
                                                  qat_epochs=s.qat_epochs),
                              batch_size=s.batch_size, seed=s.seed, device=s.device, workers=0)
        result = search_models(config, log=log, callbacks=callbacks)
        if result.final is None:
            raise VerificationError("the search finished no trial, so there is nothing to deploy: see the trial errors above")
        outputs = {"chosen_trial": result.chosen.number, "params": result.chosen.params,
                   "val_macro_f1": result.chosen.val_macro_f1, "trials": len(result.trials), "pareto": str(result.report),
                   "final": result.final, "seconds": round(time.perf_counter() - t0, 1)}
        files = [result.final["onnx"]] + ([result.final["int8"]["onnx"]] if result.final["int8"]["onnx"] else [])
        return outputs, files

    return steps.run("search", steps.inputs("search", bank=sha256_file(bank), pool=pool_id), [folder], body)


def _deploy(c: OptimizeConfig, checked: CheckedInputs, final: dict[str, Any], steps: Steps,
            log: Callable[[str], None]) -> dict[str, Any]:
    from edgeopt.optimize.deploy import deploy_cpu, deploy_tensorrt

    folder = c.out / "deploy"
    int8 = final["int8"]
    inputs = steps.inputs("deploy", fp32=sha256_file(final["onnx"]), int8=sha256_file(int8["onnx"]) if int8["onnx"] else None,
                          resolved_target=checked.target)

    def body(s: Any, resume: bool) -> tuple[dict[str, Any], list[str]]:
        t0 = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        deploy = deploy_tensorrt if checked.target == "tensorrt" else deploy_cpu
        outputs = deploy(final, folder, s.max_f1_drop, log)
        outputs["seconds"] = round(time.perf_counter() - t0, 1)
        return outputs, [outputs["artifact"]]

    return steps.run("deploy", inputs, [folder], body)


def _bench(c: OptimizeConfig, test: Path, test_id: str, record: dict[str, Any], teacher_sha: str, steps: Steps,
           log: Callable[[str], None]) -> dict[str, Any]:
    fp32, deployed = record["search"]["final"]["onnx"], record["deploy"]["artifact"]
    folder = c.out / "bench"
    inputs = steps.inputs("bench", fp32=sha256_file(fp32), deployed=sha256_file(deployed), test=test_id, teacher=teacher_sha)

    def body(s: Any, resume: bool) -> tuple[dict[str, Any], list[str]]:
        from edgeopt.bench.harness import BenchConfig, bench_artifacts
        from edgeopt.runtime.evaluate import evaluate_artifact

        t0 = time.perf_counter()
        log(f"[6/6] bench: the student FP32 and the deployed model against {s.baseline} on the test split {test}")
        artifacts = (Path(fp32),) if Path(deployed) == Path(fp32) else (Path(fp32), Path(deployed))
        report = bench_artifacts(BenchConfig(artifacts=artifacts, baseline=s.baseline, baseline_f1=s.baseline_f1,
                                       data=test, batch_sizes=(1, 32), runs=30, warmup=5, out=folder, json_path=folder / "bench.json",
                                       plot_path=folder / "bench.png", device="cpu"))
        teacher_f1 = evaluate_artifact(record["teacher"]["checkpoint"], test).metrics.macro_f1
        outputs = {"json": str(folder / "bench.json"), "plot": str(folder / "bench.png"), "time_basis": report.time_basis,
                   "teacher_test_macro_f1": round(teacher_f1, 4), "notes": report.notes,
                   "rows": [{"label": r.name, "backend": r.backend, "precision": r.precision, "macs": r.macs,
                             "test_macro_f1": None if r.f1 is None else round(r.f1, 4),
                             "latency_b1_p50_ms": round(r.latency[1].p50_ms, 3) if 1 in r.latency else None,
                             "score_time": r.score_time, "score_macs": r.score_macs, "baseline": r.is_baseline}
                            for r in report.rows],
                   "seconds": round(time.perf_counter() - t0, 1)}
        return outputs, [str(folder / "bench.json")]

    return steps.run("bench", inputs, [folder], body)


# the YAML models ship inside the package (package data), so the demo runs from any install
SHIPPED_MODELS = Path(__file__).resolve().parents[1] / "models"


def run_demo(out: Path = Path("demo"), data: Path | None = None, epochs: int = 12,
             log: Callable[[str], None] = print, callbacks: Any = None,
             bank_progress: Callable[[int, int], None] | None = None) -> OptimizeResult:
    """``edgeopt demo``: ``optimize`` on the embedded synthetic dataset (or ``data``), with budgets a CPU
    runs in minutes: a small teacher from scratch, a tiny YAML student searched at two sizes, INT8
    with an accuracy budget, the target's form, the bench against resnet18d, the report."""
    from edgeopt.data.synthetic import render_synthetic

    out = Path(out)
    if data is None:  # rendered once (a rerun finds the same images and skips the finished steps)
        data = out / "data"
        if not (data / "dataset.json").is_file():
            data = render_synthetic(data, per_class=40, seed=0)
        log(f"the SYNTHETIC demo dataset: {data} (figures from it say nothing about real images)")
    config = OptimizeConfig(data=Path(data), out=out, teacher_model="mobilenetv3_small_075", teacher_size=64,
                            teacher_epochs=epochs, pretrained=False, views=2 * epochs, backbones=(str(SHIPPED_MODELS / "tiny_cnn.yaml"),),
                            sizes=(32, 48), trials=2, epochs=epochs, final_epochs=2 * epochs, assistant_epochs=epochs,
                            max_f1_drop=0.02, adaround=False,
                            qat_epochs=2, batch_size=32, test_fraction=0.25)
    return optimize_classifier(config, log=log, callbacks=callbacks, bank_progress=bank_progress)
