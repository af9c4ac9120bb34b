"""The torch ``Runner``: a checkpoint on the CPU or CUDA (FP16, channels-last, CUDA graphs, compile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeopt.models.checkpoint import load_checkpoint
from edgeopt.device import resolve_device
from edgeopt.errors import ConfigError


class TorchRunner:
    """Runs a checkpoint with PyTorch; on CUDA optionally FP16, channels-last and CUDA-graph replay.

    ``compile=True`` runs the model through ``torch.compile`` (Inductor) with weight freezing, which
    folds BatchNorm into the convolutions and fuses the elementwise tails, after a one-off compile
    per input shape (what it gains: ``benchmarks/results/bench_torch_cpu.json``). With ``cuda_graph``
    too, Inductor's own CUDA graphs (``mode="reduce-overhead"``) replay it.
    """

    backend = "torch"

    def __init__(self, path: str | Path, device: str = "cpu", fp16: bool = False, channels_last: bool | None = None,
                 cuda_graph: bool = False, compile: bool = False) -> None:
        self.torch_device = resolve_device(device)
        self.device = self.torch_device.type
        if fp16 and self.device != "cuda":
            raise ConfigError("FP16 with the torch backend needs `device` cuda (CPU FP16 is not faster and is not offered)")
        if cuda_graph and self.device != "cuda":
            raise ConfigError("CUDA-graph replay needs `device` cuda")
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._pinned: dict[tuple[int, ...], torch.Tensor] = {}
        self.model, self.manifest = load_checkpoint(path, self.torch_device)
        self.precision = "fp16" if fp16 else "fp32"
        self.dtype = torch.float16 if fp16 else torch.float32
        self.model = self.model.to(dtype=self.dtype)
        self.channels_last = self.device == "cuda" if channels_last is None else channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.cuda_graph = cuda_graph and not compile  # compiled: Inductor captures the graphs itself
        self._reused_output = cuda_graph and compile  # reduce-overhead mode overwrites its output on replay
        if compile:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # constant-fold weights: BN folded into convs (inference only)
            mode = "reduce-overhead" if cuda_graph else None
            self.model = torch.compile(self.model, mode=mode, dynamic=False)
            self.backend = "torch (compiled)"

    def device_input(self, batch: np.ndarray) -> torch.Tensor:
        """``batch`` as the model takes it: on the device, in its dtype and memory format.

        Latency on CUDA is timed from such a resident tensor (no host copies, as trtexec's GPU compute
        time); submit time goes through ``run`` and pays the host-to-device copy.
        """
        return self._prepare(torch.from_numpy(np.ascontiguousarray(batch)))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.torch_device, dtype=self.dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def run_tensor(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        if self.cuda_graph:
            return self._replay(x)
        out = self.model(x)
        return out.clone() if self._reused_output else out

    def _replay(self, x: torch.Tensor) -> torch.Tensor:
        """Capture one CUDA graph per input shape (after warm-up on a side stream), then replay it."""
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.model(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def run(self, batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.device == "cuda":
            tensor = self._stage(tensor)
        return self.run_tensor(tensor).float().cpu().numpy()

    def _stage(self, tensor: torch.Tensor) -> torch.Tensor:
        """Copy into a pinned host buffer kept per shape, so the host-to-device copy is a true DMA
        that overlaps compute, without allocating page-locked memory on every call."""
        key = tuple(tensor.shape)
        if key not in self._pinned:
            self._pinned[key] = torch.empty(key, dtype=tensor.dtype).pin_memory()
        staged = self._pinned[key]
        staged.copy_(tensor)  # safe: run() ends with a blocking copy back, so the last upload is done
        return staged
