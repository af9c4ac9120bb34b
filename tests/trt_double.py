"""A faithful test double of the ``tensorrt`` Python module, generated from one real API surface.

``tests/trt_surface/tensorrt-<version>.json.gz`` (written by ``tools/trt_surface.py`` from the real
bindings wheel of that version) lists every class, method overload, property, enum member and
module function the real module has. ``make_tensorrt(version)`` turns it into a module where:

- exactly those names exist (anything else is an ``AttributeError``, as on the real module);
- every call is bound against the real overloads: arity, parameter names and argument types are
  checked the way pybind11 does, and a call no overload accepts is a ``TypeError``;
- every returned object is checked against the declared return class (``None`` allowed, as
  pybind11 returns ``None`` for a null pointer); an ``IHostMemory`` has ``nbytes``, ``dtype`` and
  the buffer protocol, and no ``len``;
- classes without a Python constructor cannot be instantiated (pybind11: "No constructor defined!"),
  and a Python subclass that does not call the base ``__init__`` is a ``TypeError``;
- a method or property edgeopt uses that has no behaviour below raises ``DoubleUnimplemented``,
  so a new API use cannot pass silently.

Behaviour exists only where edgeopt relies on it; each rule cites where it comes from (NVIDIA's
binding source at the version's tag, ``python/src``, or the TensorRT developer guide / API docs).
The engine the double "builds" is the parsed ONNX plus the build settings; an execution context
runs that ONNX with ONNX Runtime on the bytes at the input address and writes the output address,
so engine numbers can be compared with ONNX Runtime. Device memory is host memory registered in a
``Memory`` (``HostDevice`` hands it to edgeopt through its device seam); reading outside a
registered allocation is a ``DoubleViolation`` (on a GPU it would read past the buffer).
"""

from __future__ import annotations

import ctypes
import functools
import gzip
import json
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np

SURFACES = Path(__file__).resolve().parent / "trt_surface"
PREFIX = "tensorrt_bindings.tensorrt."
MAGIC = b"EDGEOPT-TRT-DOUBLE\0"


class DoubleViolation(AssertionError):
    """edgeopt did something the real TensorRT would crash on or silently get wrong."""


class DoubleUnimplemented(AssertionError):
    """A real API member edgeopt used that the double has no behaviour for (add it, with a citation)."""


def versions() -> list[str]:
    return sorted((p.name[len("tensorrt-"):-len(".json.gz")] for p in SURFACES.glob("tensorrt-*.json.gz")),
                  key=lambda v: tuple(int(x) for x in re.findall(r"\d+", v)))


@functools.lru_cache(maxsize=None)
def load_surface(version: str) -> dict:
    return json.loads(gzip.decompress((SURFACES / f"tensorrt-{version}.json.gz").read_bytes()))


# -- signatures --------------------------------------------------------------------------------
def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "[(<":
            depth += 1
        elif ch in "])>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


@functools.lru_cache(maxsize=None)
def parse_signature(sig: str) -> tuple[tuple[tuple[str, str | None, bool], ...], str | None]:
    """``(self: X, a: int, b: str = None) -> R`` -> (((name, type, has_default), ...), R)."""
    depth = 0
    for i, ch in enumerate(sig):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            break
    inner, rest = sig[1:i], sig[i + 1:]
    ret = rest.split("->", 1)[1].strip() if "->" in rest else None
    params = []
    for part in _split_top(inner):
        name, _, annot = part.partition(":")
        annot, _, default = annot.partition("=") if annot else ("", "", "")
        if "=" in name:
            name, _, default = name.partition("=")
        params.append((name.strip(), annot.strip() or None, bool(default.strip())))
    return tuple(params), ret


def _class_name(type_str: str, classes: dict) -> str | None:
    t = type_str.strip()
    if t.startswith(PREFIX):
        t = t[len(PREFIX):]
    for ns in ("nvinfer1::v_1_0::", "nvinfer1::", "nvonnxparser::"):
        if t.startswith(ns):
            t = t[len(ns):]
    t = t.replace("::", ".")
    if t in classes:
        return t
    if t.startswith("I") and t[1:] in classes:  # nvonnxparser::IParserError is bound as ParserError
        return t[1:]
    return None


# -- device memory -----------------------------------------------------------------------------
class Memory:
    """Host allocations standing in for device memory, addressable by integer pointer."""

    def __init__(self) -> None:
        self.blocks: dict[int, np.ndarray] = {}
        self.recording: list | None = None  # enqueues recorded by a stream capture in progress

    def register(self, array: np.ndarray) -> int:
        assert array.flags.c_contiguous
        ptr = int(array.ctypes.data)
        self.blocks[ptr] = array
        return ptr

    def view(self, ptr: int, nbytes: int, what: str) -> np.ndarray:
        for base, block in self.blocks.items():
            if base <= ptr < base + max(block.nbytes, 1):
                if ptr + nbytes > base + block.nbytes:
                    raise DoubleViolation(f"{what}: TensorRT reads {nbytes} bytes at {ptr:#x}, but the allocation "
                                          f"there holds {block.nbytes - (ptr - base)} (it would read past the buffer)")
                raw = block.reshape(-1).view(np.uint8)
                return raw[ptr - base:ptr - base + nbytes]
        raise DoubleViolation(f"{what}: address {ptr:#x} is not a device allocation")


# -- the generated module -----------------------------------------------------------------------
class _EnumMixin:
    """What pybind11's py::enum_ gives every member: name, value, int conversion, equality, hashing."""

    def __int__(self) -> int:
        return self.__dict__["value"]

    __index__ = __int__

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.__dict__["value"] == self.__dict__["value"]

    def __hash__(self) -> int:
        return hash((type(self).__qualname__, self.__dict__["value"]))

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self.__dict__['name']}: {self.__dict__['value']}>"

    @property
    def name(self) -> str:
        return self.__dict__["name"]

    @property
    def value(self) -> int:
        return self.__dict__["value"]


class _DoubleMeta(type):
    def __call__(cls, *args, **kwargs):
        if not getattr(cls, "_constructible", True):
            raise TypeError(f"tensorrt.{cls.__name__}: No constructor defined!")
        obj = cls.__new__(cls)
        obj.__init__(*args, **kwargs)
        if not obj.__dict__.get("_double_initialized"):
            # pybind11: "<Sub>.__init__() must be called when overriding __init__"
            raise TypeError(f"{cls.__base_double__.__name__}.__init__() must be called when overriding __init__")
        return obj

    def __getattr__(cls, name):
        raise AttributeError(f"type object 'tensorrt.{cls.__name__}' has no attribute '{name}'")


class _DoubleBufferMeta(type(ctypes.Structure), _DoubleMeta):  # the C metaclass first: its tp_new builds the layout
    pass


_NOT_MODELLED_DUNDERS = {"__del__", "__enter__", "__exit__", "__repr__", "__str__", "__eq__", "__ne__", "__hash__",
                         "__int__", "__index__", "__getstate__", "__setstate__", "__lt__", "__le__", "__gt__", "__ge__"}


