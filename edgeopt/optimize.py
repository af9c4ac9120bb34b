"""``edgeopt optimize``: from a folder of crops and a budget to a benchmarked INT8 model, in one run folder.

The steps, each a stage edgeopt already has, in ``OUT/``:

1. ``split/``: a test split held out of everything (``test_fraction``), so the report's figures come
   from images nothing trained on or was chosen on (or ``test``, a folder of its own);
2. ``teacher/``: a pretrained teacher fine-tuned at its native resolution on the pool (or ``teacher``);
3. ``soft-labels.bank``: the teacher's soft labels of ``views`` augmented views per pool image;
4. ``search/``: the Optuna search of students from the bank, within ``max_macs``; the chosen point's
   final run on the pool less a held-out slice, and its INT8 by PTQ or QAT, whichever loses less on
   that slice (``edgeopt.quant.int8_path``), within ``max_f1_drop`` where it can;
5. ``deploy/``: the INT8 model in the form the target runs: a TensorRT engine where TensorRT and
   an NVIDIA GPU are present, else the INT8 ONNX for ONNX Runtime's CPU kernels (``--target cpu``,
   exact on any x86 CPU; the TensorRT-form Q/DQ model saturates on CPUs without VNNI);
6. ``bench/``: the FP32 student and the deployed INT8 model against the baseline on the test split;
7. ``report.md`` and ``report.json``: what every step produced and measured.

Every step records its inputs (hashes and settings) in ``OUT/steps/<step>.json`` when it finishes; a
rerun skips a step whose record matches and whose outputs are still there, and reruns it (and what
follows) when its inputs changed. Steps that are resumable inside (training, the bank, the search)
continue where an interrupted run stopped.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeopt.artifacts import atomic_write_json, sha256_file
from edgeopt.convert import convert
from edgeopt.errors import ConfigError
from edgeopt.search import BANK_FINAL_EPOCHS

TARGETS = ("auto", "tensorrt", "cpu")


@dataclasses.dataclass(frozen=True)
class OptimizeConfig:
    data: Path
    out: Path = Path("runs/optimize")
    test: Path | None = None  # a labelled folder to report on; default: test_fraction of --data held out
    test_fraction: float = 0.2
    teacher: Path | None = None  # an existing teacher checkpoint; default: fine-tune teacher_model
    teacher_model: str = "tf_efficientnet_lite0"
    teacher_size: int = 224
    teacher_epochs: int = 4
    views: int = 20
    backbones: tuple[str, ...] = ("mobilenet_v2",)
    sizes: tuple[int, ...] = (32, 48, 64)
    max_prune: float = 0.0
    trials: int = 6
    epochs: int = 12
    final_epochs: int = BANK_FINAL_EPOCHS  # from a bank an epoch costs the student alone
    max_macs: int | None = None
    pretrained: bool = True
    max_f1_drop: float = 0.01
    int8_holdout: float = 0.1
    adaround: bool = True
    qat_epochs: int = 3
    target: str = "auto"
    baseline: str = "resnet18d"
    baseline_f1: float = 0.884
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "out", Path(self.out))
        for name in ("test", "teacher"):
            value = getattr(self, name)
            object.__setattr__(self, name, Path(value) if value is not None else None)
        object.__setattr__(self, "backbones", tuple(self.backbones))
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))
        if self.target not in TARGETS:
            raise ConfigError(f"target {self.target!r} is unknown: use one of {', '.join(TARGETS)}")
        if self.test is None and not 0.05 <= self.test_fraction <= 0.5:
            raise ConfigError(f"test_fraction {self.test_fraction}: hold out 0.05..0.5 of the data for the report")
        for name in ("teacher_epochs", "views", "trials", "epochs", "final_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)} must be at least 1")

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def read_yaml_config(path: Path, overrides: dict[str, Any]) -> OptimizeConfig:
    """An ``OptimizeConfig`` from a YAML file (keys as the flags, ``-`` or ``_``), ``overrides`` on top;
    an unknown key is a one-line error with the closest known one."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a readable YAML file ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings (key: value), got {type(raw).__name__}")
    known = OptimizeConfig.fields()
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(f"{path}: unknown setting {key!r}" + (f"; did you mean {close[0].replace('_', '-')!r}?" if close else
                                                                    f"; known: {', '.join(k.replace('_', '-') for k in known)}"))
        settings[name] = value
    settings.update(overrides)
    if "max_macs" in settings and isinstance(settings["max_macs"], str):
        from edgeopt.models.complexity import parse_macs

        settings["max_macs"] = parse_macs(settings["max_macs"])
    for name in ("backbones", "sizes"):
        if isinstance(settings.get(name), str):
            settings[name] = tuple(v.strip() for v in settings[name].split(",") if v.strip())
    if "data" not in settings:
        raise ConfigError(f"{path}: no 'data' (the folder of <class>/<image> crops)")
    return OptimizeConfig(**settings)


