"""Runner backends: load an artifact, run a preprocessed NCHW float32 batch -> logits.

A backend is one registration in ``RUNNERS`` (as Polygraphy's ``backend/<x>/runner.py``): a name and
a function that opens its ``Runner`` for a path, importing its library only then. Which formats a
backend runs is each format's row (``Format.backends`` in ``edgeopt.formats.FORMATS``, the first
being the default), so ``open_runner`` picks among the backends that can run the artifact and
refuses the others in one line that says what to use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgeopt.artifacts import artifact_kind, read_manifest
from edgeopt.errors import ConfigError, EdgeoptError
from edgeopt.formats import FORMATS, Format, conversion_path, format_of
from edgeopt.registries import Registry, unknown_name_message

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RUNNERS", "Runner", "artifact_kind", "backend_names", "open_runner"]


class Runner(Protocol):
    backend: str
    device: str
    precision: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """NCHW float32 (already preprocessed) -> logits (N, classes) float32."""
        ...


# backend name -> ``open(path, device=..., **options) -> Runner``
RUNNERS: Registry[Callable[..., Runner]] = Registry("backend")


@RUNNERS("torch")
def _open_torch(path: str | Path, device: str = "cpu", **options: Any) -> Runner:
    from edgeopt.runtime.torch_runner import TorchRunner

    return TorchRunner(path, device=device, **options)


@RUNNERS("onnxruntime")
def _open_onnxruntime(path: str | Path, device: str = "cpu", **options: Any) -> Runner:
    from edgeopt.runtime.ort_runner import OrtRunner

    return OrtRunner(path, device=device, **options)


@RUNNERS("onnx-reference")
def _open_onnx_reference(path: str | Path, device: str = "cpu", **options: Any) -> Runner:
    from edgeopt.runtime.reference_runner import ReferenceRunner

    return ReferenceRunner(path, device=device, **options)


@RUNNERS("tensorrt")
def _open_tensorrt(path: str | Path, device: str = "cpu", **options: Any) -> Runner:
    from edgeopt.trt.runner import TensorRTRunner

    return TensorRTRunner(path, **options)  # an engine runs on the GPU it was built for, whatever `device` says


def backend_names() -> list[str]:
    """What ``backend`` may be: ``auto`` (each format's default) and every registered backend."""
    return ["auto", *RUNNERS.names()]


def open_runner(path: str | Path, backend: str = "auto", device: str = "cpu", **options: Any) -> Runner:
    """The runner for ``path`` on ``backend`` (``auto``: the first its format lists); a backend that
    cannot run the artifact's format is a one-line error naming the backends that can."""
    if backend != "auto" and backend not in RUNNERS:
        raise ConfigError(unknown_name_message("backend", backend, RUNNERS.names(),
                                               f": use one of {', '.join(backend_names())}"))
    kind = artifact_kind(path)
    if kind not in {f.kind for f in FORMATS.values()}:
        raise ConfigError(f"{path}: a {kind} artifact is not a model to run; pass a checkpoint, an ONNX or an engine")
    fmt = format_of(read_manifest(path, verify=False))  # the runner reads it again, checking its hash
    if backend == "auto":
        backend = fmt.backends[0]
    if backend not in fmt.backends:
        raise ConfigError(_wrong_backend(path, fmt, backend))
    return RUNNERS.get(backend)(path, device=device, **options)


def _wrong_backend(path: str | Path, fmt: Format, backend: str) -> str:
    """Why ``backend`` cannot run ``fmt``, and what to do: another backend, or the nearest format it runs."""
    paths = []
    for row in FORMATS.values():
        if backend in row.backends:
            try:
                paths.append(conversion_path(fmt.name, row.name))
            except EdgeoptError:  # not made from this format
                continue
    make = min(paths, key=len)[-1] if paths else None
    first = f"convert it to {make.name} first (edgeopt {make.stage}) or " if make else ""
    return (f"{path} ({fmt.name}) runs on the {fmt.backends[0]} backend, not {backend}; "
            f"{first}use `backend` {' or '.join(fmt.backends)}")
