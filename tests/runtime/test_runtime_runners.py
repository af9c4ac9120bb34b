"""The runners: torch on the CPU or CUDA (FP16, CUDA graphs, compile) and the options each refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.errors import ConfigError

runner = CliRunner()


def test_gpu_only_torch_options_are_refused_on_cpu(tiny_ckpts: dict) -> None:
    from edgeopt.runtime.torch_runner import TorchRunner

    with pytest.raises(ConfigError, match="needs `device` cuda"):
        TorchRunner(tiny_ckpts["yaml"], device="cpu", fp16=True)
    with pytest.raises(ConfigError, match="CUDA-graph replay needs `device` cuda"):
        TorchRunner(tiny_ckpts["yaml"], device="cpu", cuda_graph=True)
    result = runner.invoke(app, ["bench", str(tiny_ckpts["yaml"]), "--baseline", "none", "--cuda-graph", "--runs", "1"])
    assert result.exit_code == 1 and "CUDA-graph replay needs --device cuda" in result.output


def test_torch_only_options_on_onnx_artifacts_are_refused(tiny_onnx: Path) -> None:
    result = runner.invoke(app, ["bench", str(tiny_onnx), "--baseline", "none", "--torch-compile", "--runs", "1"])
    assert result.exit_code == 1 and "apply to checkpoints" in result.output


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replay_matches_eager(tiny_ckpts: dict) -> None:
    from edgeopt.runtime.torch_runner import TorchRunner

    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    eager = TorchRunner(tiny_ckpts["yaml"], device="cuda").run(x)
    graphed = TorchRunner(tiny_ckpts["yaml"], device="cuda", cuda_graph=True)
    np.testing.assert_allclose(graphed.run(x), eager, atol=1e-4)
    np.testing.assert_allclose(graphed.run(x * 0.5), TorchRunner(tiny_ckpts["yaml"], device="cuda").run(x * 0.5), atol=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_compiled_runner_and_resident_latency_input(tiny_ckpts: dict) -> None:
    import torch

    from edgeopt.bench.harness import _timed
    from edgeopt.runtime.torch_runner import TorchRunner
    from edgeopt.bench.timing import cuda_event_timer

    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    ref = TorchRunner(tiny_ckpts["yaml"]).run(x)
    fast = TorchRunner(tiny_ckpts["yaml"], device="cuda", fp16=True, cuda_graph=True, compile=True)
    run, arg = _timed(fast, x)
    assert run == fast.run_tensor and arg.is_cuda and arg.dtype == torch.float16
    assert 0 < cuda_event_timer(lambda: run(arg)) < 1.0
    first = run(arg).float().cpu().numpy()
    np.testing.assert_allclose(first, ref, atol=5e-2)
    np.testing.assert_allclose(fast.run(x * 0.5), TorchRunner(tiny_ckpts["yaml"]).run(x * 0.5), atol=5e-2)
    np.testing.assert_allclose(fast.run(x), first, atol=1e-3)  # pinned staging buffer reused across calls


@pytest.mark.slow
def test_compiled_torch_runner_matches_eager_across_shapes(tiny_ckpts: dict) -> None:
    from edgeopt.runtime.torch_runner import TorchRunner

    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    eager = TorchRunner(tiny_ckpts["yaml"])
    compiled = TorchRunner(tiny_ckpts["yaml"], compile=True)
    assert compiled.backend == "torch (compiled)" and eager.backend == "torch"
    np.testing.assert_allclose(compiled.run(x), eager.run(x), atol=1e-4)
    np.testing.assert_allclose(compiled.run(x[:1]), eager.run(x[:1]), atol=1e-4)  # a second shape recompiles


def test_latency_inputs_stay_on_the_device_for_cuda_runners() -> None:
    from edgeopt.bench.harness import _timed

    class CudaLike:
        device = "cuda"

        def device_input(self, batch):
            return ("resident", batch.shape)

        def run_tensor(self, x):
            return x

        def run(self, batch):
            raise AssertionError("host path")

    class CpuLike(CudaLike):
        device = "cpu"

    x = np.zeros((2, 3, 8, 8), np.float32)
    gpu, cpu = CudaLike(), CpuLike()
    assert _timed(gpu, x) == (gpu.run_tensor, ("resident", (2, 3, 8, 8)))
    run, arg = _timed(cpu, x)
    assert run == cpu.run and arg is x
