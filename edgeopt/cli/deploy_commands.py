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
from edgeopt.quant.fallback import FallbackConfig
from edgeopt.quant.ptq import PtqConfig
from edgeopt.quant.qat_config import QatConfig
from edgeopt.serve.triton import InstanceKind, TritonConfig
from edgeopt.train.config import KDConfig
from edgeopt.trt.plan import Builder, BuildConfig, Calibrator, HwCompat, Int8Float, Precision
from edgeopt.trt.verify import VerifyConfig
from edgeopt.cli.progress import step_progress
from edgeopt.cli.common import (
    ConfigFile,
    beside,
    either,
    option,
    renamed,
    app,
    console,
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
    # a budget is optional here (FallbackConfig needs one): no budget, no fallback
    max_f1_drop: Optional[float] = option(FallbackConfig, "max_f1_drop", default=None),
    max_disagreement: Optional[float] = option(FallbackConfig, "max_disagreement"),
    eval_data: Optional[Path] = option(FallbackConfig, "eval_data", default=None, exists=True, file_okay=False),
    eval_images: Optional[int] = option(FallbackConfig, "eval_images"),
    allow_train_eval: bool = option(FallbackConfig, "allow_train_eval"),
    equalize: bool = option(PtqConfig, "equalize"),
    bias_correction: bool = option(PtqConfig, "bias_correction"),
    adaround: bool = option(PtqConfig, "adaround"),
    adaround_iterations: int = option(PtqConfig, "adaround_iterations"),
    adaround_images: int = option(PtqConfig, "adaround_images"),
    quantizer: Annotated[str, typer.Option(help="onnxruntime, or modelopt (needs edgeopt[modelopt]).")] = "onnxruntime",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per calibration batch.")] = 32,
    seed: int = option(PtqConfig, "seed"),
    calibration_dir: Annotated[Optional[Path], typer.Option("--calibration-dir", help="Where the calibration record goes (default: beside --out).")] = None,
    skip_first_last: Annotated[bool, typer.Option("--skip-first-last", help="Leave the first conv and the classifier unquantized.")] = False,
    config: ConfigFile = None,
) -> None:
    """Quantize to explicit INT8 (Q/DQ ONNX, symmetric, per-channel weights) on real crops."""
    from edgeopt.quant.calibrate import calibrate_onnx

    budget = max_f1_drop is not None or max_disagreement is not None
    if budget != (eval_data is not None):
        raise typer.BadParameter("--eval-data goes with a budget (--max-f1-drop or --max-disagreement), and a budget with --eval-data",
                                 param_hint="--max-f1-drop/--max-disagreement/--eval-data")
    if not budget and (eval_images is not None or allow_train_eval):
        raise typer.BadParameter("--eval-images and --allow-train-eval go with a budget (--max-f1-drop or --max-disagreement)",
                                 param_hint="--eval-images/--allow-train-eval")
    fallback = FallbackConfig(max_f1_drop, eval_data, max_disagreement=max_disagreement, eval_images=eval_images,
                              allow_train_eval=allow_train_eval) if budget else None
    ptq = PtqConfig(equalize=equalize, bias_correction=bias_correction, adaround=adaround,
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
    data: Path = option(QatConfig, "data", exists=True, file_okay=False),
    out: Optional[Path] = option(QatConfig, "out", default=None, show_default=False),
    epochs: int = option(QatConfig, "epochs"),
    lr: float = option(QatConfig, "lr"),
    batch_size: int = option(QatConfig, "batch_size"),
    num_images: int = option(QatConfig, "num_calib_images"),
    # the library's default is the CPU (a caller's GPU is its own choice); the command uses a GPU where there is one
    device: str = option(QatConfig, "device", default="auto"),
    seed: int = option(QatConfig, "seed"),
    soft_labels: Optional[Path] = option(KDConfig, "soft_labels", exists=True, dir_okay=False),
    config: ConfigFile = None,
) -> None:
    """Quantization-aware fine-tuning -> a Q/DQ INT8 ONNX in the form TensorRT takes."""
    from edgeopt.quant.qat import finetune_qat

    result = finetune_qat(QatConfig(checkpoint=checkpoint, data=data, out=out or beside(checkpoint, ".qat.onnx"), epochs=epochs, lr=lr,
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
    data: Optional[Path] = option(BuildConfig, "calib_data", exists=True, file_okay=False),
    method: Optional[Calibrator] = option(BuildConfig, "calibrator"),
    min_batch: Optional[int] = option(BuildConfig, "min_batch"),
    opt_batch: Optional[int] = option(BuildConfig, "opt_batch"),
    max_batch: Optional[int] = option(BuildConfig, "max_batch"),
    workspace: float = option(BuildConfig, "workspace_gib"),
    timing_cache: Optional[Path] = option(BuildConfig, "timing_cache"),
    opt_level: int = option(BuildConfig, "opt_level"),
    hw_compat: HwCompat = option(BuildConfig, "hw_compat"),
    num_images: int = option(BuildConfig, "num_images"),
    batch_size: int = option(BuildConfig, "calib_batch_size"),
    calib_data: Annotated[Optional[Path], renamed("--calib-data", "--data")] = None,
    calibrator: Annotated[Optional[str], renamed("--calibrator", "--method")] = None,
    calib_batch_size: Annotated[Optional[int], renamed("--calib-batch-size", "--batch-size")] = None,
    img_size: Optional[int] = option(BuildConfig, "img_size"),
    mean: Optional[str] = option(BuildConfig, "mean"),
    std: Optional[str] = option(BuildConfig, "std"),
    classes: Optional[Path] = option(BuildConfig, "classes_file", exists=True, dir_okay=False),
    dla_core: Optional[int] = option(BuildConfig, "dla_core"),
    int8_float: Int8Float = option(BuildConfig, "int8_float"),
    # optional here (no --verify, no verification); VerifyConfig needs its folder
    verify: Optional[Path] = option(VerifyConfig, "data", default=None, exists=True, file_okay=False),
    max_f1_drop: float = option(VerifyConfig, "max_f1_drop"),
    max_disagreement: float = option(VerifyConfig, "max_disagreement"),
    builder: Optional[Builder] = option(BuildConfig, "builder"),
    compute_capability: Optional[list[str]] = option(BuildConfig, "compute_capabilities", default=None),  # repeatable: no default list
    config: ConfigFile = None,
) -> None:
    """Build a TensorRT engine from any ONNX (TensorRT 8.6-10.x with builder flags, 11.x strongly typed, TensorRT-RTX)."""
    from edgeopt.convert import convert_artifact

    if fp16 == int8:
        raise typer.BadParameter("pass exactly one of --fp16 or --int8", param_hint="--fp16/--int8")
    require_kind(onnx, "onnx", "build-engine takes an ONNX;")
    calib_data = either(ctx, "data", value=data, old_value=calib_data, old="--calib-data", new="--data")
    calibrator = either(ctx, "method", value=method, old_value=calibrator, old="--calibrator", new="--method")
    calib_batch_size = either(ctx, "batch_size", value=batch_size, old_value=calib_batch_size, old="--calib-batch-size",
                              new="--batch-size")
    out = out or beside(onnx, ".fp16.engine" if fp16 else ".int8.engine")
    options = BuildConfig(precision=Precision.fp16 if fp16 else Precision.int8, calib_data=calib_data, calibrator=calibrator,
                           min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace_gib=workspace,
                           timing_cache=timing_cache, opt_level=opt_level, hw_compat=hw_compat, num_images=num_images,
                           calib_batch_size=calib_batch_size, img_size=img_size, mean=_rgb(mean, "--mean"),
                           std=_rgb(std, "--std"), classes_file=classes, int8_float=int8_float, dla_core=dla_core,
                           builder=builder, compute_capabilities=tuple(compute_capability or ()))
    check = VerifyConfig(verify, max_f1_drop=max_f1_drop, max_disagreement=max_disagreement) if verify is not None else None
    result = convert_artifact(onnx, "engine", out, log=say, build=options, verify=check).results["engine"]
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
    repo: Path = option(TritonConfig, "repo"),
    name: Optional[str] = option(TritonConfig, "name"),
    version: int = option(TritonConfig, "version"),
    max_batch_size: Optional[int] = option(TritonConfig, "max_batch_size"),
    dynamic_batching: bool = option(TritonConfig, "dynamic_batching", "--dynamic-batching/--no-dynamic-batching"),
    preferred_batch_sizes: str = option(TritonConfig, "preferred_batch_sizes"),
    max_queue_delay_us: int = option(TritonConfig, "max_queue_delay_us"),
    instances: int = option(TritonConfig, "instances"),
    cpu: Annotated[bool, typer.Option("--cpu", help="KIND_CPU instances (ONNX Runtime on the CPU).")] = False,
    force: bool = option(TritonConfig, "force"),
    img_size: ForeignImgSize = None,
    mean: ForeignMean = None,
    std: ForeignStd = None,
    classes: ForeignClasses = None,
    config: ConfigFile = None,
) -> None:
    """Write a Triton Inference Server model-repository entry (config.pbtxt, model file, labels) for
    an engine or any classifier ONNX."""
    from edgeopt.serve.triton import export_triton
    from edgeopt.trt.model_info import InputDescription

    describe = InputDescription(img_size=img_size, mean=_rgb(mean, "--mean"), std=_rgb(std, "--std"), classes_file=classes)
    result = export_triton(TritonConfig(artifact=artifact, repo=repo, describe=describe, name=name, version=version,
                                        max_batch_size=max_batch_size, dynamic_batching=dynamic_batching,
                                        preferred_batch_sizes=preferred_batch_sizes, max_queue_delay_us=max_queue_delay_us,
                                        instances=instances, instance_kind=InstanceKind.cpu if cpu else InstanceKind.gpu, force=force))
    console.print(f"Triton model {result.model_dir.name} ({result.platform}, max_batch_size {result.max_batch_size}) -> "
                  f"{result.config_path}, {result.model_path}")
