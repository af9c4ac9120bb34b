"""Rich rendering of stage results for the CLI (tables, progress)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# wide tables stay readable in logs and pipes; a real terminal keeps its own width
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)


SETTING = re.compile(r"`([a-z][a-z0-9_]*)`")
_commands: Callable[[], Any] | None = None  # the CLI's click group, set by edgeopt.cli.common
RENAMED: dict[str, str] = {}  # an old flag spelling (a hidden alias) -> the flag it is now


def set_commands(group: Callable[[], Any]) -> None:
    global _commands
    _commands = group


def command_flags(command: Any = None) -> dict[str, str]:
    """A command's options by their setting name (``dla_core`` -> ``--dla-core``); a group's are
    all of its commands' (by default the whole CLI's)."""
    command = command if command is not None else (_commands() if _commands else None)
    flags: dict[str, str] = {}
    if command is None:
        return flags
    for sub in getattr(command, "commands", {}).values():  # a group (the CLI, ``data``)
        flags.update(command_flags(sub))
    for param in getattr(command, "params", ()):
        for opt in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
            if opt.startswith("--"):
                flags.setdefault(opt[2:].replace("-", "_"), RENAMED.get(opt, opt))
    return flags


_flags: dict[str, dict[str, str]] = {}  # command name ("" for all) -> its flags, built on first use


def as_flags(message: str, command: str | None = None) -> str:
    """A library message names settings as `name`; the command line says them as its flags: the
    running command's own first (``command``, else the click context's), then any command's."""
    if "`" not in message:
        return message
    if not _flags and _commands is not None:
        group = _commands()
        _flags[""] = command_flags(group)
        for name, cmd in group.commands.items():
            _flags[name] = command_flags(cmd)
    if command is None:
        import click

        ctx = click.get_current_context(silent=True)
        command = ctx.info_name if ctx is not None and ctx.parent is not None else None
    own, every = _flags.get(command or "", {}), _flags.get("", {})
    return SETTING.sub(lambda m: own.get(m.group(1)) or every.get(m.group(1), m.group(1)), message)


def say(message: str) -> None:
    """A library's log line or note on the console, its settings said as flags."""
    console.print(escape(as_flags(message)))


def metrics_table(title: str, results) -> Table:
    table = Table(title=title)
    for col in ("artifact", "backend", "precision", "macro-F1", "accuracy", "top-1 agree", "size MB"):
        table.add_column(col, justify="left" if col == "artifact" else "right")
    for r in results:
        agree = "-" if r.agreement is None else f"{r.agreement:.2%}"
        table.add_row(str(r.artifact), r.backend, r.precision, f"{r.metrics.macro_f1:.4f}", f"{r.metrics.accuracy:.4f}",
                      agree, f"{r.size_bytes / 1e6:.2f}")
    return table


