"""Rich rendering of stage results for the CLI (tables, progress)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# wide tables stay readable in logs and pipes; a real terminal keeps its own width
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)


class RichTrainCallbacks:
    """Renders training progress: a bar per epoch and one line per finished epoch."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), console=console,
                                 transient=True)
        self.task = None
        self.steps = 0

    def on_start(self, config, steps_per_epoch: int, device: str, start_epoch: int) -> None:
        self.steps = steps_per_epoch
        resumed = f", resuming at epoch {start_epoch + 1}" if start_epoch else ""
        console.print(f"training {config.model} at {config.img_size} px on [bold]{device}[/]{resumed}")
        self.progress.start()

    def on_batch(self, epoch: int, step: int, loss: float) -> None:
        if self.task is None or step == 0:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(f"epoch {epoch + 1}", total=self.steps, loss=loss)
        self.progress.update(self.task, advance=1, loss=loss)

    def on_epoch(self, stats) -> None:
        star = " *" if stats.best else ""
        self.progress.console.print(
            f"epoch {stats.epoch:>3}  train loss {stats.train_loss:.4f}  val loss {stats.val_loss:.4f}  "
            f"val macro-F1 {stats.val_macro_f1:.4f}  acc {stats.val_accuracy:.4f}  {stats.seconds:.1f}s{star}"
        )

    def close(self) -> None:
        self.progress.stop()


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
        console.print(f"note: {escape(note)}")