class Engine:
    """What the double serializes: the parsed ONNX and the build's settings."""

    def __init__(self, version: str, onnx_bytes: bytes, profiles: list[dict], flags: list[str],
                 strongly_typed: bool, hw_compat: str, gpu: tuple[str, str], added: list[str] = ()) -> None:
        self.version, self.onnx_bytes, self.profiles, self.flags = version, onnx_bytes, profiles, flags
        self.strongly_typed, self.hw_compat, self.gpu = strongly_typed, hw_compat, gpu
        self.added = list(added)  # nodes the double added to emulate the FP16 flag: reformats, not ONNX layers

    def serialize(self) -> bytes:
        header = json.dumps({"version": self.version, "profiles": self.profiles, "flags": self.flags,
                             "strongly_typed": self.strongly_typed, "hw_compat": self.hw_compat,
                             "gpu": list(self.gpu), "added": self.added}).encode()
        return MAGIC + len(header).to_bytes(4, "little") + header + self.onnx_bytes

    @classmethod
    def deserialize(cls, blob: bytes) -> "Engine | None":
        if not blob.startswith(MAGIC):
            return None
        rest = blob[len(MAGIC):]
        n = int.from_bytes(rest[:4], "little")
        try:
            h = json.loads(rest[4:4 + n])
        except ValueError:
            return None
        return cls(h["version"], rest[4 + n:], h["profiles"], h["flags"], h["strongly_typed"], h["hw_compat"], tuple(h["gpu"]),
                   h.get("added", []))


def make_tensorrt(version: str, memory: Memory | None = None, gpu: tuple[str, str] = ("NVIDIA H100 80GB HBM3", "9.0")):
    """A ``tensorrt`` module for ``version``; ``memory`` is where device pointers point."""
    surface = load_surface(version)
    classes_spec: dict = surface["classes"]
    mod = types.ModuleType("tensorrt", f"test double of TensorRT {surface['version']}")
    mod.__version__ = surface["version"]
    ctx = _Context(mod, surface, memory or Memory(), gpu)
    made: dict[str, type] = {}

    def make_class(qual: str) -> type:
        if qual in made:
            return made[qual]
        spec = classes_spec[qual]
        bases = tuple(make_class(b) for b in spec["bases"] if b in classes_spec)
        ns: dict[str, Any] = {"_qual": qual, "_spec": spec, "__module__": "tensorrt"}
        if "__init__" in spec["methods"]:
            # pybind11's placeholder "(self, *args, **kwargs)" means "No constructor defined!"
            ns["_constructible"] = spec["methods"]["__init__"] != ["(self, *args, **kwargs)"]
        elif not bases:
            ns["_constructible"] = False
        behaviour = BEHAVIOURS.get(qual)
        impls = dict(vars(behaviour)) if behaviour else {}
        for name, sigs in spec["methods"].items():
            if name in _NOT_MODELLED_DUNDERS and name not in impls:
                continue
            ns[name] = _checked(ctx, qual, name, sigs, impls.get(name), method=True)
        for name, sigs in spec["static"].items():
            ns[name] = staticmethod(_checked(ctx, qual, name, sigs, impls.get(name), method=False))
        for name, prop in spec["properties"].items():
            if spec["enum"] and name in ("name", "value"):
                continue
            ns[name] = _property(ctx, qual, name, prop, impls.get(f"get_{name}"))
        for name, value in impls.items():  # Python-level dunders the behaviour defines (__str__ of ParserError)
            if name in ("__str__", "__repr__") and name in spec["methods"]:
                ns[name] = value
        if spec["buffer"]:
            # the buffer protocol without __len__, as pybind11's py::buffer_protocol() gives (PEP 688's
            # __buffer__ needs Python 3.12): a ctypes structure resized to the data
            ns["_fields_"] = []
            cls = _DoubleBufferMeta(qual.split(".")[-1], (ctypes.Structure, *bases), ns)
        else:
            cls = _DoubleMeta(qual.split(".")[-1], (_EnumMixin,) if spec["enum"] else (bases or (object,)), ns)
        cls.__qualname__ = qual
        cls.__base_double__ = cls
        made[qual] = cls
        if spec["enum"]:
            members = {}
            for k, v in spec["members"].items():
                members[k] = object.__new__(cls)
                members[k].__dict__.update(name=k, value=v, _double_initialized=True)
            for k, v in members.items():
                type.__setattr__(cls, k, v)
            type.__setattr__(cls, "__members__", members)
            type.__setattr__(cls, "_constructible", False)
        for name, attr in spec["attributes"].items():
            if "class" in attr:
                type.__setattr__(cls, name, make_class(attr["class"]))
        return cls

    for qual in classes_spec:
        make_class(qual)
    for qual, spec in classes_spec.items():  # aliases and enum-valued attributes once every class exists
        for name, attr in spec["attributes"].items():
            if "alias" in attr:
                type.__setattr__(made[qual], name, made[attr["alias"]])
            elif "enum" in attr:
                type.__setattr__(made[qual], name, getattr(made[attr["enum"]], attr["member"]))
        if "." not in qual:
            setattr(mod, qual, made[qual])
    for name, const in surface["constants"].items():
        if "alias" in const:
            setattr(mod, name, made[const["alias"]])
        elif "enum" in const:
            setattr(mod, name, getattr(made[const["enum"]], const["member"]))
        elif "value" in const and name != "__version__":
            setattr(mod, name, const["value"])
    for name, sigs in surface["functions"].items():
        setattr(mod, name, _checked(ctx, "", name, sigs, getattr(ModuleFunctions, name, None), method=False))
    ctx.classes = made
    mod.__getattr__ = lambda name: (_ for _ in ()).throw(AttributeError(f"module 'tensorrt' has no attribute '{name}'"))
    mod._double = ctx
    return mod


class _Context:
    """State shared by one generated module: its surface, memory, GPU and class table."""

    def __init__(self, mod, surface: dict, memory: Memory, gpu: tuple[str, str]) -> None:
        self.mod, self.surface, self.memory, self.gpu = mod, surface, memory, gpu
        self.version = surface["version"]
        self.major = int(self.version.split(".")[0])
        self.classes: dict[str, type] = {}

    def new(self, qual: str, **state):
        """An object the C++ side returns (no Python constructor runs)."""
        cls = self.classes[qual]
        obj = cls.__new__(cls)
        obj.__dict__.update(state, _double_initialized=True)
        if isinstance(obj, ctypes.Structure) and state["_data"]:
            data = state["_data"]
            ctypes.resize(obj, max(len(data), ctypes.sizeof(obj)))
            ctypes.memmove(ctypes.addressof(obj), data, len(data))
        return obj

    def enum(self, qual: str, name: str):
        return getattr(self.classes[qual], name)


def _accepts(ctx: _Context, type_str: str | None, value) -> bool:
    if type_str is None:
        return True
    t = type_str.strip()
    qual = _class_name(t, ctx.surface["classes"])
    if qual is not None:
        cls = ctx.classes[qual]
        if isinstance(value, cls):
            return True
        if qual.startswith("Dims") and isinstance(value, (tuple, list)):  # py::implicitly_convertible<tuple|list, Dims>
            return all(isinstance(v, (int, np.integer)) for v in value)
        return value is None and not ctx.surface["classes"][qual]["enum"]  # pybind11 passes None as nullptr
    if t in ("int", "typing.SupportsInt"):
        return hasattr(value, "__index__") and not isinstance(value, float)
    if t in ("float", "typing.SupportsFloat"):
        return isinstance(value, (int, float, np.floating, np.integer))
    if t == "bool":
        return isinstance(value, (bool, np.bool_))
    if t == "str":
        return isinstance(value, str)
    if t in ("buffer", "typing_extensions.Buffer", "collections.abc.Buffer", "bytes"):
        try:
            memoryview(_as_buffer(value))
            return True
        except TypeError:
            return False
    m = re.fullmatch(r"(?:List|list|collections\.abc\.Sequence)\[(.+)\]", t)
    if m:
        return isinstance(value, (list, tuple)) and all(_accepts(ctx, m.group(1), v) for v in value)
    if t in ("tuple", "list"):
        return isinstance(value, (tuple, list))
    return True  # object, capsule, handle, callables: not modelled, accepted


