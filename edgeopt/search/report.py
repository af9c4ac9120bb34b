"""What a study found: its Pareto front, the chosen point, ``pareto.json``, ``pareto.png`` and ``chosen/``."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeopt.artifacts import atomic_dir, atomic_write_json
from edgeopt.plots import plot_fronts
from edgeopt.search.config import SearchConfig, SearchResult, TrialRecord


def pareto_front(records: list[TrialRecord], cost: Callable[[TrialRecord], float] = lambda r: r.macs) -> list[TrialRecord]:
    """Trials no other trial beats on both val macro-F1 (higher) and ``cost`` (lower; MACs by default)."""
    def dominated(r: TrialRecord) -> bool:
        return any(o.val_macro_f1 >= r.val_macro_f1 and cost(o) <= cost(r) and
                   (o.val_macro_f1 > r.val_macro_f1 or cost(o) < cost(r)) for o in records)

    return sorted((r for r in records if not dominated(r)), key=cost)


def choose(records: list[TrialRecord], max_macs: int | None) -> TrialRecord | None:
    """Best val macro-F1 within ``max_macs``; without a budget, the best competition score."""
    if max_macs is not None:
        within = [r for r in records if r.macs <= max_macs]
        return max(within, key=lambda r: (r.val_macro_f1, -r.macs)) if within else None
    return min(records, key=lambda r: r.score) if records else None


def _records(study: Any) -> tuple[list[TrialRecord], int]:
    from optuna.trial import TrialState

    records, failed = [], 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.FAIL:
            failed += 1
        if t.state != TrialState.COMPLETE:
            continue
        a = t.user_attrs
        # the point as trained: what the sampler drew plus what the space fixed (a one-value range,
        # --max-prune 0), which optuna's own params leave out
        records.append(TrialRecord(t.number, {**a.get("point", {}), **t.params}, a["val_macro_f1"], a["macs"], a["params_count"],
                                   a.get("latency_ms"), a["score"], a.get("host", ""), a.get("artifacts", ""),
                                   a.get("worker", "")))
    return records, failed


def report(config: SearchConfig, study: Any, baseline: dict[str, Any], storage: str,
           final: dict[str, Any] | None = None) -> SearchResult:
    """Pareto table data, ``pareto.json``, ``pareto.png`` and the chosen trial exported to ``chosen/``
    (with the record of its final run, when there was one)."""
    from edgeopt.bench.machine import machine_info

    records, failed = _records(study)
    front = pareto_front(records)
    for r in front:
        r.pareto = True
    chosen = choose(records, config.max_macs)
    chosen_dir = _export_chosen(chosen, config.study_dir / "chosen") if chosen else None
    plot = plot_pareto(records, config.study_dir / "pareto.png") if records else None
    path = atomic_write_json(config.study_dir / "pareto.json", {
        "study": config.study, "storage": storage, "objective": config.objective,
        "split": f"validation ({config.val_split:.0%} of {config.data}, stratified, seed 0): it selected each "
                 "trial's checkpoint and the chosen point; report test figures from images outside `data`",
        "baseline": baseline, "max_macs": config.max_macs, "failed_trials": failed,
        "trials": [dataclasses.asdict(r) for r in sorted(records, key=lambda r: r.number)],
        "pareto": [r.number for r in front], "chosen": chosen.number if chosen else None,
        "chosen_dir": str(chosen_dir) if chosen_dir else None, "final": final, "machine": machine_info(),
    })
    return SearchResult(config.study, storage, records, failed, chosen, chosen_dir, path, plot, baseline, final)


def _export_chosen(chosen: TrialRecord, dest: Path) -> Path | None:
    """Copy the chosen trial's checkpoint and ONNX (with manifests) into ``dest``, replacing it atomically."""
    source = Path(chosen.artifacts)
    files = [n for n in ("best.pt", "best.pt.json", "model.onnx", "model.onnx.json", "metrics.json") if (source / n).is_file()]
    if "best.pt" not in files:  # the trial ran on another worker: its artifacts are there
        return None
    with atomic_dir(dest) as tmp:
        for name in files:
            shutil.copy2(source / name, tmp / name)
        (tmp / "trial.json").write_text(json.dumps(dataclasses.asdict(chosen), indent=2) + "\n", encoding="utf-8")
    return dest


def plot_pareto(records: list[TrialRecord], path: Path, f1_label: str = "val macro-F1", log_x: bool = False,
                f1_floor: float | None = None) -> Path:
    """Macro-F1 against MACs and against CPU latency, each panel's own Pareto front joined; ``log_x``
    spreads models of very different sizes, ``f1_floor`` leaves points below it out of view."""
    timed = [r for r in records if r.latency_ms is not None]
    panels = []
    for rows, x, label in ((records, lambda r: r.macs / 1e6, "MACs (M)"),
                           (timed, lambda r: r.latency_ms, "ONNX Runtime CPU batch-1 p50 (ms)")):
        front = pareto_front(rows, cost=x)
        panels.append({"x": [x(r) for r in rows], "y": [r.val_macro_f1 for r in rows], "xlabel": label,
                       "front_x": [x(r) for r in front], "front_y": [r.val_macro_f1 for r in front],
                       "front_labels": [f"#{r.number}" for r in front]})
    return plot_fronts(panels, path, ylabel=f1_label, log_x=log_x, y_floor=f1_floor)

