"""ONNX Runtime ``Runner`` (CPU; CUDA / TensorRT execution providers where installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeopt.artifacts import read_manifest
from edgeopt.settings import choices
from edgeopt.errors import ArtifactError, MissingDependencyError
from edgeopt.formats import CPU_TARGETS, format_of

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider"], "tensorrt": ["TensorrtExecutionProvider"]}


Int8Exec = choices("Int8Exec", "kernels", "emulate",
                   doc="How an INT8 ONNX runs: ONNX Runtime's CPU int8 kernels (their speed), or emulated Q/DQ (exact math).")


INT8_EXEC = tuple(e.value for e in Int8Exec)


def make_session(path: str | Path, device: str = "cpu", threads: int | None = None, optimize: bool = True,
                 spin: bool = True):
    """An InferenceSession on exactly the asked provider (no silent CPU fallback).

    ``spin=False`` stops idle intra-op threads from busy-waiting for the next run: slower for a
    lone batch-1 loop, faster when decode threads share the cores (submit time).

    ``optimize=False`` turns graph optimizations off, so a Q/DQ model runs as
    DequantizeLinear -> float op -> QuantizeLinear: the exact arithmetic of the quantized
    model (emulated Q/DQ), free of CPU int8-kernel effects. No TensorRT engine has confirmed that
    its numbers match (TensorRT fuses layers and may keep other intermediates in higher precision).
    """
    import onnxruntime as ort

    if device not in PROVIDERS:
        raise ArtifactError(f"unknown ONNX Runtime device {device!r}: use cpu, cuda or tensorrt")
    wanted = PROVIDERS[device]
    available = ort.get_available_providers()
    if wanted[0] not in available:
        raise MissingDependencyError(
            f"ONNX Runtime has no {wanted[0]} here (available: {', '.join(available)}); "
            "install onnxruntime-gpu on a machine with an NVIDIA GPU, or use `device` cpu"
        )
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=wanted)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})") from None


class OrtRunner:
    """Runs an ONNX artifact. INT8 Q/DQ models run either with ORT's int8 kernels (``kernels``:
    real CPU speed, but on AVX2 CPUs without VNNI their int16 intermediate sums saturate and
    accuracy drops) or as emulated Q/DQ arithmetic in float (``emulate``: the quantized model's own
    accuracy, at float speed)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None, int8_exec: str = "kernels",
                 spin: bool = True) -> None:
        if int8_exec not in INT8_EXEC:
            raise ArtifactError(f"`int8_exec` {int8_exec!r} is unknown: use emulate or kernels")
        self.path, self.threads, self.int8_exec, self.spin = Path(path), threads, int8_exec, spin
        self.manifest = read_manifest(path, expect_kind="onnx")
        self.precision = self.manifest.precision or "fp32"
        self.device = device
        cpu_target = format_of(self.manifest).target in CPU_TARGETS
        emulate = self.precision == "int8" and int8_exec == "emulate" and not cpu_target
        if emulate:
            self.backend = "onnxruntime (Q/DQ emulated)"
        elif cpu_target:  # QOperator: there is no float form to emulate; these kernels are the deployment
            self.backend = "onnxruntime (CPU int8 kernels)"
        self.session = make_session(path, device, threads, optimize=not emulate, spin=spin)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ArtifactError(f"{path}: expected one image input, the model has {len(inputs)}")
        self.input_name = inputs[0].name
        self.output_name = self.session.get_outputs()[0].name
        shape = inputs[0].shape
        self.static_batch = shape[0] if isinstance(shape[0], int) else None

    def sharing_cores(self) -> OrtRunner:
        """This model for use while decode threads share the CPU (submit time).

        ONNX Runtime's idle intra-op threads busy-wait for the next run, which suits a batch-1
        latency loop but steals the cores the decoders need; on the CPU this reopens the session
        without spinning (on 2 cores: submit time 0.40 -> 0.30 s for the student).
        """
        if self.device != "cpu" or not self.spin:
            return self
        return OrtRunner(self.path, self.device, self.threads, self.int8_exec, spin=False)

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.static_batch is not None and batch.shape[0] != self.static_batch:
            raise ArtifactError(
                f"this ONNX model was exported with a static batch of {self.static_batch}, got {batch.shape[0]}; "
                "re-export without `static_batch`"
            )
        return self.session.run([self.output_name], {self.input_name: batch})[0].astype(np.float32)
