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
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from edgeopt import __version__
from edgeopt.errors import EdgeoptError, EdgeoptWarning
from edgeopt.render import (
    RichTrainCallbacks,
    console,
    metrics_table,
    render_eval,
    render_fallback,
    render_manifest,
    render_report,
    render_search,
    render_stats,
    render_taco,
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
                err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
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
        err_console.print(f"[yellow]warning:[/] {escape(str(message))}")
    elif sys.warnoptions:
        err_console.print(f"[yellow]warning:[/] {escape(str(message))} ({category.__name__}, {Path(filename).name}:{lineno})")


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
) -> None:
    """Convert TACO's COCO annotations into ImageFolder class crops."""
    from edgeopt.data.taco import convert_taco

    summary = convert_taco(annotations, images, out, classes=classes, padding=padding, min_size=min_size, download=download,
                           max_download_bytes=int(max_image_mb * 1024 * 1024))
    render_taco(summary)

# -- train / eval / info ------------------------------------------------------------------------
@app.command("train")
def train_cmd(
    model: Annotated[str, typer.Option("--model", help="timm/torchvision name or models/NAME.yaml.")],
    data: Annotated[Path, typer.Option("--data", help="Folder of <class>/<image> crops.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder for best.pt, last.pt, metrics.json, curve.png.")] = Path("runs/train"),
    val: Annotated[Optional[Path], typer.Option("--val", help="Separate validation folder (else --val-split).")] = None,
    val_split: Annotated[float, typer.Option("--val-split", help="Stratified validation fraction of --data; 0 trains on all of it for --epochs (the final epoch is the result).")] = 0.2,
    img_size: Annotated[int, typer.Option("--img-size", help="Input size in pixels.")] = 96,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size.")] = 64,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (default: 1e-3 with --pretrained, else 2e-3).")] = None,
    scale_min: Annotated[Optional[float], typer.Option("--scale-min", help="Smallest random crop, as a share of the image (default: 0.6 with --pretrained, else 0.35).")] = None,
    brightness: Annotated[Optional[float], typer.Option("--brightness", help="Brightness jitter (default: 0.2 with --pretrained, else 0).")] = None,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 0.05,
    optimizer: Annotated[str, typer.Option(help="adamw or sgd.")] = "adamw",
    schedule: Annotated[str, typer.Option(help="cosine (with warm-up) or onecycle.")] = "cosine",
    loss: Annotated[str, typer.Option(help="ce, weighted (class-weighted CE) or focal.")] = "weighted",
    label_smoothing: Annotated[float, typer.Option("--label-smoothing")] = 0.1,
    randaugment: Annotated[int, typer.Option(help="RandAugment magnitude (0 = off).")] = 0,
    mixup: Annotated[float, typer.Option(help="Mixup Beta alpha (0 = off).")] = 0.0,
    pretrained: Annotated[bool, typer.Option("--pretrained", help="Start from ImageNet weights: offline for tf_efficientnet_lite0/1/2 and mobilenet_v2, from the model hub for other names.")] = False,
    teacher: Annotated[Optional[list[Path]], typer.Option("--teacher", help="Teacher checkpoint(s) for distillation; repeat to average several.")] = None,
    soft_labels: SoftLabels = None,
    kd: Annotated[str, typer.Option("--kd", help="all or true-label (KD only where the teacher is right).")] = "all",
    kd_temperature: Annotated[float, typer.Option("--kd-temperature")] = 4.0,
    kd_alpha: Annotated[float, typer.Option("--kd-alpha", help="Weight of the KD term.")] = 0.7,
    device: Device = "auto",
    seed: Seed = 0,
    workers: Annotated[Optional[int], typer.Option(help="DataLoader workers (default: 0 on CPU).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
) -> None:
    """Train a classifier; keeps the best checkpoint by validation macro-F1."""
    from edgeopt.distill import KDConfig
    from edgeopt.train import TrainConfig, train_classifier

    config = TrainConfig(model=model, data=data, out=out, val=val, val_split=val_split, img_size=img_size, epochs=epochs,
                         batch_size=batch_size, lr=lr, scale_min=scale_min, brightness=brightness, weight_decay=weight_decay, optimizer=optimizer, schedule=schedule,
                         loss=loss, label_smoothing=label_smoothing, randaugment=randaugment, mixup=mixup,
                         pretrained=pretrained,
                         kd=KDConfig(kd_temperature, kd_alpha, kd, teachers=tuple(teacher or ()), soft_labels=soft_labels), device=device, seed=seed, workers=workers, resume=resume)
    callbacks = RichTrainCallbacks()
    try:
        result = train_classifier(config, callbacks)
    finally:
        callbacks.close()
    if not result.is_main:
        return  # under torchrun one process reports
    if result.best_macro_f1 == result.best_macro_f1:
        console.print(f"best val macro-F1 {result.best_macro_f1:.4f} at epoch {result.best_epoch} -> {result.best_checkpoint}")
    else:
        console.print(f"trained on the whole pool for {result.best_epoch} epochs (no validation split) -> {result.best_checkpoint}")
    where = f" x {result.distributed['world_size']} processes ({result.distributed['backend']})" if result.distributed else ""
    console.print(f"{result.macs / 1e6:.2f} M MACs, {result.params / 1e6:.3f} M params, {result.seconds:.1f}s on {result.device}{where}")


@app.command("soft-labels")
def soft_labels_cmd(
    teachers: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Teacher checkpoint(s); their logits are averaged in training.")],
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False, help="Folder of <class>/<image> crops.")],
    out: Annotated[Path, typer.Option("--out", help="The bank file (NAME.bank) and its manifest NAME.bank.json.")] = Path("runs/soft_labels.bank"),
    views: Annotated[int, typer.Option("--views", help="Augmented views per image: one per student epoch.")] = 10,
    scale_min: Annotated[float, typer.Option("--scale-min", help="Smallest random crop, as a share of the image.")] = 0.35,
    brightness: Annotated[float, typer.Option("--brightness", help="Brightness jitter.")] = 0.0,
    batch_size: BatchSize = 64,
    device: Device = "auto",
    seed: Seed = 0,
) -> None:
    """Run the teachers once over N augmented views of every image and store their logits (a soft-label bank)."""
    from edgeopt.render import progress_bar
    from edgeopt.soft_labels import SoftLabelConfig, make_bank

    config = SoftLabelConfig(teachers=teachers, data=data, out=out, views=views, scale_min=scale_min, brightness=brightness,
                             seed=seed, batch_size=batch_size, device=device)
    with progress_bar("teachers over the views") as advance:
        result = make_bank(config, progress=advance)
    rate = "" if result.views_per_second != result.views_per_second else f", {result.views_per_second:.0f} teacher passes/s"
    if result.reused:
        console.print(f"soft-label bank {result.path} is complete for these teachers, images and settings: nothing to do")
        return
    resumed = f", {result.resumed_chunks} chunk(s) resumed" if result.resumed_chunks else ""
    console.print(f"soft-label bank: {result.images} images x {result.views} views x {result.teachers} teacher(s) "
                  f"({result.bytes / 1e6:.1f} MB, {result.seconds:.1f}s{rate}{resumed}) -> {result.path}")


