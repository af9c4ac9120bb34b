"""``edgeopt predict``: a folder of crops through any artifact, into a CSV of class and confidence per file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeopt.cli.common import Backend
from edgeopt.cli.common import ConfigFile, ExistOk, app, console, run_out
from edgeopt.cli.progress import step_progress
from edgeopt.cli.render import render_predictions


@app.command("predict")
def predict_cmd(
    ctx: typer.Context,
    artifact: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Checkpoint, ONNX model or engine.")],
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Images to classify, in any layout (recursively).")],
    out: Annotated[Path, typer.Option("--out", help="The CSV: path, prediction, confidence (then the runners-up with --top-k).")] = Path("predictions.csv"),
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes per image, most likely first.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    backend: Backend = "auto",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    workers: Annotated[int, typer.Option(min=1, help="Decode threads.")] = 4,
    unlabelled: Annotated[bool, typer.Option("--unlabelled", help="Classify a folder whose sub-folders look like classes other than the model's.")] = False,
    exist_ok: ExistOk = False,
    config: ConfigFile = None,
) -> None:
    """Classify every image under FOLDER: one CSV row per file (class, confidence), and the count of each class."""
    from edgeopt.runtime.classify import PredictConfig, classify_folder

    config = PredictConfig(artifact=artifact, folder=folder, out=run_out(ctx, out, exist_ok), top_k=top_k, batch_size=batch_size,
                           backend=backend, device=device, workers=workers, unlabelled=unlabelled)
    with step_progress(console, f"predict {folder}") as progress:
        result = classify_folder(config, progress=progress)
    render_predictions(result)
