"""From a checkpoint to a deployable artifact: export, calibrate, qat, build-engine, triton."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeopt.cli.render import (
    say,
    render_fallback,
)


from edgeopt.artifacts import require_kind
from edgeopt.cli.progress import step_progress
from edgeopt.cli.common import (
    ConfigFile,
    beside,
    either,
    renamed,
    parse_batch_sizes,
    app,
    console,
    Device,
    Seed,
    BatchSize,
    SoftLabels,
    ForeignImgSize,
    ForeignMean,
    ForeignStd,
    ForeignClasses,
)


# -- export / calibrate ---------------------------------------------------------------------------
@app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="best.pt from edgeopt train.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output .onnx path (default: beside the checkpoint, best.pt -> best.onnx).", show_default=False)] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (13-21).")] = 17,
    static_batch: Annotated[bool, typer.Option("--static-batch", help="Fixed batch axis (default: dynamic).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="The batch of a --static-batch export.")] = 1,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 weights/compute with FP32 inputs/outputs.")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", exists=True, file_okay=False, help="Real images for the parity check.")] = None,
    config: ConfigFile = None,
) -> None:
    """Export a checkpoint to ONNX: BN folded, onnxslim, onnx.checker, parity against PyTorch."""
    from edgeopt.export.onnx import export_onnx

    out = out or beside(checkpoint, ".fp16.onnx" if fp16 else ".onnx")
    result = export_onnx(checkpoint, out, opset=opset, static_batch=static_batch, fp16=fp16, data=data, batch_size=batch_size)
    p = result.parity
    console.print(f"exported {result.precision.upper()} ONNX (opset {result.opset}) -> {result.path}")
    console.print(f"parity vs PyTorch on {p.images} {p.source} inputs: max |Δlogit| {p.max_abs_diff:.2e}, "
                  f"top-1 agreement {p.top1_agreement:.2%}")


@app.command("calibrate")
def calibrate_cmd(
    model: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="FP32 ONNX from edgeopt export.")],
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False, help="Folder of <class>/<image> crops.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output INT8 .onnx path (default: beside the model, model.onnx -> model.int8.onnx, or model.cpu-int8.onnx for --target cpu).", show_default=False)] = None,
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
    config: ConfigFile = None,
) -> None:
    """Quantize to explicit INT8 (Q/DQ ONNX, symmetric, per-channel weights) on real crops."""
    from edgeopt.quant.calibrate import calibrate_onnx
    from edgeopt.quant.fallback import FallbackConfig
    from edgeopt.quant.ptq import PtqOptions

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
    out = out or beside(model, {"cpu": ".cpu-int8.onnx", "cpu-vnni": ".cpu-vnni-int8.onnx"}.get(target, ".int8.onnx"))
    with step_progress(console, "calibration images") as progress:
        result = calibrate_onnx(model, data, out, num_images=num_images, method=method, quantizer=quantizer,
                                batch_size=batch_size, seed=seed, calibration_dir=calibration_dir,
                                skip_first_last=skip_first_last, target=target, fallback=fallback, ptq=ptq,
                                progress=progress)
    if result.fallback is not None:
        render_fallback(result.fallback)
    kind = "Q/DQ ONNX for TensorRT" if result.target == "tensorrt" else f"ONNX for ONNX Runtime's CPU kernels ({result.target}, QOperator)"
    console.print(f"INT8 {kind} ({result.method}, {result.quantizer}) -> {result.path}")
    console.print(f"calibrated on {result.num_images} images in {result.batches} batches; {result.qdq_nodes} Q/DQ nodes; "
                  f"manifest {result.calibration_manifest}")


@app.command("qat")
def qat_cmd(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="best.pt from edgeopt train.")],
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False, help="Training crops (<class>/<image>).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output Q/DQ INT8 .onnx path (default: beside the checkpoint, best.pt -> best.qat.onnx).", show_default=False)] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs with fake quantization.")] = 3,
    lr: Annotated[float, typer.Option(help="Learning rate (low: the weights only adapt).")] = 1e-4,
    batch_size: BatchSize = 32,
    num_images: Annotated[int, typer.Option("--num-images", help="Images for the activation ranges.")] = 256,
    device: Device = "auto",
    seed: Seed = 0,
    soft_labels: SoftLabels = None,
    config: ConfigFile = None,
) -> None:
    """Quantization-aware fine-tuning -> a Q/DQ INT8 ONNX in the form TensorRT takes."""
    from edgeopt.train.config import KDConfig
    from edgeopt.quant.qat import QatConfig, qat_finetune

    result = qat_finetune(QatConfig(checkpoint=checkpoint, data=data, out=out or beside(checkpoint, ".qat.onnx"), epochs=epochs, lr=lr,
                                    batch_size=batch_size, num_calib_images=num_images, device=device, seed=seed,
                                    kd=KDConfig(soft_labels=soft_labels)),
                          log=say)
    console.print(f"QAT INT8 Q/DQ ONNX ({result.quantized_layers} quantized layers, {result.seconds:.1f}s) -> {result.path}")


# -- build-engine -----------------------------------------------------------------------------
@app.command("build-engine")
def build_engine_cmd(
    ctx: typer.Context,
    onnx: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="ONNX from edgeopt export or calibrate, or any classifier ONNX.")],
    fp16: Annotated[bool, typer.Option("--fp16", help="Build an FP16 engine.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Build an INT8 engine (Q/DQ ONNX, or FP32 + --data).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output .engine path (default: beside the ONNX, model.int8.onnx -> model.int8.engine).", show_default=False)] = None,
    data: Annotated[Optional[Path], typer.Option("--data", exists=True, file_okay=False, help="Crops to calibrate on (as calibrate's --data).")] = None,
    method: Annotated[Optional[str], typer.Option("--method", help="Legacy implicit INT8 (TensorRT < 11): entropy or minmax (as calibrate's --method).")] = None,
    min_batch: Annotated[Optional[int], typer.Option("--min-batch", help="Default: 1, or the ONNX's fixed batch.")] = None,
    opt_batch: Annotated[Optional[int], typer.Option("--opt-batch", help="Default: --max-batch.")] = None,
    max_batch: Annotated[Optional[int], typer.Option("--max-batch", help="Default: 32, or the ONNX's fixed batch.")] = None,
    workspace: Annotated[float, typer.Option("--workspace", help="Workspace memory-pool limit, GiB.")] = 4.0,
    timing_cache: Annotated[Optional[Path], typer.Option("--timing-cache", help="Load and save the builder timing cache here.")] = None,
    opt_level: Annotated[int, typer.Option("--opt-level", help="Builder optimization level 0-5.")] = 3,
    hw_compat: Annotated[str, typer.Option("--hw-compat", help="none, ampere+ or same-cc (TensorRT 10.9+).")] = "none",
    num_images: Annotated[int, typer.Option("--num-images", min=1)] = 512,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per calibration batch (as calibrate's --batch-size).")] = 32,
    calib_data: Annotated[Optional[Path], renamed("--calib-data", "--data")] = None,
    calibrator: Annotated[Optional[str], renamed("--calibrator", "--method")] = None,
    calib_batch_size: Annotated[Optional[int], renamed("--calib-batch-size", "--batch-size")] = None,
    img_size: ForeignImgSize = None,
    mean: ForeignMean = None,
    std: ForeignStd = None,
    classes: ForeignClasses = None,
    dla_core: Annotated[Optional[int], typer.Option("--dla-core", help="Jetson: build for this DLA core (GPU fallback for the rest; one batch size).")] = None,
    int8_float: Annotated[str, typer.Option("--int8-float", help="INT8: run the unquantized layers in fp16 (8.6-10.x: FP16 flag; 11.x: FP16 float part cast into the Q/DQ ONNX) or fp32.")] = "fp16",
    verify: Annotated[Optional[Path], typer.Option("--verify", exists=True, file_okay=False, help="Run the engine against its FP32 ONNX on these images; refuse it past the budget.")] = None,
    max_f1_drop: Annotated[float, typer.Option("--max-f1-drop", help="--verify budget on labelled images: macro-F1 drop against the FP32 ONNX.")] = 0.01,
    max_disagreement: Annotated[float, typer.Option("--max-disagreement", help="--verify budget on unlabelled images: share of top-1 changes.")] = 0.02,
    builder: Annotated[Optional[str], typer.Option("--builder", help="tensorrt or tensorrt-rtx (default: TensorRT where installed, else TensorRT-RTX).")] = None,
    compute_capability: Annotated[Optional[list[str]], typer.Option("--compute-capability", help="TensorRT-RTX: a GPU to build for (7.5, 8.0, 8.6, 8.9, 12.0, 12.1, current); repeatable. Default: the GPU here, else NVIDIA's default set.")] = None,
    config: ConfigFile = None,
) -> None:
    """Build a TensorRT engine from any ONNX (TensorRT 8.6-10.x with builder flags, 11.x strongly typed, TensorRT-RTX)."""
    from edgeopt.convert import convert
    from edgeopt.trt.plan import BuildOptions
    from edgeopt.trt.verify import VerifyConfig

    if fp16 == int8:
        raise typer.BadParameter("pass exactly one of --fp16 or --int8", param_hint="--fp16/--int8")
    require_kind(onnx, "onnx", "build-engine takes an ONNX;")
    calib_data = either(ctx, "data", value=data, old_value=calib_data, old="--calib-data", new="--data")
    calibrator = either(ctx, "method", value=method, old_value=calibrator, old="--calibrator", new="--method")
    calib_batch_size = either(ctx, "batch_size", value=batch_size, old_value=calib_batch_size, old="--calib-batch-size",
                              new="--batch-size")
    out = out or beside(onnx, ".fp16.engine" if fp16 else ".int8.engine")
    options = BuildOptions(precision="fp16" if fp16 else "int8", calib_data=calib_data, calibrator=calibrator,
                           min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace_gib=workspace,
                           timing_cache=timing_cache, opt_level=opt_level, hw_compat=hw_compat, num_images=num_images,
                           calib_batch_size=calib_batch_size, img_size=img_size, mean=_rgb(mean, "--mean"),
                           std=_rgb(std, "--std"), classes_file=classes, int8_float=int8_float, dla_core=dla_core,
                           builder=builder, compute_capabilities=tuple(compute_capability or ()))
    check = VerifyConfig(verify, max_f1_drop=max_f1_drop, max_disagreement=max_disagreement) if verify is not None else None
    result = convert(onnx, "engine", out, log=say, build=options, verify=check).results["engine"]
    console.print(f"engine -> {result.path} ({result.engine_bytes / 1e6:.2f} MB, {result.builder_label}, {result.build_seconds:.1f}s)"
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
    config: ConfigFile = None,
) -> None:
    """Write a Triton Inference Server model-repository entry (config.pbtxt, model file, labels) for
    an engine or any classifier ONNX."""
    from edgeopt.serve.triton import TritonConfig, export_triton
    from edgeopt.trt.model_info import InputDescription

    sizes = parse_batch_sizes(preferred_batch_sizes) if preferred_batch_sizes else ()
    describe = InputDescription(img_size=img_size, mean=_rgb(mean, "--mean"), std=_rgb(std, "--std"), classes_file=classes)
    result = export_triton(TritonConfig(artifact=artifact, repo=repo, describe=describe, name=name, version=version,
                                        max_batch_size=max_batch_size, dynamic_batching=dynamic_batching,
                                        preferred_batch_sizes=sizes, max_queue_delay_us=max_queue_delay_us,
                                        instances=instances, instance_kind="KIND_CPU" if cpu else "KIND_GPU", force=force))
    console.print(f"Triton model {result.model_dir.name} ({result.platform}, max_batch_size {result.max_batch_size}) -> "
                  f"{result.config_path}, {result.model_path}")
