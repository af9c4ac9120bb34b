"""The ``onnx-reference`` ``Runner``: an ONNX graph run by ``onnx.reference.ReferenceEvaluator``.

The ONNX package's own evaluator is pure Python over numpy, op by op as the specification defines
it: slow, but independent of ONNX Runtime's kernels and graph rewrites, so it checks the numerics of
small float graphs against a second implementation. ``edgeopt.formats.FORMATS`` lists the formats
it runs: the float ONNX ones (its DequantizeLinear starts at opset 19, and the CPU INT8 formats'
``com.microsoft`` QLinear* kernels are ONNX Runtime's own).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeopt.artifacts import read_manifest
from edgeopt.errors import ArtifactError, ConfigError
from edgeopt.runtime.ort_runner import INT8_EXEC


class ReferenceRunner:
    """Runs a float ONNX artifact with ``onnx.reference.ReferenceEvaluator`` on the CPU.

    ``int8_exec`` is taken so that callers open every ONNX runner alike (``OrtRunner``'s option);
    a float graph runs the same either way.
    """

    backend = "onnx-reference"
    device = "cpu"

    def __init__(self, path: str | Path, device: str = "cpu", int8_exec: str = "emulate") -> None:
        if device != "cpu":
            raise ConfigError(f"the onnx-reference backend runs on the CPU only, not `device` {device}; "
                              "use `backend` onnxruntime for a GPU")
        if int8_exec not in INT8_EXEC:
            raise ConfigError(f"`int8_exec` {int8_exec!r} is unknown: use {' or '.join(INT8_EXEC)}")
        self.manifest = read_manifest(path, expect_kind="onnx")
        self.precision = self.manifest.precision or "fp32"
        import onnx
        from onnx.reference import ReferenceEvaluator

        try:
            self.evaluator = ReferenceEvaluator(onnx.load(str(path)))
        except Exception as exc:  # protobuf decode errors, ops the evaluator lacks
            raise ArtifactError(f"{path}: the ONNX reference evaluator cannot load it "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
        if len(self.evaluator.input_names) != 1:
            raise ArtifactError(f"{path}: expected one image input, the model has {len(self.evaluator.input_names)}")
        self.input_name = self.evaluator.input_names[0]
        self.output_name = self.evaluator.output_names[0]

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        (logits,) = self.evaluator.run([self.output_name], {self.input_name: batch})
        return np.asarray(logits, dtype=np.float32)
