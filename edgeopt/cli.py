"""The ``edgeopt`` command line: parse and validate, call one stage function, render with rich.

No stage logic lives here; heavy libraries are imported inside the commands so ``--help`` is
instant and works without torch, onnxruntime or TensorRT being importable.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional


import click
import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.table import Table

from edgeopt import __version__
from edgeopt.errors import EdgeoptError

class _Group(TyperGroup):
    """Turns an ``EdgeoptError`` into one red line and exit code 1 (no traceback)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except EdgeoptError as exc:
            err_console.print(f"[red]error:[/] {exc}", soft_wrap=True)
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

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

ExistingDir = Annotated[Path, typer.Argument(exists=True, file_okay=False, help="A folder of <class>/<image> crops.")]


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


def _warn(message: warnings.WarningMessage | str) -> None:
    err_console.print(f"[yellow]warning:[/] {message}")


# -- data ---------------------------------------------------------------------------------------
@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to render the crops into.")] = Path("data/synthetic"),
    per_class: Annotated[int, typer.Option(min=2, help="Images per class.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same images).")] = 0,
) -> None:
    """Render the embedded SYNTHETIC demo dataset (6 shape classes) in the crops layout."""
    from edgeopt.data.synthetic import render_synthetic

    root = render_synthetic(out, per_class=per_class, seed=seed)
    console.print(f"rendered SYNTHETIC dataset: {per_class} images x 6 classes -> {root}")


@data_app.command("stats")
def data_stats(root: ExistingDir) -> None:
    """Class counts, image sizes and imbalance ratio of a crops folder."""
    from edgeopt.data.stats import compute_stats

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = compute_stats(root)
    for w in caught:
        _warn(w.message)
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


@data_app.command("taco")
def data_taco(
    annotations: Annotated[Path, typer.Option("--annotations", help="TACO's COCO annotations.json.")],
    images: Annotated[Path, typer.Option("--images", help="Folder the annotation file_names are relative to.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write <class>/<crop>.jpg into.")],
    classes: Annotated[str, typer.Option("--classes", help="taco6, taco9, or a MAP.yaml of your own.")] = "taco6",
    padding: Annotated[float, typer.Option(help="Pad each box by this fraction of its side.")] = 0.0,
    min_size: Annotated[int, typer.Option("--min-size", help="Skip crops whose shorter side is under this (px).")] = 8,
    download: Annotated[bool, typer.Option("--download", help="Fetch missing images from their Flickr URLs.")] = False,
) -> None:
    """Convert TACO's COCO annotations into ImageFolder class crops."""
    from edgeopt.data.taco import convert_taco

    summary = convert_taco(annotations, images, out, classes, padding, min_size, download)
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


def main() -> None:
    """Console-script entry point."""
    app()
