"""What every command shares: the Typer app and its error/warning handling, consoles, option types."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from edgeopt import __version__
from edgeopt.errors import EdgeoptError, EdgeoptWarning
from edgeopt.cli.render import (
    as_flags,
    set_commands,
    console,
)


class _Group(TyperGroup):
    """Turns an ``EdgeoptError`` into one red line and exit code 1 (no traceback), and every
    ``EdgeoptWarning`` of every command into one yellow line, as it happens."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        with warnings.catch_warnings():
            warnings.simplefilter("always", EdgeoptWarning)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except EdgeoptError as exc:
                err_console.print(f"[red]error:[/] {escape(as_flags(str(exc), ctx.invoked_subcommand))}", soft_wrap=True)
                raise typer.Exit(code=1) from None


app = typer.Typer(
    cls=_Group,
    name="edgeopt",
    help="Train a compact classifier, export it, quantize it, build TensorRT engines and bench it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: TACO -> crops, statistics, the synthetic demo set.", no_args_is_help=True)
app.add_typer(data_app, name="data")
set_commands(lambda: typer.main.get_group(app))  # what as_flags reads the flags from

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

ExistingDir = Annotated[Path, typer.Argument(exists=True, file_okay=False, help="A folder of <class>/<image> crops.")]
# options several commands declare alike
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
Seed = Annotated[int, typer.Option()]
BatchSize = Annotated[int, typer.Option("--batch-size")]
FinetuneLr = Annotated[float, typer.Option(help="Fine-tuning learning rate.")]
FinetuneValSplit = Annotated[float, typer.Option("--val-split", help="0 fine-tunes on all of --data for --epochs.")]
SoftLabels = Annotated[Optional[Path], typer.Option("--soft-labels", exists=True, dir_okay=False,
                                                    help="Distil from a soft-label bank (edgeopt soft-labels) instead of running teachers.")]
# what an ONNX edgeopt did not export (no manifest, no metadata) cannot say of itself
ForeignImgSize = Annotated[Optional[int], typer.Option("--img-size", help="Input size of an ONNX edgeopt did not export.")]
ForeignMean = Annotated[Optional[str], typer.Option("--mean", help="R,G,B mean of an ONNX edgeopt did not export.")]
ForeignStd = Annotated[Optional[str], typer.Option("--std", help="R,G,B std of an ONNX edgeopt did not export.")]
ForeignClasses = Annotated[Optional[Path], typer.Option("--classes", exists=True, dir_okay=False,
                                                        help="Class names, one a line, for an ONNX edgeopt did not export.")]


def _version(value: bool) -> None:
    if value:
        console.print(f"edgeopt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """edgeopt: from a trained compact classifier to a measured edge deployment."""


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """The CLI's one way to warn: ``warning: <message>``. Other libraries' warnings are for their
    developers and stay quiet, unless Python was asked for them (``-W``, ``PYTHONWARNINGS``)."""
    if issubclass(category, EdgeoptWarning):
        err_console.print(f"[yellow]warning:[/] {escape(as_flags(str(message)))}")
    elif sys.warnoptions:
        err_console.print(f"[yellow]warning:[/] {escape(str(message))} ({category.__name__}, {Path(filename).name}:{lineno})")


def parse_batch_sizes(value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use comma-separated integers, e.g. 1,32,256") from None
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter(f"{value!r}: batch sizes must be positive integers")
    return sizes
