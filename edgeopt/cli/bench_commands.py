"""Measuring and the whole pipeline: bench, optimize, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeopt.cli.render import (
    say,
    render_report,
)


from edgeopt.bench.score import BASELINE_MODEL
from edgeopt.cli.progress import StepProgress, TrainProgress, step_progress
from edgeopt.optimize.config import OptimizeConfig, Target
from edgeopt.cli.common import Backend
from edgeopt.cli.common import (
    ConfigFile,
    option,
    read_config_file,
    parse_batch_sizes,
    app,
    console,
)


# -- bench / demo -------------------------------------------------------------------------------
@app.command("bench")
def bench_cmd(
    artifacts: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Checkpoints, ONNX models or engines.")],
    baseline: Annotated[str, typer.Option(help="A model name (built at its own input size, FP32; FP16 for engines), an artifact path, or 'none'.")] = BASELINE_MODEL,
    baseline_checkpoint: Annotated[Optional[Path], typer.Option("--baseline-checkpoint", exists=True, dir_okay=False, help="Weights for a named baseline.")] = None,
    baseline_f1: Annotated[Optional[float], typer.Option("--baseline-f1", help="The baseline's F1 when it has random weights.")] = None,
    baseline_size: Annotated[Optional[int], typer.Option("--baseline-size", help="A named baseline's input size (default: its model config's, 224 for resnet18d).")] = None,
    baseline_precision: Annotated[Optional[str], typer.Option("--baseline-precision", help="fp32, fp16 or int8 (default: fp32; fp16 for engines).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", exists=True, file_okay=False, help="Folder to classify for submit time (and F1 when labelled).")] = None,
    backend: Backend = "auto",
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
    config: ConfigFile = None,
) -> None:
    """Latency (p50/p90/p99), throughput, submit time and the competition score against a baseline."""
    from edgeopt.bench.harness import BenchConfig, run_bench

    config = BenchConfig(artifacts=tuple(artifacts), baseline=None if baseline == "none" else baseline,
                         baseline_checkpoint=baseline_checkpoint, baseline_f1=baseline_f1, baseline_size=baseline_size,
                         baseline_precision=baseline_precision, data=data, backend=backend, device=device,
                         batch_sizes=parse_batch_sizes(batch_sizes), runs=runs, warmup=warmup, workers=workers,
                         submit_runs=submit_runs, out=out, json_path=json_path, plot_path=plot, int8_exec=int8_exec,
                         torch_fp16=torch_fp16, cuda_graph=cuda_graph, torch_compile=torch_compile)
    with step_progress(console, "bench: latency per batch size, then submit time per artifact") as progress:
        report = run_bench(config, progress=progress)
    render_report(report)


@app.command("optimize")
def optimize_cmd(
    ctx: typer.Context,
    config_file: Annotated[Optional[Path], typer.Argument(exists=True, dir_okay=False, is_eager=True, expose_value=False,
                                                          callback=read_config_file, help="A YAML file of these settings, as --config.")] = None,
    data: Path = option(OptimizeConfig, "data", exists=True, file_okay=False),
    out: Path = option(OptimizeConfig, "out"),
    test: Optional[Path] = option(OptimizeConfig, "test", exists=True, file_okay=False),
    test_fraction: float = option(OptimizeConfig, "test_fraction"),
    teacher: Optional[Path] = option(OptimizeConfig, "teacher", exists=True, dir_okay=False),
    teacher_model: str = option(OptimizeConfig, "teacher_model"),
    teacher_size: int = option(OptimizeConfig, "teacher_size"),
    teacher_epochs: int = option(OptimizeConfig, "teacher_epochs"),
    views: int = option(OptimizeConfig, "views"),
    backbones: str = option(OptimizeConfig, "backbones"),
    sizes: str = option(OptimizeConfig, "sizes"),
    max_prune: float = option(OptimizeConfig, "max_prune"),
    trials: int = option(OptimizeConfig, "trials"),
    epochs: int = option(OptimizeConfig, "epochs"),
    final_epochs: int = option(OptimizeConfig, "final_epochs"),
    bn_recalibrate: bool = option(OptimizeConfig, "bn_recalibrate", "--bn-recalibrate/--no-bn-recalibrate"),
    max_macs: Optional[str] = option(OptimizeConfig, "max_macs"),
    pretrained: bool = option(OptimizeConfig, "pretrained", "--pretrained/--scratch"),
    max_f1_drop: float = option(OptimizeConfig, "max_f1_drop"),
    adaround: bool = option(OptimizeConfig, "adaround", "--adaround/--no-adaround"),
    target: Target = option(OptimizeConfig, "target"),
    baseline: str = option(OptimizeConfig, "baseline"),
    baseline_f1: float = option(OptimizeConfig, "baseline_f1"),
    batch_size: int = option(OptimizeConfig, "batch_size"),
    device: str = option(OptimizeConfig, "device"),
    seed: int = option(OptimizeConfig, "seed"),
    config: ConfigFile = None,
) -> None:
    """Crops and a budget in, a benchmarked INT8 model out: teacher, soft-label bank, search, final run, INT8, bench, report."""
    from edgeopt.optimize import run_optimize

    config = OptimizeConfig(**ctx.params)
    callbacks, bank = _pipeline_progress()
    try:
        result = run_optimize(config, log=say, callbacks=callbacks, bank_progress=bank)
    finally:
        callbacks.close()
        bank.close()
    console.print(f"report: {result.report} (and {result.report.with_suffix('.json')})")


def _pipeline_progress() -> tuple[TrainProgress, StepProgress]:
    """Progress of the pipeline's long steps: every training (teacher, trials, final run) and the bank."""
    return TrainProgress(console), StepProgress(console, "soft-label bank: the teacher over the views")


@app.command("demo")
def demo_cmd(
    data: Annotated[Optional[Path], typer.Option("--data", exists=True, file_okay=False, help="Crops to use instead of the synthetic set.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for everything the demo makes (rerun: finished steps are skipped).")] = Path("demo"),
    epochs: Annotated[int, typer.Option(min=1, help="Teacher and search epochs (the final run gets twice as many).")] = 12,
    config: ConfigFile = None,
) -> None:
    """edgeopt optimize on the embedded synthetic data: teacher, bank, search, final run, INT8, deploy, bench, report."""
    from edgeopt.optimize import run_demo

    callbacks, bank = _pipeline_progress()
    try:
        result = run_demo(out=out, data=data, epochs=epochs, log=say, callbacks=callbacks, bank_progress=bank)
    finally:
        callbacks.close()
        bank.close()
    say(result.report.read_text())
    console.print(f"report: {result.report} (and {result.report.with_suffix('.json')})")