def _as_buffer(value):
    data = getattr(value, "_data", None)
    return data if data is not None and type(value).__module__ == "tensorrt" else value


def _returns_ok(ctx: _Context, type_str: str | None, value) -> bool:
    if type_str is None or value is None:
        return True
    qual = _class_name(type_str, ctx.surface["classes"])
    if qual is not None:
        return isinstance(value, ctx.classes[qual])
    if type_str == "bool":
        return isinstance(value, bool)
    if type_str in ("int", "typing.SupportsInt"):
        return isinstance(value, int) and not isinstance(value, bool)
    if type_str == "str":
        return isinstance(value, str)
    return True


def _bind(ctx: _Context, sig: str, args: tuple, kwargs: dict, method: bool) -> dict | None:
    params, _ = parse_signature(sig)
    if any(p[0].startswith("*") for p in params):
        return {"args": args, "kwargs": kwargs}
    params = params[1:] if method and params and params[0][0] in ("self", "this") else params
    if len(args) > len(params):
        return None
    bound = {}
    for (name, annot, _), value in zip(params, args):
        bound[name] = value
    for key, value in kwargs.items():
        if key in bound or key not in {p[0] for p in params}:
            return None
        bound[key] = value
    for name, annot, has_default in params:
        if name not in bound:
            if not has_default:
                return None
            continue
        if not _accepts(ctx, annot, bound[name]):
            return None
    return bound


def _checked(ctx: _Context, qual: str, name: str, sigs: list[str], impl: Callable | None, method: bool):
    where = f"{qual}.{name}" if qual else name

    def call(*args, **kwargs):
        self, rest = (args[0], args[1:]) if method else (None, args)
        if not sigs:
            bound, sig = {"args": rest, "kwargs": kwargs}, None
        else:
            for sig in sigs:
                bound = _bind(ctx, sig, rest, kwargs, method)
                if bound is not None:
                    break
            else:
                shown = [type(a).__name__ for a in rest] + [f"{k}={type(v).__name__}" for k, v in kwargs.items()]
                raise TypeError(f"{name}(): incompatible function arguments. The following argument types are supported:\n"
                                + "\n".join(f"    {i + 1}. {name}{s}" for i, s in enumerate(sigs))
                                + f"\n\nInvoked with: {', '.join(shown)}")
        if name == "__init__":
            self.__dict__["_double_initialized"] = True
        if impl is None:
            if name == "__init__":
                return None
            raise DoubleUnimplemented(f"TensorRT {ctx.version}: {where} exists but the double has no behaviour for it")
        result = impl(self, ctx, *rest, **kwargs) if method else impl(ctx, *rest, **kwargs)
        ret = parse_signature(sig)[1] if sig else None
        if not _returns_ok(ctx, ret, result):
            raise DoubleViolation(f"double bug: {where} returned {type(result).__name__}, declared {ret}")
        return result

    call.__name__ = name
    call._double_generated = True
    call.__doc__ = "\n".join(f"{name}{s}" for s in sigs)
    return call


def _property(ctx: _Context, qual: str, name: str, prop: dict, getter: Callable | None):

    def fget(self):
        if getter is not None:
            return getter(self, ctx)
        if name in self.__dict__.get("_props", {}):
            return self._props[name]
        raise DoubleUnimplemented(f"TensorRT {ctx.version}: {qual}.{name} exists but the double has no value for it")

    def fset(self, value):
        if not _accepts(ctx, prop["type"], value):
            raise TypeError(f"{qual}.{name}: incompatible value {type(value).__name__}, expected {prop['type']}")
        self.__dict__.setdefault("_props", {})[name] = value

    return property(fget, None if prop["readonly"] else fset)


# -- behaviour ----------------------------------------------------------------------------------
def _log(ctx: _Context, logger, severity: str, msg: str) -> None:
    sev = ctx.enum("ILogger.Severity", severity)
    logger.log(sev, msg)


class _Logger:
    def __init__(self, ctx, min_severity=None):
        self._props = {}
        self.min_severity = min_severity if min_severity is not None else ctx.enum("ILogger.Severity", "WARNING")
        self.messages = []

    def log(self, ctx, severity, msg):
        self.messages.append((severity.name, msg))
        if severity.value <= self.min_severity.value:
            print(f"[TRT double] [{severity.name}] {msg}", file=sys.stderr)


class _ILogger:
    def __init__(self, ctx):
        pass

    def log(self, ctx, severity, msg):
        # pyCore.cpp: ILogger's trampoline is PYBIND11_OVERLOAD_PURE_NAME(void, ILogger, "log", ...)
        raise DoubleViolation("ILogger.log is pure virtual: a Python logger must override log(severity, msg)")


class _Builder:
    def __init__(self, ctx, logger):
        self._logger = logger

    def create_network(self, ctx, flags=0):
        names = {m.value: k for k, m in ctx.classes["NetworkDefinitionCreationFlag"].__members__.items()}
        set_flags = {names[b] for b in range(32) if flags >> b & 1 and b in names}
        # 11.x: every network is strongly typed; STRONGLY_TYPED is deprecated, accepted and ignored
        # (NVIDIA's 10.x -> 11.x migration guide, "Strongly Typed Networks Are Now Required"; the 11.x
        # Python example creates the network with no flags): recorded so tests can see it was passed
        ignored = {"STRONGLY_TYPED"} & set_flags if ctx.major >= 11 else set()
        return ctx.new("INetworkDefinition", _flags=int(flags), _flag_names=set_flags, _ignored_flags=ignored, _inputs=[], _outputs=[],
                       _onnx=None, _logger=self._logger, _props={})

    def get_num_DLA_cores(self, ctx):
        # Builder.num_DLA_cores: "The number of DLA engines available to this builder": none on a data-centre
        # GPU; Jetson AGX Orin and Xavier have two (Jetson module data sheets)
        return 2 if any(k in ctx.gpu[0] for k in ("Orin", "Xavier")) else 0

    def create_builder_config(self, ctx):
        return ctx.new("IBuilderConfig", _flags=set(), _profiles=[], _calib_profile=None, _timing_cache=None, _logger=self._logger,
                       _props={"builder_optimization_level": 3, "int8_calibrator": None,
                               "hardware_compatibility_level": ctx.enum("HardwareCompatibilityLevel", "NONE"),
                               # NvInfer.h: "the default is kLAYER_NAMES_ONLY"
                               "profiling_verbosity": ctx.enum("ProfilingVerbosity", "LAYER_NAMES_ONLY"),
                               "default_device_type": ctx.enum("DeviceType", "GPU"), "DLA_core": -1},
                       _pools={})

    def create_optimization_profile(self, ctx):
        return ctx.new("IOptimizationProfile", _shapes={})

    def build_serialized_network(self, ctx, network, config, *rest):
        logger = self._logger

        def fail(msg):
            _log(ctx, logger, "ERROR", msg)
            return None

        if network._onnx is None:
            return fail("network has no layers (nothing was parsed)")
        strongly_typed = ctx.major >= 11 or "STRONGLY_TYPED" in network._flag_names
        if strongly_typed and config._flags & {"FP16", "INT8", "BF16", "FP8"}:
            # developer guide, "Strongly Typed Networks": precision flags are not allowed with them
            return fail("BuilderFlag precision flags are not allowed with a strongly typed network")
        profiles = []
        for profile in config._profiles:
            profiles.append({k: [list(d) for d in v] for k, v in profile._shapes.items()})
        for tensor in network._inputs:
            dims = tensor._shape
            if -1 in dims and not profiles:
                # developer guide, "Optimization Profiles": dynamic inputs need at least one profile
                return fail(f"Network has dynamic or shape inputs, but no optimization profile has been defined ({tensor._name})")
            for p in profiles:
                if tensor._name not in p:
                    return fail(f"optimization profile is missing values for input {tensor._name}")
                for which in p[tensor._name]:
                    if len(which) != len(dims) or any(d != -1 and d != w for d, w in zip(dims, which)):
                        return fail(f"{tensor._name}: profile dimensions {which} do not match the network's static "
                                    f"dimensions {list(dims)}")
        qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in _onnx_model(network._onnx).graph.node)
        if "INT8" in config._flags and not qdq and config._props.get("int8_calibrator") is None and ctx.major < 11:
            return fail("Calibration failure occurred with no scaling factors detected: INT8 without Q/DQ needs a calibrator")
        calibrator = config._props.get("int8_calibrator")
        if calibrator is not None and "INT8" in config._flags and not qdq:
            profile = config._calib_profile if config._calib_profile is not None else \
                (config._profiles[0] if config._profiles else None)
            ok = _calibrate(ctx, logger, calibrator, network, profile)
            if not ok:
                return None
        hw = config._props["hardware_compatibility_level"].name
        runs, parsed_nodes = network._onnx, {n.name for n in _onnx_model(network._onnx).graph.node}
        if not strongly_typed and "FP16" in config._flags:
            # developer guide, "Reduced Precision" / BuilderFlag.FP16 (weakly typed networks): the builder
            # may run any layer that is not INT8 in FP16 when it is faster. The double takes the numerically
            # worst choice, every float layer in FP16 (I/O stays FP32), so tests meet a real engine's error.
            runs = _float_part_in_fp16(network._onnx)
        if config._props["default_device_type"].name == "DLA":
            # developer guide, "Working with DLA": DLA runs FP16/INT8 only, needs equal min/opt/max, and
            # without GPU_FALLBACK a layer DLA cannot run is an error
            if not {"FP16", "INT8"} & config._flags and not strongly_typed:
                return fail("DLA supports only FP16 and INT8 networks")
            if any(p[name][0] != p[name][2] for p in profiles for name in p):
                return fail("DLA does not support dynamic dimensions: the profile's min, opt and max must be equal")
            if not 0 <= config._props["DLA_core"] < _Builder.get_num_DLA_cores(self, ctx):
                return fail(f"DLA core {config._props['DLA_core']} is not available")
        flags = sorted(config._flags | {f"preview:{p}" for p in config.__dict__.get("_preview", ())}
                       | {f"verbosity:{config._props['profiling_verbosity'].name}"})
        added = [n.name for n in _onnx_model(runs).graph.node if n.name not in parsed_nodes]
        engine = Engine(ctx.version, runs, profiles, flags, strongly_typed, hw, ctx.gpu, added)
        if config._timing_cache is not None:
            config._timing_cache._entries.add(f"{ctx.gpu[1]}:{hash(network._onnx) & 0xffff:x}")
        return ctx.new("IHostMemory", _data=engine.serialize())


