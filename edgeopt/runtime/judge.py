"""The one judge of a candidate (an INT8 ONNX, an engine) against its FP32 parent on the same images.

Both run over the same batches (``runtime.scoring``); ``compare_logits`` turns their logits into a
``Judgement``: each one's macro-F1 where the images are labelled, the drop, top-1 agreement, the mean
KL divergence of the softmaxes and the largest |Δlogit|. The INT8 choice (``quant.int8_choice``), the
accuracy-aware fallback (``quant.fallback``), engine verification (``trt.verify``) and optimize's CPU
deploy all judge through it, and write their records from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.runtime.predict import Run, predict
from edgeopt.runtime.scoring import ImageSet, labelled_folder, score_folder, score_logits


@dataclasses.dataclass(frozen=True)
class Judgement:
    images: int
    labelled: bool
    f1_parent: float | None  # macro-F1 (None on unlabelled images)
    f1_candidate: float | None
    agreement: float  # share of images whose top-1 class is the same in both
    mean_kl: float  # mean KL(softmax(parent) || softmax(candidate))
    max_abs_logit_diff: float

    @property
    def drop(self) -> float | None:
        """The macro-F1 the candidate lost against its parent (None on unlabelled images)."""
        return None if self.f1_parent is None or self.f1_candidate is None else self.f1_parent - self.f1_candidate

    @property
    def disagreement(self) -> float:
        return 1 - self.agreement

    def int8_record(self) -> dict[str, Any]:
        """What an INT8 candidate's record holds (``int8_choice``, optimize's deploy): rounded figures."""
        return {"images": self.images, "f1_fp32": round(self.f1_parent, 4), "f1_int8": round(self.f1_candidate, 4),
                "drop": round(self.f1_parent - self.f1_candidate, 4), "top1_agreement": round(self.agreement, 4),
                "kl": round(self.mean_kl, 5)}


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def mean_kl(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean KL(softmax(reference) || softmax(candidate)) over images."""
    p, q = _softmax(reference), _softmax(candidate)
    return float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1)))


def agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Share of images whose top-1 class is the same in both."""
    return float(np.mean(reference.argmax(1) == candidate.argmax(1)))


def compare_logits(parent: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None, classes: Sequence[str],
                   f1_parent: float | None = None) -> Judgement:
    """The judgement of ``candidate``'s logits against ``parent``'s on the same images (``f1_parent``:
    the parent's macro-F1, when already known)."""
    parent, candidate = parent.astype(np.float64), candidate.astype(np.float64)
    if labels is not None and f1_parent is None:
        f1_parent = score_logits(parent, labels, classes).macro_f1
    f1_candidate = score_logits(candidate, labels, classes).macro_f1 if labels is not None else None
    return Judgement(len(parent), labels is not None, f1_parent if labels is not None else None, f1_candidate,
                     agreement(parent, candidate), mean_kl(parent, candidate),
                     float(np.abs(parent - candidate).max()) if parent.size else 0.0)


def emulated_onnx(path: str | Path) -> Run:
    """An ONNX model run by ONNX Runtime with graph optimizations off: a Q/DQ model as emulated Q/DQ
    (its own arithmetic, free of CPU int8-kernel effects); a float model as written."""
    from edgeopt.runtime.ort_runner import make_session

    session = make_session(path, optimize=False)
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def judge_against_parent(candidate: Run | Path, parent: Run | Path, data: ImageSet | Path, *, classes: Sequence[str],
                         preprocess: Any, batch_size: int = 64) -> Judgement:
    """Run ``candidate`` and its ``parent`` over the same batches of ``data`` and judge the candidate.

    A model given as a path is an ONNX run by ``emulated_onnx``; ``data`` given as a path is a labelled
    ``<class>/<image>`` folder of ``classes`` (``labelled_folder``)."""
    runs = [emulated_onnx(m) if isinstance(m, (str, Path)) else m for m in (parent, candidate)]
    images = labelled_folder(data, classes) if isinstance(data, (str, Path)) else data
    reference, scored = score_folder(runs, images, classes, preprocess, batch_size)
    return compare_logits(reference.logits, scored.logits, images.labels, classes)


class ParentJudge:
    """Many candidates against one parent (the fallback's sensitivity pass): the images decoded once and
    the parent run once; each candidate judged by ``compare_logits`` as ``judge_against_parent`` does."""

    def __init__(self, parent: Run | Path, data: ImageSet, *, classes: Sequence[str], preprocess: Any,
                 batch_size: int = 64) -> None:
        self.data, self.classes = data, list(classes)
        self.batches = list(preprocess.iter_batches(data.paths, batch_size))
        self.reference = self.logits(parent)
        metrics = score_logits(self.reference, data.labels, self.classes)
        self.f1_parent = metrics.macro_f1 if metrics is not None else None

    def logits(self, model: Run | Path) -> np.ndarray:
        run = emulated_onnx(model) if isinstance(model, (str, Path)) else model
        return predict(run, self.batches).astype(np.float64)

    def judge(self, candidate: Run | Path) -> Judgement:
        return compare_logits(self.reference, self.logits(candidate), self.data.labels, self.classes, self.f1_parent)
