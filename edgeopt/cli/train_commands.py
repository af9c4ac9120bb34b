"""Training and its relatives: train, soft-labels, eval, info, prune, decompose, search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeopt.errors import EdgeoptError
from edgeopt.cli.render import (
    say,
    metrics_table,
    render_eval,
    render_manifest,
    render_search,
)


from edgeopt.bench.score import BASELINE_F1, BASELINE_MODEL
from edgeopt.cli.progress import TrainProgress, step_progress
from edgeopt.cli.common import Backend
from edgeopt.cli.common import (
    ExistOk,
    app,
    console,
    either,
    renamed,
    run_out,
    Device,
    Seed,
    BatchSize,
    FinetuneLr,
    FinetuneValSplit,
    SoftLabels,
)


# -- train / eval / info ------------------------------------------------------------------------
@app.command("train")
def train_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", help="timm/torchvision name or models/NAME.yaml.")],
    data: Annotated[Path, typer.Option("--data", help="Folder of <class>/<image> crops.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder for best.pt, last.pt, metrics.json, curve.png (default: runs/train, or the next free runs/trainN).")] = Path("runs/train"),
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
    pretrained: Annotated[Optional[bool], typer.Option("--pretrained/--scratch", help="Start from ImageNet weights (offline for tf_efficientnet_lite0, tf_efficientnet_lite1, tf_efficientnet_lite2 and mobilenet_v2; from the model hub for other names) or from random ones. Default: pretrained where edgeopt ships the weights, as search and optimize; else scratch.", show_default=False)] = None,
    teacher: Annotated[Optional[list[Path]], typer.Option("--teacher", help="Teacher checkpoint(s) for distillation; repeat to average several.")] = None,
    soft_labels: SoftLabels = None,
    kd: Annotated[str, typer.Option("--kd", help="all or true-label (KD only where the teacher is right).")] = "all",
    kd_temperature: Annotated[float, typer.Option("--kd-temperature")] = 4.0,
    kd_alpha: Annotated[float, typer.Option("--kd-alpha", help="Weight of the KD term (1: KD alone, function matching).")] = 0.7,
    kd_loss: Annotated[str, typer.Option("--kd-loss", help="kl (KL to the softened targets) or dist (DIST's Pearson relations).")] = "kl",
    kd_class_weighted: Annotated[bool, typer.Option("--kd-class-weighted", help="Weigh each image's KD term by its class's weight (rare classes count more).")] = False,
    kd_mix: Annotated[str, typer.Option("--kd-mix", help="Function matching: none, mixup or cutmix (each view blended with another image's; teacher and student see the same blend; needs --kd-alpha 1).")] = "none",
    kd_mix_alpha: Annotated[float, typer.Option("--kd-mix-alpha", help="The blend ratio's Beta(alpha, alpha).")] = 1.0,
    bn_recalibrate: Annotated[bool, typer.Option("--bn-recalibrate", help="After training, recompute best.pt's BatchNorm statistics on the training images as deployed (FixRes).")] = False,
    device: Device = "auto",
    seed: Seed = 0,
    workers: Annotated[Optional[int], typer.Option(help="DataLoader workers (default: 0 on CPU).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    exist_ok: ExistOk = False,
) -> None:
    """Train a classifier; keeps the best checkpoint by validation macro-F1."""
    from edgeopt.train.distill import KDConfig
    from edgeopt.train.loop import TrainConfig, train_classifier

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
    from edgeopt.models.registry import PRETRAINED_LOADERS

    return model in PRETRAINED_LOADERS.names()


@app.command("soft-labels")
def soft_labels_cmd(
    teachers: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Teacher checkpoint(s); their logits are averaged in training.")],
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False, help="Folder of <class>/<image> crops.")],
    out: Annotated[Path, typer.Option("--out", help="The bank file (NAME.bank) and its manifest NAME.bank.json.")] = Path("runs/soft_labels.bank"),
    views: Annotated[int, typer.Option("--views", help="Augmented views per image: one per student epoch (the bank optimize makes has 20).")] = 20,
    scale_min: Annotated[float, typer.Option("--scale-min", help="Smallest random crop, as a share of the image (train's default for pretrained students, and optimize's bank).")] = 0.6,
    brightness: Annotated[float, typer.Option("--brightness", help="Brightness jitter (train's default for pretrained students, and optimize's bank).")] = 0.2,
    tta_flip: Annotated[bool, typer.Option("--tta-flip", help="Store the mean of the teachers' logits on each view and its mirror image (the student pays nothing).")] = False,
    precision: Annotated[str, typer.Option("--precision", help="The teachers' arithmetic: fp32, bf16, or auto (bf16 where the CPU or GPU has bf16 units).")] = "fp32",
    mix: Annotated[str, typer.Option("--mix", help="Also store each view blended with another image's (mixup or cutmix) and the teachers' logits on it: a bank for --kd-mix.")] = "none",
    mix_alpha: Annotated[float, typer.Option("--mix-alpha", help="The blend ratio's Beta(alpha, alpha).")] = 1.0,
    batch_size: BatchSize = 64,
    device: Device = "auto",
    seed: Seed = 0,
) -> None:
    """Run the teachers once over N augmented views of every image and store their logits (a soft-label bank)."""
    from edgeopt.train.soft_labels import SoftLabelConfig, make_bank

    config = SoftLabelConfig(teachers=teachers, data=data, out=out, views=views, scale_min=scale_min, brightness=brightness,
                             seed=seed, batch_size=batch_size, device=device, tta_flip=tta_flip, precision=precision,
                             mix=mix, mix_alpha=mix_alpha)
    with step_progress(console, "teachers over the views") as progress:
        result = make_bank(config, progress=progress)
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
    exist_ok: ExistOk = False,
) -> None:
    """Structured channel pruning (Torch-Pruning) to a MAC target, then distillation from the unpruned model."""
    from edgeopt.compress.finetune import FinetuneOptions
    from edgeopt.train.distill import KDConfig
    from edgeopt.compress.prune import PruneConfig, prune_checkpoint
    from edgeopt.models.complexity import parse_macs

    finetune = FinetuneOptions(epochs=epochs, lr=lr, batch_size=batch_size, val_split=val_split, device=device, seed=seed,
                               kd=KDConfig(soft_labels=soft_labels))
    result = prune_checkpoint(PruneConfig(checkpoint=checkpoint, data=data, out=run_out(ctx, out, exist_ok), target_macs=parse_macs(target_macs),
                                          importance=importance, global_pruning=global_pruning, finetune=finetune),
                              log=say)
    if result.best_checkpoint is not None:
        f1 = "" if result.best_macro_f1 != result.best_macro_f1 else f", val macro-F1 {result.best_macro_f1:.4f}"
        console.print(f"fine-tuned {result.macs_after / 1e6:.2f}M-MAC model{f1} -> {result.best_checkpoint}")


@app.command("decompose")
def decompose_cmd(
    ctx: typer.Context,
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
    exist_ok: ExistOk = False,
) -> None:
    """Tucker-2 decomposition of the convolutions (TensorLy), then distillation from the original."""
    from edgeopt.compress.finetune import FinetuneOptions
    from edgeopt.compress.decompose import DecomposeConfig, decompose_checkpoint
    from edgeopt.train.distill import KDConfig

    finetune = FinetuneOptions(epochs=epochs, lr=lr, batch_size=batch_size, val_split=val_split, device=device, seed=seed,
                               kd=KDConfig(soft_labels=soft_labels))
    result = decompose_checkpoint(DecomposeConfig(checkpoint=checkpoint, data=data, out=run_out(ctx, out, exist_ok), energy=energy, ranks=ranks,
                                                  pointwise=pointwise, finetune=finetune), log=say)
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
    ctx: typer.Context,
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
    final_epochs: Annotated[Optional[int], typer.Option("--final-epochs", help="Train the chosen point again on all of --data for N epochs (0: no); default 100 with --soft-labels, else 0.")] = None,
    bn_recalibrate: Annotated[bool, typer.Option("--bn-recalibrate", help="After the final run, recompute its BatchNorm statistics on its images as deployed (FixRes).")] = False,
    max_f1_drop: Annotated[Optional[float], typer.Option("--max-f1-drop", help="INT8 budget (as in calibrate, build-engine, optimize): make the final run's INT8 too, holding --int8-holdout of --data out of it, and keep PTQ or QAT, whichever loses less macro-F1 on that slice (QAT only when PTQ's drop is over this).")] = None,
    int8_max_drop: Annotated[Optional[float], renamed("--int8-max-drop", "--max-f1-drop")] = None,
    int8_holdout: Annotated[float, typer.Option("--int8-holdout", help="Share of --data held out of the final run to judge INT8.")] = 0.1,
    int8_qat_epochs: Annotated[int, typer.Option("--int8-qat-epochs", min=1, help="QAT epochs when PTQ misses --max-f1-drop.")] = 3,
    pretrained: Annotated[bool, typer.Option("--pretrained/--scratch", help="Start from ImageNet weights (offline where edgeopt ships them).")] = True,
    max_macs: Annotated[Optional[str], typer.Option("--max-macs", help="Choose the best val F1 within this budget, e.g. 20M (default: best score).")] = None,
    baseline: Annotated[str, typer.Option(help="Baseline model of the score (MACs at its own input size).")] = BASELINE_MODEL,
    baseline_f1: Annotated[float, typer.Option("--baseline-f1", help="Baseline macro-F1 of the score.")] = BASELINE_F1,
    heartbeat: Annotated[int, typer.Option(help="Seconds between trial heartbeats; a silent trial is retried after 2x.")] = 60,
    seed: Annotated[Optional[int], typer.Option(help="Sampler seed (give each worker its own).")] = None,
    device: Device = "auto",
    workers: Annotated[Optional[int], typer.Option(help="DataLoader workers per trial (default: 0 on CPU).")] = None,
    report_only: Annotated[bool, typer.Option("--report", help="Run no trial: report the study as it stands (and export the chosen point).")] = False,
) -> None:
    """Optuna search over backbone x size x pruning x distillation x lr; Pareto table, plot and the chosen model."""
    from edgeopt.train.distill import KDConfig
    from edgeopt.quant.int8_path import Int8PathConfig
    from edgeopt.models.complexity import parse_macs
    from edgeopt.search import SearchConfig, SearchSpace, run_search

    max_f1_drop = either(ctx, "max_f1_drop", value=max_f1_drop, old_value=int8_max_drop, old="--int8-max-drop", new="--max-f1-drop")
    try:
        size_list = tuple(int(v) for v in sizes.split(","))
    except ValueError:
        raise EdgeoptError(f"--sizes {sizes!r}: give comma-separated integers, e.g. 48,64,96") from None
    space = SearchSpace(backbones=tuple(b.strip() for b in backbones.split(",") if b.strip()), sizes=size_list,
                        max_prune=max_prune, lr=_floats(lr, "--lr"), kd_temperature=_floats(kd_temperature, "--kd-temperature"),
                        kd_alpha=_floats(kd_alpha, "--kd-alpha"))
    config = SearchConfig(data=data, out=out, study=study, storage=storage, trials=trials, timeout=timeout, space=space,
                          objective=objective, kd=KDConfig(teachers=(teacher,) if teacher else (), soft_labels=soft_labels), epochs=epochs, batch_size=batch_size, val_split=val_split,
                          schedule=schedule, final_epochs=final_epochs, bn_recalibrate=bn_recalibrate,
                          int8=Int8PathConfig(max_drop=max_f1_drop, holdout=int8_holdout, qat_epochs=int8_qat_epochs)
                          if max_f1_drop is not None else None,
                          pretrained=pretrained, baseline=baseline, baseline_f1=baseline_f1, heartbeat=heartbeat, seed=seed,
                          max_macs=parse_macs(max_macs, "max_macs") if max_macs else None, device=device, workers=workers)
    callbacks = TrainProgress(console)
    try:
        result = run_search(config, log=say, report_only=report_only, callbacks=callbacks)
    finally:
        callbacks.close()
    render_search(result)
