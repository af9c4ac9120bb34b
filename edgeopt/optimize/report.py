"""``optimize``'s report: ``report.json`` (every step's record) and ``report.md`` (the same, readable),
with the split behind every figure named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeopt.artifacts import atomic_path, atomic_write_json


def write_report(record: dict[str, Any], out: Path) -> Path:
    atomic_write_json(out / "report.json", record)
    path = out / "report.md"
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(markdown(record)))
    return path


def _f(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(record: dict[str, Any]) -> list[str]:
    s, b, d = record["search"], record["bench"], record["deploy"]
    final, int8 = s["final"], s["final"]["int8"]
    student = next((r for r in b["rows"] if not r["baseline"]), None)
    lines = ["# edgeopt optimize report", "",
             f"- data: pool `{record['split']['pool']}`, test split `{record['split']['test']}` "
             "(it trained, selected and judged nothing: every test figure below is from it)",
             f"- teacher: `{record['teacher']['checkpoint']}`, test macro-F1 **{b['teacher_test_macro_f1']:.4f}**"
             + (f"; the FP32 student's: **{student['test_macro_f1']:.4f}**" if student and student["test_macro_f1"] is not None else ""),
             f"- soft-label bank: {record['bank']['images']} images x {record['bank']['views']} views, "
             f"{record['bank']['bytes'] / 1e6:.1f} MB (`{record['bank']['path']}`)",
             f"- search: {s['trials']} trials; chosen trial {s['chosen_trial']} ({s['params']}), validation macro-F1 "
             f"{s['val_macro_f1']:.4f} (the split that chose it); `{s['pareto']}`",
             f"- final run: {final['epochs']} epochs on `{final['trained_on']}`, {final['macs'] / 1e6:.1f} M MACs; {final['selection']}",
             "", "## INT8 candidates (TensorRT form)", "",
             f"Judged on `{int8['judged_on']}` ({int8['note']}); budget: a macro-F1 drop of at most {int8['max_drop']}. "
             + ("No candidate is within it, so none is chosen." if int8["chosen"] is None else ""), "",
             "| way | FP32 | INT8 | drop | top-1 agreement | chosen |", "| --- | --- | --- | --- | --- | --- |"]
    for way, cand in int8["candidates"].items():
        lines.append(f"| {way} | {cand['f1_fp32']:.4f} | {cand['f1_int8']:.4f} | {cand['drop']:.4f} | {cand['top1_agreement']:.1%} | "
                     f"{'yes' if way == int8['chosen'] else ''} |")
    judged = d.get("judged") or {}
    lines += ["", "## Deployed", "",
              f"**{d['precision'].upper()}** for **{d['target']}**: `{d['artifact']}` ({d['how']}).", "",
              f"Its own judged macro-F1 drop against the FP32 model on the held-out slice `{d.get('judged_on', '')}`: "
              f"**{_f(judged.get('drop'))}**" + (f" (INT8 refused: {d['refused']})" if d.get("refused") else ""), ""]
    if d.get("candidates"):
        lines += ["| CPU INT8 calibration | FP32 | INT8 | drop | top-1 agreement |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {m} | {c['f1_fp32']:.4f} | {c['f1_int8']:.4f} | {c['drop']:.4f} | {c['top1_agreement']:.1%} |"
                  for m, c in d["candidates"].items()]
        lines.append("")
    lines += [f"## Bench (test split; time: {b['time_basis']})", "",
              "| artifact | backend | precision | MACs | test macro-F1 | batch-1 p50 ms | score (time) | score (MACs) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in b["rows"]:
        macs = "–" if not r["macs"] else f"{r['macs'] / 1e6:.1f} M"
        lines.append(f"| {r['label']} | {r['backend']} | {r['precision']} | {macs} | {_f(r['test_macro_f1'])} | "
                     f"{_f(r['latency_b1_p50_ms'], 3)} | {_f(r['score_time'])} | {_f(r['score_macs'])} |")
    steps = record.get("seconds_by_step", {})
    lines += [""] + [f"- {n}" for n in b["notes"]] + ["", "## Time", "",
                                                     "| step | seconds |", "| --- | --- |"]
    lines += [f"| {name} | {'–' if sec is None else f'{sec:.0f}'} |" for name, sec in steps.items()]
    lines += ["", f"Machine: {record['machine'].get('cpu', '')}; {record['seconds']:.0f} s this run (steps done in an "
                  "earlier run are skipped, their seconds are the earlier run's).", ""]
    return lines