@app.command("eval")
def eval_cmd(
    artifacts: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Checkpoint, ONNX model or engine.")],
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False, help="Folder of <class>/<image> crops.")],
    compare: Annotated[bool, typer.Option("--compare", help="Parity table of several artifacts (agreement with the first).")] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Confusion-matrix PNG (single artifact).")] = None,
    backend: Annotated[str, typer.Option(help="auto, torch, onnxruntime or tensorrt.")] = "auto",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    int8_exec: Annotated[str, typer.Option("--int8-exec", help="INT8 ONNX: emulate (emulated Q/DQ: quantize-dequantize in float) or kernels (ORT's CPU int8 kernels).")] = "emulate",
) -> None:
    """Macro-F1, accuracy, per-class F1 and confusion matrix of an artifact on a labelled folder."""
    from edgeopt.evaluate import compare_artifacts, evaluate_artifact

    if len(artifacts) > 1 or compare:
        results = compare_artifacts(artifacts, data, backend=backend, device=device, batch_size=batch_size,
                                    json_path=json_path, int8_exec=int8_exec)
        console.print(metrics_table(f"parity on {data}", results))
        return
    result = evaluate_artifact(artifacts[0], data, backend=backend, device=device, batch_size=batch_size,
                               plot=plot, json_path=json_path, int8_exec=int8_exec)
    render_eval(result, data)

@app.command("info")
def info_cmd(
    target: Annotated[str, typer.Argument(help="An artifact (best.pt, model.onnx, model.engine), a model name or a YAML file.")],
    img_size: Annotated[int, typer.Option("--img-size", help="Input size for a model name or YAML.")] = 96,
    num_classes: Annotated[int, typer.Option("--num-classes", min=2)] = 6,
    layers: Annotated[bool, typer.Option("--layers", help="A TensorRT engine: every layer (type, precision, tactic, ONNX nodes).")] = False,
) -> None:
    """What an artifact is (manifest) or what a model costs (MACs, params) at an input size."""
    from edgeopt.artifacts import suffix_kind

    path = Path(target)
    if suffix_kind(path) is not None:
        from edgeopt.evaluate import artifact_manifest

        manifest = artifact_manifest(path)
        render_manifest(path, manifest)
        if layers:
            from edgeopt.render import render_engine_layers

            render_engine_layers(path, manifest)
        return
    if layers:
        raise typer.BadParameter("--layers lists the layers of a built engine: pass a .engine file", param_hint="--layers")
    from edgeopt.models import count_complexity, create_model

    model, arch = create_model(target, num_classes)
    c = count_complexity(model, img_size)
    console.print(f"{target}: {c.macs / 1e6:.2f} M MACs at {img_size} px, {c.params / 1e6:.3f} M params ({arch['source']})")


# -- export / calibrate ---------------------------------------------------------------------------
@app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="best.pt from edgeopt train.")],
    out: Annotated[Path, typer.Option("--out", help="Output .onnx path.")] = Path("model.onnx"),
    opset: Annotated[int, typer.Option(help="ONNX opset (13-21).")] = 17,
    static_batch: Annotated[bool, typer.Option("--static-batch", help="Fixed batch axis (default: dynamic).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="The batch of a --static-batch export.")] = 1,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 weights/compute with FP32 inputs/outputs.")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", exists=True, file_okay=False, help="Real images for the parity check.")] = None,
) -> None:
    """Export a checkpoint to ONNX: BN folded, onnxslim, onnx.checker, parity against PyTorch."""
    from edgeopt.export import export_onnx

    result = export_onnx(checkpoint, out, opset=opset, static_batch=static_batch, fp16=fp16, data=data, batch_size=batch_size)
    p = result.parity
    console.print(f"exported {result.precision.upper()} ONNX (opset {result.opset}) -> {result.path}")
    console.print(f"parity vs PyTorch on {p.images} {p.source} inputs: max |Δlogit| {p.max_abs_diff:.2e}, "
                  f"top-1 agreement {p.top1_agreement:.2%}")