class _Steps:
    """Each finished step's record (``OUT/steps/NAME.json``): its inputs and outputs."""

    def __init__(self, out: Path, log: Callable[[str], None]) -> None:
        self.dir, self.log = out / "steps", log
        self.stale = False  # once a step reruns, every later step does too

    def done(self, name: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
        path = self.dir / f"{name}.json"
        if self.stale or not path.is_file():
            return None
        record = json.loads(path.read_text())
        outputs_exist = all(Path(p).exists() for p in record.get("files", []))
        if record.get("inputs") != json.loads(json.dumps(inputs)) or not outputs_exist:
            return None
        self.log(f"{name}: done in an earlier run, inputs unchanged: skipped")
        return record["outputs"]

    def finish(self, name: str, inputs: dict[str, Any], outputs: dict[str, Any], files: list[str]) -> dict[str, Any]:
        atomic_write_json(self.dir / f"{name}.json", {"inputs": inputs, "outputs": outputs, "files": files})
        return outputs

    def rerun(self) -> None:
        self.stale = True


def _folder_hash(root: Path) -> str:
    """Names, sizes and modification times of every file under ``root`` (cheap; changes when images do)."""
    digest = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            digest.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def tensorrt_available() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    import torch

    return torch.cuda.is_available()


@dataclasses.dataclass
class OptimizeResult:
    report: Path
    record: dict[str, Any]


def run_optimize(config: OptimizeConfig, log: Callable[[str], None] = print) -> OptimizeResult:
    from edgeopt.data.folder import materialize_split

    c = config
    c.out.mkdir(parents=True, exist_ok=True)
    steps = _Steps(c.out, log)
    record: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                                         for k, v in dataclasses.asdict(c).items()}}
    t_start = time.perf_counter()

    # 1. the test split, held out of everything
    if c.test is not None:
        pool, test = c.data, c.test
    else:
        inputs = {"data": str(c.data), "files": _folder_hash(c.data), "test_fraction": c.test_fraction}
        done = steps.done("split", inputs)
        if done is None:
            steps.rerun()
            import shutil

            shutil.rmtree(c.out / "split", ignore_errors=True)
            pool, test = materialize_split(c.data, c.out / "split", test_fraction=c.test_fraction, seed=0)
            done = steps.finish("split", inputs, {"pool": str(pool), "test": str(test)}, [str(pool), str(test)])
        pool, test = Path(done["pool"]), Path(done["test"])
    record["split"] = {"pool": str(pool), "test": str(test), "note": "the test split trains, selects and judges nothing"}
    log(f"[1/6] pool {pool}, test split {test}")

    # 2. the teacher
    teacher = _teacher(c, pool, steps, log)
    record["teacher"] = teacher
    # 3. the soft-label bank (make_bank reuses a complete bank and resumes a partial one)
    from edgeopt.train.soft_labels import SoftLabelConfig, make_bank

    bank_path = c.out / "soft-labels.bank"
    log(f"[3/6] soft-label bank: {c.views} views per pool image -> {bank_path}")
    bank = make_bank(SoftLabelConfig(teachers=[Path(teacher["checkpoint"])], data=pool, out=bank_path, views=c.views,
                                     scale_min=0.6, brightness=0.2, device=c.device))
    record["bank"] = {"path": str(bank_path), "images": bank.images, "views": bank.views, "bytes": bank.bytes,
                      "reused": bank.reused, "seconds": round(bank.seconds, 1)}
    # 4. search, final run, INT8 by PTQ or QAT
    record["search"] = _search(c, pool, bank_path, steps, log)
    # 5. the INT8 model in the target's form
    record["deploy"] = _deploy(c, pool, record["search"], steps, log)
    # 6. bench against the baseline on the test split
    record["bench"] = _bench(c, test, record, steps, log)
    record["seconds"] = round(time.perf_counter() - t_start, 1)
    from edgeopt.bench.machine import machine_info

    record["machine"] = machine_info()
    atomic_write_json(c.out / "report.json", record)
    report = write_markdown(record, c.out / "report.md")
    log(f"report -> {report}")
    return OptimizeResult(report, record)


