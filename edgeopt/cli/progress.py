"""Progress wherever a user waits, in two forms: in a terminal, rich bars with an ETA; when the output
is a file or a pipe, plain lines (one per epoch, or one per quarter of a long pass), each with its ETA.

``TrainProgress`` renders ``train_classifier``'s callbacks (train, the teacher, the search's trials
and final run); ``step_progress`` renders any stage's ``progress(done, total)`` (the soft-label bank,
predict). One object serves several trainings in a row: each ``on_start`` begins a new one.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape


def format_eta(seconds: float) -> str:
    """``0:01:05`` (hours:minutes:seconds); ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def epoch_line(stats: Any, epochs: int, eta: float | None) -> str:
    """One finished epoch. With no validation split (``val_split`` 0: a final run) there is no val
    loss or F1 to show, and the line says so rather than printing ``nan``."""
    head = f"epoch {stats.epoch:>3}/{epochs}  train loss {stats.train_loss:.4f}  "
    if math.isnan(stats.val_macro_f1):
        body = "no validation split (fixed epochs)"
    else:
        body = f"val loss {stats.val_loss:.4f}  val macro-F1 {stats.val_macro_f1:.4f}  acc {stats.val_accuracy:.4f}"
    tail = f"  {stats.seconds:.1f}s" + (" *" if stats.best else "")
    if eta is not None and stats.epoch < epochs:
        tail += f"  ETA {format_eta(eta)}"
    return head + body + tail


class TrainProgress:
    """``train_classifier``'s callbacks on ``console``: bars for the run and the epoch (terminal), and
    one line per finished epoch with the run's ETA (always)."""

    def __init__(self, console: Console, label: str | None = None) -> None:
        self.console, self.label = console, label
        self.terminal = console.is_terminal
        self.progress: Any = None
        self.run_task = self.epoch_task = None
        self.steps = self.epochs = self.start_epoch = 0
        self.epoch_seconds: list[float] = []

    def on_start(self, config: Any, steps_per_epoch: int, device: str, start_epoch: int) -> None:
        self.close()
        self.steps, self.epochs, self.start_epoch = steps_per_epoch, config.epochs, start_epoch
        self.epoch_seconds = []
        resumed = f", resuming at epoch {start_epoch + 1}" if start_epoch else ""
        what = self.label or f"training {config.model}"
        self.console.print(escape(f"{what} at {config.img_size} px on {device}, {config.epochs} epochs{resumed}"))
        if self.terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TextColumn("ETA"),
                                     TimeRemainingColumn(), console=self.console, transient=True)
            self.progress.start()
            self.run_task = self.progress.add_task("all epochs", total=(config.epochs - start_epoch) * steps_per_epoch,
                                                   loss=float("nan"))

    def on_batch(self, epoch: int, step: int, loss: float) -> None:
        if self.progress is None:
            return
        if self.epoch_task is None or step == 0:
            if self.epoch_task is not None:
                self.progress.remove_task(self.epoch_task)
            self.epoch_task = self.progress.add_task(f"epoch {epoch + 1}/{self.epochs}", total=self.steps, loss=loss)
        self.progress.update(self.epoch_task, advance=1, loss=loss)
        self.progress.update(self.run_task, advance=1, loss=loss)

    def on_epoch(self, stats: Any) -> None:
        self.epoch_seconds.append(stats.seconds)
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        line = epoch_line(stats, self.epochs, mean * (self.epochs - stats.epoch))
        (self.progress.console if self.progress is not None else self.console).print(escape(line))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.progress = self.run_task = self.epoch_task = None


class StepProgress:
    """``progress(done, total)`` of a long pass: a bar with an ETA in a terminal; else a plain line at
    every quarter (and at the end), with the ETA from the rate so far. It starts at its first call, so
    a pipeline can hand one to a step that begins much later; a pass done ends its bar."""

    def __init__(self, console: Console, description: str, clock: Callable[[], float] = time.perf_counter) -> None:
        self.console, self.description, self.clock = console, description, clock
        self.t0: float | None = None
        self.done0 = 0
        self.next_quarter = 1
        self.progress: Any = None
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if self.t0 is None:
            self.t0, self.done0 = self.clock(), done
            self.next_quarter = 4 * done // total + 1 if total > 0 else 1
            if self.console.is_terminal:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                           TimeRemainingColumn)

                self.progress = Progress(TextColumn(escape(self.description)), BarColumn(), MofNCompleteColumn(),
                                         TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
                                         transient=True)
                self.progress.start()
                self.task = self.progress.add_task(self.description, total=total, completed=done)
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)
            if done >= total:
                self.close()
            return
        if self.console.is_terminal or total <= 0 or 4 * done // total < self.next_quarter:
            return
        self.next_quarter = 4 * done // total + 1
        elapsed = self.clock() - self.t0
        rate = (done - self.done0) / elapsed if elapsed > 0 else 0.0
        eta = "" if done >= total or rate <= 0 else f", ETA {format_eta((total - done) / rate)}"
        self.console.print(escape(f"{self.description}: {done}/{total} ({done / total:.0%}), {elapsed:.1f}s{eta}"))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@contextlib.contextmanager
def step_progress(console: Console, description: str) -> Iterator[StepProgress]:
    """A ``StepProgress`` closed on the way out (its bar is transient: the summary line replaces it)."""
    bar = StepProgress(console, description)
    try:
        yield bar
    finally:
        bar.close()
