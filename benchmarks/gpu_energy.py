"""Energy per image on an NVIDIA GPU, from NVML's energy counter (``nvidia-ml-py``).

``nvmlDeviceGetTotalEnergyConsumption`` is the board's energy in millijoules since the driver
loaded (Volta and newer). The model runs back to back on a device-resident batch for at least
``seconds``; the counter's difference over that window, divided by the images classified, is the
energy per image (the whole board: idle power included, as a deployment pays it).
"""

from __future__ import annotations

import time
from typing import Any


def nvml_handle(index: int = 0) -> tuple[Any, str | None]:
    """(NVML device handle, None), or (None, why NVML cannot measure here)."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed (pip install 'edgeopt[gpu]')"
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # NVML_ERROR_NOT_SUPPORTED before Volta
    except pynvml.NVMLError as exc:
        return None, f"NVML cannot read the energy counter here: {exc}"
    return handle, None


def energy_per_image(runner: Any, batch: Any, handle: Any, seconds: float = 5.0, clock=time.perf_counter) -> dict[str, Any]:
    """Run ``runner`` (a torch runner on CUDA) on ``batch`` for at least ``seconds``; the energy per image."""
    import pynvml
    import torch

    x = runner.device_input(batch)
    for _ in range(10):  # warm-up: clocks up, graphs captured
        runner.run_tensor(x)
    torch.cuda.synchronize()
    start_mj, t0, images = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle), clock(), 0
    while clock() - t0 < seconds:
        runner.run_tensor(x)
        images += len(batch)
        if images % (len(batch) * 20) == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    elapsed, joules = clock() - t0, (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - start_mj) / 1000.0
    return {"images": images, "seconds": round(elapsed, 3), "joules": round(joules, 3), "mean_watts": round(joules / elapsed, 1),
            "millijoules_per_image": round(1000.0 * joules / images, 4), "images_per_second": round(images / elapsed, 1)}
