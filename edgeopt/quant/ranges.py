"""Activation ranges for INT8 calibration: histograms of |x| and the rules that turn them into amax.

Activations are quantized symmetrically (zero-point 0), so a range is one number, ``amax``: the
scale is ``amax / 127``. Three rules:

- ``minmax``: the largest |x| seen;
- ``entropy``: TensorRT's legacy entropy calibration: a histogram of |x| in 2048 bins over
  [0, max|x|], and for every candidate threshold i (128..2048 bins) the KL divergence between the
  histogram clipped at i (the outliers added to the last kept bin) and its quantization to 128
  levels (int8's positive half); the threshold with the smallest divergence wins. ONNX Runtime's
  own entropy calibrator spreads its 128 levels over [-t, t] (64 a side), which picks another
  threshold; edgeopt computes TensorRT's;
- ``percentile``: the 99.99th percentile of |x|.

Histograms are collected in two passes over the calibration batches: the first finds max|x|, the
second fills 2048 equal bins over [0, max|x|] (so every batch lands in the same bins).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

NUM_BINS = 2048
NUM_QUANTIZED_BINS = 128  # int8: 127 positive levels plus zero
PERCENTILE = 99.99


def tensors_to_calibrate(model: Any) -> list[str]:
    """Float activations (not weights) that are an input or output of some node: what Q/DQ may quantize."""
    from onnx import TensorProto

    infos = {v.name: v for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    inits = {i.name for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        for name in list(node.input) + list(node.output):
            info = infos.get(name)
            if (info is not None and name not in inits and name not in names and info.type.HasField("tensor_type")
                    and info.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16)):
                names.append(name)
    return names


def collect_abs_histograms(model_path: str | Path, batches: Sequence[np.ndarray], input_name: str,
                           tensors: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{tensor: (counts, edges)}``: 2048-bin histograms of |x| over [0, max|x|] across all batches."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    existing = {o.name for o in model.graph.output}
    infos = {v.name: v for v in list(model.graph.value_info) + list(model.graph.input)}
    for name in tensors:
        if name not in existing:
            model.graph.output.append(infos[name])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "augmented.onnx"
        onnx.save(model, str(path))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor as in the graph
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = list(tensors)
    amax = dict.fromkeys(names, 0.0)
    for batch in batches:
        for name, value in zip(names, session.run(names, {input_name: batch})):
            amax[name] = max(amax[name], float(np.abs(value).max()) if value.size else 0.0)
    hists = {name: np.zeros(NUM_BINS, np.int64) for name in names}
    for batch in batches:
        for name, value in zip(names, session.run(names, {input_name: batch})):
            hists[name] += abs_histogram(value, amax[name])
    return {name: (hists[name], histogram_edges(amax[name])) for name in names}


def abs_histogram(values: np.ndarray, top: float) -> np.ndarray:
    """Counts of |values| in ``NUM_BINS`` equal bins over [0, top] (over [0, 1] when ``top`` is 0), so
    histograms of several batches with the same ``top`` add up."""
    return np.histogram(np.abs(values), bins=NUM_BINS, range=(0.0, top if top > 0 else 1.0))[0]


def histogram_edges(top: float) -> np.ndarray:
    """The bin edges of ``abs_histogram(values, top)``."""
    return np.linspace(0.0, top if top > 0 else 1.0, NUM_BINS + 1)


def entropy_amax(counts: np.ndarray, edges: np.ndarray, num_quantized_bins: int = NUM_QUANTIZED_BINS,
                 start_bin: int | None = None) -> float:
    """TensorRT's entropy threshold of a histogram of |x| (see the module docstring)."""
    bins = np.asarray(counts, dtype=np.float64).copy()
    if len(bins) > 1:
        bins[0] = bins[1]  # the zero bin (every post-ReLU zero) would otherwise dominate the divergence
    start = start_bin if start_bin is not None else num_quantized_bins
    if bins.sum() == 0 or len(bins) <= start:
        return float(edges[-1])
    best_i, best_kl = len(bins), np.inf
    for i in range(start, len(bins) + 1):
        reference = bins[:i].copy()
        reference[-1] += bins[i:].sum()  # what the threshold clips lands in the last level
        group = np.floor(np.arange(i) * num_quantized_bins / i).astype(np.int64)
        nonzero = bins[:i] != 0
        mass = np.bincount(group, weights=bins[:i], minlength=num_quantized_bins)
        used = np.bincount(group, weights=nonzero.astype(np.float64), minlength=num_quantized_bins)
        candidate = np.where(nonzero, mass[group] / np.maximum(used[group], 1.0), 0.0)
        kl = _kl(reference, candidate)
        if kl <= best_kl:  # ties: the larger threshold, as NVIDIA's calibrators do
            best_i, best_kl = i, kl
    return float(edges[best_i])


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) of two unnormalised histograms; infinite where p has mass and q has none."""
    p = p / p.sum()
    q = q / q.sum() if q.sum() > 0 else q
    mask = p > 0
    if np.any(q[mask] == 0):
        return float("inf")
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def percentile_amax(counts: np.ndarray, edges: np.ndarray, percentile: float = PERCENTILE) -> float:
    """The ``percentile`` of |x| from its histogram (the upper edge of the bin it falls in)."""
    cumulative = np.cumsum(counts)
    if cumulative[-1] == 0:
        return float(edges[-1])
    idx = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0))
    return float(edges[min(idx + 1, len(edges) - 1)])


def amax_for(method: str, counts: np.ndarray, edges: np.ndarray) -> float:
    if method == "minmax":
        return float(edges[-1]) if counts.sum() else 0.0
    if method == "entropy":
        return entropy_amax(counts, edges)
    if method == "percentile":
        return percentile_amax(counts, edges)
    raise ValueError(method)