def render_report(report) -> None:
    """Two tables: cost, accuracy and score per artifact; then latency per batch size."""
    batches = list(report.rows[0].latency)

    def fmt(v, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    submits = [r.submit for r in report.rows if r.submit is not None]
    caption = f"submit / decode s: median of {submits[0].runs} runs, decode = decode + preprocess only" if submits else None
    table = Table(title=f"score vs baseline (time basis: {report.time_basis}; lower is better)", caption=caption)
    for col in ("artifact", "backend", "prec", "MMACs", "M params", "MB", "F1", "submit s", "decode s", "time ratio", "score",
                "score MACs"):
        table.add_column(col, justify="left" if col == "artifact" else "right")
    for r in report.rows:
        table.add_row(r.name, r.backend, r.precision, fmt(r.macs and r.macs / 1e6, ".1f"), fmt(r.params and r.params / 1e6, ".2f"),
                      f"{r.size_mb:.2f}", fmt(r.f1, ".4f"),
                      fmt(r.submit and r.submit.seconds, ".2f"), fmt(r.submit and r.submit.decode_seconds, ".2f"),
                      fmt(r.time_ratio, ".3f"), fmt(r.score_time, ".3f"), fmt(r.score_macs, ".3f"))
    console.print(table)
    lat = Table(title="latency (ms) and throughput")
    for col in ("artifact", "batch", "p50", "p90", "p99", "img/s"):
        lat.add_column(col, justify="left" if col == "artifact" else "right")
    for r in report.rows:
        for b in batches:
            st = r.latency[b]
            lat.add_row(r.name, str(b), f"{st.p50_ms:.3f}", f"{st.p90_ms:.3f}", f"{st.p99_ms:.3f}", f"{st.throughput:.0f}")
    console.print(lat)
    for note in report.notes:
        say(f"note: {note}")


def render_stats(stats) -> None:
    """``edgeopt data stats``: class counts, sizes, imbalance, conversions and skips."""
    title = f"{stats.root}" + ("  [bold magenta](SYNTHETIC data)[/]" if stats.synthetic else "")
    table = Table(title=title)
    table.add_column("class")
    table.add_column("images", justify="right")
    table.add_column("share", justify="right")
    for name, count in stats.counts.items():
        table.add_row(name, str(count), f"{count / max(stats.total, 1):.1%}")
    table.add_row("[bold]total[/]", f"[bold]{stats.total}[/]", "100%")
    console.print(table)
    console.print(
        f"width min/median/max {stats.width[0]}/{stats.width[1]}/{stats.width[2]} px, "
        f"height {stats.height[0]}/{stats.height[1]}/{stats.height[2]} px, "
        f"aspect w/h {stats.aspect[0]}/{stats.aspect[1]}/{stats.aspect[2]}"
    )
    console.print(f"imbalance ratio (largest/smallest class): {stats.imbalance_ratio:.2f}")
    if stats.converted:
        console.print("converted to RGB: " + ", ".join(f"{n} {m}" for m, n in stats.converted.items()))
    if stats.skipped:
        console.print("skipped: " + ", ".join(f"{n} {r}" for r, n in stats.skipped.items()))


def render_split(result) -> None:
    """``edgeopt data split``: images per class in each part."""
    parts = [p for p in ("pool", "judge", "test") if p in result.counts]
    table = Table(title=f"split -> {result.out}")
    table.add_column("class")
    for part in parts:
        table.add_column(f"{part}/", justify="right")
    for name in result.classes:
        table.add_row(name, *(str(result.counts[p][name]) for p in parts))
    table.add_row("[bold]total[/]", *(f"[bold]{result.total(p)}[/]" for p in parts))
    console.print(table)
    console.print(f"{', '.join(f'{result.parts[p]}' for p in parts)} (hard links); record {result.record}")


def render_predictions(result) -> None:
    """``edgeopt predict``: images per predicted class, and the figures when the folder was labelled."""
    table = Table(title=f"{result.images} images -> {result.csv}")
    table.add_column("predicted class")
    table.add_column("images", justify="right")
    table.add_column("share", justify="right")
    for name, count in result.counts.items():
        table.add_row(name, str(count), f"{count / max(result.images, 1):.1%}")
    console.print(table)
    rate = result.images / result.seconds if result.seconds > 0 else float("inf")
    console.print(f"{result.backend}, {result.precision}: {result.seconds:.1f}s ({rate:.0f} images/s)")
    if result.macro_f1 is not None:
        console.print(f"the folder is <class>/<image> with the model's classes: macro-F1 {result.macro_f1:.4f}, "
                      f"accuracy {result.accuracy:.4f}")


def render_taco(summary) -> None:
    """``edgeopt data taco``: crops per class, downloads, drops and skips."""
    table = Table(title=f"TACO crops ({summary.class_map}) -> {summary.out}")
    table.add_column("class")
    table.add_column("crops", justify="right")
    for name in summary.classes:
        table.add_row(name, str(summary.counts.get(name, 0)))
    table.add_row("[bold]total[/]", f"[bold]{summary.total}[/]")
    console.print(table)
    if summary.downloaded:
        console.print(f"downloaded {summary.downloaded} image(s)")
    dropped = sum(summary.dropped_categories.values())
    if dropped:
        console.print(f"dropped by the class map: {dropped} box(es) in {len(summary.dropped_categories)} categories")
    for reason, n in summary.skipped.items():
        console.print(f"skipped {n}: {reason}")


def render_eval(result, data) -> None:
    """``edgeopt eval`` of one artifact: the metrics row, the confusion matrix and per-class F1."""
    m = result.metrics
    console.print(metrics_table(f"{result.artifact.name} on {data} ({m.n} images)", [result]))
    cm = Table(title="confusion matrix (rows: true, columns: predicted) and per-class F1")
    cm.add_column("")
    for c in m.classes:
        cm.add_column(c[:10], justify="right")
    cm.add_column("F1", justify="right")
    for c, row in zip(m.classes, m.confusion):
        cm.add_row(c, *[str(v) for v in row], f"{m.per_class_f1[c]:.3f}")
    console.print(cm)


def render_manifest(path, m) -> None:
    """``edgeopt info ARTIFACT``: what the manifest says."""
    import json

    from edgeopt.artifacts import manifest_path

    table = Table(title=f"{path} ({m.kind})", show_header=False)
    table.add_column("key")
    table.add_column("value")
    macs, params = m.arch.get("macs"), m.arch.get("params")
    rows = [("classes", ", ".join(m.classes)), ("preprocess", json.dumps(m.preprocess)),
            ("arch", f"{m.arch.get('source', '')}:{m.arch.get('name', '')}"), ("precision", str(m.precision)),
            ("MACs", f"{macs / 1e6:.2f} M" if macs else "-"), ("params", f"{params / 1e6:.3f} M" if params else "-"),
            ("sha256", str(m.sha256)), ("parent", json.dumps(m.parent) if m.parent else "-"),
            ("metrics", json.dumps({k: v for k, v in m.metrics.items() if not isinstance(v, dict)})),
            *([("builder", f"{m.extra['builder']} {m.extra.get('builder_version', '')}"
                + (f", for compute capability {', '.join(map(str, m.extra['compute_capabilities']))}"
                   if m.extra.get("compute_capabilities") else ""))] if m.kind == "engine" and m.extra.get("builder") else []),
            ("manifest", str(manifest_path(path)))]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)


