"""Training and its relatives: train, soft-labels, eval, info, prune, decompose, search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeopt.cli.render import (
    say,
    metrics_table,
    render_eval,
    render_manifest,
    render_search,
)


from edgeopt.cli.progress import TrainProgress, step_progress
from edgeopt.compress.config import DecomposeConfig, FinetuneConfig, Importance, PruneConfig, RankRule
from edgeopt.quant.int8_choice import Int8ChoiceConfig
from edgeopt.search.config import Objective, SearchConfig, SearchSpace
from edgeopt.train.config import KDConfig, KDLoss, KDMode, Loss, Mix, Optimizer, Schedule, TrainConfig
from edgeopt.train.soft_labels import Precision, SoftLabelConfig
from edgeopt.cli.common import Backend
from edgeopt.cli.common import (
    ConfigFile,
    ExistOk,
    option,
    app,
    console,
    either,
    renamed,
    run_out,
    SoftLabels,
)


# -- train / eval / info ------------------------------------------------------------------------
@app.command("train")
def train_cmd(
    ctx: typer.Context,
    model: str = option(TrainConfig, "model"),
    data: Path = option(TrainConfig, "data"),
    out: Path = option(TrainConfig, "out"),
    val: Optional[Path] = option(TrainConfig, "val"),
    val_split: float = option(TrainConfig, "val_split"),
    img_size: int = option(TrainConfig, "img_size"),
    epochs: int = option(TrainConfig, "epochs"),
    batch_size: int = option(TrainConfig, "batch_size"),
    lr: Optional[float] = option(TrainConfig, "lr"),
    scale_min: Optional[float] = option(TrainConfig, "scale_min"),
    brightness: Optional[float] = option(TrainConfig, "brightness"),
    weight_decay: float = option(TrainConfig, "weight_decay"),
    optimizer: Optimizer = option(TrainConfig, "optimizer"),
    schedule: Schedule = option(TrainConfig, "schedule"),
    loss: Loss = option(TrainConfig, "loss"),
    label_smoothing: float = option(TrainConfig, "label_smoothing"),
    randaugment: int = option(TrainConfig, "randaugment"),
    mixup: float = option(TrainConfig, "mixup"),
    pretrained: Optional[bool] = option(TrainConfig, "pretrained", "--pretrained/--scratch", show_default=False, default=None, help=(
        "Start from ImageNet weights (offline for tf_efficientnet_lite0, tf_efficientnet_lite1, tf_efficientnet_lite2 and "
        "mobilenet_v2; from the model hub for other names) or from random ones. Default: pretrained where edgeopt ships the "
        "weights, as search and optimize; else scratch.")),
    teacher: Optional[list[Path]] = option(KDConfig, "teachers", default=None),
    soft_labels: SoftLabels = None,
    kd: KDMode = option(KDConfig, "mode"),
    kd_temperature: float = option(KDConfig, "temperature"),
    kd_alpha: float = option(KDConfig, "alpha"),
    kd_loss: KDLoss = option(KDConfig, "loss"),
    kd_class_weighted: bool = option(KDConfig, "class_weighted"),
    kd_mix: Mix = option(KDConfig, "mix"),
    kd_mix_alpha: float = option(KDConfig, "mix_alpha"),
    bn_recalibrate: bool = option(TrainConfig, "bn_recalibrate"),
    device: str = option(TrainConfig, "device"),
    seed: int = option(TrainConfig, "seed"),
    workers: Optional[int] = option(TrainConfig, "workers"),
    resume: bool = option(TrainConfig, "resume"),
    exist_ok: ExistOk = False,
    config: ConfigFile = None,
) -> None:
    """Train a classifier; keeps the best checkpoint by validation macro-F1."""
    from edgeopt.train.loop import train_classifier

    if pretrained is None:
        pretrained = _ships_weights(model)
        if pretrained:
            console.print(f"{model}: starting from edgeopt's offline ImageNet weights (--scratch for random ones)")
    out = run_out(ctx, out, exist_ok or resume)

    config = TrainConfig(model=model, data=data, out=out, val=val, val_split=val_split, img_size=img_size, epochs=epochs,
                         batch_size=batch_size, lr=lr, scale_min=scale_min, brightness=brightness, weight_decay=weight_decay, optimizer=optimizer, schedule=schedule,
                         loss=loss, label_smoothing=label_smoothing, randaugment=randaugment, mixup=mixup,
                         pretrained=pretrained, bn_recalibrate=bn_recalibrate,
                         kd=KDConfig(kd_temperature, kd_alpha, kd, teachers=tuple(teacher or ()), soft_labels=soft_labels,
                                     loss=kd_loss, class_weighted=kd_class_weighted, mix=kd_mix, mix_alpha=kd_mix_alpha),
                         device=device, seed=seed, workers=workers, resume=resume)
    callbacks = TrainProgress(console)
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


def _ships_weights(model: str) -> bool:
    """Whether edgeopt has offline ImageNet weights for ``model`` (a YAML model or another name has none here)."""
    from edgeopt.models.factory import PRETRAINED_LOADERS, base_model

    return base_model(model) in PRETRAINED_LOADERS.names()


@app.command("soft-labels")
def soft_labels_cmd(
    teachers: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Teacher checkpoint(s); their logits are averaged in training.")],
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False, help="Folder of <class>/<image> crops.")],
    out: Path = option(SoftLabelConfig, "out"),
    views: int = option(SoftLabelConfig, "views"),
    scale_min: float = option(SoftLabelConfig, "scale_min"),
    brightness: float = option(SoftLabelConfig, "brightness"),
    tta_flip: bool = option(SoftLabelConfig, "tta_flip"),
    precision: Precision = option(SoftLabelConfig, "precision"),
    mix: Mix = option(SoftLabelConfig, "mix"),
    mix_alpha: float = option(SoftLabelConfig, "mix_alpha"),
    batch_size: int = option(SoftLabelConfig, "batch_size"),
    device: str = option(SoftLabelConfig, "device"),
    seed: int = option(SoftLabelConfig, "seed"),
    config: ConfigFile = None,
) -> None:
    """Run the teachers once over N augmented views of every image and store their logits (a soft-label bank)."""
    from edgeopt.train.soft_labels import make_soft_labels

    config = SoftLabelConfig(teachers=teachers, data=data, out=out, views=views, scale_min=scale_min, brightness=brightness,
                             seed=seed, batch_size=batch_size, device=device, tta_flip=tta_flip, precision=precision,
                             mix=mix, mix_alpha=mix_alpha)
    with step_progress(console, "teachers over the views") as progress:
        result = make_soft_labels(config, progress=progress)
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
    backend: Backend = "auto",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    int8_exec: Annotated[str, typer.Option("--int8-exec", help="INT8 ONNX: emulate (emulated Q/DQ: quantize-dequantize in float) or kernels (ORT's CPU int8 kernels).")] = "emulate",
    config: ConfigFile = None,
) -> None:
    """Macro-F1, accuracy, per-class F1 and confusion matrix of an artifact on a labelled folder."""
    from edgeopt.runtime.evaluate import compare_artifacts, evaluate_artifact

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
    config: ConfigFile = None,
) -> None:
    """What an artifact is (manifest) or what a model costs (MACs, params) at an input size."""
    from edgeopt.artifacts import suffix_kind

    path = Path(target)
    if suffix_kind(path) is not None:
        from edgeopt.runtime.evaluate import artifact_manifest

        manifest = artifact_manifest(path)
        render_manifest(path, manifest)
        if layers:
            from edgeopt.cli.render import render_engine_layers

            render_engine_layers(path, manifest)
        return
    if layers:
        raise typer.BadParameter("--layers lists the layers of a built engine: pass a .engine file", param_hint="--layers")
    from edgeopt.models import count_complexity, create_model

    model, arch = create_model(target, num_classes)
    c = count_complexity(model, img_size)
    console.print(f"{target}: {c.macs / 1e6:.2f} M MACs at {img_size} px, {c.params / 1e6:.3f} M params ({arch['source']})")


@app.command("prune")
def prune_cmd(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="best.pt from edgeopt train.")],
    target_macs: str = option(PruneConfig, "target_macs"),
    data: Path = option(PruneConfig, "data", exists=True, file_okay=False),
    out: Path = option(PruneConfig, "out"),
    epochs: int = option(FinetuneConfig, "epochs"),
    importance: Importance = option(PruneConfig, "importance"),
    global_pruning: bool = option(PruneConfig, "global_pruning", "--global/--uniform"),
    lr: float = option(FinetuneConfig, "lr"),
    batch_size: int = option(FinetuneConfig, "batch_size"),
    val_split: float = option(FinetuneConfig, "val_split"),
    device: str = option(FinetuneConfig, "device"),
    seed: int = option(FinetuneConfig, "seed"),
    soft_labels: Optional[Path] = option(KDConfig, "soft_labels", exists=True, dir_okay=False),
    exist_ok: ExistOk = False,
    config: ConfigFile = None,
) -> None:
    """Structured channel pruning (Torch-Pruning) to a MAC target, then distillation from the unpruned model."""
    from edgeopt.compress.prune import prune_checkpoint

    finetune = FinetuneConfig(epochs=epochs, lr=lr, batch_size=batch_size, val_split=val_split, device=device, seed=seed,
                              kd=KDConfig(soft_labels=soft_labels))
    result = prune_checkpoint(PruneConfig(checkpoint=checkpoint, data=data, out=run_out(ctx, out, exist_ok), target_macs=target_macs,
                                          importance=importance, global_pruning=global_pruning, finetune=finetune),
                              log=say)
    if result.best_checkpoint is not None:
        f1 = "" if result.best_macro_f1 != result.best_macro_f1 else f", val macro-F1 {result.best_macro_f1:.4f}"
        console.print(f"fine-tuned {result.macs_after / 1e6:.2f}M-MAC model{f1} -> {result.best_checkpoint}")


@app.command("decompose")
def decompose_cmd(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="best.pt from edgeopt train (or prune).")],
    data: Path = option(DecomposeConfig, "data", exists=True, file_okay=False),
    out: Path = option(DecomposeConfig, "out"),
    energy: float = option(DecomposeConfig, "energy"),
    ranks: RankRule = option(DecomposeConfig, "ranks"),
    pointwise: bool = option(DecomposeConfig, "pointwise"),
    epochs: int = option(FinetuneConfig, "epochs"),
    lr: float = option(FinetuneConfig, "lr"),
    batch_size: int = option(FinetuneConfig, "batch_size"),
    val_split: float = option(FinetuneConfig, "val_split"),
    device: str = option(FinetuneConfig, "device"),
    seed: int = option(FinetuneConfig, "seed"),
    soft_labels: Optional[Path] = option(KDConfig, "soft_labels", exists=True, dir_okay=False),
    exist_ok: ExistOk = False,
    config: ConfigFile = None,
) -> None:
    """Tucker-2 decomposition of the convolutions (TensorLy), then distillation from the original."""
    from edgeopt.compress.decompose import decompose_checkpoint

    finetune = FinetuneConfig(epochs=epochs, lr=lr, batch_size=batch_size, val_split=val_split, device=device, seed=seed,
                              kd=KDConfig(soft_labels=soft_labels))
    result = decompose_checkpoint(DecomposeConfig(checkpoint=checkpoint, data=data, out=run_out(ctx, out, exist_ok), energy=energy, ranks=ranks,
                                                  pointwise=pointwise, finetune=finetune), log=say)
    if result.best_checkpoint is not None:
        console.print(f"fine-tuned {result.macs_after / 1e6:.2f}M-MAC model -> {result.best_checkpoint}")


@app.command("search")
def search_cmd(
    ctx: typer.Context,
    data: Path = option(SearchConfig, "data", exists=True, file_okay=False),
    out: Path = option(SearchConfig, "out"),
    study: str = option(SearchConfig, "study"),
    storage: Optional[str] = option(SearchConfig, "storage"),
    trials: int = option(SearchConfig, "trials"),
    timeout: Optional[float] = option(SearchConfig, "timeout"),
    objective: Objective = option(SearchConfig, "objective"),
    backbones: str = option(SearchSpace, "backbones"),
    sizes: str = option(SearchSpace, "sizes"),
    max_prune: float = option(SearchSpace, "max_prune"),
    lr: str = option(SearchSpace, "lr"),
    teacher: Optional[Path] = option(KDConfig, "teachers", default=None, exists=True, dir_okay=False,
                                     help="Checkpoint to distill from (KD T and alpha are searched)."),
    soft_labels: SoftLabels = None,
    kd_temperature: str = option(SearchSpace, "kd_temperature"),
    kd_alpha: str = option(SearchSpace, "kd_alpha"),
    epochs: int = option(SearchConfig, "epochs"),
    batch_size: int = option(SearchConfig, "batch_size"),
    val_split: float = option(SearchConfig, "val_split"),
    schedule: Schedule = option(SearchConfig, "schedule"),
    final_epochs: Optional[int] = option(SearchConfig, "final_epochs"),
    bn_recalibrate: bool = option(SearchConfig, "bn_recalibrate"),
    assistant_size: int = option(SearchConfig, "assistant_size"),
    assistant_for: int = option(SearchConfig, "assistant_for"),
    assistant_init: bool = option(SearchConfig, "assistant_init"),
    assistant_epochs: int = option(SearchConfig, "assistant_epochs"),
    max_f1_drop: Optional[float] = option(Int8ChoiceConfig, "max_drop", "--max-f1-drop", default=None, help=(
        "INT8 budget (as in calibrate, build-engine, optimize): make the final run's INT8 too, holding --int8-holdout of --data "
        "out of it, and keep PTQ or QAT, whichever loses less macro-F1 on that slice (QAT only when PTQ's drop is over this).")),
    int8_max_drop: Annotated[Optional[float], renamed("--int8-max-drop", "--max-f1-drop")] = None,
    int8_holdout: float = option(Int8ChoiceConfig, "holdout", "--int8-holdout"),
    int8_qat_epochs: int = option(Int8ChoiceConfig, "qat_epochs", "--int8-qat-epochs"),
    pretrained: bool = option(SearchConfig, "pretrained", "--pretrained/--scratch"),
    max_macs: Optional[str] = option(SearchConfig, "max_macs"),
    baseline: str = option(SearchConfig, "baseline"),
    baseline_f1: float = option(SearchConfig, "baseline_f1"),
    heartbeat: int = option(SearchConfig, "heartbeat"),
    seed: Optional[int] = option(SearchConfig, "seed"),
    device: str = option(SearchConfig, "device"),
    workers: Optional[int] = option(SearchConfig, "workers"),
    report_only: Annotated[bool, typer.Option("--report", help="Run no trial: report the study as it stands (and export the chosen point).")] = False,
    config: ConfigFile = None,
) -> None:
    """Optuna search over backbone x size x pruning x distillation x lr; Pareto table, plot and the chosen model."""
    from edgeopt.search import search_models

    max_f1_drop = either(ctx, "max_f1_drop", value=max_f1_drop, old_value=int8_max_drop, old="--int8-max-drop", new="--max-f1-drop")
    space = SearchSpace(backbones=backbones, sizes=sizes, max_prune=max_prune, lr=lr, kd_temperature=kd_temperature,
                        kd_alpha=kd_alpha)  # text as typed: the space's settings read "48,64" and "1e-3" or "3e-4,3e-3"
    config = SearchConfig(data=data, out=out, study=study, storage=storage, trials=trials, timeout=timeout, space=space,
                          objective=objective, kd=KDConfig(teachers=(teacher,) if teacher else (), soft_labels=soft_labels), epochs=epochs, batch_size=batch_size, val_split=val_split,
                          schedule=schedule, final_epochs=final_epochs, bn_recalibrate=bn_recalibrate,
                          assistant_size=assistant_size, assistant_for=assistant_for, assistant_init=assistant_init,
                          assistant_epochs=assistant_epochs,
                          int8=Int8ChoiceConfig(max_drop=max_f1_drop, holdout=int8_holdout, qat_epochs=int8_qat_epochs)
                          if max_f1_drop is not None else None,
                          pretrained=pretrained, baseline=baseline, baseline_f1=baseline_f1, heartbeat=heartbeat, seed=seed,
                          max_macs=max_macs or None, device=device, workers=workers)
    callbacks = TrainProgress(console)
    try:
        result = search_models(config, log=say, report_only=report_only, callbacks=callbacks)
    finally:
        callbacks.close()
    render_search(result)
