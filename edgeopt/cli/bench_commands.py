"""Measuring and the whole pipeline: bench, optimize, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeopt.cli.render import (
    say,
    render_report,
)


from edgeopt.cli.progress import StepProgress, TrainProgress, step_progress
from edgeopt.bench.baseline import BaselinePrecision
from edgeopt.bench.harness import BenchConfig
from edgeopt.optimize.config import OptimizeConfig, Target
from edgeopt.runtime.ort_runner import Int8Exec
from edgeopt.cli.common import Backend
from edgeopt.cli.common import (
    ConfigFile,
    argument,
    option,
    read_config_file,
    app,
    console,
)


# -- bench / demo -------------------------------------------------------------------------------
@app.command("bench")
def bench_cmd(
    artifacts: list[Path] = argument(BenchConfig, "artifacts", exists=True, dir_okay=False),
    baseline: str = option(BenchConfig, "baseline"),
    baseline_checkpoint: Optional[Path] = option(BenchConfig, "baseline_checkpoint", exists=True, dir_okay=False),
    baseline_f1: Optional[float] = option(BenchConfig, "baseline_f1"),
    baseline_size: Optional[int] = option(BenchConfig, "baseline_size"),
    baseline_precision: Optional[BaselinePrecision] = option(BenchConfig, "baseline_precision"),
    data: Optional[Path] = option(BenchConfig, "data", exists=True, file_okay=False),
    unlabelled: bool = option(BenchConfig, "unlabelled"),
    backend: Backend = "auto",
    device: str = option(BenchConfig, "device"),
    batch_sizes: str = option(BenchConfig, "batch_sizes"),
    runs: int = option(BenchConfig, "runs"),
    warmup: int = option(BenchConfig, "warmup"),
    workers: int = option(BenchConfig, "workers"),
    submit_runs: int = option(BenchConfig, "submit_runs"),
    out: Path = option(BenchConfig, "out"),
    json_path: Optional[Path] = option(BenchConfig, "json_path", "--json"),
    plot: Optional[Path] = option(BenchConfig, "plot_path", "--plot"),
    int8_exec: Int8Exec = option(BenchConfig, "int8_exec"),
    torch_fp16: bool = option(BenchConfig, "torch_fp16"),
    cuda_graph: bool = option(BenchConfig, "cuda_graph"),
    torch_compile: bool = option(BenchConfig, "torch_compile"),
    config: ConfigFile = None,
) -> None:
    """Latency (p50/p90/p99), throughput, submit time and the competition score against a baseline."""
    from edgeopt.bench.harness import bench_artifacts

    config = BenchConfig(artifacts=tuple(artifacts), baseline=None if baseline == "none" else baseline,
                         baseline_checkpoint=baseline_checkpoint, baseline_f1=baseline_f1, baseline_size=baseline_size,
                         baseline_precision=baseline_precision, data=data, unlabelled=unlabelled, backend=backend, device=device,
                         batch_sizes=batch_sizes, runs=runs, warmup=warmup, workers=workers,
                         submit_runs=submit_runs, out=out, json_path=json_path, plot_path=plot, int8_exec=int8_exec,
                         torch_fp16=torch_fp16, cuda_graph=cuda_graph, torch_compile=torch_compile)
    with step_progress(console, "bench: latency per batch size, then submit time per artifact") as progress:
        report = bench_artifacts(config, progress=progress)
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
    teacher_label_smoothing: float = option(OptimizeConfig, "teacher_label_smoothing"),
    teacher_mixup: float = option(OptimizeConfig, "teacher_mixup"),
    views: int = option(OptimizeConfig, "views"),
    backbones: str = option(OptimizeConfig, "backbones"),
    sizes: str = option(OptimizeConfig, "sizes"),
    max_prune: float = option(OptimizeConfig, "max_prune"),
    trials: int = option(OptimizeConfig, "trials"),
    epochs: int = option(OptimizeConfig, "epochs"),
    final_epochs: int = option(OptimizeConfig, "final_epochs"),
    bn_recalibrate: bool = option(OptimizeConfig, "bn_recalibrate", "--bn-recalibrate/--no-bn-recalibrate"),
    assistant_size: int = option(OptimizeConfig, "assistant_size"),
    assistant_for: int = option(OptimizeConfig, "assistant_for"),
    assistant_init: bool = option(OptimizeConfig, "assistant_init", "--assistant-init/--no-assistant-init"),
    assistant_epochs: int = option(OptimizeConfig, "assistant_epochs"),
    max_macs: Optional[str] = option(OptimizeConfig, "max_macs"),
    pretrained: bool = option(OptimizeConfig, "pretrained", "--pretrained/--scratch"),
    max_f1_drop: float = option(OptimizeConfig, "max_f1_drop"),
    int8_holdout: float = option(OptimizeConfig, "int8_holdout"),
    qat_epochs: int = option(OptimizeConfig, "qat_epochs"),
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
    from edgeopt.optimize import optimize_classifier

    config = OptimizeConfig(**ctx.params)
    callbacks, bank = _pipeline_progress()
    try:
        result = optimize_classifier(config, log=say, callbacks=callbacks, bank_progress=bank)
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
