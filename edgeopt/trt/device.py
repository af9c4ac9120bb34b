"""The device seam: where TensorRT's input/output memory lives and on which stream work runs.

TensorRT takes raw device addresses. ``CudaDevice`` keeps buffers in torch CUDA tensors (no
pycuda, which needs a CUDA toolchain to install) and runs work on one CUDA stream ordered with
torch's current stream in both directions. Anything with the same methods can stand in: the
test suite passes host memory that its TensorRT test double reads and writes.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from edgeopt.errors import EdgeoptError, MissingDependencyError
from edgeopt.trt.compat import INSTALL_HINT


class CaptureError(EdgeoptError):
    """Work that runs fine without a graph failed while it was being captured (the capture is ended)."""


class Device(Protocol):
    """Memory, copies and a stream for the TensorRT builder, calibrator and runner."""

    def info(self) -> dict[str, str]:
        """``{"gpu": name, "compute_capability": "9.0"}``."""
        ...

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """A device buffer of ``shape`` and ``dtype``."""
        ...

    def address(self, buffer: Any) -> int:
        """The buffer's device address (what ``set_tensor_address`` and ``get_batch`` take)."""
        ...

    def upload(self, array: np.ndarray, dtype: np.dtype) -> Any:
        """``array`` as a new device buffer of ``dtype``."""
        ...

    def download(self, buffer: Any) -> np.ndarray:
        """Wait for queued work, then copy ``buffer`` to a host array."""
        ...

    def run(self, copies: list[tuple[Any, Any]], work: Callable[[int], None]) -> None:
        """Queue ``dst <- src`` copies, then ``work(stream_handle)``, on the device's stream."""
        ...

    def synchronize(self) -> None:
        """Wait until everything queued on the device's stream is done."""
        ...

    def capture(self, work: Callable[[int], None]) -> Callable[[], None]:
        """Run ``work`` once, record it as a replayable graph, return the replay (call inside ``run``).

        An error of the warm-up run propagates as it is; one raised inside the capture ends the
        capture and comes out as ``CaptureError``, so the caller can run without a graph."""
        ...


class CudaDevice:
    """GPU 0 through torch: CUDA tensors as buffers, one CUDA stream, CUDA graphs for replay."""

    def __init__(self) -> None:
        try:
            import torch
        except ImportError:
            raise MissingDependencyError("edgeopt's TensorRT path needs PyTorch with CUDA for device buffers") from None
        if not torch.cuda.is_available():
            raise MissingDependencyError(f"no CUDA GPU is visible: TensorRT engines need an NVIDIA GPU ({INSTALL_HINT})")
        self.torch = torch
        self.stream = torch.cuda.Stream()

    def info(self) -> dict[str, str]:
        props = self.torch.cuda.get_device_properties(0)
        return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}"}

    def _dtype(self, dtype: np.dtype):
        return self.torch.from_numpy(np.empty(0, dtype=dtype)).dtype

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        return self.torch.empty(tuple(shape), dtype=self._dtype(np.dtype(dtype)), device="cuda")

    def address(self, buffer: Any) -> int:
        return int(buffer.data_ptr())

    def upload(self, array: np.ndarray, dtype: np.dtype) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)).cuda()

    def download(self, buffer: Any) -> np.ndarray:
        self.stream.synchronize()
        return buffer.cpu().numpy()

    def run(self, copies: list[tuple[Any, Any]], work: Callable[[int], None]) -> None:
        torch = self.torch
        self.stream.wait_stream(torch.cuda.current_stream())  # sources may still be being written there
        with torch.cuda.stream(self.stream):
            for dst, src in copies:
                dst.copy_(src, non_blocking=True)
            work(self.stream.cuda_stream)
        torch.cuda.current_stream().wait_stream(self.stream)  # outputs are ready for work queued after this

    def synchronize(self) -> None:
        self.stream.synchronize()

    def capture(self, work: Callable[[int], None]) -> Callable[[], None]:
        torch = self.torch
        work(self.stream.cuda_stream)  # warm-up outside capture (TensorRT allocates lazily on first run)
        graph = torch.cuda.CUDAGraph()
        failure: BaseException | None = None
        try:
            # thread-local mode, as trtexec's cudaStreamBeginCapture: a CUDA call of another thread
            # (torch's own allocator, a data loader) is not an illegal call during this capture
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                try:
                    work(self.stream.cuda_stream)
                except Exception as exc:  # noqa: BLE001 - leave the capture first; its own error would hide this one
                    failure = exc
        except Exception as exc:  # noqa: BLE001 - ending a capture that an error broke fails too
            failure = failure or exc
        if failure is not None:
            raise CaptureError(f"CUDA graph capture failed: {failure}") from failure
        return graph.replay


def default_device() -> Device:
    """The device TensorRT stages use unless given one."""
    return CudaDevice()