@functools.lru_cache(maxsize=64)  # the same few test ONNX are built again and again, by every version
def _float_part_in_fp16(data: bytes) -> bytes:
    """The graph with every float tensor in FP16 and FP32 I/O (Q/DQ scales too: opset 19 takes them)."""
    import onnx
    from onnx import version_converter
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = _onnx_model(data)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if opset < 19:
            del model.opset_import[:]
            model.opset_import.extend([onnx.helper.make_opsetid("", opset)])
            model = version_converter.convert_version(model, 19)
    half = convert_float_to_float16(model, keep_io_types=True)
    graph, ready = half.graph, {i.name for i in half.graph.input} | {i.name for i in half.graph.initializer} | {""}
    ordered, pending = [], list(graph.node)
    while pending:  # the converter appends its I/O casts last: put every node after its producers
        node = next(n for n in pending if all(i in ready for i in n.input))
        ordered.append(node)
        ready.update(node.output)
        pending.remove(node)
    copies = [onnx.NodeProto() for _ in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
    return half.SerializeToString()


def _onnx_model(data: bytes):
    import onnx

    return onnx.load_from_string(data)


def _calibrate(ctx: _Context, logger, calibrator, network, profile) -> bool:
    """The legacy INT8 calibration loop, as pyInt8.cpp's trampolines drive it (v8.6.1-v10.x)."""
    for method in ("get_batch_size", "get_batch", "read_calibration_cache", "write_calibration_cache"):
        if getattr(getattr(type(calibrator), method), "_double_generated", False):
            # utils.h getOverride(): "Method: X was not overriden" and the null py::function is called
            raise DoubleViolation(f"the calibrator does not override {method}(); TensorRT's trampoline calls the missing "
                                  "override (pyInt8.cpp) and the build fails or crashes")
    algo = "EntropyCalibration2" if isinstance(calibrator, ctx.classes["IInt8EntropyCalibrator2"]) else "MinMaxCalibration"
    major, minor, patch = (int(x) for x in ctx.version.split(".")[:3])
    # the cache's first line is "TRT-<version>-<algorithm>": TRT-8203-EntropyCalibration2 (TensorRT 8.2.3,
    # NVIDIA/TensorRT#2036), TRT-100001-EntropyCalibration2 (10.0.1, NVIDIA's trt-samples cookbook)
    header = f"TRT-{major * (10000 if major >= 10 else 1000) + minor * 100 + patch}-{algo}"
    cache = calibrator.read_calibration_cache()
    if cache is not None and len(memoryview(_as_buffer(cache)).cast("B")) > 0:
        first = bytes(memoryview(_as_buffer(cache)).cast("B")).split(b"\n", 1)[0].decode(errors="replace")
        if first == header:
            return True  # a cache replaces calibration (IInt8Calibrator::readCalibrationCache docs)
        # a cache of another version or algorithm "will not be used if these do not [match] the settings
        # of the current calibrator" (NvInfer.h); "trt will skip the file if it is incompatible"
        # (NVIDIA/TensorRT#1378): TensorRT calibrates again
        _log(ctx, logger, "WARNING", f"calibration cache header {first!r} does not match {header!r}: not used")
    calibrator.get_batch_size()  # still called by the builder (deprecated for explicit batch)
    if profile is None:
        _log(ctx, logger, "ERROR", "calibration needs an optimization profile")
        return False
    names = [t._name for t in network._inputs]
    # developer guide, "INT8 Calibration with Dynamic Shapes": calibration runs at the calibration
    # profile's kOPT dimensions and the batch data must match them
    opt = {name: profile._shapes[name][1] for name in names}
    batches, stats = 0, {}
    while True:
        try:
            result = calibrator.get_batch(names)
        except Exception as exc:  # pyInt8.cpp getBatch: caught, logged, treated as the end of data
            print(f"[ERROR] Exception caught in get_batch(): {exc}", file=sys.stderr)
            result = None
        if result is None or len(result) == 0:
            break
        if len(result) != len(names):
            raise DoubleViolation(f"get_batch returned {len(result)} pointers for {len(names)} inputs")
        for name, ptr, tensor in zip(names, result, network._inputs):
            nbytes = int(np.prod(opt[name])) * np.dtype(tensor._np_dtype).itemsize
            data = ctx.memory.view(int(ptr), nbytes, f"calibration batch {batches} of {name}").view(tensor._np_dtype)
            stats[name] = max(stats.get(name, 0.0), float(np.abs(data).max()))
        batches += 1
    if batches == 0:
        _log(ctx, logger, "ERROR", "Calibration failure occurred with no scaling factors detected")
        return False
    table = "".join(f"{k}: {np.float32(v / 127).view(np.uint32):08x}\n" for k, v in stats.items())
    blob = f"{header}\n{table}".encode()
    calibrator.write_calibration_cache(memoryview(blob))
    calibrator._double_batches = batches
    return True


class _INetworkDefinition:
    def get_num_inputs(self, ctx):
        return len(self._inputs)

    def get_num_outputs(self, ctx):
        return len(self._outputs)

    def get_flags(self, ctx):
        return self._flags

    def get_input(self, ctx, index):
        return self._inputs[index]

    def get_output(self, ctx, index):
        return self._outputs[index]


class _ITensor:
    def get_name(self, ctx):
        return self._name

    def get_shape(self, ctx):
        return _dims(ctx, self._shape)

    def get_dtype(self, ctx):
        return self._dtype


_ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8", 16: "BF16"}
_TRT_TO_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
              "BOOL": np.bool_, "UINT8": np.uint8}