REPO_MODELS = Path(__file__).resolve().parents[1] / "models"


def run_demo(out: Path = Path("demo"), data: Path | None = None, epochs: int = 12,
             log: Callable[[str], None] = print) -> OptimizeResult:
    """``edgeopt demo``: ``optimize`` on the embedded synthetic dataset (or ``data``), with budgets a CPU
    runs in minutes: a small teacher from scratch, a tiny YAML student searched at two sizes, INT8
    with an accuracy budget, the target's form, the bench against resnet18d, the report."""
    from edgeopt.data.synthetic import render_synthetic

    out = Path(out)
    if data is None:  # rendered once: a rerun finds the same files (same mtimes) and skips the finished steps
        data = out / "data"
        if not (data / "dataset.json").is_file():
            data = render_synthetic(data, per_class=40, seed=0)
        log(f"the SYNTHETIC demo dataset: {data} (figures from it say nothing about real images)")
    config = OptimizeConfig(data=Path(data), out=out, teacher_model="mobilenetv3_small_075", teacher_size=64,
                            teacher_epochs=epochs, pretrained=False, views=2 * epochs, backbones=(str(REPO_MODELS / "tiny_cnn.yaml"),),
                            sizes=(32, 48), trials=2, epochs=epochs, final_epochs=2 * epochs, max_f1_drop=0.02, adaround=False,
                            qat_epochs=2, batch_size=32, test_fraction=0.25)
    return run_optimize(config, log=log)


def _teacher(c: OptimizeConfig, pool: Path, steps: _Steps, log: Callable[[str], None]) -> dict[str, Any]:
    if c.teacher is not None:
        log(f"[2/6] teacher: {c.teacher} (given)")
        return {"checkpoint": str(c.teacher), "given": True}
    inputs = {"model": c.teacher_model, "size": c.teacher_size, "epochs": c.teacher_epochs, "pretrained": c.pretrained,
              "pool": _folder_hash(pool), "seed": c.seed}
    done = steps.done("teacher", inputs)
    if done is not None:
        return done
    steps.rerun()
    from edgeopt.train.loop import TrainConfig, train_classifier

    folder = c.out / "teacher"
    log(f"[2/6] teacher: {c.teacher_model} at {c.teacher_size} px, {c.teacher_epochs} epochs on the pool -> {folder}")
    result = train_classifier(TrainConfig(model=c.teacher_model, data=pool, out=folder, pretrained=c.pretrained,
                                          img_size=c.teacher_size, epochs=c.teacher_epochs, val_split=0.0, device=c.device,
                                          seed=c.seed, batch_size=c.batch_size, resume=(folder / "last.pt").exists()))
    outputs = {"checkpoint": str(result.best_checkpoint), "model": c.teacher_model, "img_size": c.teacher_size,
               "macs": result.macs, "seconds": round(result.seconds, 1), "given": False}
    return steps.finish("teacher", inputs, outputs, [str(result.best_checkpoint)])


