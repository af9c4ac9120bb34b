"""Regenerate the TensorRT Python API name lists used by tests/test_trt_api_names.py.

Downloads the real bindings wheels from PyPI (they install nothing here: no GPU needed), reads
the extension module's string table and keeps every identifier-like string. pybind11 stores each
bound name as a C string, but the linker merges a string into the tail of a longer one ("INT8"
lives inside "UINT8"), so a name exists when it is a *suffix* of a listed string.

  python tools/extract_trt_names.py            # writes tests/trt_names/tensorrt-<version>.txt
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = {"10.13.3.9": "tensorrt-cu12-bindings", "11.4.0.106": "tensorrt-cu13-bindings"}
OUT = Path(__file__).resolve().parents[1] / "tests" / "trt_names"
IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{2,80}")
MANGLED = re.compile(r"^_Z|[0-9](nvinfer|tensorrt|pybind11|std|cxx)|^(GLIBC|GCC|CXXABI)")


def names_in_binary(blob: bytes) -> list[str]:
    """Identifier strings of a binary (printable runs that are whole identifiers), minus C++ mangling."""
    found = set()
    for run in re.finditer(rb"[\x20-\x7e]{3,}", blob):
        if IDENT.fullmatch(run.group()):
            name = run.group().decode()
            if not MANGLED.search(name):
                found.add(name)
    return sorted(found)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for version, package in WHEELS.items():
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "-d", tmp,
                            f"{package}=={version}"], check=True)
            wheel = next(Path(tmp).glob(f"{package.replace('-', '_')}-{version}-*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                so = next(n for n in zf.namelist() if n.endswith("tensorrt.so"))
                names = names_in_binary(zf.read(so))
            target = OUT / f"tensorrt-{version}.txt"
            target.write_text(f"# identifier strings of {package}=={version} {so}; regenerate with tools/extract_trt_names.py\n"
                              + "\n".join(names) + "\n")
            print(f"{target}: {len(names)} names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
