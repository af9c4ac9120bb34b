"""``edgeopt bench``: artifacts and their baseline measured in one run, scored, reported."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifacts import atomic_path, atomic_write_json
from edgeopt.baseline import build_baseline
from edgeopt.bench import LatencyStats, SubmitResult, cuda_event_timer, measure_interleaved, submit_time
from edgeopt.data.presets import Preprocess
from edgeopt.errors import ConfigError
from edgeopt.evaluate import artifact_manifest
from edgeopt.machine import machine_info
from edgeopt.runtime import artifact_kind, open_runner
from edgeopt.score import score_macs, score_time


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

    def to_dict(self) -> dict[str, Any]:
        return {"time_basis": self.time_basis, "notes": self.notes, "machine": self.machine, "rows": [r.to_dict() for r in self.rows]}


def run_bench(
    artifacts: list[Path], baseline: str | None = "resnet18d", data: Path | None = None, backend: str = "auto",
    device: str = "cpu", batch_sizes: tuple[int, ...] = (1, 32), runs: int = 50, warmup: int = 10,
    baseline_checkpoint: Path | None = None, baseline_f1: float | None = None, baseline_size: int | None = None,
    workers: int = 4, out: Path = Path("runs/bench"), json_path: Path | None = None, plot_path: Path | None = None,
    int8_exec: str = "kernels", torch_fp16: bool = False, cuda_graph: bool = False, submit_runs: int = 3,
    torch_compile: bool = False,
) -> BenchReport:
    """Measure every artifact and the baseline interleaved, run submit time on ``data``, score."""
    if not artifacts:
        raise ConfigError("pass at least one artifact to bench")
    if any(b < 1 for b in batch_sizes):
        raise ConfigError(f"--batch-sizes {batch_sizes}: every batch size must be at least 1")
    if (torch_fp16 or torch_compile) and not any(artifact_kind(a) == "checkpoint" for a in artifacts):
        raise ConfigError("--torch-fp16 / --torch-compile apply to checkpoints (.pt) on the torch backend; "
                          "none was passed (ONNX precision comes from export/calibrate)")
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    entries = [(p.name, Path(p), False) for p in artifacts]
    baseline_random = False
    manifests = {str(p): artifact_manifest(p) for _, p, _ in entries}
    if baseline:
        first = entries[0][1]
        b = build_baseline(baseline, manifests[str(first)], first, out / "baseline", baseline_checkpoint, baseline_size, data)
        entries.append((f"baseline {b.name}", b.path, True))
        manifests[str(b.path)] = artifact_manifest(b.path)
        baseline_random = b.random_weights
        if b.random_weights:
            notes.append(f"baseline {b.name} has random weights (timing only); its F1 is "
                         + (f"--baseline-f1 {baseline_f1}" if baseline_f1 is not None else "unknown: pass --baseline-f1 for scores"))
    machine = machine_info()
    runners = {}
    for name, path, _ in entries:
        kind = artifact_kind(path)
        options: dict[str, Any] = {
            "onnx": {"int8_exec": int8_exec},
            "checkpoint": {"fp16": torch_fp16, "cuda_graph": cuda_graph, "compile": torch_compile},
            "engine": {"cuda_graph": cuda_graph},
        }[kind]
        runners[name] = open_runner(path, backend=backend, device=device, **options)
        if runners[name].precision == "int8" and int8_exec == "kernels" and kind == "onnx":
            if not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(machine["cpu_flags"]):
                notes.append(f"{name}: ONNX Runtime's int8 kernels on this CPU (no VNNI) saturate intermediate sums, "
                             "so its F1 here can be far below the model's; `edgeopt eval` measures the exact Q/DQ accuracy")
    sync = _cuda_sync(runners)
    if sync is not None:
        notes.append("CUDA latency is timed with CUDA events around each call on a device-resident input "
                     "(compute and launch gaps, no host copies); submit time includes the copies")
    preprocess = {name: Preprocess.from_dict(manifests[str(path)].preprocess) for name, path, _ in entries}
    rows = []
    for name, path, is_base in entries:
        m = manifests[str(path)]
        rows.append(BenchRow(name, str(path), runners[name].backend, runners[name].precision, m.arch.get("macs"), m.arch.get("params"),
                             path.stat().st_size / 1e6, {}, is_baseline=is_base))
    rng = np.random.default_rng(0)
    for bs in batch_sizes:
        batches = {name: _timed(runners[name], rng.standard_normal((bs, 3, pre.size, pre.size)).astype(np.float32))
                   for name, pre in preprocess.items()}
        stats = measure_interleaved(batches, runs, warmup, sync=sync, timer=cuda_event_timer if sync else None)
        for row in rows:
            row.latency[bs] = stats[row.name]
    if data is not None:
        for row, (name, path, _) in zip(rows, entries):
            csv_path = out / f"{name.replace(' ', '_')}.predictions.csv"
            row.submit = submit_time(_submit_runner(runners[name]).run, manifests[str(path)].classes, preprocess[name], data,
                                     csv_path, batch_size=max(batch_sizes), workers=workers, runs=submit_runs)
            row.f1 = row.submit.macro_f1
    base = next((r for r in rows if r.is_baseline), None)
    if base is not None:
        if baseline_f1 is not None:
            base.f1 = baseline_f1
        elif baseline_random:
            base.f1 = None  # a random-weight F1 means nothing
    time_basis = "submit time" if data is not None else f"batch-{batch_sizes[0]} latency p50"
    if base is not None:
        for row in rows:
            t, tb = _time(row, data is not None, batch_sizes[0]), _time(base, data is not None, batch_sizes[0])
            row.time_ratio = t / tb if tb > 0 else None
            if row.f1 is not None and base.f1 is not None:
                row.score_time = score_time(t, tb, row.f1, base.f1)
                if row.macs and base.macs:
                    row.score_macs = score_macs(row.macs, base.macs, row.f1, base.f1)
    report = BenchReport(rows, time_basis, notes, machine)
    if json_path is not None:
        atomic_write_json(json_path, report.to_dict())
    if plot_path is not None:
        plot_f1_latency(report, plot_path, batch_sizes[0])
    return report


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


def _cuda_sync(runners: dict) -> Any:
    if any(getattr(r, "device", "cpu") == "cuda" for r in runners.values()):
        import torch

        return torch.cuda.synchronize
    return None


def plot_f1_latency(report: BenchReport, path: Path, batch: int) -> Path:
    """F1 against batch latency for everything benched (rows without an F1 are left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in report.rows:
        if row.f1 is None:
            continue
        ax.scatter(row.latency[batch].p50_ms, row.f1, marker="s" if row.is_baseline else "o")
        ax.annotate(f"{row.name} ({row.precision})", (row.latency[batch].p50_ms, row.f1), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"latency p50 at batch {batch} (ms, log)")
    ax.set_ylabel("macro-F1")
    ax.set_title("F1 vs latency")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