class _OnnxParser:
    def __init__(self, ctx, network, logger):
        self._network, self._logger, self._errors = network, logger, []

    def get_num_errors(self, ctx):
        return len(self._errors)

    def get_error(self, ctx, index):
        return self._errors[index] if 0 <= index < len(self._errors) else None

    def parse(self, ctx, model, path=None):
        def error(desc):
            self._errors.append(ctx.new("ParserError", _desc=desc))
            return False

        data = bytes(memoryview(_as_buffer(model)))
        try:
            graph = _onnx_model(data).graph
        except Exception as exc:  # noqa: BLE001 - the real parser reports any protobuf failure as an error
            return error(f"Failed to parse ONNX model from memory: {str(exc).splitlines()[0] if str(exc) else 'protobuf error'}")
        if ctx.major < 10 and "EXPLICIT_BATCH" not in self._network._flag_names:
            # TensorRT 8.6 developer guide, "Importing a Model Using the ONNX Parser": the ONNX parser
            # only supports full-dimensions mode: create the network with the EXPLICIT_BATCH flag
            return error("Network must have explicit batch dimensions: create it with "
                         "1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH) (the ONNX parser supports only full-dimensions mode)")
        initializers = {i.name for i in graph.initializer}
        why = _qdq_zero_point_error(graph) or (_strong_type_error(data) if ctx.major >= 11 else None)
        if why:
            return error(why)
        net = self._network
        for value, target in [(v, net._inputs) for v in graph.input if v.name not in initializers] + \
                             [(v, net._outputs) for v in graph.output]:
            tt = value.type.tensor_type
            elem = tt.elem_type
            if elem == 11 and ctx.major >= 11:
                # DOUBLE I/O is imported as FLOAT: what TensorRT-RTX 1.7.1's parser (11.x's generation) does, tested
                # in tests/trt/test_trt_rtx.py (its DataType has no DOUBLE)
                elem = 1
            kind = _ONNX_TO_TRT.get(elem)
            if kind is None:
                return error(f"{value.name}: unsupported data type {tt.elem_type}")
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
            target.append(ctx.new("ITensor", _name=value.name, _shape=shape, _dtype=ctx.enum("DataType", kind),
                                  _np_dtype=_TRT_TO_NP[kind], _props={}))
        net._onnx = data
        return True


def _qdq_zero_point_error(graph) -> str | None:
    """TensorRT's ONNX parser takes symmetric quantization only: a Q/DQ zero point that is not all zeros is
    "INVALID_NODE: Assertion failed: shiftIsAllZeros(zeroPoint): Non-zero zero point is not supported"
    (onnx-tensorrt, buildZeroPointTensor; seen from TensorRT-RTX 1.7.1's parser in tests/trt/test_trt_rtx.py)."""
    from onnx import numpy_helper

    values = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = attr.t
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2] in values:
            if numpy_helper.to_array(values[node.input[2]]).any():
                return (f"In node with name: {node.name} and operator: {node.op_type} (buildZeroPointTensor): INVALID_NODE: "
                        "Assertion failed: shiftIsAllZeros(zeroPoint): Non-zero zero point is not supported")
    return None


_SAME_TYPE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Concat")


def _strong_type_error(data: bytes) -> str | None:
    """Strongly typed (11.x): a layer's inputs must agree in type, the parser inserts no casts. A Conv whose
    input is FP16 (a DequantizeLinear with float16 scales) and whose kernel is FP32 is "IConvolutionLayer
    `input` and `kernel` must be of same type" (TensorRT-RTX 1.7.1's parser, tests/trt/test_trt_rtx.py)."""
    graph = _inferred(data).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({i.name: i.data_type for i in graph.initializer})
    for node in graph.node:
        if node.op_type in _SAME_TYPE_OPS:
            seen = {types[i] for i in node.input if i and types.get(i)}
            if len(seen) > 1:
                return (f"In node with name: {node.name} and operator: {node.op_type} (parseNode): INVALID_NODE: the inputs of "
                        "a layer of a strongly typed network differ in type (no implicit casts)")
    return None


class _ParserError:
    def desc(self, ctx):
        return self._desc

    def __str__(self):
        return f"In node -1 with name:  and operator:  (parse): INVALID_GRAPH: {self._desc}"


def _dims(ctx, shape):
    return ctx.new("Dims", _shape=tuple(int(s) for s in shape))


class _Dims:
    def __init__(self, ctx, shape=()):
        self._shape = tuple(int(s) for s in shape)

    def __len__(self, ctx):
        return len(self._shape)

    def __getitem__(self, ctx, index):
        if isinstance(index, slice):
            return self._shape[index]
        if not -len(self._shape) <= index < len(self._shape):
            raise IndexError()  # pyFoundationalTypes.cpp: out-of-range index raises py::index_error
        return self._shape[index]

    def __eq__(self, ctx, other):
        return tuple(self._shape) == tuple(other)


def _dims_tuple(value) -> tuple[int, ...]:
    return tuple(value._shape) if hasattr(value, "_shape") else tuple(int(v) for v in value)


class _IOptimizationProfile:
    def set_shape(self, ctx, input, min, opt, max):
        lo, mid, hi = _dims_tuple(min), _dims_tuple(opt), _dims_tuple(max)
        # pyCore.cpp, lambdas::opt_profile_set_shape: setDimensions for kMIN, then kOPT, then kMAX, each
        # under PY_ASSERT_RUNTIME_ERROR("Shape provided for <min|opt|max> is inconsistent with other
        # shapes."): a RuntimeError, not a quiet invalid profile. setDimensions (NvInfer.h) fails when
        # the rank differs from a shape already set for the input, or MIN <= OPT <= MAX breaks.
        if any(d < 0 for d in lo):
            raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
        if len(mid) != len(lo) or any(a > b for a, b in zip(lo, mid)):
            raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
        if len(hi) != len(lo) or any(b > c for b, c in zip(mid, hi)):
            raise RuntimeError("Shape provided for max is inconsistent with other shapes.")
        self._valid = True
        self._shapes[input] = (lo, mid, hi)
        return None

    def get_shape(self, ctx, input):
        return [_dims(ctx, s) for s in self._shapes.get(input, ())]

    def __bool__(self, ctx):
        return bool(getattr(self, "_valid", False))  # pyCore.cpp: __bool__ is IOptimizationProfile::isValid


