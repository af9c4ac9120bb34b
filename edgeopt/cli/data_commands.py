"""``edgeopt data``: synthetic data, folder statistics, TACO boxes -> crops, pool/judge/test splits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeopt.cli.render import (
    render_split,
    render_stats,
    render_taco,
)


from edgeopt.cli.common import (
    ConfigFile,
    data_app,
    console,
    ExistingDir,
)


# -- data ---------------------------------------------------------------------------------------
@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to render the crops into.")] = Path("data/synthetic"),
    per_class: Annotated[int, typer.Option(min=2, help="Images per class.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same images).")] = 0,
    config: ConfigFile = None,
) -> None:
    """Render the embedded SYNTHETIC demo dataset (6 shape classes) in the crops layout."""
    from edgeopt.data.synthetic import render_synthetic

    root = render_synthetic(out, per_class=per_class, seed=seed)
    console.print(f"rendered SYNTHETIC dataset: {per_class} images x 6 classes -> {root}")


@data_app.command("stats")
def data_stats(root: ExistingDir,
    config: ConfigFile = None,
) -> None:
    """Class counts, image sizes and imbalance ratio of a crops folder."""
    from edgeopt.data.stats import compute_stats

    stats = compute_stats(root)
    render_stats(stats)

@data_app.command("taco")
def data_taco(
    annotations: Annotated[Path, typer.Option("--annotations", help="TACO's COCO annotations.json.")],
    images: Annotated[Path, typer.Option("--images", help="Folder the annotation file_names are relative to.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write <class>/<crop>.jpg into.")],
    classes: Annotated[str, typer.Option("--classes", help="taco6, taco9, or a MAP.yaml of your own.")] = "taco6",
    padding: Annotated[float, typer.Option(help="Pad each box by this fraction of its side.")] = 0.0,
    min_size: Annotated[int, typer.Option("--min-size", help="Skip crops whose shorter side is under this (px).")] = 8,
    download: Annotated[bool, typer.Option("--download", help="Fetch missing images from their Flickr URLs (http(s) only).")] = False,
    max_image_mb: Annotated[float, typer.Option("--max-image-mb", min=0.001, help="With --download: refuse an image over this size.")] = 64.0,
    config: ConfigFile = None,
) -> None:
    """Convert TACO's COCO annotations into ImageFolder class crops."""
    from edgeopt.data.taco import convert_taco

    summary = convert_taco(annotations, images, out, classes=classes, padding=padding, min_size=min_size, download=download,
                           max_download_bytes=int(max_image_mb * 1024 * 1024))
    render_taco(summary)


@data_app.command("split")
def data_split(
    root: ExistingDir,
    out: Annotated[Path, typer.Option("--out", help="A new folder for pool/, judge/, test/ and split.json.")],
    test: Annotated[float, typer.Option("--test", help="Share of each class held out for test/ (only reported on).")] = 0.2,
    judge: Annotated[float, typer.Option("--judge", help="Share of each class for judge/ (checks INT8 and engines; 0: none).")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same split).")] = 0,
    config: ConfigFile = None,
) -> None:
    """Split a crops folder into pool/ (trains), judge/ (checks INT8, engines) and test/ (reported on): stratified, seeded, as links."""
    from edgeopt.data.split import split_folder

    result = split_folder(root, out, test=test, judge=judge, seed=seed)
    render_split(result)
