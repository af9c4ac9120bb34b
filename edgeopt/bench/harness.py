"""``edgeopt bench``: artifacts and their baseline measured in one run, scored, reported."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifacts import artifact_kind, atomic_write_json
from edgeopt.bench.baseline import BaselinePrecision, BaselineSpec, build_baseline
from edgeopt.data.presets import Preprocess
from edgeopt.errors import ConfigError
from edgeopt.plots import plot_f1_latency
from edgeopt.settings import check_settings, setting
from edgeopt.runtime.evaluate import artifact_manifest
from edgeopt.bench.machine import machine_info
from edgeopt.runtime import open_runner
from edgeopt.runtime.ort_runner import Int8Exec
from edgeopt.bench.score import BASELINE_MODEL, score_macs, score_time
from edgeopt.bench.timing import (
    LatencyStats,
    SubmitResult,
    cuda_event_timer,
    measure_interleaved,
    submit_time,
)


@dataclasses.dataclass
class BenchRow:
    name: str
    path: str
    backend: str
    precision: str
    macs: int | None
    params: int | None
    size_mb: float
    latency: dict[int, LatencyStats]
    submit: SubmitResult | None = None
    f1: float | None = None
    is_baseline: bool = False
    input_size: int | None = None
    time_ratio: float | None = None
    score_time: float | None = None
    score_macs: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["latency"] = {str(k): dataclasses.asdict(v) for k, v in self.latency.items()}
        if self.submit is not None:
            d["submit"] = {**dataclasses.asdict(self.submit), "predictions_csv": str(self.submit.predictions_csv),
                           "model_share": self.submit.model_share}
        return d


@dataclasses.dataclass
class BenchReport:
    rows: list[BenchRow]
    time_basis: str  # "submit time" or "batch-1 latency p50"
    notes: list[str]
    machine: dict[str, Any]
    baseline: dict[str, Any] | None = None  # name, input size, precision, how it was made

    def to_dict(self) -> dict[str, Any]:
        return {"time_basis": self.time_basis, "notes": self.notes, "machine": self.machine, "baseline": self.baseline,
                "rows": [r.to_dict() for r in self.rows]}


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Everything ``edgeopt bench`` takes: what to bench, against what, how long, and where to write."""

    artifacts: tuple[Path, ...] = setting(help="Checkpoints, ONNX models or engines.")
    baseline: str | None = setting(BASELINE_MODEL, help="A model name (built at its own input size, FP32; FP16 for engines), an "
                                   "artifact path, or 'none'.")
    baseline_checkpoint: Path | None = setting(None, help="Weights for a named baseline.")
    baseline_f1: float | None = setting(None, low=0.0, low_open=True, high=1.0, help="The baseline's F1 when it has random weights.")
    baseline_size: int | None = setting(None, low=16, high=1024, help="A named baseline's input size (default: its model config's, "
                                        "224 for resnet18d).")
    baseline_precision: BaselinePrecision | None = setting(None, help="fp32, fp16 or int8 (default: fp32; fp16 for engines).")
    data: Path | None = setting(None, help="Folder to classify for submit time (and F1 when labelled).")
    unlabelled: bool = setting(False, help="Time a `data` folder whose sub-folders look like classes other than the model's "
                               "(no F1).")
    backend: str = setting("auto", help="The runner backend (auto: the first its format lists).")
    device: str = setting("cpu", help="cpu or cuda.")
    batch_sizes: tuple[int, ...] = setting((1, 32), low=1, high=65_536, example="1,32,256", help="Comma-separated, e.g. 1,32,256.")
    runs: int = setting(50, low=1, high=1_000_000, help="Timed runs per batch size.")
    warmup: int = setting(10, low=0, high=1_000_000, help="Untimed runs first.")
    workers: int = setting(4, low=1, high=256, help="Decode threads for submit time.")
    submit_runs: int = setting(3, low=1, high=1000, help="Rounds of decode-only + full submit passes; medians reported.")
    out: Path = setting(Path("runs/bench"), help="Folder for the baseline artifacts and predictions CSVs.")
    json_path: Path | None = setting(None, help="Report JSON (with the machine).")
    plot_path: Path | None = setting(None, help="PNG of F1 against latency.")
    int8_exec: Int8Exec = setting(Int8Exec.kernels, help="INT8 ONNX: kernels (ORT's CPU int8 speed) or emulate (exact Q/DQ math).")
    torch_fp16: bool = setting(False, help="Checkpoints on CUDA in FP16.")
    cuda_graph: bool = setting(False, help="Replay captured CUDA graphs (torch on CUDA, TensorRT).")
    torch_compile: bool = setting(False, help="Checkpoints through torch.compile with frozen weights (BN folded).")

    def __post_init__(self) -> None:
        if not self.artifacts:
            raise ConfigError("pass at least one artifact to bench")
        if not self.batch_sizes:
            raise ConfigError("`batch_sizes` is empty: give at least one, e.g. 1,32")
        check_settings(self)
        if (self.torch_fp16 or self.torch_compile) and not any(artifact_kind(a) == "checkpoint" for a in self.artifacts):
            raise ConfigError("`torch_fp16` / `torch_compile` apply to checkpoints (.pt) on the torch backend; "
                              "none was passed (ONNX precision comes from export/calibrate)")
        if self.baseline is None and any(v is not None for v in (self.baseline_checkpoint, self.baseline_size,
                                                                   self.baseline_precision, self.baseline_f1)):
            raise ConfigError("`baseline` none: drop `baseline_checkpoint`/`baseline_size`/`baseline_precision`/`baseline_f1`")


