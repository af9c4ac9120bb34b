"""TensorRT ``Runner``: deserialize an engine, bind I/O by tensor name, run on a CUDA stream.

Device buffers are torch CUDA tensors (no pycuda, which needs a CUDA toolchain to install);
``cuda_graph=True`` captures ``execute_async_v3`` per batch shape and replays it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifacts import read_manifest
from edgeopt.build import cuda_device_info, import_tensorrt, parse_version
from edgeopt.errors import ArtifactError, ConfigError


def engine_incompatibility(built: dict[str, Any], trt_version: str, compute_capability: str) -> str | None:
    """Why an engine built as ``built`` (its manifest's extra) cannot run here, or None when it can.

    TensorRT engines are tied to the TensorRT version (major.minor.patch) and the GPU's compute
    capability, unless built version- or hardware-compatible.
    """
    built_version = str(built.get("tensorrt_version", ""))
    if not built_version:
        return "its manifest does not say which TensorRT built it"
    parse_version(trt_version)
    if built_version.split(".")[:3] != trt_version.split(".")[:3] and not built.get("version_compatible", False):
        return f"it was built with TensorRT {built_version}, this is TensorRT {trt_version}"
    built_cc = str(built.get("compute_capability", ""))
    if built_cc != compute_capability:
        if built.get("hardware_compatible"):
            if float(compute_capability) < 8.0:
                return f"it is hardware-compatible for Ampere and newer (sm 8.0+), this GPU is sm {compute_capability}"
        else:
            return f"it was built for compute capability {built_cc} ({built.get('gpu', '?')}), this GPU is {compute_capability}"
    return None


class TensorRTRunner:
    backend = "tensorrt"
    device = "cuda"

    def __init__(self, path: str | Path, cuda_graph: bool = False) -> None:
        import torch

        self.manifest = read_manifest(path, expect_kind="engine")
        self.precision = self.manifest.precision or "?"
        trt = import_tensorrt()
        here = cuda_device_info()
        why = engine_incompatibility(self.manifest.extra, trt.__version__, here["compute_capability"])
        if why:
            raise ArtifactError(f"{path}: cannot run here: {why}; rebuild it with edgeopt build-engine on this machine")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{path}: TensorRT could not deserialize the engine; rebuild it")
        self.context = self.engine.create_execution_context()
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            (self.inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self.outputs).append(name)
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise ArtifactError(f"{path}: expected one input and one output, found {self.inputs} / {self.outputs}")
        self.batch_profile = self.manifest.extra.get("profile", {})
        self.stream = torch.cuda.Stream()
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple[int, ...], Any] = {}
        self._buffers: dict[tuple[int, ...], tuple[Any, Any]] = {}

    def _bind(self, shape: tuple[int, ...]):
        import torch

        if shape not in self._buffers:
            lo, hi = self.batch_profile.get("min", [1])[0], self.batch_profile.get("max", [shape[0]])[0]
            if not lo <= shape[0] <= hi:
                raise ConfigError(f"batch {shape[0]} is outside the engine's profile ({lo}..{hi}); rebuild with --max-batch")
            x = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.context.set_input_shape(self.inputs[0], shape)
            out_shape = tuple(self.context.get_tensor_shape(self.outputs[0]))
            y = torch.empty(out_shape, dtype=torch.float32, device="cuda")
            self._buffers[shape] = (x, y)
        x, y = self._buffers[shape]
        self.context.set_input_shape(self.inputs[0], shape)
        self.context.set_tensor_address(self.inputs[0], int(x.data_ptr()))
        self.context.set_tensor_address(self.outputs[0], int(y.data_ptr()))
        return x, y

    def run_tensor(self, batch) -> Any:
        """CUDA float32 NCHW tensor -> CUDA logits (asynchronous on this runner's stream)."""
        import torch

        x, y = self._bind(tuple(batch.shape))
        self.stream.wait_stream(torch.cuda.current_stream())  # ``batch`` may still be being written there
        with torch.cuda.stream(self.stream):
            x.copy_(batch, non_blocking=True)
            if self.cuda_graph:
                graph = self._graphs.get(tuple(batch.shape))
                if graph is None:
                    self.context.execute_async_v3(self.stream.cuda_stream)  # warm-up before capture
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, stream=self.stream):
                        self.context.execute_async_v3(self.stream.cuda_stream)
                    self._graphs[tuple(batch.shape)] = graph
                graph.replay()
            elif not self.context.execute_async_v3(self.stream.cuda_stream):
                raise ArtifactError("TensorRT execution failed (execute_async_v3 returned False)")
        torch.cuda.current_stream().wait_stream(self.stream)  # ``y`` is ready for work queued after this
        return y

    def device_input(self, batch: np.ndarray) -> Any:
        """``batch`` as a CUDA float32 tensor: latency is timed from it (no host copies)."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).cuda()

    def run(self, batch: np.ndarray) -> np.ndarray:
        y = self.run_tensor(self.device_input(batch))
        self.stream.synchronize()
        return y.cpu().numpy()