def render_engine_layers(path, m) -> None:
    """``edgeopt info model.engine --layers``: every layer of the engine, as its inspector listed it."""
    from edgeopt.errors import ArtifactError

    layers = m.extra.get("layers") if m.kind == "engine" else None
    if m.kind != "engine":
        raise ArtifactError(f"{path} is a {m.kind}: --layers lists the layers of a TensorRT engine (.engine)")
    if not layers:
        raise ArtifactError(f"{path}: its manifest has no layer list (built by an older edgeopt, or the inspector gave "
                            "none); rebuild it with edgeopt build-engine")
    _check_layers(path, layers)
    s = m.extra.get("layer_summary") if isinstance(m.extra.get("layer_summary"), dict) else {}
    title = (f"{path}: {len(layers)} layers, {s.get('reformats', 0)} reformat; "
             f"{s.get('onnx_nodes_mapped', '?')} of {s.get('onnx_nodes', '?')} ONNX nodes named")
    table = Table(title=title)
    for col in ("#", "layer", "type", "precision", "in -> out", "tactic", "ONNX nodes"):
        table.add_column(col, justify="right" if col == "#" else "left")
    for i, layer in enumerate(layers):
        table.add_row(str(i), escape(layer["name"]), layer["type"], layer["precision"],
                      f"{','.join(layer['inputs'])} -> {','.join(layer['outputs'])}", escape(str(layer.get("tactic") or "")),
                      escape(", ".join(layer["onnx"])) if layer["onnx"] else ("(reformat)" if layer["reformat"] else "-"))
    console.print(table)


_LAYER_FIELDS = {"name": str, "type": str, "precision": str, "inputs": list, "outputs": list, "onnx": list, "reformat": bool}


def _check_layers(path, layers) -> None:
    """A manifest's layer list has the shape ``trt.layers`` writes, checked before any of it is shown."""
    from edgeopt.errors import ArtifactError

    def bad(what: str) -> ArtifactError:
        return ArtifactError(f"{path}: its manifest's {what}; the manifest was edited or damaged: rebuild the engine "
                             "with edgeopt build-engine")

    if not isinstance(layers, list):
        raise bad(f"layer list is a {type(layers).__name__}, not a list")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise bad(f"layer {i} is a {type(layer).__name__}, not a mapping")
        for key, kind in _LAYER_FIELDS.items():
            if not isinstance(layer.get(key), kind):
                raise bad(f"layer {i} has no {key!r} {kind.__name__}")
        if not all(isinstance(v, str) for key in ("inputs", "outputs", "onnx") for v in layer[key]):
            raise bad(f"layer {i} lists a non-text tensor or node name")