class _IBuilderConfig:
    def set_memory_pool_limit(self, ctx, pool, pool_size):
        self._pools[pool.name] = int(pool_size)

    def set_flag(self, ctx, flag):
        self._flags.add(flag.name)

    def set_preview_feature(self, ctx, feature, enable):
        self.__dict__.setdefault("_preview", set())
        (self._preview.add if enable else self._preview.discard)(feature.name)

    def get_flag(self, ctx, flag):
        return flag.name in self._flags

    def add_optimization_profile(self, ctx, profile):
        if not getattr(profile, "_valid", False) or not profile._shapes:
            return -1  # IBuilderConfig::addOptimizationProfile: -1 if the profile is invalid
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def set_calibration_profile(self, ctx, profile):
        if not getattr(profile, "_valid", False):
            return False
        self._calib_profile = profile
        return True

    def create_timing_cache(self, ctx, serialized_timing_cache):
        data = bytes(memoryview(_as_buffer(serialized_timing_cache)))
        entries, device = set(), ctx.gpu[1]
        if data:
            if not data.startswith(b"TIMING-CACHE\n"):
                # a corrupt cache is logged at ERROR (NVIDIA/TensorRT#3566, TensorRT 8.6.1.6: "Error Code 1:
                # Serialization (Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not
                # match)", then "4: The timing cache will not be used!"); createTimingCache returns nullptr
                _log(ctx, self._logger, "ERROR", "1: [stdArchiveReader.cpp::StdArchiveReaderInitCommon::36] Error Code 1: "
                     "Serialization (Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
                _log(ctx, self._logger, "ERROR", "4: The timing cache will not be used!")
                return None
            lines = data.decode().splitlines()[1:]
            device = lines[0]
            entries = set(lines[1:])
        return ctx.new("ITimingCache", _entries=entries, _device=device)

    def set_timing_cache(self, ctx, cache, ignore_mismatch):
        # IBuilderConfig::setTimingCache: false when the cache was made on another device and
        # ignore_mismatch is false
        if cache._device != ctx.gpu[1] and not ignore_mismatch:
            # logged at ERROR, and the build goes on without it (NVIDIA trt-samples cookbook,
            # 07-Tool/FP16Tuning/log-main.py.log, TensorRT 10.16: "[E] [timingCache.cpp::validate::952] Error
            # Code 4: API Usage Error (Timing cache header mismatch: ... The incoming cache will not be used!)")
            _log(ctx, self._logger, "ERROR", "[timingCache.cpp::validate::952] Error Code 4: API Usage Error (Timing "
                 f"cache header mismatch: incoming cache device {cache._device}, runtime device {ctx.gpu[1]}. "
                 "The incoming cache will not be used!)")
            return False
        self._timing_cache = cache
        return True

    def get_timing_cache(self, ctx):
        return self._timing_cache


class _ITimingCache:
    def serialize(self, ctx):
        text = "TIMING-CACHE\n" + "\n".join([self._device, *sorted(self._entries)]) + "\n"
        return ctx.new("IHostMemory", _data=text.encode())


class _IHostMemory:
    def get_nbytes(self, ctx):
        return len(self._data)

    def get_dtype(self, ctx):
        return ctx.enum("DataType", "UINT8")


class _Runtime:
    def __init__(self, ctx, logger):
        self._logger = logger

    def deserialize_cuda_engine(self, ctx, serialized_engine):
        engine = Engine.deserialize(bytes(memoryview(_as_buffer(serialized_engine))))
        if engine is None:
            _log(ctx, self._logger, "ERROR", "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (magic tag does not match)")
            return None
        if engine.version != ctx.version:
            _log(ctx, self._logger, "ERROR", f"The engine plan file is not compatible with this version of TensorRT, "
                                             f"expecting library version {ctx.version} got {engine.version}")
            return None
        if engine.gpu[1] != ctx.gpu[1] and not (engine.hw_compat == "AMPERE_PLUS" and float(ctx.gpu[1]) >= 8.0):
            _log(ctx, self._logger, "ERROR", f"The engine plan file is generated on an incompatible device, expecting "
                                             f"compute {ctx.gpu[1]} got compute {engine.gpu[1]}")
            return None
        graph = _onnx_model(engine.onnx_bytes).graph
        init = {i.name for i in graph.initializer}
        io = []
        for value, mode in [(v, "INPUT") for v in graph.input if v.name not in init] + [(v, "OUTPUT") for v in graph.output]:
            tt = value.type.tensor_type
            kind = _ONNX_TO_TRT[tt.elem_type]
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
            io.append({"name": value.name, "mode": mode, "dtype": kind, "shape": shape})
        return ctx.new("ICudaEngine", _engine=engine, _io=io, _logger=self._logger, _props={})


class _ICudaEngine:
    def create_engine_inspector(self, ctx):
        return ctx.new("EngineInspector", _engine=self, _props={})

    def get_num_io_tensors(self, ctx):
        return len(self._io)

    def get_tensor_name(self, ctx, index):
        if not 0 <= index < len(self._io):
            return None
        return self._io[index]["name"]

    def _tensor(self, name):
        for t in self._io:
            if t["name"] == name:
                return t
        return None

    def get_tensor_mode(self, ctx, name):
        t = _ICudaEngine._tensor(self, name)
        return ctx.enum("TensorIOMode", t["mode"] if t else "NONE")

    def get_tensor_dtype(self, ctx, name):
        t = _ICudaEngine._tensor(self, name)
        return ctx.enum("DataType", t["dtype"] if t else "FLOAT")

    def get_tensor_shape(self, ctx, name):
        t = _ICudaEngine._tensor(self, name)
        return _dims(ctx, t["shape"] if t else ())

    def get_tensor_profile_shape(self, ctx, name, profile_index):
        profiles = self._engine.profiles
        if not 0 <= profile_index < len(profiles) or name not in profiles[profile_index]:
            return []
        return [_dims(ctx, d) for d in profiles[profile_index][name]]

    def create_execution_context(self, ctx, *args, **kwargs):
        # 8.6: createExecutionContext "will call setOptimizationProfile(0) implicitly if there are no other
        # execution contexts assigned to optimization profile 0" (NvInferRuntime.h v8.6.1), and contexts share
        # a profile only with PreviewFeature kPROFILE_SHARING_0806, which "defaults to false" (NvInfer.h
        # v8.6.1); from 10.0 the newly created context "will be assigned optimization profile 0" always
        contexts = self.__dict__.setdefault("_contexts", 0)
        shared = ctx.major >= 10 or "preview:PROFILE_SHARING_0806" in self._engine.flags
        self.__dict__["_contexts"] = contexts + 1
        strategy = args[0] if args else kwargs.get("strategy")
        # ExecutionContextAllocationStrategy.USER_MANAGED: "The user supplies custom allocation to the execution
        # context" (NvInferRuntime.h v10.13.3): no activation memory until set_device_memory
        user_managed = strategy is not None and getattr(strategy, "name", "") == "USER_MANAGED"
        return ctx.new("IExecutionContext", _engine=self, _shapes={}, _addresses={}, _session=None, _props={}, _ctx=ctx,
                       _profile=0 if contexts == 0 or shared or not self._engine.profiles else None,
                       _needs_memory=user_managed)

    def create_execution_context_without_device_memory(self, ctx):
        # 8.6-10.x: "the user must set the device memory with IExecutionContext::setDeviceMemory()" before enqueue
        context = _ICudaEngine.create_execution_context(self, ctx)
        context.__dict__["_needs_memory"] = True
        return context

    def get_device_memory_size(self, ctx):
        return _activation_bytes(self)

    def get_device_memory_size_v2(self, ctx):
        return _activation_bytes(self)


def _activation_bytes(engine) -> int:
    """The double's activation memory: every float tensor of the ONNX at the profile's max batch, 4 bytes each
    (a stand-in for TensorRT's figure, large enough that a short block is caught)."""
    batch = max((p[name][2][0] for p in engine._engine.profiles for name in p), default=1)
    graph = _inferred(engine._engine.onnx_bytes).graph
    return 4 * sum(batch * int(np.prod([d.dim_value for d in v.type.tensor_type.shape.dim[1:]] or [1]))
                   for v in graph.value_info) or 256


class _IExecutionContext:
    # A captured CUDA graph replays the kernels, shapes and device addresses of its capture: the
    # developer guide ("CUDA Graphs") says a graph must be re-captured after the input shapes change,
    # and trtexec (samples/common/sampleInference.cpp) captures once per context after an enqueue and
    # never changes that context's shapes afterwards. The double counts every change of a context's
    # shapes or addresses; a replay after a change is a DoubleViolation.
    def get_nvtx_verbosity(self, ctx):
        # NvInferRuntime.h v10.13.3, setNvtxVerbosity: "Building with kDETAILED verbosity will generally increase
        # latency in enqueueV3()"; "The default is the verbosity with which the engine was built"
        if "nvtx_verbosity" in self.__dict__.get("_props", {}):
            return self._props["nvtx_verbosity"]
        built = next((f.split(":", 1)[1] for f in self._engine._engine.flags if f.startswith("verbosity:")), "LAYER_NAMES_ONLY")
        return ctx.enum("ProfilingVerbosity", built)

    def set_input_shape(self, ctx, name, shape):
        dims = _dims_tuple(shape)
        tensor = _ICudaEngine._tensor(self._engine, name)
        if tensor is None or tensor["mode"] != "INPUT":
            return False
        profiles = self._engine._engine.profiles
        if profiles and self.__dict__.get("_profile", 0) is None:
            _log(ctx, self._engine._logger, "ERROR", "IExecutionContext::setInputShape: no optimization profile is "
                 "selected for this context (profile 0 belongs to another context; build with profile sharing)")
            return False
        if profiles:
            lo, _, hi = profiles[0][name]
            if len(dims) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, dims, hi)):
                return False  # IExecutionContext::setInputShape: false when outside the profile
        elif dims != tensor["shape"]:
            return False
        if self._shapes.get(name) != dims:
            self.__dict__["_changes"] = self.__dict__.get("_changes", 0) + 1
        self._shapes[name] = dims
        return True

    def get_tensor_shape(self, ctx, name):
        tensor = _ICudaEngine._tensor(self._engine, name)
        if tensor is None:
            return _dims(ctx, ())
        if tensor["mode"] == "INPUT":
            return _dims(ctx, self._shapes.get(name, tensor["shape"]))
        batch = next(iter(self._shapes.values()), (None,))[0]
        if -1 in tensor["shape"] and batch is None:
            return _dims(ctx, tensor["shape"])
        return _dims(ctx, tuple(batch if d == -1 else d for d in tensor["shape"]))

    def set_tensor_address(self, ctx, name, memory):
        if _ICudaEngine._tensor(self._engine, name) is None:
            return False
        if self._addresses.get(name) != int(memory):
            self.__dict__["_changes"] = self.__dict__.get("_changes", 0) + 1
        self._addresses[name] = int(memory)
        return True

    def set_device_memory(self, ctx, memory, size):
        # setDeviceMemoryV2 (10.1+): "memory ... must be at least the size reported by getDeviceMemorySizeV2"
        need = _activation_bytes(self._engine)
        if size < need:
            raise DoubleViolation(f"set_device_memory: {size} bytes given, the engine needs {need}")
        ctx.memory.view(int(memory), int(size), "execution context device memory")  # a real, large enough allocation
        self.__dict__["_device_memory"] = int(memory)

    def execute_async_v3(self, ctx, stream_handle):
        engine = self._engine
        if self.__dict__.get("_needs_memory"):
            memory = self.__dict__.get("_device_memory") or self.__dict__.get("_props", {}).get("device_memory")
            if not memory:
                _log(ctx, engine._logger, "ERROR", "IExecutionContext::enqueueV3: the context was created without device "
                     "memory and none was set (setDeviceMemory)")
                return False
            if "_device_memory" not in self.__dict__:  # 8.6-10.0's device_memory property: the pointer alone
                ctx.memory.view(int(memory), _activation_bytes(engine), "execution context device memory")
        for t in engine._io:
            if t["name"] not in self._addresses:
                _log(ctx, engine._logger, "ERROR", f"Address is not set for {t['name']}")
                return False
        for t in engine._io:
            if t["mode"] == "INPUT" and t["name"] not in self._shapes and -1 in t["shape"]:
                return False  # input shape not specified: enqueueV3 fails
        if ctx.memory.recording is not None:  # inside a stream capture: the work is recorded, not run
            ctx.memory.recording.append((self, self.__dict__.get("_changes", 0)))
            return True
        _enqueue(ctx, self)
        return True


