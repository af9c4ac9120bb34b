"""TensorRT ``Runner``: deserialize an engine, bind I/O by tensor name, run on the device's stream.

I/O buffers take the engine's own tensor dtypes (``get_tensor_dtype``): an engine with FP16 I/O is
fed FP16. ``cuda_graph=True`` captures ``execute_async_v3`` per batch shape and replays it.
Each captured shape gets its own execution context, whose shape never changes after the capture
(as trtexec: a graph replays the kernels and addresses of the shape it was captured at); a capture
that fails falls back to plain enqueue for that shape with a warning.
Every TensorRT call whose result says failure (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``, also during warm-up and capture) stops with one line.

Every context runs with ``nvtx_verbosity`` LAYER_NAMES_ONLY: engines are built with DETAILED
profiling verbosity (for the inspector), which a context inherits for its NVTX markers ("The default is
the verbosity with which the engine was built"), and "Building with kDETAILED verbosity will generally
increase latency in enqueueV3()" (``NvInferRuntime.h`` v10.13.3, ``setNvtxVerbosity``).
With CUDA graphs, the contexts share one activation block (they run one after another on one stream).
``run`` pads a batch short of the profile's min (a fixed-batch engine's last batch) with zeros and
drops the padding's outputs.
An engine records its builder: a TensorRT-RTX engine runs on TensorRT-RTX's runtime, on an RTX-class GPU.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeopt.artifacts import read_manifest
from edgeopt.errors import ArtifactError, ConfigError, EdgeoptWarning, MissingDependencyError
from edgeopt.trt.compat import RTX_NAME, RTX_TARGETS, builder_label, engine_incompatibility, import_tensorrt, parse_version, trt_generation
from edgeopt.trt.device import CaptureError, Device, default_device


class TensorRTRunner:
    backend = "tensorrt"
    device = "cuda"

    def __init__(self, path: str | Path, cuda_graph: bool = False, device: Device | None = None) -> None:
        self.manifest = read_manifest(path, expect_kind="engine")
        self.precision = self.manifest.precision or "?"
        self.float_precision = self.manifest.extra.get("float_precision")  # INT8: what its unquantized layers run in
        if self.precision == "int8" and self.float_precision:
            self.precision = f"int8+{self.float_precision}"
        builder = self.manifest.extra.get("builder", "tensorrt")
        trt = import_tensorrt(builder)
        self.trt = trt
        self.label = builder_label(builder, trt.__version__)
        try:
            self.gpu = device or default_device()
        except MissingDependencyError:
            if builder != "tensorrt-rtx":
                raise
            raise MissingDependencyError(f"{path}: {RTX_NAME} engines run on an NVIDIA RTX-class GPU (sm 7.5+) and no CUDA "
                                         "GPU is visible here: run it where it was built for") from None
        here = self.gpu.info()
        why = engine_incompatibility(self.manifest.extra, trt.__version__, here["compute_capability"])
        if why:
            cc = here["compute_capability"]
            rebuild = ("rebuild it with edgeopt build-engine on this machine" if builder != "tensorrt-rtx" else
                       f"rebuild it with edgeopt build-engine, `builder` tensorrt-rtx and `compute_capability` {cc}"
                       if cc in RTX_TARGETS else "build it with full TensorRT for this GPU (`builder` tensorrt)")
            raise ArtifactError(f"{path}: cannot run here: {why}; {rebuild}")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        if self.manifest.extra.get("dla_core") is not None:
            self.runtime.DLA_core = int(self.manifest.extra["dla_core"])  # as trtexec's setDLACore before deserializing
        self.engine = self.runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{path}: {self.label} could not deserialize the engine (corrupt, or built by another "
                                "version or for another GPU; its log above says why); rebuild it with edgeopt build-engine")
        inputs, outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            (inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(name)
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtifactError(f"{path}: expected one input and one output, found {inputs} / {outputs}")
        self.input, self.output = inputs[0], outputs[0]
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output)))
        self.batch_profile = self.manifest.extra.get("profile", {})
        self.cuda_graph = cuda_graph
        # contexts share profile 0 from 10.0; on 8.6 only when built with PROFILE_SHARING_0806 (edgeopt does)
        self.profile_sharing = (builder != "tensorrt" or parse_version(trt.__version__)[0] >= 10
                                or bool(self.manifest.extra.get("profile_sharing")))
        # with graphs: one context per batch shape, its shape and addresses set once (trtexec's rule)
        self._contexts: dict[tuple[int, ...], Any] = {}
        self._graphs: dict[tuple[int, ...], Callable[[], None] | None] = {}  # None: capture failed, plain enqueue
        self._buffers: dict[tuple[int, ...], tuple[Any, Any]] = {}
        self.generation = 11 if builder == "tensorrt-rtx" else trt_generation(trt.__version__)
        self._activations: Any = None  # with CUDA graphs: the one activation block every context shares
        self.context = self._new_context()
        if self.context is None:
            raise ArtifactError(f"{path}: TensorRT could not create an execution context (out of GPU memory?)")

    def _new_context(self) -> Any:
        """A context whose NVTX ranges name layers only (not the DETAILED verbosity the engine was built with).
        With CUDA graphs, every context is made without its own activation memory and given the one block they
        share: they run one after another on one stream, so one block serves them all (instead of one per
        captured shape)."""
        if self.cuda_graph and self.profile_sharing:
            if self.generation < 11:
                context, size = _context_without_memory_trt10(self.engine)
            else:
                context, size = _user_managed_context_trt11(self.trt, self.engine)
            if context is not None:
                if self._activations is None:
                    self._activations = self.gpu.empty((max(size, 1),), np.dtype(np.uint8))
                if self.generation < 11:
                    _set_device_memory_trt10(context, self.gpu.address(self._activations))
                else:
                    context.set_device_memory(self.gpu.address(self._activations), size)
        else:
            context = self.engine.create_execution_context()
        if context is not None:
            context.nvtx_verbosity = self.trt.ProfilingVerbosity.LAYER_NAMES_ONLY
        return context

    def _context_for(self, shape: tuple[int, ...]) -> Any:
        if not self.cuda_graph:
            return self.context
        if not self.profile_sharing:  # an 8.6 engine built without profile sharing: one context, re-captured
            if self._contexts and shape not in self._contexts:
                self._contexts.clear()
                self._graphs.clear()  # captured at another shape: invalid once the context changes shape
                self._buffers.clear()
            self._contexts[shape] = self.context
            return self.context
        if shape not in self._contexts:
            context = self.context if not self._contexts else self._new_context()
            if context is None:
                raise ArtifactError("TensorRT could not create an execution context for another batch shape "
                                    "(out of GPU memory?); run without `cuda_graph` or with fewer batch sizes")
            self._contexts[shape] = context
        return self._contexts[shape]

    def _bind(self, shape: tuple[int, ...]) -> tuple[Any, Any, Any]:
        lo, hi = self.batch_profile.get("min", [1])[0], self.batch_profile.get("max", [shape[0]])[0]
        if not lo <= shape[0] <= hi:  # before a context is made for it
            raise ConfigError(f"batch {shape[0]} is outside the engine's profile ({lo}..{hi}); rebuild with `max_batch`")
        context = self._context_for(shape)
        fresh = shape not in self._buffers
        if fresh:
            self._set_shape(context, shape)
            out_shape = tuple(context.get_tensor_shape(self.output))
            if any(d < 0 for d in out_shape):
                raise ArtifactError(f"the engine's output shape {out_shape} is unresolved for input {shape}")
            self._buffers[shape] = (self.gpu.empty(shape, self.input_dtype), self.gpu.empty(out_shape, self.output_dtype))
        x, y = self._buffers[shape]
        if fresh or not self.cuda_graph:  # a graphed context keeps the shape and addresses it was captured with
            self._set_shape(context, shape)
            if not (context.set_tensor_address(self.input, self.gpu.address(x))
                    and context.set_tensor_address(self.output, self.gpu.address(y))):
                raise ArtifactError("TensorRT refused a tensor address (set_tensor_address returned False)")
        return context, x, y

    def _set_shape(self, context: Any, shape: tuple[int, ...]) -> None:
        if not context.set_input_shape(self.input, shape):
            raise ConfigError(f"input shape {shape} does not fit the engine's profile {self.batch_profile}; rebuild it "
                              "with edgeopt build-engine --min-batch/--max-batch")

    @staticmethod
    def _execute(context: Any, stream: int) -> None:
        if not context.execute_async_v3(stream):
            raise ArtifactError("TensorRT execution failed (execute_async_v3 returned False); its log above says why")

    def run_tensor(self, batch: Any) -> Any:
        """A device buffer (from ``device_input``) -> device logits, queued on the device's stream."""
        shape = tuple(batch.shape)
        context, x, y = self._bind(shape)

        def enqueue(stream: int) -> None:
            self._execute(context, stream)

        def work(stream: int) -> None:
            if not self.cuda_graph:
                enqueue(stream)
                return
            if shape not in self._graphs:
                try:
                    self._graphs[shape] = self.gpu.capture(enqueue)
                except CaptureError as exc:  # as trtexec: warn, and run this shape without a graph
                    warnings.warn(f"{exc}; batch shape {shape} runs without a CUDA graph (plain enqueue)",
                                  EdgeoptWarning, stacklevel=2)
                    self._graphs[shape] = None
            replay = self._graphs[shape]
            replay() if replay is not None else enqueue(stream)

        self.gpu.run([(x, batch)], work)
        return y

    def device_input(self, batch: np.ndarray) -> Any:
        """``batch`` on the device in the engine's input dtype: latency is timed from it (no host copies)."""
        return self.gpu.upload(batch, self.input_dtype)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits of a batch; one short of the profile's min (a fixed-batch engine's last, short batch) is
        padded with zeros whose outputs are dropped. A batch past the profile's max is refused."""
        if not len(batch):
            raise ConfigError("no images to run: the batch is empty")
        n, lo = len(batch), int(self.batch_profile.get("min", [1])[0])
        if n < lo:
            batch = np.concatenate([batch, np.zeros((lo - n, *batch.shape[1:]), dtype=batch.dtype)])
        y = self.run_tensor(self.device_input(batch))
        return self.gpu.download(y).astype(np.float32)[:n]


def _context_without_memory_trt10(engine) -> tuple[Any, int]:
    """8.6-10.x: a context whose activation memory the caller sets, and that memory's size."""
    return engine.create_execution_context_without_device_memory(), int(engine.device_memory_size)


def _set_device_memory_trt10(context, address: int) -> None:
    context.device_memory = address


def _user_managed_context_trt11(trt, engine) -> tuple[Any, int]:
    """11.x and TensorRT-RTX: ``ExecutionContextAllocationStrategy.USER_MANAGED`` and ``device_memory_size_v2``."""
    return engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED), int(engine.device_memory_size_v2)