def _search(c: OptimizeConfig, pool: Path, bank: Path, steps: _Steps, log: Callable[[str], None]) -> dict[str, Any]:
    from edgeopt.train.distill import KDConfig
    from edgeopt.quant.int8_path import Int8PathConfig
    from edgeopt.search import SearchConfig, SearchSpace, run_search

    inputs = {"bank": sha256_file(bank), "backbones": list(c.backbones), "sizes": list(c.sizes), "max_prune": c.max_prune,
              "trials": c.trials, "epochs": c.epochs, "final_epochs": c.final_epochs, "max_macs": c.max_macs,
              "pretrained": c.pretrained, "max_f1_drop": c.max_f1_drop, "int8_holdout": c.int8_holdout, "adaround": c.adaround,
              "qat_epochs": c.qat_epochs, "seed": c.seed}
    done = steps.done("search", inputs)
    if done is not None:
        return done
    steps.rerun()
    log(f"[4/6] search: {c.trials} trials of {', '.join(c.backbones)} at {c.sizes} px from the bank, "
        f"then the final run ({c.final_epochs} epochs) and INT8 within a macro-F1 drop of {c.max_f1_drop}")
    config = SearchConfig(data=pool, out=c.out / "search", space=SearchSpace(backbones=c.backbones, sizes=c.sizes,
                                                                             max_prune=c.max_prune),
                          trials=c.trials, epochs=c.epochs, final_epochs=c.final_epochs, max_macs=c.max_macs,
                          kd=KDConfig(soft_labels=bank), pretrained=c.pretrained, baseline=c.baseline, baseline_f1=c.baseline_f1,
                          int8=Int8PathConfig(max_drop=c.max_f1_drop, holdout=c.int8_holdout, adaround=c.adaround,
                                              qat_epochs=c.qat_epochs),
                          batch_size=c.batch_size, seed=c.seed, device=c.device, workers=0)
    result = run_search(config, log=log)
    if result.final is None:
        from edgeopt.errors import VerificationError

        raise VerificationError("the search finished no trial, so there is nothing to deploy: see the trial errors above")
    outputs = {"chosen_trial": result.chosen.number, "params": result.chosen.params, "val_macro_f1": result.chosen.val_macro_f1,
               "trials": len(result.trials), "pareto": str(result.report), "final": result.final}
    return steps.finish("search", inputs, outputs, [result.final["onnx"], result.final["int8"]["onnx"]])


def _deploy(c: OptimizeConfig, pool: Path, search: dict[str, Any], steps: _Steps, log: Callable[[str], None]) -> dict[str, Any]:
    final = search["final"]
    target = c.target if c.target != "auto" else ("tensorrt" if tensorrt_available() else "cpu")
    inputs = {"fp32": sha256_file(final["onnx"]), "int8": sha256_file(final["int8"]["onnx"]), "target": target}
    done = steps.done("deploy", inputs)
    if done is not None:
        return done
    steps.rerun()
    folder = c.out / "deploy"
    folder.mkdir(parents=True, exist_ok=True)
    if target == "tensorrt":
        from edgeopt.trt.plan import BuildOptions
        from edgeopt.trt.verify import VerifyConfig

        int8 = final["int8"]
        # the engine may lose at most 0.01 more than its Q/DQ model did on the same held-out slice
        budget = max(c.max_f1_drop, int8["candidates"][int8["chosen"]]["drop"] + 0.01)
        log(f"[5/6] deploy: TensorRT INT8 engine of {int8['onnx']}, verified on {int8['judged_on']}")
        path = convert(int8["onnx"], "engine", folder / "model.int8.engine", log=log, build=BuildOptions("int8"),
                       verify=VerifyConfig(Path(int8["judged_on"]), max_f1_drop=budget)).path
        how = (f"TensorRT engine built from the chosen INT8 Q/DQ model, verified against the FP32 ONNX on the held-out "
               f"slice (macro-F1 drop within {budget:.3f})")
    else:
        log("[5/6] deploy: no TensorRT with a GPU here, so INT8 for ONNX Runtime's CPU kernels (`target` cpu)")
        path = convert(final["onnx"], "int8-cpu", folder / "model.cpu-int8.onnx", log=log, data=pool).path
        how = ("ONNX Runtime CPU kernels (`target` cpu: QOperator, 7-bit weights, exact on any x86 CPU); the TensorRT-form "
               "INT8 model stays in the search folder for a GPU machine")
    return steps.finish("deploy", inputs, {"target": target, "artifact": str(path), "how": how}, [str(path)])


