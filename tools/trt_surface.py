"""Write the Python API surface of real TensorRT bindings, one gzipped JSON per version.

TensorRT cannot be installed on machines without an NVIDIA GPU, but its bindings wheels can be
imported: ``tensorrt_bindings/tensorrt.so`` needs only a handful of C entry points from
``libnvinfer`` / ``libnvonnxparser`` / ``libnvinfer_plugin`` (and ``libnvparsers`` on 8.x);
everything else goes through C++ vtables. This tool downloads each wheel, compiles stub shared
libraries that define exactly the symbols ``nm -D --undefined-only`` lists (one per NEEDED soname,
with the system C compiler), imports the module in a child process under ``LD_LIBRARY_PATH`` and
records what pybind11 exposes: every class with its bases, methods (every overload's signature,
the first line(s) of ``__doc__``), properties (type, read-only or not), enum members and class
attributes, plus the module's functions and constants. Nothing from TensorRT is ever *called*.

``tests/trt_double`` builds a faithful test double of ``tensorrt`` from one such file.

  python tools/trt_surface.py                       # every version in VERSIONS
  python tools/trt_surface.py --version 10.13.3.9   # one version
  python tools/trt_surface.py --wheel-dir DIR       # use wheels already downloaded into DIR

Regenerate on demand; tests never download anything.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# version -> PyPI bindings package. 10.4 is the last with V100 (sm 7.0); 10.9 added
# HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY; 11.x is strongly typed only.
VERSIONS = {
    "8.6.1": "tensorrt-bindings",
    "10.0.1": "tensorrt-cu12-bindings",
    "10.4.0": "tensorrt-cu12-bindings",
    "10.8.0.43": "tensorrt-cu12-bindings",
    "10.9.0.34": "tensorrt-cu12-bindings",
    "10.13.3.9": "tensorrt-cu12-bindings",
    "10.16.1.11": "tensorrt-cu12-bindings",
    "11.0.0.114": "tensorrt-cu12-bindings",
    "11.4.0.106": "tensorrt-cu13-bindings",
}
OUT = Path(__file__).resolve().parents[1] / "tests" / "trt_surface"
# undefined symbols that the C library or the Python interpreter provide
NOT_TENSORRT = re.compile(r"^(_?Py|dl(open|sym|close|error)$|pthread_|__)")

INTROSPECT = r'''
import ctypes, inspect, json, sys, types
import tensorrt_bindings as trt

SKIP = {"__doc__", "__module__", "__dict__", "__weakref__", "__init_subclass__", "__subclasshook__",
        "__new__", "__getattribute__", "__setattr__", "__delattr__", "__dir__", "__format__", "__reduce__",
        "__reduce_ex__", "__sizeof__", "__class__", "__qualname__", "__annotations__", "__firstlineno__",
        "__static_attributes__", "__pybind11_module_local_v4_gcc_libstdcpp_cxxabi1011__"}

def has_buffer(t):
    # PyTypeObject.tp_as_buffer (CPython >= 3.8 layout: 20 pointer-sized fields before it)
    base = id(t)
    name = ctypes.cast(ctypes.c_void_p.from_address(base + 3 * 8).value, ctypes.c_char_p).value.decode()
    assert name.split(".")[-1] == t.__name__, (name, t.__name__)
    return bool(ctypes.c_void_p.from_address(base + 20 * 8).value)

def signatures(fn, name):
    doc = (getattr(fn, "__doc__", None) or "")
    lines = doc.splitlines()
    if not lines:
        try:
            return ["(" + ", ".join(str(p) for p in inspect.signature(fn).parameters.values()) + ")"]
        except (TypeError, ValueError):
            return []
    if len(lines) > 1 and lines[1].strip() == "Overloaded function.":
        sigs = []
        for line in lines[2:]:
            s = line.strip()
            for prefix in [f"{i}. {name}(" for i in range(1, 40)] + [f"{i}. (" for i in range(1, 40)]:
                if s.startswith(prefix):
                    sigs.append(s[len(prefix) - 1:])
                    break
        return sigs
    first = lines[0].strip()
    if first.startswith(name + "("):
        return [first[len(name):]]
    if first.startswith("("):
        return [first]
    try:
        return ["(" + ", ".join(str(p) for p in inspect.signature(fn).parameters.values()) + ")"]
    except (TypeError, ValueError):
        return []

types_seen = {}

def is_enum(t):
    return isinstance(t, type) and hasattr(t, "__members__") and isinstance(getattr(t, "__members__"), dict)

def enum_ref(value):
    t = type(value)
    if t in types_seen:
        for k, v in t.__members__.items():
            if v is value or (v == value and int(v) == int(value)):
                return {"enum": types_seen[t], "member": k}
    return None

def describe_class(t, qual, out):
    types_seen[t] = qual
    entry = {"bases": [b.__name__ if b.__module__ == "builtins" or not b.__module__.startswith("tensorrt") else None
                       for b in t.__bases__],
             "buffer": has_buffer(t), "enum": is_enum(t), "members": {}, "methods": {}, "static": {},
             "properties": {}, "attributes": {}}
    out[qual] = entry
    if entry["enum"]:
        entry["members"] = {k: int(v) for k, v in t.__members__.items()}
    for name, value in sorted(vars(t).items()):
        if name in SKIP or (name.startswith(("_pybind11", "__pybind11")) or name == "__members__" or name == "__entries"):
            continue
        if isinstance(value, type):
            if value in types_seen:
                entry["attributes"][name] = {"alias": types_seen[value]}
            else:
                entry["attributes"][name] = {"class": qual + "." + name}
                describe_class(value, qual + "." + name, out)
        elif isinstance(value, property):
            fget_sig = signatures(value.fget, "") if value.fget else []
            ret = fget_sig[0].split(" -> ", 1)[1] if fget_sig and " -> " in fget_sig[0] else None
            entry["properties"][name] = {"type": ret, "readonly": value.fset is None}
        elif isinstance(value, staticmethod):
            entry["static"][name] = signatures(value.__func__, name)
        elif callable(value) and not is_enum(type(value)):
            entry["methods"][name] = signatures(value, name)
        elif entry["enum"] and name in entry["members"]:
            continue
        else:
            entry["attributes"][name] = {"value_of": type(value).__name__}

def main():
    classes, functions, constants = {}, {}, {}
    pending = []
    for name, value in sorted(vars(trt).items()):
        if isinstance(value, type) and getattr(value, "__module__", "").startswith("tensorrt"):
            if value not in types_seen:
                describe_class(value, name, classes)
    for name, value in sorted(vars(trt).items()):
        if name.startswith("__") and name != "__version__":
            continue
        if isinstance(value, type):
            if getattr(value, "__module__", "").startswith("tensorrt") and types_seen[value] != name:
                constants[name] = {"alias": types_seen[value]}
        elif isinstance(value, (types.BuiltinFunctionType, types.FunctionType)):
            functions[name] = signatures(value, name)
        elif isinstance(value, types.ModuleType):
            continue
        else:
            ref = enum_ref(value)
            constants[name] = ref if ref else ({"value": value} if isinstance(value, (int, float, str, bool)) else
                                               {"value_of": type(value).__name__})
    # resolve class-level enum values (Logger.WARNING) and base class names now that every type is known
    for qual, entry in classes.items():
        t = eval_qual(qual)
        entry["bases"] = [types_seen.get(b, b.__name__) for b in t.__bases__]
        for name, attr in list(entry["attributes"].items()):
            if attr.get("value_of"):
                ref = enum_ref(getattr(t, name))
                if ref:
                    entry["attributes"][name] = ref
    json.dump({"version": trt.__version__, "classes": classes, "functions": functions, "constants": constants},
              sys.stdout, sort_keys=True)

def eval_qual(qual):
    obj = trt
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj

main()
'''


def download(version: str, package: str, dest: Path) -> Path:
    found = list(dest.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}",
                        "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                        "--platform", "manylinux2014_x86_64", "-d", str(dest), f"{package}=={version}"], check=True)
        found = list(dest.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    return found[0]


def stub_libraries(so: Path, stubs: Path) -> list[str]:
    """Compile one stub per NEEDED TensorRT soname, defining every symbol the module imports from them."""
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(libnv[^\]]+)\]",
                        subprocess.run(["readelf", "-d", str(so)], check=True, capture_output=True, text=True).stdout)
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(so)], check=True, capture_output=True, text=True).stdout
    symbols = sorted({parts[1] for parts in (line.split() for line in undefined.splitlines())
                      if len(parts) == 2 and parts[0] == "U" and "@" not in parts[1] and not NOT_TENSORRT.match(parts[1])})
    stubs.mkdir(parents=True, exist_ok=True)
    source = stubs / "stub.c"
    source.write_text("".join(f"void *{s}(void) {{ return 0; }}\n" for s in symbols))
    for soname in needed:
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(stubs / soname), f"-Wl,-soname,{soname}", str(source)], check=True)
    return symbols


def surface_of(wheel: Path, work: Path) -> dict:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(work)
    so = next(work.rglob("tensorrt.so"))
    symbols = stub_libraries(so, work / "stubs")
    env = {**os.environ, "LD_LIBRARY_PATH": str(work / "stubs"), "PYTHONPATH": str(so.parent.parent)}
    result = subprocess.run([sys.executable, "-c", INTROSPECT], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{wheel.name}: introspection failed:\n{result.stderr}")
    surface = json.loads(result.stdout)
    surface["source"] = {"wheel": wheel.name, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
                         "stubbed_symbols": symbols, "python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    return surface


def write_surface(surface: dict, version: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / f"tensorrt-{version}.json.gz"
    payload = json.dumps(surface, sort_keys=True, indent=0).encode()
    tmp = target.with_suffix(".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(payload)
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="append", help="a version from VERSIONS (repeatable); default: all")
    parser.add_argument("--wheel-dir", type=Path, help="where wheels are (or get downloaded)")
    args = parser.parse_args(argv)
    versions = args.version or list(VERSIONS)
    unknown = [v for v in versions if v not in VERSIONS]
    if unknown:
        parser.error(f"unknown version(s) {unknown}: add them to VERSIONS with their PyPI package")
    with tempfile.TemporaryDirectory() as tmp:
        wheels = args.wheel_dir or Path(tmp) / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        for version in versions:
            wheel = download(version, VERSIONS[version], wheels)
            surface = surface_of(wheel, Path(tmp) / version)
            if not surface["version"].startswith(version.split(".post")[0]):
                raise SystemExit(f"{wheel.name} reports version {surface['version']}, expected {version}")
            target = write_surface(surface, version)
            print(f"{target}: {len(surface['classes'])} classes, {len(surface['functions'])} functions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
