"""Timing harness: interleaved latency, CUDA-event timing, and submit time over a folder (no scoring)."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeopt.artifacts import atomic_write_text
from edgeopt.data.folder import classifiable_images as list_images  # submit time's folder rule, predict's too
from edgeopt.data.presets import Preprocess
from edgeopt.errors import ConfigError
from edgeopt.runtime.scoring import folder_labels, score_batches, score_logits


@dataclasses.dataclass
class LatencyStats:
    batch: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput: float  # images per second at the median

    @classmethod
    def from_times(cls, batch: int, times_s: Sequence[float]) -> LatencyStats:
        if not times_s:
            raise ConfigError("no timed runs: use `runs` 1 or more")
        ms = np.asarray(times_s, dtype=np.float64) * 1e3
        p50 = float(np.percentile(ms, 50))
        return cls(batch, len(ms), p50, float(np.percentile(ms, 90)), float(np.percentile(ms, 99)), float(ms.mean()),
                   batch / (p50 / 1e3) if p50 > 0 else float("inf"))


Timed = Callable[[np.ndarray], object]


def measure_interleaved(
    runners: dict[str, tuple[Timed, np.ndarray]], runs: int, warmup: int,
    clock: Callable[[], float] = time.perf_counter, sync: Callable[[], None] | None = None,
    block: int = 5, settle: int = 1, timer: Callable[[Callable[[], object]], float] | None = None,
) -> dict[str, LatencyStats]:
    """Time ``runs`` calls of every ``(run, batch)`` pair, interleaved runner by runner in blocks.

    Interleaving spreads thermal drift and background load over all runners alike, so ratios hold
    on noisy machines. Each runner is warmed up first; then every round gives each runner
    ``settle`` untimed calls and up to ``block`` timed ones. Without the settle calls a runner would
    be timed straight after another one evicted its weights from the caches and left its own
    thread pool spinning, and would read slower than alone (benchmarks/README.md). A call is timed by ``timer`` (seconds; e.g. ``cuda_event_timer``) or
    else by ``clock`` around it, with ``sync`` (e.g. ``torch.cuda.synchronize``) before each read.
    """
    if runs < 1 or warmup < 0:
        raise ConfigError(f"`runs` {runs} / `warmup` {warmup}: need runs >= 1 and warmup >= 0")
    if block < 1 or settle < 0:
        raise ConfigError(f"block {block} / settle {settle}: need block >= 1 and settle >= 0")
    if timer is None:
        timer = _wall_timer(clock, sync)
    for run, batch in runners.values():
        for _ in range(warmup):
            run(batch)
        if sync:
            sync()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for start in range(0, runs, block):
        for name, (run, batch) in runners.items():
            for _ in range(settle):
                run(batch)
            if sync:
                sync()
            for _ in range(min(block, runs - start)):
                times[name].append(timer(functools.partial(run, batch)))
    return {name: LatencyStats.from_times(len(runners[name][1]), t) for name, t in times.items()}


def _wall_timer(clock: Callable[[], float], sync: Callable[[], None] | None) -> Callable[[Callable[[], object]], float]:
    def timed(call: Callable[[], object]) -> float:
        t0 = clock()
        call()
        if sync:
            sync()
        return clock() - t0
    return timed


def onnx_cpu_latency_ms(path: str | Path, runs: int, warmup: int) -> float:
    """Batch-1 p50 latency (ms) of an ONNX classifier with ONNX Runtime on this CPU, on a seeded random input."""
    from edgeopt.runtime.ort_runner import make_session

    session = make_session(path, "cpu")
    name, size = session.get_inputs()[0].name, session.get_inputs()[0].shape[-1]
    batch = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    stats = measure_interleaved({"m": (lambda x: session.run(None, {name: x}), batch)}, runs=runs, warmup=warmup)
    return stats["m"].p50_ms


def cuda_event_timer(call: Callable[[], object]) -> float:
    """Seconds between CUDA events recorded on the current stream around ``call``.

    Runners that work on a stream of their own make the current stream wait for it before they
    return, so the end event follows all their device work.
    """
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


# -- submit time --------------------------------------------------------------------------------
@dataclasses.dataclass
class SubmitResult:
    images: int
    seconds: float  # decode + preprocess + inference + writing the CSV (median over the runs)
    decode_seconds: float  # decode + preprocess only, same folder and workers (median over the runs)
    predictions_csv: Path | None
    macro_f1: float | None
    accuracy: float | None
    runs: int = 1

    @property
    def model_share(self) -> float:
        return max(0.0, 1.0 - self.decode_seconds / self.seconds) if self.seconds > 0 else 0.0


def decode_only(paths: Sequence[Path], preprocess: Preprocess, batch_size: int, workers: int,
                clock: Callable[[], float] = time.perf_counter) -> float:
    t0 = clock()
    for _ in preprocess.iter_batches(paths, batch_size, workers):
        pass
    return clock() - t0


def submit_time(
    run: Timed, classes: Sequence[str], preprocess: Preprocess, folder: str | Path, csv_path: Path | None,
    batch_size: int = 32, workers: int = 4, runs: int = 1, clock: Callable[[], float] = time.perf_counter,
    unlabelled: bool = False,
) -> SubmitResult:
    """Classify every image under ``folder`` end to end and write ``path,prediction,confidence`` rows.

    Each of ``runs`` rounds times a decode-only pass and then the full pass, so both see the same
    (warm) file cache and the same background load; the medians are reported. When the folder is
    in the ``<class>/<image>`` layout with the model's classes, macro-F1 is computed too (a layout of
    other classes is an error unless ``unlabelled``).
    """
    if batch_size < 1 or workers < 1 or runs < 1:
        raise ConfigError("`batch_size`, `workers` and `submit_runs` must be at least 1")
    folder = Path(folder)
    paths = list_images(folder)
    labels = folder_labels(folder, paths, classes, unlabelled=unlabelled)  # before timing: a foreign layout fails at once
    decode_times, full_times = [], []
    for _ in range(runs):
        decode_times.append(decode_only(paths, preprocess, batch_size, workers, clock))
        t0 = clock()
        probs = _classify_to_csv(run, classes, preprocess, folder, paths, csv_path, batch_size, workers)
        full_times.append(clock() - t0)
    f1 = acc = None
    metrics = score_logits(probs, labels, classes)
    if metrics is not None:
        f1, acc = metrics.macro_f1, metrics.accuracy
    return SubmitResult(len(paths), float(np.median(full_times)), float(np.median(decode_times)), csv_path, f1, acc, runs)


def _classify_to_csv(run: Timed, classes: Sequence[str], preprocess: Preprocess, folder: Path, paths: Sequence[Path],
                     csv_path: Path | None, batch_size: int, workers: int) -> np.ndarray:
    """The timed part of submit time: decode, infer, softmax, write the CSV; returns the probabilities."""
    from edgeopt.runtime.classify import predictions_csv, softmax

    p = softmax(score_batches([run], preprocess.iter_batches(paths, batch_size, workers))[0].logits)
    text = predictions_csv([str(path.relative_to(folder)) for path in paths], p, classes)  # the one CSV writer (predict's)
    if csv_path is not None:
        atomic_write_text(csv_path, text)
    return p