@app.command("calibrate")
def calibrate_cmd(
    model: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="FP32 ONNX from edgeopt export.")],
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False, help="Folder of <class>/<image> crops.")],
    out: Annotated[Path, typer.Option("--out", help="Output Q/DQ INT8 .onnx path.")] = Path("model.int8.onnx"),
    num_images: Annotated[int, typer.Option("--num-images", min=1, help="Calibration subset size (stratified).")] = 512,
    method: Annotated[Optional[str], typer.Option(help="minmax, entropy or percentile (default: entropy for tensorrt, minmax for cpu).")] = None,
    target: Annotated[str, typer.Option("--target", help="tensorrt (Q/DQ for engines), cpu (ONNX Runtime's int8 kernels on any x86 CPU) or cpu-vnni (8-bit weights, VNNI/AMX CPUs only).")] = "tensorrt",
    max_f1_drop: Annotated[Optional[float], typer.Option("--max-f1-drop", help="Leave the most sensitive layers in float until the macro-F1 drop on --eval-data is at most this.")] = None,
    max_disagreement: Annotated[Optional[float], typer.Option("--max-disagreement", help="Label-free budget instead: at most this share of --eval-data images may change top-1 class against FP32 (unlabelled folders work).")] = None,
    eval_data: Annotated[Optional[Path], typer.Option("--eval-data", exists=True, file_okay=False, help="Images the model did not train on, for the budget (labelled <class>/<image> for --max-f1-drop; not the test split).")] = None,
    eval_images: Annotated[Optional[int], typer.Option("--eval-images", min=1, help="Judge the budget on this many of the --eval-data images (deterministic; stratified when labelled).")] = None,
    allow_train_eval: Annotated[bool, typer.Option("--allow-train-eval", help="Measure the budget even on images the model trained on (warned and recorded; it understates the loss).")] = False,
    equalize: Annotated[bool, typer.Option("--equalize", help="Cross-layer equalization of consecutive convolutions first (exact in FP32).")] = False,
    bias_correction: Annotated[bool, typer.Option("--bias-correction", help="Remove each layer's mean INT8 output error on the calibration images.")] = False,
    adaround: Annotated[bool, typer.Option("--adaround", help="Learn each weight's rounding per layer on the calibration images (AdaRound).")] = False,
    adaround_iterations: Annotated[int, typer.Option("--adaround-iterations", min=1, help="AdaRound steps per layer.")] = 500,
    adaround_images: Annotated[int, typer.Option("--adaround-images", min=1, help="Calibration images AdaRound and bias correction use.")] = 256,
    quantizer: Annotated[str, typer.Option(help="onnxruntime, or modelopt (needs edgeopt[modelopt]).")] = "onnxruntime",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    seed: Seed = 0,
    calibration_dir: Annotated[Optional[Path], typer.Option("--calibration-dir", help="Where the calibration record goes (default: beside --out).")] = None,
    skip_first_last: Annotated[bool, typer.Option("--skip-first-last", help="Leave the first conv and the classifier unquantized.")] = False,
) -> None:
    """Quantize to explicit INT8 (Q/DQ ONNX, symmetric, per-channel weights) on real crops."""
    from edgeopt.calibrate import calibrate_onnx
    from edgeopt.int8_fallback import FallbackConfig
    from edgeopt.ptq import PtqOptions

    budget = max_f1_drop is not None or max_disagreement is not None
    if budget != (eval_data is not None):
        raise typer.BadParameter("--eval-data goes with a budget (--max-f1-drop or --max-disagreement), and a budget with --eval-data",
                                 param_hint="--max-f1-drop/--max-disagreement/--eval-data")
    if not budget and (eval_images is not None or allow_train_eval):
        raise typer.BadParameter("--eval-images and --allow-train-eval go with a budget (--max-f1-drop or --max-disagreement)",
                                 param_hint="--eval-images/--allow-train-eval")
    fallback = FallbackConfig(max_f1_drop, eval_data, max_disagreement=max_disagreement, eval_images=eval_images,
                              allow_train_eval=allow_train_eval) if budget else None
    ptq = PtqOptions(equalize=equalize, bias_correction=bias_correction, adaround=adaround,
                     adaround_iterations=adaround_iterations, adaround_images=adaround_images, seed=seed)
    result = calibrate_onnx(model, data, out, num_images=num_images, method=method, quantizer=quantizer,
                            batch_size=batch_size, seed=seed, calibration_dir=calibration_dir,
                            skip_first_last=skip_first_last, target=target, fallback=fallback, ptq=ptq)
    if result.fallback is not None:
        render_fallback(result.fallback)
    kind = "Q/DQ ONNX for TensorRT" if result.target == "tensorrt" else f"ONNX for ONNX Runtime's CPU kernels ({result.target}, QOperator)"
    console.print(f"INT8 {kind} ({result.method}, {result.quantizer}) -> {result.path}")
    console.print(f"calibrated on {result.num_images} images in {result.batches} batches; {result.qdq_nodes} Q/DQ nodes; "
                  f"manifest {result.calibration_manifest}")


