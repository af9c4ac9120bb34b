"""One ``Runner`` per backend: load an artifact, run a preprocessed NCHW float32 batch -> logits."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from edgeopt.artifacts import artifact_kind
from edgeopt.errors import ConfigError

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Runner", "artifact_kind", "open_runner"]

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


class Runner(Protocol):
    backend: str
    device: str
    precision: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """NCHW float32 (already preprocessed) -> logits (N, classes) float32."""
        ...


DEFAULT_BACKEND = {"checkpoint": "torch", "onnx": "onnxruntime", "engine": "tensorrt"}


def open_runner(path: str | Path, backend: str = "auto", device: str = "cpu", **options) -> Runner:
    """The runner for ``path`` on ``backend``; a backend that cannot run the artifact is an error."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    kind = artifact_kind(path)
    if kind not in DEFAULT_BACKEND:
        raise ConfigError(f"{path}: a {kind} artifact is not a model to run; pass a checkpoint, an ONNX or an engine")
    if backend == "auto":
        backend = DEFAULT_BACKEND[kind]
    if DEFAULT_BACKEND[kind] != backend:
        raise ConfigError(
            f"{path}: a {kind} runs on the {DEFAULT_BACKEND[kind]} backend, not {backend}; "
            + {"checkpoint": "export it first (edgeopt export)", "onnx": "build an engine first (edgeopt build-engine) or use `backend` onnxruntime",
               "engine": "use `backend` tensorrt"}[kind]
        )
    if backend == "torch":
        from edgeopt.runtime.torch_runner import TorchRunner

        return TorchRunner(path, device=device, **options)
    if backend == "onnxruntime":
        from edgeopt.runtime.ort_runner import OrtRunner

        return OrtRunner(path, device=device, **options)
    from edgeopt.trt.runner import TensorRTRunner

    return TensorRTRunner(path, **options)