@dataclasses.dataclass
class _Entry:
    """One benched thing with its own identity: two artifacts named best.pt stay two rows."""

    label: str
    path: Path
    is_baseline: bool
    manifest: Any
    runner: Any = None
    preprocess: Preprocess | None = None


def unique_labels(paths: list[Path]) -> list[str]:
    """File names, lengthened with parent folders until no two are the same."""
    depth = 1
    while True:
        labels = ["/".join(Path(p).parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels) or depth > max(len(Path(p).parts) for p in paths):
            return labels if len(set(labels)) == len(labels) else [f"{label} #{i + 1}" for i, label in enumerate(labels)]
        depth += 1


def bench_artifacts(config: BenchConfig, progress: Callable[[int, int], None] | None = None) -> BenchReport:
    """Measure every artifact and the baseline interleaved, run submit time on ``data``, score."""
    c = config
    c.out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    entries = [_Entry(label, p, False, artifact_manifest(p)) for label, p in zip(unique_labels(list(c.artifacts)), c.artifacts)]
    baseline = _add_baseline(c, entries, notes)
    machine = machine_info()
    _open_runners(c, entries, machine, notes)
    sync = _cuda_sync([e.runner for e in entries])
    if sync is not None:
        notes.append("CUDA latency is timed with CUDA events around each call on a device-resident input "
                     "(compute and launch gaps, no host copies); submit time includes the copies")
    rows = [BenchRow(e.label, str(e.path), e.runner.backend, e.runner.precision, e.manifest.arch.get("macs"),
                     e.manifest.arch.get("params"), e.path.stat().st_size / 1e6, {}, is_baseline=e.is_baseline,
                     input_size=e.preprocess.size) for e in entries]
    total, done = len(c.batch_sizes) + (len(entries) if c.data is not None else 0), 0
    step = progress or (lambda done, total: None)  # one step per batch size timed, one per artifact's submit time
    step(done, total)
    rng = np.random.default_rng(0)
    for bs in c.batch_sizes:
        batches = {i: _timed(e.runner, rng.standard_normal((bs, 3, e.preprocess.size, e.preprocess.size)).astype(np.float32))
                   for i, e in enumerate(entries)}
        stats = measure_interleaved(batches, c.runs, c.warmup, sync=sync, timer=cuda_event_timer if sync else None)
        for i, row in enumerate(rows):
            row.latency[bs] = stats[i]
        done += 1
        step(done, total)
    if c.data is not None:
        for i, (row, e) in enumerate(zip(rows, entries)):
            csv_path = c.out / f"{i:02d}_{e.label.replace(' ', '_').replace('/', '_')}.predictions.csv"
            row.submit = submit_time(_submit_runner(e.runner).run, e.manifest.classes, e.preprocess, c.data,
                                     csv_path, batch_size=max(c.batch_sizes), workers=c.workers, runs=c.submit_runs,
                                     unlabelled=c.unlabelled)
            row.f1 = row.submit.macro_f1
            done += 1
            step(done, total)
    _score_rows(c, rows, baseline)
    time_basis = "submit time" if c.data is not None else f"batch-{c.batch_sizes[0]} latency p50"
    report = BenchReport(rows, time_basis, notes, machine, baseline.to_dict() if baseline else None)
    if c.json_path is not None:
        atomic_write_json(c.json_path, report.to_dict())
    if c.plot_path is not None:
        plot_f1_latency(report, c.plot_path, c.batch_sizes[0])
    return report


def _add_baseline(c: BenchConfig, entries: list[_Entry], notes: list[str]) -> Any:
    """Build the baseline in the first artifact's form (kind, classes, resize rule) and add it to ``entries``;
    None without one."""
    if not c.baseline:
        return None
    first = entries[0]
    spec = BaselineSpec(c.baseline, c.baseline_checkpoint, c.baseline_size, c.baseline_precision)
    resize = Preprocess.from_dict(first.manifest.preprocess).resize
    baseline = build_baseline(spec, artifact_kind(first.path), list(first.manifest.classes), resize, c.out / "baseline", c.data)
    entries.append(_Entry(f"baseline {baseline.name}", baseline.path, True, artifact_manifest(baseline.path)))
    notes.append(f"baseline {baseline.name}: {baseline.input_size} px, {baseline.precision.upper()}, {baseline.source}")
    if baseline.random_weights:
        notes.append(f"baseline {baseline.name} has random weights (timing only); its F1 is "
                     + (f"`baseline_f1` {c.baseline_f1}" if c.baseline_f1 is not None else "unknown: pass `baseline_f1` for scores"))
    return baseline


def _open_runners(c: BenchConfig, entries: list[_Entry], machine: dict[str, Any], notes: list[str]) -> None:
    """Each entry's runner with the options its kind takes, and its preprocessing; a note where the CPU's
    int8 kernels make an F1 untrustworthy."""
    for e in entries:
        kind = artifact_kind(e.path)
        options: dict[str, Any] = {
            "onnx": {"int8_exec": c.int8_exec},
            "checkpoint": {"fp16": c.torch_fp16, "cuda_graph": c.cuda_graph, "compile": c.torch_compile},
            "engine": {"cuda_graph": c.cuda_graph},
        }[kind]
        e.runner = open_runner(e.path, backend=c.backend, device=c.device, **options)
        e.preprocess = Preprocess.from_dict(e.manifest.preprocess)
        if e.runner.precision == "int8" and c.int8_exec == "kernels" and kind == "onnx":
            if not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(machine["cpu_flags"]):
                notes.append(f"{e.label}: ONNX Runtime's int8 kernels on this CPU (no VNNI) saturate intermediate sums, "
                             "so its F1 here can be far below the model's; `edgeopt eval` measures the emulated Q/DQ accuracy")


def _score_rows(c: BenchConfig, rows: list[BenchRow], baseline: Any) -> None:
    """The baseline's F1 (given, or none for random weights), then each row's time ratio and scores against it."""
    base = next((r for r in rows if r.is_baseline), None)
    if base is None:
        return
    if c.baseline_f1 is not None:
        base.f1 = c.baseline_f1
    elif baseline is not None and baseline.random_weights:
        base.f1 = None  # a random-weight F1 means nothing
    for row in rows:
        t, tb = _time(row, c.data is not None, c.batch_sizes[0]), _time(base, c.data is not None, c.batch_sizes[0])
        row.time_ratio = t / tb if tb > 0 else None
        if row.f1 is not None and base.f1 is not None:
            row.score_time = score_time(t, tb, row.f1, base.f1)
            if row.macs and base.macs:
                row.score_macs = score_macs(row.macs, base.macs, row.f1, base.f1)


def _submit_runner(runner: Any) -> Any:
    """The runner for submit time, where decode threads share the CPU with the model: the
    runner's own ``sharing_cores()`` variant where it has one (ONNX Runtime on the CPU)."""
    sharing = getattr(runner, "sharing_cores", None)
    return sharing() if sharing is not None else runner


def _timed(runner: Any, batch: np.ndarray) -> tuple[Any, Any]:
    """What the latency loop calls, and on what: CUDA runners from a resident device tensor."""
    if getattr(runner, "device", "cpu") == "cuda" and hasattr(runner, "device_input"):
        return runner.run_tensor, runner.device_input(batch)
    return runner.run, batch


def _time(row: BenchRow, use_submit: bool, batch: int) -> float:
    return row.submit.seconds if use_submit and row.submit is not None else row.latency[batch].p50_ms


def _cuda_sync(runners: list) -> Any:
    if any(getattr(r, "device", "cpu") == "cuda" for r in runners):
        import torch

        return torch.cuda.synchronize
    return None
