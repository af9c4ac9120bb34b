"""``CudaDevice.capture`` without a GPU: torch's CUDA graph context manager is replaced by a stand-in
that binds its arguments to the real ``torch.cuda.graph`` signature and, like torch's ``__exit__``
(torch/cuda/graphs.py), ends the capture on every exit, errors included."""

from __future__ import annotations

import inspect
import types

import pytest

from edgeopt.trt.device import CaptureError, CudaDevice


class _Stream:
    cuda_stream = 7


def _device(end_fails: bool = False):
    import torch

    real = inspect.signature(torch.cuda.graph)
    seen: dict = {"ended": 0, "modes": []}

    class Graph:
        def __init__(self, *args, **kwargs) -> None:
            bound = real.bind(*args, **kwargs)  # a TypeError for an argument torch.cuda.graph does not take
            seen["modes"].append(bound.arguments.get("capture_error_mode", "global"))
            self.graph = bound.arguments["cuda_graph"]

        def __enter__(self) -> None:
            self.graph.capturing = True

        def __exit__(self, *exc) -> None:
            self.graph.capturing = False
            seen["ended"] += 1
            if end_fails:  # a capture an error invalidated fails to end: CUDA reports its own error
                raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

    class CUDAGraph:
        capturing = False

        def replay(self) -> None:
            seen["replayed"] = True

    device = object.__new__(CudaDevice)
    device.torch = types.SimpleNamespace(cuda=types.SimpleNamespace(graph=Graph, CUDAGraph=CUDAGraph))
    device.stream = _Stream()
    return device, seen


def test_capture_is_thread_local_and_returns_the_replay() -> None:
    device, seen = _device()
    runs = []
    replay = device.capture(lambda stream: runs.append(stream))
    assert runs == [7, 7]  # the warm-up, then the captured run
    assert seen["modes"] == ["thread_local"] and seen["ended"] == 1
    replay()
    assert seen["replayed"]


@pytest.mark.parametrize("end_fails", [False, True])
def test_an_error_inside_the_capture_ends_it_and_keeps_its_own_message(end_fails: bool) -> None:
    device, seen = _device(end_fails)
    calls = []

    def work(stream: int) -> None:
        calls.append(stream)
        if len(calls) == 2:
            raise RuntimeError("TensorRT execution failed (execute_async_v3 returned False)")

    with pytest.raises(CaptureError, match="capture failed: TensorRT execution failed"):
        device.capture(work)
    assert seen["ended"] == 1


def test_an_error_of_the_warm_up_run_is_not_a_capture_error() -> None:
    device, seen = _device()

    def work(stream: int) -> None:
        raise ValueError("real failure")

    with pytest.raises(ValueError, match="real failure"):
        device.capture(work)
    assert seen["ended"] == 0