@app.command("prune")
def prune_cmd(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="best.pt from edgeopt train.")],
    target_macs: Annotated[str, typer.Option("--target-macs", help="MACs to prune down to, e.g. 20M.")],
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False, help="Crops to fine-tune on.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: pruned.pt, then best.pt after fine-tuning.")] = Path("runs/prune"),
    epochs: Annotated[int, typer.Option(help="Distillation fine-tuning epochs (0: prune only).")] = 10,
    importance: Annotated[str, typer.Option(help="l2 (weight magnitude) or taylor (first-order, on --data).")] = "l2",
    global_pruning: Annotated[bool, typer.Option("--global/--uniform", help="Rank channels across layers, or prune each layer alike.")] = False,
    lr: FinetuneLr = 1e-3,
    batch_size: BatchSize = 64,
    val_split: FinetuneValSplit = 0.2,
    device: Device = "auto",
    seed: Seed = 0,
    soft_labels: SoftLabels = None,
) -> None:
    """Structured channel pruning (Torch-Pruning) to a MAC target, then distillation from the unpruned model."""
    from edgeopt.compress import FinetuneOptions
    from edgeopt.distill import KDConfig
    from edgeopt.prune import PruneConfig, parse_macs, prune_checkpoint

    finetune = FinetuneOptions(epochs=epochs, lr=lr, batch_size=batch_size, val_split=val_split, device=device, seed=seed,
                               kd=KDConfig(soft_labels=soft_labels))
    result = prune_checkpoint(PruneConfig(checkpoint=checkpoint, data=data, out=out, target_macs=parse_macs(target_macs),
                                          importance=importance, global_pruning=global_pruning, finetune=finetune),
                              log=lambda m: console.print(escape(m)))
    if result.best_checkpoint is not None:
        f1 = "" if result.best_macro_f1 != result.best_macro_f1 else f", val macro-F1 {result.best_macro_f1:.4f}"
        console.print(f"fine-tuned {result.macs_after / 1e6:.2f}M-MAC model{f1} -> {result.best_checkpoint}")


@app.command("decompose")
def decompose_cmd(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="best.pt from edgeopt train (or prune).")],
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False, help="Crops to fine-tune on.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: decomposed.pt, then best.pt after fine-tuning.")] = Path("runs/decompose"),
    energy: Annotated[float, typer.Option(help="Share of squared singular values each channel mode keeps (--ranks energy).")] = 0.9,
    ranks: Annotated[str, typer.Option(help="energy (threshold --energy) or vbmf (empirical variational Bayes per layer).")] = "energy",
    pointwise: Annotated[bool, typer.Option("--pointwise", help="Decompose 1x1 convolutions too (MobileNet-style nets are mostly 1x1).")] = False,
    epochs: Annotated[int, typer.Option(help="Distillation fine-tuning epochs (0: decompose only).")] = 10,
    lr: FinetuneLr = 1e-3,
    batch_size: BatchSize = 64,
    val_split: FinetuneValSplit = 0.2,
    device: Device = "auto",
    seed: Seed = 0,
    soft_labels: SoftLabels = None,
) -> None:
    """Tucker-2 decomposition of the convolutions (TensorLy), then distillation from the original."""
    from edgeopt.compress import FinetuneOptions
    from edgeopt.decompose import DecomposeConfig, decompose_checkpoint
    from edgeopt.distill import KDConfig

    finetune = FinetuneOptions(epochs=epochs, lr=lr, batch_size=batch_size, val_split=val_split, device=device, seed=seed,
                               kd=KDConfig(soft_labels=soft_labels))
    result = decompose_checkpoint(DecomposeConfig(checkpoint=checkpoint, data=data, out=out, energy=energy, ranks=ranks,
                                                  pointwise=pointwise, finetune=finetune), log=lambda m: console.print(escape(m)))
    if result.best_checkpoint is not None:
        console.print(f"fine-tuned {result.macs_after / 1e6:.2f}M-MAC model -> {result.best_checkpoint}")


def _floats(value: str, flag: str) -> tuple[float, float]:
    """``"1e-3"`` -> (1e-3, 1e-3); ``"3e-4,3e-3"`` -> a range."""
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise EdgeoptError(f"{flag} {value!r}: give a number or LOW,HIGH (e.g. 3e-4,3e-3)") from None
    if len(parts) not in (1, 2):
        raise EdgeoptError(f"{flag} {value!r}: give a number or LOW,HIGH (e.g. 3e-4,3e-3)")
    return (parts[0], parts[-1])


