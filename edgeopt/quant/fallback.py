"""Accuracy-aware INT8: leave the most sensitive layers in float until the accuracy loss is within budget.

The budget is a macro-F1 drop on labelled eval images (``--max-f1-drop``), or, label-free, the share
of images whose top-1 class differs from FP32's (``--max-disagreement``, on any folder of images,
unlabelled ones included). The eval images must be images the model did not train on: the
model's manifest records its training images by content (``edgeopt.data.seen``), and eval data
that overlaps them is refused unless the user insists (``allow_train_eval``, recorded and warned).

1. Score the FP32 model and the fully quantized one (emulated Q/DQ) on the eval images.
2. If the loss is over budget, measure each weight layer's sensitivity: the model with
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

from edgeopt.plots import plot_sensitivity
from edgeopt.errors import ConfigError, VerificationError
from edgeopt.runtime.judge import ParentJudge
from edgeopt.runtime.scoring import ImageSet
from edgeopt.settings import check_settings, setting


@dataclasses.dataclass(frozen=True)
class FallbackConfig:
    max_f1_drop: float | None = setting(low=0.0, high=1.0, high_open=True, example="0.005 (a macro-F1 drop)",
                                        help="Leave the most sensitive layers in float until the macro-F1 drop on "
                                        "`eval_data` is at most this.")
    eval_data: Path = setting(help="Images the model did not train on, for the budget (labelled <class>/<image> for "
                              "`max_f1_drop`; not the test split).")
    batch_size: int = setting(64, low=1, high=65_536, help="Images per batch when scoring the eval images.")
    max_disagreement: float | None = setting(None, low=0.0, high=1.0, high_open=True,
                                             example="0.02 for 98 % top-1 agreement with FP32",
                                             help="Label-free budget instead: at most this share of `eval_data` images may "
                                             "change top-1 class against FP32 (unlabelled folders work).")
    eval_images: int | None = setting(None, low=1, high=10_000_000, help="Judge the budget on this many of the `eval_data` "
                                      "images (deterministic; stratified when labelled).")
    allow_train_eval: bool = setting(False, help="Measure the budget even on images the model trained on (warned and "
                                     "recorded; it understates the loss).")

    def __post_init__(self) -> None:
        check_settings(self)
        if (self.max_f1_drop is None) == (self.max_disagreement is None):
            raise ConfigError("give one INT8 budget: `max_f1_drop` (labelled `eval_data`) or `max_disagreement` (any images)")
        if not self.eval_data.is_dir():
            raise ConfigError(f"`eval_data` {self.eval_data}: no such folder of images")

    @property
    def labelled(self) -> bool:
        return self.max_f1_drop is not None

    @property
    def budget(self) -> float:
        return self.max_f1_drop if self.max_f1_drop is not None else float(self.max_disagreement)

    @property
    def flag(self) -> str:
        return "`max_f1_drop`" if self.labelled else "`max_disagreement`"


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
    f1_fp32: float  # the budget's metric: macro-F1, or top-1 agreement with FP32 (1.0 for FP32 itself)
    f1_int8: float
    f1_final: float
    float_layers: list[str]
    layers: list[LayerSensitivity]
    plot: str | None = None
    metric: str = "macro_f1"  # or "top1_agreement"
    agreement_int8: float = float("nan")  # top-1 agreement with FP32, all layers INT8 / as chosen
    agreement_final: float = float("nan")
    seconds: float = 0.0
    train_images_in_eval: int | None = None  # None: the manifest does not say what the model trained on

    def summary(self) -> dict[str, Any]:
        budget = {"max_f1_drop": self.budget} if self.metric == "macro_f1" else {"max_disagreement": self.budget}
        scores = ({"f1_fp32": round(self.f1_fp32, 4), "f1_int8_all_layers": round(self.f1_int8, 4), "f1_final": round(self.f1_final, 4)}
                  if self.metric == "macro_f1" else {})
        return {**budget, "metric": self.metric, "eval_images": self.eval_images, **scores,
                "top1_agreement_int8_all_layers": round(self.agreement_int8, 4), "top1_agreement_final": round(self.agreement_final, 4),
                "float_layers": self.float_layers, "plot": self.plot, "seconds": round(self.seconds, 1),
                "train_images_in_eval": self.train_images_in_eval}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "layers": [dataclasses.asdict(r) for r in self.layers]}


def eval_images(config: FallbackConfig, classes: list[str]) -> tuple[list[Path], np.ndarray | None]:
    """The eval images (a deterministic subset of ``config.eval_images``) and their labels (None when
    the budget is label-free: then any image under the folder counts, class folders or not)."""
    from edgeopt.data.folder import IMAGE_SUFFIXES, scan_folder, usable_images

    data = Path(config.eval_data)
    if config.labelled:
        scan = scan_folder(data, classes=classes, allow_empty_classes=True)
        if not scan.samples:
            raise ConfigError(f"`eval_data` {data} holds no images of the model's classes")
        samples = scan.samples
        if config.eval_images is not None and config.eval_images < len(samples):
            from edgeopt.data.folder import select_subset

            samples = select_subset(scan, config.eval_images, seed=1)
        return [s.path for s in samples], np.asarray([s.label for s in samples])
    paths = usable_images(data)
    if not paths:
        raise ConfigError(f"`eval_data` {data} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if config.eval_images is not None and config.eval_images < len(paths):
        keep = np.random.default_rng(1).choice(len(paths), config.eval_images, replace=False)
        paths = [paths[i] for i in sorted(keep)]
    return paths, None


def check_not_training_images(paths: list[Path], config: FallbackConfig, model: Path, extra: dict[str, Any]) -> int | None:
    """Refuse eval images the model trained on (by content), unless ``allow_train_eval``; how many there were."""
    import warnings

    from edgeopt.data.seen import overlap
    from edgeopt.errors import EdgeoptWarning

    trained, known = overlap(paths, extra)
    if not known:
        warnings.warn(f"{model.name}'s manifest does not record its training images, so whether `eval_data` holds any "
                      "cannot be checked (re-export from a checkpoint of this edgeopt version)", EdgeoptWarning, stacklevel=3)
        return None
    if trained and not config.allow_train_eval:
        raise ConfigError(f"`eval_data` {config.eval_data}: {len(trained)} of its {len(paths)} image(s) are images {model.name} "
                          f"trained on (e.g. {trained[0].name}); judge INT8 on images the model did not train on (hold a "
                          "slice out of the final run, or use `max_disagreement` on unlabelled images), or pass "
                          "`allow_train_eval` to measure on them anyway")
    if trained:
        warnings.warn(f"`allow_train_eval`: {len(trained)} of the {len(paths)} eval images are training images; the INT8 "
                      "budget is judged on images the model has learned, which understates the loss on new images "
                      "(recorded in the calibration record)", EdgeoptWarning, stacklevel=3)
    return len(trained)


EvalImages = tuple[list[Path], "np.ndarray | None", "int | None"]


def prepare_eval(config: FallbackConfig, classes: list[str], model: Path, extra: dict[str, Any]) -> EvalImages:
    """The eval images, their labels, and how many are training images (refused unless allowed):
    checked before any calibration work, so a refusal costs nothing."""
    paths, labels = eval_images(config, classes)
    return paths, labels, check_not_training_images(paths, config, model, extra)


def choose_prefix(order: Sequence[str], f1_with: Callable[[list[str]], float], f1_fp32: float,
                  budget: float, flag: str = "`max_f1_drop`", metric: str = "macro-F1") -> tuple[list[str], float]:
    """The shortest prefix of ``order`` left in float whose F1 is within ``budget`` of FP32.

    Doubling finds a length that meets the budget, bisection the shortest one between the last
    miss and it; only measured prefixes are returned. Raises when even all of ``order`` misses.
    """
    def ok(k: int) -> tuple[bool, float]:
        f1 = f1_with(list(order[:k]))
        return f1_fp32 - f1 <= budget + 1e-12, f1

    hit, f1_all = ok(len(order))
    if not hit:
        raise VerificationError(f"{flag} {budget}: unreachable; even with all {len(order)} quantized ops in float "
                                f"the model's {metric} is {f1_all:.4f} against FP32 {f1_fp32:.4f}: raise the budget "
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
                 out: Path, log: Callable[[str], None] | None = None, extra: dict[str, Any] | None = None,
                 prepared: EvalImages | None = None) -> FallbackResult:
    """Measure, choose and report which layers stay in float (``writer``: a calibrated ``QdqWriter``;
    ``extra``: the model manifest's extra, which says what it trained on; ``prepared``: the eval
    images, already chosen and checked by ``prepare_eval``)."""
    import time

    t0 = time.perf_counter()
    paths, labels, in_train = prepared or prepare_eval(config, list(classes), fp32_model, extra or {})
    layers = writer.compute_layers()
    if not layers:
        raise VerificationError(f"{fp32_model.name} has nothing quantizable: no Conv, Gemm or MatMul layer")
    judge = ParentJudge(fp32_model, ImageSet(paths, labels), classes=list(classes), preprocess=preprocess,
                        batch_size=config.batch_size)
    f1_fp32 = judge.f1_parent if config.labelled else 1.0
    with tempfile.TemporaryDirectory() as tmp:
        cache: dict[tuple[str, ...], tuple[float, float, float]] = {}

        def measure(excluded: list[str]) -> tuple[float, float, float]:
            """(the budget's score, mean KL to FP32, top-1 agreement with FP32) with ``excluded`` in float."""
            key = tuple(sorted(excluded))
            if key not in cache:
                path = Path(tmp) / f"candidate{len(cache)}.onnx"
                writer.write(path, excluded)
                judged = judge.judge(path)
                score = judged.f1_candidate if config.labelled else judged.agreement
                cache[key] = (score, judged.mean_kl, judged.agreement)
                path.unlink()
            return cache[key]

        f1_int8, kl_int8, _ = measure([])
        rows = []
        if f1_fp32 - f1_int8 > config.budget:
            for name, op in layers:
                f1, kl, _ = measure([name])
                rows.append(LayerSensitivity(name, op, kl_int8 - kl, f1))
            rows.sort(key=lambda r: (-r.kl_gain, -r.f1))
            # after every weight layer, the other quantized ops (adds, pools, ...) in graph order: with
            # all of them in float the model is FP32 again
            weight = {name for name, _ in layers}
            rest = [(n, op) for n, op in _quantized_ops(writer, Path(tmp) / "all.onnx") if n not in weight]
            rows += [LayerSensitivity(n, op, 0.0, float("nan")) for n, op in rest]
            metric = "macro-F1" if config.labelled else "top-1 agreement with FP32"
            chosen, f1_final = choose_prefix([r.name for r in rows], lambda ex: measure(ex)[0], f1_fp32, config.budget,
                                             config.flag, metric)
            if len(chosen) == len(rows):
                raise VerificationError(f"{config.flag} {config.budget}: met only with every quantized op in float "
                                        f"(all INT8: {metric} {f1_int8:.4f}, FP32 {f1_fp32:.4f}): nothing would stay INT8; "
                                        "raise the budget, calibrate with another `method`, or keep FP16")
        else:
            rows = [LayerSensitivity(name, op, 0.0, f1_int8) for name, op in layers]
            chosen, f1_final = [], f1_int8
        agreement_int8, agreement_final = measure([])[2], measure(chosen)[2]
    for row in rows:
        row.kept_float = row.name in chosen
    result = FallbackResult(config.budget, len(paths), f1_fp32, f1_int8, f1_final, chosen, rows,
                            metric="macro_f1" if config.labelled else "top1_agreement", agreement_int8=agreement_int8,
                            agreement_final=agreement_final, seconds=time.perf_counter() - t0, train_images_in_eval=in_train)
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
