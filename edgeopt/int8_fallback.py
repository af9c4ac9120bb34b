"""Accuracy-aware INT8: leave the most sensitive layers in float until the F1 drop is within budget.

1. Score the FP32 model and the fully quantized one (emulated Q/DQ) on labelled eval images.
2. If the macro-F1 drop is over budget, measure each weight layer's sensitivity: the model with
   only that layer left in float, scored by how much closer its logits come to FP32's (mean KL
   divergence of the softmaxes, KL_all - KL_layer) and by its macro-F1.
3. Leave layers in float in order of sensitivity, the fewest that bring the drop within budget
   (found by doubling, then bisection, over how many). A float layer runs in FP16 in a TensorRT
   8.6-10.x engine (the INT8 build sets FP16 too) and in FP32 on 11.x and ONNX Runtime.

After the weight layers come the other quantized ops (adds, pools), so the search can end at the
float model; a budget still missed then is a one-line error.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.errors import ConfigError, VerificationError


@dataclasses.dataclass(frozen=True)
class FallbackConfig:
    max_f1_drop: float
    eval_data: Path
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not 0 <= self.max_f1_drop < 1:
            raise ConfigError(f"--max-f1-drop {self.max_f1_drop} is out of range: use a macro-F1 drop in [0, 1), e.g. 0.005")
        if not Path(self.eval_data).is_dir():
            raise ConfigError(f"--eval-data {self.eval_data}: no such folder of <class>/<image> crops")


@dataclasses.dataclass
class LayerSensitivity:
    name: str
    op: str
    kl_gain: float  # how much closer to FP32 the logits get with only this layer in float
    f1: float  # macro-F1 with only this layer in float
    kept_float: bool = False


@dataclasses.dataclass
class FallbackResult:
    budget: float
    eval_images: int
    f1_fp32: float
    f1_int8: float
    f1_final: float
    float_layers: list[str]
    layers: list[LayerSensitivity]
    plot: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"max_f1_drop": self.budget, "eval_images": self.eval_images, "f1_fp32": round(self.f1_fp32, 4),
                "f1_int8_all_layers": round(self.f1_int8, 4), "f1_final": round(self.f1_final, 4),
                "float_layers": self.float_layers, "plot": self.plot}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "layers": [dataclasses.asdict(r) for r in self.layers]}


class _Scorer:
    """Runs ONNX models (emulated Q/DQ) over eval images decoded once; macro-F1 and logits."""

    def __init__(self, data: Path, classes: list[str], preprocess, batch_size: int) -> None:
        from edgeopt.data.folder import scan_folder

        scan = scan_folder(data, classes=classes, allow_empty_classes=True)
        if not scan.samples:
            raise ConfigError(f"--eval-data {data} holds no images of the model's classes")
        self.labels = scan.labels
        self.batches = list(preprocess.iter_batches([s.path for s in scan.samples], batch_size))
        self.classes = classes

    def logits(self, path: Path) -> np.ndarray:
        from edgeopt.runtime.ort_runner import make_session

        session = make_session(path, optimize=False)  # Q/DQ emulated: quantize-dequantize around float ops
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: b})[0] for b in self.batches]).astype(np.float64)

    def f1(self, logits: np.ndarray) -> float:
        from edgeopt.metrics import classification_metrics

        return classification_metrics(self.labels, logits.argmax(1), self.classes).macro_f1


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def mean_kl(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean KL(softmax(reference) || softmax(candidate)) over images."""
    p, q = _softmax(reference), _softmax(candidate)
    return float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1)))


def choose_prefix(order: Sequence[str], f1_with: Callable[[list[str]], float], f1_fp32: float,
                  budget: float) -> tuple[list[str], float]:
    """The shortest prefix of ``order`` left in float whose F1 is within ``budget`` of FP32.

    Doubling finds a length that meets the budget, bisection the shortest one between the last
    miss and it; only measured prefixes are returned. Raises when even all of ``order`` misses.
    """
    def ok(k: int) -> tuple[bool, float]:
        f1 = f1_with(list(order[:k]))
        return f1_fp32 - f1 <= budget + 1e-12, f1

    hit, f1_all = ok(len(order))
    if not hit:
        raise VerificationError(f"--max-f1-drop {budget}: unreachable; even with all {len(order)} quantized ops in float "
                                f"the model's macro-F1 is {f1_all:.4f} against FP32 {f1_fp32:.4f}: raise the budget "
                                "or keep the model in FP16")
    lo, hi, f1_hi = 0, len(order), f1_all
    k = 1
    while k < hi:
        met, f1 = ok(k)
        if met:
            hi, f1_hi = k, f1
            break
        lo = k
        k *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        met, f1 = ok(mid)
        if met:
            hi, f1_hi = mid, f1
        else:
            lo = mid
    return list(order[:hi]), f1_hi