@app.command("search")
def search_cmd(
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False, help="Crops to train and validate on.")],
    out: Annotated[Path, typer.Option("--out", help="Trial folders, search.db, pareto.json/png, chosen/.")] = Path("runs/search"),
    study: Annotated[str, typer.Option(help="Study name; workers on one --storage with the same name share it.")] = "edgeopt",
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL (default sqlite:///OUT/search.db; postgresql://... for many machines).")] = None,
    trials: Annotated[int, typer.Option(help="Finished trials the study should hold (all workers together).")] = 20,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds this worker searches before it stops.")] = None,
    objective: Annotated[str, typer.Option(help="pareto (val macro-F1 up, MACs down) or score (competition MAC score).")] = "pareto",
    backbones: Annotated[str, typer.Option(help="Comma-separated models to choose from.")] = ",".join(("tf_efficientnet_lite0", "mobilenet_v2")),
    sizes: Annotated[str, typer.Option(help="Comma-separated input sizes to choose from.")] = "48,64,80,96",
    max_prune: Annotated[float, typer.Option("--max-prune", help="Largest fraction of MACs pruned away (0: never prune).")] = 0.5,
    lr: Annotated[str, typer.Option(help="Learning rate, or LOW,HIGH (log-uniform).")] = "3e-4,3e-3",
    teacher: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Checkpoint to distill from (KD T and alpha are searched).")] = None,
    soft_labels: SoftLabels = None,
    kd_temperature: Annotated[str, typer.Option("--kd-temperature", help="KD temperature, or LOW,HIGH.")] = "1,8",
    kd_alpha: Annotated[str, typer.Option("--kd-alpha", help="KD weight, or LOW,HIGH.")] = "0,0.9",
    epochs: Annotated[int, typer.Option(help="Training epochs per trial.")] = 12,
    batch_size: BatchSize = 64,
    val_split: Annotated[float, typer.Option("--val-split", help="Share of --data that validates (selects) every trial.")] = 0.2,
    schedule: Annotated[str, typer.Option(help="Learning-rate schedule of every trial: cosine or onecycle.")] = "cosine",
    final_epochs: Annotated[int, typer.Option("--final-epochs", help="Train the chosen point again on all of --data for N epochs (0: no).")] = 0,
    int8_max_drop: Annotated[Optional[float], typer.Option("--int8-max-drop", help="Make the final run's INT8 too: hold --int8-holdout of --data out of it, and keep PTQ or QAT, whichever loses less macro-F1 on that slice (QAT only when PTQ's drop is over this).")] = None,
    int8_holdout: Annotated[float, typer.Option("--int8-holdout", help="Share of --data held out of the final run to judge INT8.")] = 0.1,
    int8_qat_epochs: Annotated[int, typer.Option("--int8-qat-epochs", min=1, help="QAT epochs when PTQ misses --int8-max-drop.")] = 3,
    pretrained: Annotated[bool, typer.Option("--pretrained/--scratch", help="Start from ImageNet weights (offline where edgeopt ships them).")] = True,
    max_macs: Annotated[Optional[str], typer.Option("--max-macs", help="Choose the best val F1 within this budget, e.g. 20M (default: best score).")] = None,
    baseline: Annotated[str, typer.Option(help="Baseline model of the score (MACs at its own input size).")] = "resnet18d",
    baseline_f1: Annotated[float, typer.Option("--baseline-f1", help="Baseline macro-F1 of the score.")] = 0.884,
    heartbeat: Annotated[int, typer.Option(help="Seconds between trial heartbeats; a silent trial is retried after 2x.")] = 60,
    seed: Annotated[Optional[int], typer.Option(help="Sampler seed (give each worker its own).")] = None,
    device: Device = "auto",
    workers: Annotated[Optional[int], typer.Option(help="DataLoader workers per trial (default: 0 on CPU).")] = None,
    report_only: Annotated[bool, typer.Option("--report", help="Run no trial: report the study as it stands (and export the chosen point).")] = False,
) -> None:
    """Optuna search over backbone x size x pruning x distillation x lr; Pareto table, plot and the chosen model."""
    from edgeopt.distill import KDConfig
    from edgeopt.int8_path import Int8PathConfig
    from edgeopt.prune import parse_macs
    from edgeopt.search import SearchConfig, SearchSpace, run_search

    try:
        size_list = tuple(int(v) for v in sizes.split(","))
    except ValueError:
        raise EdgeoptError(f"--sizes {sizes!r}: give comma-separated integers, e.g. 48,64,96") from None
    space = SearchSpace(backbones=tuple(b.strip() for b in backbones.split(",") if b.strip()), sizes=size_list,
                        max_prune=max_prune, lr=_floats(lr, "--lr"), kd_temperature=_floats(kd_temperature, "--kd-temperature"),
                        kd_alpha=_floats(kd_alpha, "--kd-alpha"))
    config = SearchConfig(data=data, out=out, study=study, storage=storage, trials=trials, timeout=timeout, space=space,
                          objective=objective, kd=KDConfig(teachers=(teacher,) if teacher else (), soft_labels=soft_labels), epochs=epochs, batch_size=batch_size, val_split=val_split,
                          schedule=schedule, final_epochs=final_epochs,
                          int8=Int8PathConfig(max_drop=int8_max_drop, holdout=int8_holdout, qat_epochs=int8_qat_epochs)
                          if int8_max_drop is not None else None,
                          pretrained=pretrained, baseline=baseline, baseline_f1=baseline_f1, heartbeat=heartbeat, seed=seed,
                          max_macs=parse_macs(max_macs) if max_macs else None, device=device, workers=workers)
    result = run_search(config, log=lambda m: console.print(escape(m)), report_only=report_only)
    render_search(result)


