"""What machine a figure was measured on (recorded in every benchmark and bench JSON)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _cpuinfo(field: str) -> str | None:
    """The first ``field : value`` of /proc/cpuinfo (None where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The SIMD features that decide INT8 speed on CPU (AVX2, AVX-512, VNNI)."""
    flags = set((_cpuinfo("flags") or "").split())
    return sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "fma"})


def machine_info() -> dict[str, Any]:
    """CPU model, cores, GPU and driver, library versions."""
    from edgeopt.artifacts import tool_versions

    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "gpu": None,
        "libraries": tool_versions("torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "numpy"),
    }
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                           "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
                           "driver": _nvidia_driver()}
    except Exception:  # machine info must never break a benchmark
        pass
    return info


def _nvidia_driver() -> str | None:
    try:
        return driver_version(Path("/proc/driver/nvidia/version").read_text())
    except OSError:
        return None


def driver_version(text: str) -> str | None:
    """The version in ``/proc/driver/nvidia/version`` (``... Kernel Module [for x86_64]  580.159.03 ...``)."""
    import re

    match = re.search(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)?)\s", text)
    return match.group(1) if match else None
