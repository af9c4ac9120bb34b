"""Training across processes under ``torchrun`` (PyTorch DDP): NCCL on GPUs, gloo on CPUs.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and the rendezvous address); a run
started without them is a plain single-process run and nothing here talks to another process.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from edgeopt.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DistContext:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None  # None: not distributed

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def record(self) -> dict[str, Any] | None:
        """What manifests record: ``{"world_size": 2, "backend": "gloo"}``, or None for one process."""
        return {"world_size": self.world_size, "backend": self.backend} if self.enabled else None


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ and "LOCAL_RANK" in os.environ


def init_distributed(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun set up (gloo for CPU, NCCL for CUDA); the device this rank uses."""
    if not launched_by_torchrun():
        return DistContext(), device
    import torch.distributed as dist

    world, rank, local = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA GPU(s): lower torchrun's --nproc-per-node")
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(world, rank, local, backend), device


def per_rank_batch(global_batch: int, train_images: int, ctx: DistContext) -> int:
    """``--batch-size`` is the global batch, split evenly across processes."""
    if not ctx.enabled:
        return global_batch
    if global_batch % ctx.world_size:
        raise ConfigError(f"`batch_size` {global_batch} does not split across {ctx.world_size} processes: "
                          f"use a multiple of {ctx.world_size}")
    if train_images < global_batch:
        raise ConfigError(f"{train_images} training images give no full batch of {global_batch} across "
                          f"{ctx.world_size} processes: lower `batch_size` or torchrun's --nproc-per-node")
    return global_batch // ctx.world_size


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of ``values`` over all processes (the input itself for one process)."""
    if not ctx.enabled:
        return values
    import torch.distributed as dist

    device = torch.device("cuda", ctx.local_rank) if ctx.backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def all_gather(obj: Any, ctx: DistContext) -> list[Any]:
    """Every process's ``obj``, in rank order."""
    if not ctx.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