@app.command("qat")
def qat_cmd(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="best.pt from edgeopt train.")],
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False, help="Training crops (<class>/<image>).")],
    out: Annotated[Path, typer.Option("--out", help="Output Q/DQ INT8 .onnx path.")] = Path("model.qat.onnx"),
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs with fake quantization.")] = 3,
    lr: Annotated[float, typer.Option(help="Learning rate (low: the weights only adapt).")] = 1e-4,
    batch_size: BatchSize = 32,
    num_images: Annotated[int, typer.Option("--num-images", help="Images for the activation ranges.")] = 256,
    device: Device = "cpu",
    seed: Seed = 0,
    soft_labels: SoftLabels = None,
) -> None:
    """Quantization-aware fine-tuning -> a Q/DQ INT8 ONNX in the form TensorRT takes."""
    from edgeopt.distill import KDConfig
    from edgeopt.qat import QatConfig, qat_finetune

    result = qat_finetune(QatConfig(checkpoint=checkpoint, data=data, out=out, epochs=epochs, lr=lr,
                                    batch_size=batch_size, num_calib_images=num_images, device=device, seed=seed,
                                    kd=KDConfig(soft_labels=soft_labels)),
                          log=lambda m: console.print(escape(m)))
    console.print(f"QAT INT8 Q/DQ ONNX ({result.quantized_layers} quantized layers, {result.seconds:.1f}s) -> {result.path}")


# -- build-engine -----------------------------------------------------------------------------
@app.command("build-engine")
def build_engine_cmd(
    onnx: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="ONNX from edgeopt export or calibrate, or any classifier ONNX.")],
    fp16: Annotated[bool, typer.Option("--fp16", help="Build an FP16 engine.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Build an INT8 engine (Q/DQ ONNX, or FP32 + --calib-data).")] = False,
    out: Annotated[Path, typer.Option("--out", help="Output .engine path.")] = Path("model.engine"),
    calib_data: Annotated[Optional[Path], typer.Option("--calib-data", exists=True, file_okay=False, help="Crops to calibrate on.")] = None,
    calibrator: Annotated[Optional[str], typer.Option("--calibrator", help="Legacy implicit INT8 (TensorRT < 11): entropy or minmax.")] = None,
    min_batch: Annotated[Optional[int], typer.Option("--min-batch", help="Default: 1, or the ONNX's fixed batch.")] = None,
    opt_batch: Annotated[Optional[int], typer.Option("--opt-batch", help="Default: --max-batch.")] = None,
    max_batch: Annotated[Optional[int], typer.Option("--max-batch", help="Default: 32, or the ONNX's fixed batch.")] = None,
    workspace: Annotated[float, typer.Option("--workspace", help="Workspace memory-pool limit, GiB.")] = 4.0,
    timing_cache: Annotated[Optional[Path], typer.Option("--timing-cache", help="Load and save the builder timing cache here.")] = None,
    opt_level: Annotated[int, typer.Option("--opt-level", help="Builder optimization level 0-5.")] = 3,
    hw_compat: Annotated[str, typer.Option("--hw-compat", help="none, ampere+ or same-cc (TensorRT 10.9+).")] = "none",
    num_images: Annotated[int, typer.Option("--num-images", min=1)] = 512,
    calib_batch_size: Annotated[int, typer.Option("--calib-batch-size", min=1, help="Images per calibration batch.")] = 32,
    img_size: ForeignImgSize = None,
    mean: ForeignMean = None,
    std: ForeignStd = None,
    classes: ForeignClasses = None,
    dla_core: Annotated[Optional[int], typer.Option("--dla-core", help="Jetson: build for this DLA core (GPU fallback for the rest; one batch size).")] = None,
    int8_float: Annotated[str, typer.Option("--int8-float", help="INT8: run the unquantized layers in fp16 (8.6-10.x: FP16 flag; 11.x: FP16 float part cast into the Q/DQ ONNX) or fp32.")] = "fp16",
    verify: Annotated[Optional[Path], typer.Option("--verify", exists=True, file_okay=False, help="Run the engine against its FP32 ONNX on these images; refuse it past the budget.")] = None,
    max_f1_drop: Annotated[float, typer.Option("--max-f1-drop", help="--verify budget on labelled images: macro-F1 drop against the FP32 ONNX.")] = 0.01,
    max_disagreement: Annotated[float, typer.Option("--max-disagreement", help="--verify budget on unlabelled images: share of top-1 changes.")] = 0.02,
) -> None:
    """Build a TensorRT engine from any ONNX (TensorRT 8.6-10.x with builder flags, 11.x strongly typed)."""
    from edgeopt.trt.build import build_engine
    from edgeopt.trt.plan import BuildOptions
    from edgeopt.trt.verify import VerifyConfig

    if fp16 == int8:
        raise typer.BadParameter("pass exactly one of --fp16 or --int8", param_hint="--fp16/--int8")
    options = BuildOptions(precision="fp16" if fp16 else "int8", calib_data=calib_data, calibrator=calibrator,
                           min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace_gib=workspace,
                           timing_cache=timing_cache, opt_level=opt_level, hw_compat=hw_compat, num_images=num_images,
                           calib_batch_size=calib_batch_size, img_size=img_size, mean=_rgb(mean, "--mean"),
                           std=_rgb(std, "--std"), classes_file=classes, int8_float=int8_float, dla_core=dla_core)
    check = VerifyConfig(verify, max_f1_drop=max_f1_drop, max_disagreement=max_disagreement) if verify is not None else None
    result = build_engine(onnx, out, options, log=lambda m: console.print(escape(m)), verify=check)
    console.print(f"engine -> {result.path} ({result.engine_bytes / 1e6:.2f} MB, TensorRT {result.trt_version}, {result.build_seconds:.1f}s)"
                  + (", verified" if result.verification else ""))


