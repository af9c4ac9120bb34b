"""``edgeopt predict``: a folder of crops through any artifact, into a CSV of class and confidence per file."""

from __future__ import annotations

from pathlib import Path
import typer

from edgeopt.cli.common import Backend, ConfigFile, ExistOk, app, argument, console, option, run_out
from edgeopt.runtime.classify import PredictConfig
from edgeopt.cli.progress import step_progress
from edgeopt.cli.render import render_predictions


@app.command("predict")
def predict_cmd(
    ctx: typer.Context,
    artifact: Path = argument(PredictConfig, "artifact", exists=True, dir_okay=False),
    folder: Path = argument(PredictConfig, "folder", exists=True, file_okay=False),
    out: Path = option(PredictConfig, "out"),
    top_k: int = option(PredictConfig, "top_k"),
    batch_size: int = option(PredictConfig, "batch_size"),
    backend: Backend = "auto",
    device: str = option(PredictConfig, "device"),
    workers: int = option(PredictConfig, "workers"),
    unlabelled: bool = option(PredictConfig, "unlabelled"),
    exist_ok: ExistOk = False,
    config: ConfigFile = None,
) -> None:
    """Classify every image under FOLDER: one CSV row per file (class, confidence), and the count of each class."""
    from edgeopt.runtime.classify import classify_folder

    config = PredictConfig(artifact=artifact, folder=folder, out=run_out(ctx, out, exist_ok), top_k=top_k, batch_size=batch_size,
                           backend=backend, device=device, workers=workers, unlabelled=unlabelled)
    with step_progress(console, f"predict {folder}") as progress:
        result = classify_folder(config, progress=progress)
    render_predictions(result)