def _enqueue(ctx: _Context, context) -> None:
    """What an engine does on enqueue: its ONNX on the bytes at the input addresses, into the outputs."""
    import onnxruntime as ort

    engine = context._engine
    feeds = {}
    for t in engine._io:
        if t["mode"] == "INPUT":
            shape = context._shapes.get(t["name"], t["shape"])
            dtype = np.dtype(_TRT_TO_NP[t["dtype"]])
            raw = ctx.memory.view(context._addresses[t["name"]], int(np.prod(shape)) * dtype.itemsize, f"input {t['name']}")
            feeds[t["name"]] = raw.view(dtype).reshape(shape).copy()
    if context._session is None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        context._session = ort.InferenceSession(engine._engine.onnx_bytes, options, providers=["CPUExecutionProvider"])
    outputs = context._session.run(None, feeds)
    for t, value in zip([t for t in engine._io if t["mode"] == "OUTPUT"], outputs):
        dtype = np.dtype(_TRT_TO_NP[t["dtype"]])
        value = np.ascontiguousarray(value, dtype=dtype)
        out = ctx.memory.view(context._addresses[t["name"]], value.nbytes, f"output {t['name']}")
        out[:] = value.reshape(-1).view(np.uint8)


def replay_recorded(recorded: list) -> None:
    """Replay a captured graph: each recorded enqueue, provided its context has not changed since."""
    for context, changes in recorded:
        if context.__dict__.get("_changes", 0) != changes:
            raise DoubleViolation("a CUDA graph was replayed after its execution context's input shapes or tensor "
                                  "addresses changed since the capture (it would replay the old shapes and addresses): "
                                  "capture per shape, on a context whose shapes stay fixed")
        _enqueue(context.__dict__["_ctx"], context)


_FORMATS = {"INT8": "Four wide channel vectorized row major Int8 format", "FP16": "Row major linear FP16 format",
            "FP32": "Row major linear FP32"}  # Format/Datatype strings of trex's example engines
_DATATYPES_11 = {"INT8": "Int8", "FP16": "Half", "FP32": "Float"}
_FORMATS_11 = {"INT8": "(Vectorized C4) Four wide channel vectorized row major format",
               "FP16": "(Linear) Row major linear format", "FP32": "(Linear) Row major linear format"}
_LAYER_TYPES = {"Conv": "CaskConvolution", "Gemm": "CaskGemmMatrixMultiply", "MatMul": "CaskGemmMatrixMultiply",
                "GlobalAveragePool": "CaskPooling", "AveragePool": "CaskPooling", "MaxPool": "TiledPooling",
                "ReduceMean": "CaskPooling", "Flatten": "NoOp", "Reshape": "Shuffle"}


@functools.lru_cache(maxsize=64)
def _inferred(data: bytes):
    import onnx

    return onnx.shape_inference.infer_shapes(_onnx_model(data))