def _rgb(value: str | None, flag: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise typer.BadParameter(f"{value!r}: give three comma-separated numbers, e.g. 0.485,0.456,0.406", param_hint=flag)
    return parts  # type: ignore[return-value]


# -- triton ---------------------------------------------------------------------------------------
@app.command("triton")
def triton_cmd(
    artifact: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="ONNX model or TensorRT engine.")],
    repo: Annotated[Path, typer.Option("--repo", help="Triton model repository folder.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Model name (default: the artifact's file stem).")] = None,
    version: Annotated[int, typer.Option("--version", help="Model version folder.")] = 1,
    max_batch_size: Annotated[Optional[int], typer.Option("--max-batch-size", help="Default: the engine profile's max, or 32.")] = None,
    dynamic_batching: Annotated[bool, typer.Option("--dynamic-batching/--no-dynamic-batching")] = True,
    preferred_batch_sizes: Annotated[str, typer.Option("--preferred-batch-sizes", help="e.g. 8,16")] = "",
    max_queue_delay_us: Annotated[int, typer.Option("--max-queue-delay-us")] = 100,
    instances: Annotated[int, typer.Option("--instances", help="Model instances.")] = 1,
    cpu: Annotated[bool, typer.Option("--cpu", help="KIND_CPU instances (ONNX Runtime on the CPU).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a model of the same name in the repository.")] = False,
    img_size: ForeignImgSize = None,
    mean: ForeignMean = None,
    std: ForeignStd = None,
    classes: ForeignClasses = None,
) -> None:
    """Write a Triton Inference Server model-repository entry (config.pbtxt, model file, labels) for
    an engine or any classifier ONNX."""
    from edgeopt.triton import TritonConfig, export_triton
    from edgeopt.trt.model_info import InputDescription

    sizes = _parse_batch_sizes(preferred_batch_sizes) if preferred_batch_sizes else ()
    describe = InputDescription(img_size=img_size, mean=_rgb(mean, "--mean"), std=_rgb(std, "--std"), classes_file=classes)
    result = export_triton(TritonConfig(artifact=artifact, repo=repo, describe=describe, name=name, version=version,
                                        max_batch_size=max_batch_size, dynamic_batching=dynamic_batching,
                                        preferred_batch_sizes=sizes, max_queue_delay_us=max_queue_delay_us,
                                        instances=instances, instance_kind="KIND_CPU" if cpu else "KIND_GPU", force=force))
    console.print(f"Triton model {result.model_dir.name} ({result.platform}, max_batch_size {result.max_batch_size}) -> "
                  f"{result.config_path}, {result.model_path}")