def _bench(c: OptimizeConfig, test: Path, record: dict[str, Any], steps: _Steps, log: Callable[[str], None]) -> dict[str, Any]:
    from edgeopt.bench.harness import BenchConfig, run_bench
    from edgeopt.runtime.evaluate import evaluate_artifact

    fp32, deployed = record["search"]["final"]["onnx"], record["deploy"]["artifact"]
    inputs = {"fp32": sha256_file(fp32), "deployed": sha256_file(deployed), "test": _folder_hash(test), "baseline": c.baseline,
              "baseline_f1": c.baseline_f1, "teacher": sha256_file(record["teacher"]["checkpoint"])}
    done = steps.done("bench", inputs)
    if done is not None:
        return done
    steps.rerun()
    log(f"[6/6] bench: the student FP32 and deployed INT8 against {c.baseline} on the test split {test}")
    folder = c.out / "bench"
    report = run_bench(BenchConfig(artifacts=(Path(fp32), Path(deployed)), baseline=c.baseline, baseline_f1=c.baseline_f1,
                                   data=test, batch_sizes=(1, 32), runs=30, warmup=5, out=folder, json_path=folder / "bench.json",
                                   plot_path=folder / "bench.png", device="cpu"))
    teacher_f1 = evaluate_artifact(record["teacher"]["checkpoint"], test).metrics.macro_f1
    outputs = {"json": str(folder / "bench.json"), "plot": str(folder / "bench.png"), "time_basis": report.time_basis,
               "teacher_test_macro_f1": round(teacher_f1, 4), "notes": report.notes,
               "rows": [{"label": r.name, "backend": r.backend, "precision": r.precision, "macs": r.macs,
                         "test_macro_f1": None if r.f1 is None else round(r.f1, 4),
                         "latency_b1_p50_ms": round(r.latency[1].p50_ms, 3) if 1 in r.latency else None,
                         "score_time": r.score_time, "score_macs": r.score_macs, "baseline": r.is_baseline} for r in report.rows]}
    return steps.finish("bench", inputs, outputs, [str(folder / "bench.json")])


def write_markdown(record: dict[str, Any], path: Path) -> Path:
    """The run's report: what each step produced and measured (test-split figures are marked so)."""
    from edgeopt.artifacts import atomic_path

    s, b, d = record["search"], record["bench"], record["deploy"]
    final, int8 = s["final"], s["final"]["int8"]
    lines = ["# edgeopt optimize report", "",
             f"- data: pool `{record['split']['pool']}`, test split `{record['split']['test']}` "
             "(it trained, selected and judged nothing: every test figure below is from it)",
             f"- teacher: `{record['teacher']['checkpoint']}`, test macro-F1 **{b['teacher_test_macro_f1']:.4f}**",
             f"- soft-label bank: {record['bank']['images']} images x {record['bank']['views']} views, "
             f"{record['bank']['bytes'] / 1e6:.1f} MB (`{record['bank']['path']}`)",
             f"- search: {s['trials']} trials; chosen trial {s['chosen_trial']} ({s['params']}), validation macro-F1 "
             f"{s['val_macro_f1']:.4f} (the split that chose it); `{s['pareto']}`",
             f"- final run: {final['epochs']} epochs on `{final['trained_on']}`, {final['macs'] / 1e6:.1f} M MACs; {final['selection']}",
             "", "## INT8", "",
             f"Judged on `{int8['judged_on']}` ({int8['note']}); budget: a macro-F1 drop of at most {int8['max_drop']}.", "",
             "| way | FP32 | INT8 | drop | top-1 agreement | chosen |", "| --- | --- | --- | --- | --- | --- |"]
    for way, cand in int8["candidates"].items():
        lines.append(f"| {way} | {cand['f1_fp32']:.4f} | {cand['f1_int8']:.4f} | {cand['drop']:.4f} | {cand['top1_agreement']:.1%} | "
                     f"{'yes' if way == int8['chosen'] else ''} |")
    lines += ["", f"Deployed for **{d['target']}**: `{d['artifact']}` ({d['how']}).", "",
              f"## Bench (test split; time: {b['time_basis']})", "",
              "| artifact | backend | precision | MACs | test macro-F1 | batch-1 p50 ms | score (time) | score (MACs) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in b["rows"]:
        f1 = "–" if r["test_macro_f1"] is None else f"{r['test_macro_f1']:.4f}"
        macs = "–" if not r["macs"] else f"{r['macs'] / 1e6:.1f} M"
        lat = "–" if r["latency_b1_p50_ms"] is None else f"{r['latency_b1_p50_ms']:.3f}"
        st = "–" if r["score_time"] is None else f"{r['score_time']:.4f}"
        sm = "–" if r["score_macs"] is None else f"{r['score_macs']:.4f}"
        lines.append(f"| {r['label']} | {r['backend']} | {r['precision']} | {macs} | {f1} | {lat} | {st} | {sm} |")
    lines += [""] + [f"- {n}" for n in b["notes"]] + ["", f"Machine: {record['machine'].get('cpu', '')}; "
                                                     f"{record['seconds']:.0f} s this run.", ""]
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines))
    return path