def render_fallback(result) -> None:
    """``calibrate --max-f1-drop`` / ``--max-disagreement``: the layer table and the score it reached."""
    labelled = result.metric == "macro_f1"
    table = Table(title=f"INT8 sensitivity on {result.eval_images} eval images (most sensitive first)")
    for col in ("layer", "op", "KL gain", "F1 if float" if labelled else "agreement if float", "kept in float"):
        table.add_column(col, justify="left" if col in ("layer", "op") else "right")
    for r in result.layers[:40]:
        table.add_row(escape(r.name), r.op, f"{r.kl_gain:.5f}", f"{r.f1:.4f}", "yes" if r.kept_float else "")
    if len(result.layers) > 40:
        table.add_row(f"... {len(result.layers) - 40} more", "", "", "", "")
    console.print(table)
    if labelled:
        line = (f"macro-F1: FP32 {result.f1_fp32:.4f}, all layers INT8 {result.f1_int8:.4f}, "
                f"with {len(result.float_layers)} layer(s) in float {result.f1_final:.4f} (budget: a drop of at most {result.budget})")
    else:
        line = (f"top-1 agreement with FP32: all layers INT8 {result.f1_int8:.4f}, with {len(result.float_layers)} layer(s) "
                f"in float {result.f1_final:.4f} (budget: at most {result.budget} of the images differ)")
    console.print(line + f"; {result.seconds:.0f} s" + (f"; plot {result.plot}" if result.plot else ""))


def render_search(result) -> None:
    """The study's finished trials, Pareto front marked, and where the report and chosen model went."""
    table = Table(title=f"study {result.study} ({len(result.trials)} finished, {result.failed} failed) - val macro-F1")
    for col in ("trial", "backbone", "px", "prune", "lr", "KD T / a", "val F1", "MACs", "CPU ms", "score", "front"):
        table.add_column(col, justify="left" if col == "backbone" else "right")
    chosen = result.chosen.number if result.chosen else None
    for r in sorted(result.trials, key=lambda r: r.macs):
        p = r.params
        kd = f"{p['kd_temperature']:.1f} / {p['kd_alpha']:.2f}" if "kd_alpha" in p else "-"
        latency = f"{r.latency_ms:.2f}" if r.latency_ms is not None else "-"
        mark = ("*" if r.pareto else "") + (" chosen" if r.number == chosen else "")
        table.add_row(str(r.number), p.get("backbone", "?"), str(p.get("img_size", "?")), f"{p.get('prune', 0.0):.2f}",
                      f"{p.get('lr', float('nan')):.2g}", kd, f"{r.val_macro_f1:.4f}", f"{r.macs / 1e6:.1f}M", latency,
                      f"{r.score:.4f}", mark)
    console.print(table)
    console.print(f"baseline {result.baseline['name']} @{result.baseline['img_size']} px: {result.baseline['macs'] / 1e6:.0f}M MACs, "
                  f"F1 {result.baseline['f1']}; report {result.report}" + (f", plot {result.plot}" if result.plot else ""))
    if result.chosen is not None:
        where = result.chosen_dir or f"{result.chosen.artifacts} on {result.chosen.host} (another worker)"
        console.print(f"chosen: trial {result.chosen.number} -> {where}")
    if result.final is not None:
        where = "all of the data" if "int8" not in result.final else f"{result.final['trained_on']} (a slice held out)"
        console.print(f"final run ({result.final['epochs']} epochs on {where}, no selection): "
                      f"{result.final['checkpoint']}, {result.final['onnx']}")
        int8 = result.final.get("int8")
        if int8 is not None:
            table = Table(title=f"INT8 of the final run, judged on {int8['judged_on']} (held out of it)")
            for col in ("way", "macro-F1 FP32", "INT8", "drop", "top-1 agreement", "chosen"):
                table.add_column(col, justify="left" if col == "way" else "right")
            for way, c in int8["candidates"].items():
                table.add_row(way, f"{c['f1_fp32']:.4f}", f"{c['f1_int8']:.4f}", f"{c['drop']:.4f}", f"{c['top1_agreement']:.1%}",
                              "yes" if way == int8["chosen"] else "")
            console.print(table)
            if int8["chosen"] is None:
                console.print(f"INT8: none chosen: every candidate lost more than the budget of {int8['max_drop']} (keep the "
                              "model in float, or raise the budget)")
            else:
                console.print(f"INT8: {int8['onnx']} (within the budget of {int8['max_drop']})")