def run_fallback(writer: Any, fp32_model: Path, config: FallbackConfig, classes: list[str], preprocess: Any,
                 out: Path, log: Callable[[str], None] | None = None) -> FallbackResult:
    """Measure, choose and report which layers stay in float (``writer``: a calibrated ``QdqWriter``)."""
    scorer = _Scorer(Path(config.eval_data), list(classes), preprocess, config.batch_size)
    layers = writer.compute_layers()
    if not layers:
        raise VerificationError(f"{fp32_model.name} has nothing quantizable: no Conv, Gemm or MatMul layer")
    reference = scorer.logits(fp32_model)
    f1_fp32 = scorer.f1(reference)
    with tempfile.TemporaryDirectory() as tmp:
        cache: dict[tuple[str, ...], tuple[float, float]] = {}

        def measure(excluded: list[str]) -> tuple[float, float]:
            key = tuple(sorted(excluded))
            if key not in cache:
                path = Path(tmp) / f"candidate{len(cache)}.onnx"
                writer.write(path, excluded)
                logits = scorer.logits(path)
                cache[key] = (scorer.f1(logits), mean_kl(reference, logits))
                path.unlink()
            return cache[key]

        f1_int8, kl_int8 = measure([])
        rows = []
        if f1_fp32 - f1_int8 > config.max_f1_drop:
            for name, op in layers:
                f1, kl = measure([name])
                rows.append(LayerSensitivity(name, op, kl_int8 - kl, f1))
            rows.sort(key=lambda r: (-r.kl_gain, -r.f1))
            # after every weight layer, the other quantized ops (adds, pools, ...) in graph order: with
            # all of them in float the model is FP32 again
            weight = {name for name, _ in layers}
            rest = [(n, op) for n, op in _quantized_ops(writer, Path(tmp) / "all.onnx") if n not in weight]
            rows += [LayerSensitivity(n, op, 0.0, float("nan")) for n, op in rest]
            chosen, f1_final = choose_prefix([r.name for r in rows], lambda ex: measure(ex)[0], f1_fp32, config.max_f1_drop)
            if len(chosen) == len(rows):
                raise VerificationError(f"--max-f1-drop {config.max_f1_drop}: met only with every quantized op in float "
                                        f"(all INT8: F1 {f1_int8:.4f}, FP32 {f1_fp32:.4f}): nothing would stay INT8; "
                                        "raise the budget, calibrate with another --method, or keep FP16")
        else:
            rows = [LayerSensitivity(name, op, 0.0, f1_int8) for name, op in layers]
            chosen, f1_final = [], f1_int8
    for row in rows:
        row.kept_float = row.name in chosen
    result = FallbackResult(config.max_f1_drop, len(scorer.labels), f1_fp32, f1_int8, f1_final, chosen, rows)
    if any(r.kl_gain for r in rows):
        result.plot = str(plot_sensitivity(result, out.with_name(out.stem + ".sensitivity.png")))
    return result


def _quantized_ops(writer: Any, path: Path) -> list[tuple[str, str]]:
    """(name, op) of every node that reads a DequantizeLinear output in the fully quantized model."""
    import onnx

    writer.write(path, [])
    graph = onnx.load(str(path)).graph
    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [(n.name, n.op_type) for n in graph.node
            if n.name and n.op_type not in ("QuantizeLinear", "DequantizeLinear") and dq_outputs & set(n.input)]


def plot_sensitivity(result: FallbackResult, path: Path) -> Path:
    """Bar chart of each layer's sensitivity, the layers kept in float highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeopt.artifacts import atomic_path

    rows = [r for r in result.layers if r.f1 == r.f1]  # the measured weight layers (the other ops have no score)
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.12), 3.5))
    ax.bar(range(len(rows)), [r.kl_gain for r in rows], color=["tab:red" if r.kept_float else "tab:blue" for r in rows])
    ax.set_xlabel("layer (most sensitive first)")
    ax.set_ylabel("KL gain when left in float")
    ax.set_title(f"INT8 sensitivity: {len(result.float_layers)} layer(s) kept in float, "
                 f"F1 {result.f1_int8:.3f} -> {result.f1_final:.3f} (FP32 {result.f1_fp32:.3f})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