# -- bench / demo -------------------------------------------------------------------------------
def _parse_batch_sizes(value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use comma-separated integers, e.g. 1,32,256") from None
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter(f"{value!r}: batch sizes must be positive integers")
    return sizes


@app.command("bench")
def bench_cmd(
    artifacts: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Checkpoints, ONNX models or engines.")],
    baseline: Annotated[str, typer.Option(help="A model name (built at its own input size, FP32; FP16 for engines), an artifact path, or 'none'.")] = "resnet18d",
    baseline_checkpoint: Annotated[Optional[Path], typer.Option("--baseline-checkpoint", exists=True, dir_okay=False, help="Weights for a named baseline.")] = None,
    baseline_f1: Annotated[Optional[float], typer.Option("--baseline-f1", help="The baseline's F1 when it has random weights.")] = None,
    baseline_size: Annotated[Optional[int], typer.Option("--baseline-size", help="A named baseline's input size (default: its model config's, 224 for resnet18d).")] = None,
    baseline_precision: Annotated[Optional[str], typer.Option("--baseline-precision", help="fp32, fp16 or int8 (default: fp32; fp16 for engines).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", exists=True, file_okay=False, help="Folder to classify for submit time (and F1 when labelled).")] = None,
    backend: Annotated[str, typer.Option(help="auto, torch, onnxruntime or tensorrt.")] = "auto",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated, e.g. 1,32,256.")] = "1,32",
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per batch size.")] = 50,
    warmup: Annotated[int, typer.Option(min=0)] = 10,
    workers: Annotated[int, typer.Option(min=1, help="Decode threads for submit time.")] = 4,
    submit_runs: Annotated[int, typer.Option("--submit-runs", min=1, help="Rounds of decode-only + full submit passes; medians reported.")] = 3,
    out: Annotated[Path, typer.Option("--out", help="Folder for the baseline artifacts and predictions CSVs.")] = Path("runs/bench"),
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Report JSON (with the machine).")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="PNG of F1 against latency.")] = None,
    int8_exec: Annotated[str, typer.Option("--int8-exec", help="INT8 ONNX: kernels (ORT's CPU int8 speed) or emulate (exact Q/DQ math).")] = "kernels",
    torch_fp16: Annotated[bool, typer.Option("--torch-fp16", help="Checkpoints on CUDA in FP16.")] = False,
    cuda_graph: Annotated[bool, typer.Option("--cuda-graph", help="Replay captured CUDA graphs (torch on CUDA, TensorRT).")] = False,
    torch_compile: Annotated[bool, typer.Option("--torch-compile", help="Checkpoints through torch.compile with frozen weights (BN folded).")] = False,
) -> None:
    """Latency (p50/p90/p99), throughput, submit time and the competition score against a baseline."""
    from edgeopt.bench import BenchConfig, run_bench

    config = BenchConfig(artifacts=tuple(artifacts), baseline=None if baseline == "none" else baseline,
                         baseline_checkpoint=baseline_checkpoint, baseline_f1=baseline_f1, baseline_size=baseline_size,
                         baseline_precision=baseline_precision, data=data, backend=backend, device=device,
                         batch_sizes=_parse_batch_sizes(batch_sizes), runs=runs, warmup=warmup, workers=workers,
                         submit_runs=submit_runs, out=out, json_path=json_path, plot_path=plot, int8_exec=int8_exec,
                         torch_fp16=torch_fp16, cuda_graph=cuda_graph, torch_compile=torch_compile)
    report = run_bench(config)
    render_report(report)


@app.command("optimize")
def optimize_cmd(
    ctx: typer.Context,
    config_file: Annotated[Optional[Path], typer.Argument(exists=True, dir_okay=False, help="A YAML file of these settings (keys as the flags); flags given too override it.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", exists=True, file_okay=False, help="Folder of <class>/<image> crops.")] = None,
    out: Annotated[Path, typer.Option("--out", help="The run folder: every artifact with its manifest, steps/, report.md.")] = Path("runs/optimize"),
    test: Annotated[Optional[Path], typer.Option("--test", exists=True, file_okay=False, help="Labelled crops to report on (default: --test-fraction of --data held out).")] = None,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="Share of --data held out of everything for the report.")] = 0.2,
    teacher: Annotated[Optional[Path], typer.Option("--teacher", exists=True, dir_okay=False, help="A teacher checkpoint (default: fine-tune --teacher-model).")] = None,
    teacher_model: Annotated[str, typer.Option("--teacher-model")] = "tf_efficientnet_lite0",
    teacher_size: Annotated[int, typer.Option("--teacher-size", help="The teacher's input size (its native resolution is best).")] = 224,
    teacher_epochs: Annotated[int, typer.Option("--teacher-epochs")] = 4,
    views: Annotated[int, typer.Option("--views", help="Augmented views per image in the soft-label bank.")] = 20,
    backbones: Annotated[str, typer.Option(help="Comma-separated student backbones to search.")] = "mobilenet_v2",
    sizes: Annotated[str, typer.Option(help="Comma-separated student input sizes to search.")] = "32,48,64",
    max_prune: Annotated[float, typer.Option("--max-prune")] = 0.0,
    trials: Annotated[int, typer.Option(help="Search trials.")] = 6,
    epochs: Annotated[int, typer.Option(help="Epochs per search trial.")] = 12,
    final_epochs: Annotated[int, typer.Option("--final-epochs", help="Epochs of the chosen student's final run (from the bank: patient schedules pay).")] = 100,
    max_macs: Annotated[Optional[str], typer.Option("--max-macs", help="MAC budget of the chosen student, e.g. 20M.")] = None,
    pretrained: Annotated[bool, typer.Option("--pretrained/--scratch")] = True,
    max_f1_drop: Annotated[float, typer.Option("--max-f1-drop", help="INT8 budget: macro-F1 drop on a slice held out of the final run.")] = 0.01,
    adaround: Annotated[bool, typer.Option("--adaround/--no-adaround", help="AdaRound in the INT8 post-training quantization.")] = True,
    target: Annotated[str, typer.Option(help="auto (TensorRT engine where TensorRT and a GPU are, else cpu), tensorrt or cpu.")] = "auto",
    baseline: Annotated[str, typer.Option(help="Baseline of the bench and the score.")] = "resnet18d",
    baseline_f1: Annotated[float, typer.Option("--baseline-f1", help="The baseline's macro-F1 for the score.")] = 0.884,
    batch_size: BatchSize = 64,
    device: Device = "auto",
    seed: Seed = 0,
) -> None:
    """Crops and a budget in, a benchmarked INT8 model out: teacher, soft-label bank, search, final run, INT8, bench, report."""
    from edgeopt.optimize import OptimizeConfig, read_yaml_config, run_optimize
    from edgeopt.prune import parse_macs

    given = {name: value for name, value in ctx.params.items()
             if name != "config_file" and ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)}
    settings = {**ctx.params, "max_macs": parse_macs(max_macs) if max_macs else None,
                "backbones": tuple(b.strip() for b in backbones.split(",") if b.strip()),
                "sizes": tuple(int(v) for v in sizes.split(",") if v.strip())}
    settings.pop("config_file")
    if config_file is not None:
        overrides = {k: settings[k] for k in given}
        config = read_yaml_config(config_file, overrides)
    else:
        if data is None:
            raise typer.BadParameter("give --data (a folder of <class>/<image> crops) or a YAML file with data:", param_hint="--data")
        config = OptimizeConfig(**settings)
    result = run_optimize(config, log=lambda m: console.print(escape(m)))
    console.print(f"report: {result.report} (and {result.report.with_suffix('.json')})")


@app.command("demo")
def demo_cmd(
    data: Annotated[Optional[Path], typer.Option("--data", exists=True, file_okay=False, help="Crops to use instead of the synthetic set.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for everything the demo makes.")] = Path("demo"),
    epochs: Annotated[int, typer.Option(min=1, help="Teacher epochs (the student gets twice as many).")] = 12,
) -> None:
    """The whole pipeline, end to end: data, teacher, distilled student, export, INT8, engines, bench, score."""
    from edgeopt.demo import run_demo

    result = run_demo(out=out, data=data, epochs=epochs, log=lambda m: console.print(escape(m)))
    render_report(result.report)
    console.print(f"artifacts: {', '.join(str(p) for p in result.artifacts.values())}; report {out / 'bench.json'}, plot {out / 'bench.png'}")


def main() -> None:
    """Console-script entry point."""
    app()
