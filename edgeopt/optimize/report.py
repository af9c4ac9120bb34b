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


def describe_point(params: dict[str, Any]) -> str:
    """A searched point in words: ``mobilenet_v2 at 48 px, prune 0.00, lr 0.0012, KD T 4.0 / alpha 0.70``."""
    known = {"backbone", "img_size", "prune", "lr", "kd_temperature", "kd_alpha"}
    parts = [f"{params.get('backbone', '?')} at {params.get('img_size', '?')} px"]
    if "prune" in params:
        parts.append(f"prune {params['prune']:.2f}")
    if "lr" in params:
        parts.append(f"lr {params['lr']:.2g}")
    if "kd_alpha" in params:
        parts.append(f"KD T {params.get('kd_temperature', float('nan')):.1f} / alpha {params['kd_alpha']:.2f}")
    parts += [f"{k} {_value(v)}" for k, v in params.items() if k not in known]
    return ", ".join(parts)


def _value(value: Any) -> str:
    """A setting as a reader writes it: lists joined by commas, no quotes or brackets, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value) or "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_table(config: dict[str, Any]) -> list[str]:
    """The run's settings, one row each, named as the flags and YAML keys name them (``max-f1-drop``)."""
    lines = ["| setting | value |", "| --- | --- |"]
    for key, value in config.items():
        lines.append(f"| {key.replace('_', '-')} | {_value(value)} |")
    return lines


def markdown(record: dict[str, Any]) -> list[str]:
    s, b, d = record["search"], record["bench"], record["deploy"]
    final, int8 = s["final"], s["final"]["int8"]
    split = record["split"]
    student = next((r for r in b["rows"] if not r["baseline"] and r["precision"] == "fp32"), None) or \
        next((r for r in b["rows"] if not r["baseline"]), None)
    deployed = next((r for r in b["rows"] if not r["baseline"] and r is not student), None) or student
    judged = d.get("judged") or {}
    test, judge = f"test split `{split['test']}`", f"held-out slice `{d.get('judged_on') or int8['judged_on']}`"
    lines = ["# edgeopt optimize report", "",
             f"Data: pool `{split['pool']}`; {test} (it trained, selected and judged nothing). Every figure below names "
             "the split it was measured on.", "",
             "## Results", "",
             "| figure | model | measured on | value |", "| --- | --- | --- | --- |",
             f"| macro-F1 | teacher (`{record['teacher']['checkpoint']}`) | {test} | **{_f(b['teacher_test_macro_f1'])}** |",
             f"| macro-F1 | student, FP32 | {test} | **{_f(student and student['test_macro_f1'])}** |"]
    if deployed is not None and deployed is not student:
        lines.append(f"| macro-F1 | deployed, {deployed['precision'].upper()} ({deployed['backend']}) | {test} | "
                     f"**{_f(deployed['test_macro_f1'])}** |")
    lines += [f"| macro-F1 drop against FP32 | deployed, {d['precision'].upper()} for {d['target']} | {judge} | "
              f"**{_f(judged.get('drop'))}** (budget {int8['max_drop']}) |",
              f"| macro-F1 | chosen trial {s['chosen_trial']} | the search's validation split of the pool (it chose the "
              f"trial, so this figure is optimistic) | {_f(s['val_macro_f1'])} |", "",
              "## Steps", "",
              f"- teacher: `{record['teacher']['checkpoint']}`",
              f"- soft-label bank: {record['bank']['images']} images x {record['bank']['views']} views, "
              f"{record['bank']['bytes'] / 1e6:.1f} MB (`{record['bank']['path']}`)",
              f"- search: {s['trials']} trials; chosen: trial {s['chosen_trial']}, {describe_point(s['params'])}; `{s['pareto']}`",
              *_assistant_line(final.get("assistant"), final.get("started_from")),
              f"- final run: {final['epochs']} epochs on `{final['trained_on']}`, {final['macs'] / 1e6:.1f} M MACs; {final['selection']}",
              "", "## INT8 candidates (TensorRT form)", "",
              f"Judged on `{int8['judged_on']}` ({int8['note']}); budget: a macro-F1 drop of at most {int8['max_drop']}. "
              + ("No candidate is within it, so none is chosen." if int8["chosen"] is None else ""), "",
              "| way | FP32 | INT8 | drop | top-1 agreement | chosen |", "| --- | --- | --- | --- | --- | --- |"]
    for way, cand in int8["candidates"].items():
        lines.append(f"| {way} | {cand['f1_fp32']:.4f} | {cand['f1_int8']:.4f} | {cand['drop']:.4f} | {cand['top1_agreement']:.1%} | "
                     f"{'yes' if way == int8['chosen'] else ''} |")
    lines += ["", "## Deployed", "",
              f"**{d['precision'].upper()}** for **{d['target']}**: `{d['artifact']}` ({d['how']}).", "",
              f"Its own judged macro-F1 drop against the FP32 model on the {judge}: "
              f"**{_f(judged.get('drop'))}**" + (f" (INT8 refused: {d['refused']})" if d.get("refused") else ""), ""]
    if d.get("candidates"):
        lines += [f"CPU INT8 calibrations, judged on the {judge}:", "",
                  "| CPU INT8 calibration | FP32 | INT8 | drop | top-1 agreement |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {m} | {c['f1_fp32']:.4f} | {c['f1_int8']:.4f} | {c['drop']:.4f} | {c['top1_agreement']:.1%} |"
                  for m, c in d["candidates"].items()]
        lines.append("")
    lines += [f"## Bench ({test}; time: {b['time_basis']})", "",
              "| artifact | backend | precision | MACs | test macro-F1 | batch-1 p50 ms | score (time) | score (MACs) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in b["rows"]:
        macs = "–" if not r["macs"] else f"{r['macs'] / 1e6:.1f} M"
        lines.append(f"| {r['label']} | {r['backend']} | {r['precision']} | {macs} | {_f(r['test_macro_f1'])} | "
                     f"{_f(r['latency_b1_p50_ms'], 3)} | {_f(r['score_time'])} | {_f(r['score_macs'])} |")
    steps = record.get("seconds_by_step", {})
    lines += [""] + [f"- {n}" for n in b["notes"]] + ["", "## Settings", ""] + settings_table(record.get("config", {}))
    lines += ["", "## Time", "", "| step | seconds |", "| --- | --- |"]
    lines += [f"| {name} | {'–' if sec is None else f'{sec:.0f}'} |" for name, sec in steps.items()]
    lines += ["", f"Machine: {record['machine'].get('cpu', '')}; {record['seconds']:.0f} s this run (steps done in an "
                  "earlier run are skipped, their seconds are the earlier run's).", ""]
    return lines


def _assistant_line(assistant: dict[str, Any] | None, started_from: str | None) -> list[str]:
    if not assistant:
        return []
    return [f"- teacher assistant: {assistant['img_size']} px, {assistant['epochs']} epochs from the bank, "
            f"{assistant['macs'] / 1e6:.1f} M MACs (`{assistant['checkpoint']}`)"
            + (f"; its bank `{assistant['bank']}` taught the final run" if assistant["bank"] else "")
            + ("; the final run started from its weights" if started_from else "")]