class _EngineInspector:
    """The inspector's JSON as NVIDIA's trt-engine-explorer reads it (NVIDIA/TensorRT v10.13.3,
    tools/experimental/trt-engine-explorer: examples/*/resnet.onnx.engine.graph.json and trex/parser.py):
    ``{"Layers": [...], "Bindings": [...]}``; each layer has Name, LayerType, Inputs/Outputs with
    Format/Datatype, TacticName/TacticValue and, since 8.6, Metadata ``[ONNX Layer: <node>]`` joined by
    ``\x1e``. With the default LAYER_NAMES_ONLY verbosity only names are given (developer guide, "Engine
    Inspector"). The double's layers are the engine's ONNX nodes with each Q/DQ pair fused into the layer it
    feeds (a QuantizeLinear on the network input becomes a Reformat layer, as in trex's QAT example) and each
    Cast the double added to emulate the FP16 flag a Reformat; TensorRT's other fusions are not modelled."""

    def get_engine_information(self, ctx, format):
        import onnx

        engine = self._engine._engine
        graph = _inferred(engine.onnx_bytes).graph
        types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
        types.update({i.name: i.data_type for i in graph.initializer})
        producer = {o: n for n in graph.node for o in n.output}
        inputs = {v.name for v in graph.input}
        detailed = "verbosity:DETAILED" in engine.flags
        # a dynamic-shape engine reports every tensor as "N/A due to dynamic shapes" unless the inspector has an
        # execution context with its shapes set (NvInferRuntime.h v10.13.3, IEngineInspector::setExecutionContext;
        # trtexec and Polygraphy set one)
        context = self.__dict__.get("_props", {}).get("execution_context")
        dynamic = any(lo != hi for p in engine.profiles for lo, _, hi in p.values())
        unknown = dynamic and (context is None or not context._shapes)

        def tensor_type(precision: str) -> dict:
            if ctx.major >= 11:  # 11.0 migration guide (IEngineInspector): Format/Datatype split into Datatype and Format;
                # the words as TensorRT-RTX 1.7.1 logs them ("Datatype: Float, Format: (Linear) Row major linear format")
                if unknown:
                    return {"Datatype": "N/A due to dynamic shapes", "Format": "N/A due to dynamic shapes"}
                return {"Datatype": _DATATYPES_11[precision], "Format": _FORMATS_11[precision]}
            return {"Format/Datatype": "N/A due to dynamic shapes" if unknown else _FORMATS[precision]}

        def dtype(tensor: str) -> str:
            node = producer.get(tensor)
            if node is not None and node.op_type == "QuantizeLinear":
                return "INT8"
            return {onnx.TensorProto.FLOAT16: "FP16"}.get(types.get(tensor), "FP32")

        layers = []
        for node in graph.node:
            if node.op_type == "DequantizeLinear" or (node.op_type == "QuantizeLinear" and node.input[0] not in inputs):
                continue  # fused into the layer the pair feeds
            fused = [producer[i].name for i in node.input if i in producer and producer[i].op_type == "DequantizeLinear"]
            fused.append(node.name)
            reformat = node.name in engine.added or node.op_type == "QuantizeLinear"
            ins = [i for i in node.input if i and i not in {x.name for x in graph.initializer}]
            precision = "INT8" if len(fused) > 1 else dtype(ins[0]) if ins else "FP32"
            name = f"Reformatting CopyNode for Output Tensor 0 to {node.name}" if node.name in engine.added else " + ".join(fused)
            layer = {"Name": name, "LayerType": "Reformat" if reformat else _LAYER_TYPES.get(node.op_type, "PointWiseV2"),
                     "Inputs": [{"Name": i, "Location": "Device", **tensor_type(precision)} for i in ins[:1]],
                     "Outputs": [{"Name": o, "Location": "Device",
                                  **tensor_type("INT8" if node.op_type == "QuantizeLinear" else dtype(o))}
                                 for o in node.output],
                     "TacticValue": f"0x{abs(hash(name)) & 0xffffffffffff:016x}"}
            if not reformat:
                layer["TacticName"] = f"sm{ctx.gpu[1].replace('.', '')}_xmma_{precision.lower()}_{node.op_type.lower()}"
                layer["Metadata"] = "\x1e".join(f"[ONNX Layer: {n}]" for n in fused)
            else:
                layer["Origin"] = "REFORMAT" if node.name in engine.added else "QDQ"
            layers.append(layer if detailed else layer["Name"])
        # 11.0 migration guide (IEngineInspector): "The Bindings field ... has been removed. It is replaced by the
        # new I/O Tensors field"
        io_key = "I/O Tensors" if ctx.major >= 11 else "Bindings"
        return json.dumps({"Layers": layers, io_key: [t["name"] for t in self._engine._io]})


class _Calibrator:
    def __init__(self, ctx):
        pass


class ModuleFunctions:
    """The module-level functions of tensorrt/__init__.py that edgeopt may call."""

    @staticmethod
    def nptype(ctx, trt_type):
        mapping = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
                   "BOOL": np.bool_, "UINT8": np.uint8}
        if trt_type.name in mapping:
            return mapping[trt_type.name]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    @staticmethod
    def volume(ctx, iterable):
        vol = 1
        for elem in iterable:
            vol *= elem
        return vol


BEHAVIOURS: dict[str, Any] = {
    "Logger": _Logger, "ILogger": _ILogger, "Builder": _Builder, "INetworkDefinition": _INetworkDefinition,
    "ITensor": _ITensor, "OnnxParser": _OnnxParser, "ParserError": _ParserError, "Dims": _Dims,
    "IOptimizationProfile": _IOptimizationProfile, "IBuilderConfig": _IBuilderConfig, "ITimingCache": _ITimingCache,
    "IHostMemory": _IHostMemory, "Runtime": _Runtime, "ICudaEngine": _ICudaEngine,
    "IExecutionContext": _IExecutionContext, "IInt8Calibrator": _Calibrator, "IInt8EntropyCalibrator2": _Calibrator,
    "IInt8MinMaxCalibrator": _Calibrator, "EngineInspector": _EngineInspector,
}


class HostDevice:
    """edgeopt's device seam (``edgeopt.trt.device.Device``) over host memory the double can address."""

    def __init__(self, memory: Memory, gpu: tuple[str, str] = ("NVIDIA H100 80GB HBM3", "9.0")) -> None:
        self.memory, self.gpu = memory, gpu
        self.captured = 0
        self.runs = 0

    def info(self) -> dict[str, str]:
        return {"gpu": self.gpu[0], "compute_capability": self.gpu[1]}

    def empty(self, shape, dtype):
        array = np.zeros(tuple(shape), dtype=dtype)
        self.memory.register(array)
        return array

    def address(self, buffer) -> int:
        return int(buffer.ctypes.data)

    def upload(self, array, dtype):
        out = np.ascontiguousarray(array, dtype=dtype).copy()
        self.memory.register(out)
        return out

    def download(self, buffer):
        return np.array(buffer)

    def synchronize(self) -> None:
        pass

    def run(self, copies, work) -> None:
        for dst, src in copies:
            if dst.shape != src.shape or dst.dtype != src.dtype:
                raise DoubleViolation(f"device copy of {src.dtype}{src.shape} into {dst.dtype}{dst.shape}")
            np.copyto(dst, src)
        self.runs += 1
        work(0)

    def capture(self, work):
        """As ``CudaDevice.capture``: a warm-up run, then a capture that records each enqueue; an error
        inside the capture ends it and is a ``CaptureError``; the replay checks each context."""
        from edgeopt.trt.device import CaptureError

        work(0)
        self.memory.recording = []
        try:
            work(0)
        except Exception as exc:  # noqa: BLE001 - what CudaDevice.capture does with a failure inside capture
            raise CaptureError(f"CUDA graph capture failed: {exc}") from exc
        finally:
            recorded, self.memory.recording = self.memory.recording, None
        self.captured += 1
        return lambda: replay_recorded(recorded)
