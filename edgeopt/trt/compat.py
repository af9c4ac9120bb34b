"""TensorRT versions: parsing, the generation that decides the API path, features added later.

Generation 10 covers TensorRT 8.6-10.x (builder precision flags, legacy calibrators); 11 covers
11.x (strongly typed networks only; precision lives in the ONNX). Members that appeared in a later
minor release are looked up only when asked for, with a one-line error naming the version needed.
"""

from __future__ import annotations

from typing import Any

from edgeopt.errors import ConfigError, MissingDependencyError

INSTALL_HINT = "pip install 'edgeopt[tensorrt]' on a machine with an NVIDIA GPU and driver"
HW_COMPAT_LEVELS = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}
# first version whose bindings have the member (from tests/trt_surface, the real bindings)
HW_COMPAT_SINCE = {"NONE": "8.6", "AMPERE_PLUS": "8.6", "SAME_COMPUTE_CAPABILITY": "10.9"}


def parse_version(version: str) -> tuple[int, int]:
    """``"10.13.3.9"`` -> ``(10, 13)``."""
    parts = str(version).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ConfigError(f"cannot read TensorRT version {version!r}") from None


def trt_generation(version: str) -> int:
    """10 for TensorRT 8.6-10.x (builder flags, legacy calibrators), 11 for >= 11 (strongly typed only)."""
    major, minor = parse_version(version)
    if (major, minor) < (8, 6):
        raise MissingDependencyError(f"TensorRT {version} is too old: edgeopt supports 8.6 and newer ({INSTALL_HINT})")
    return 11 if major >= 11 else 10


def import_tensorrt():
    """``import tensorrt`` or a one-line error naming the extra to install."""
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError(f"TensorRT is not installed: {INSTALL_HINT}") from None
    return trt


def network_flags(trt) -> int:
    """Creation flags for an ONNX network on this TensorRT.

    8.x: ``EXPLICIT_BATCH`` (the 8.x ONNX parser refuses implicit-batch networks); 10.x: none
    (explicit batch is the only mode, the flag is deprecated); 11.x: none either: every network is
    strongly typed and ``STRONGLY_TYPED`` is deprecated and ignored (NVIDIA's 10.x -> 11.x Python
    migration patterns, docs.nvidia.com/deeplearning/tensorrt/11.4.0/api/migration/
    tensorrt-10x-to-11x-python-api-patterns.html: "Strong typing is always on in 11.x", and its
    11.x example calls ``builder.create_network()`` with no flags).
    """
    flags = trt.NetworkDefinitionCreationFlag
    major = parse_version(trt.__version__)[0]
    if major < 10:
        return 1 << int(flags.EXPLICIT_BATCH)
    return 0


def hardware_compatibility_level(trt, hw_compat: str) -> Any:
    """The ``HardwareCompatibilityLevel`` member for ``--hw-compat``, or why this TensorRT lacks it."""
    name = HW_COMPAT_LEVELS[hw_compat]
    member = getattr(trt.HardwareCompatibilityLevel, name, None)
    if member is None:
        raise ConfigError(f"`hw_compat` {hw_compat} needs TensorRT {HW_COMPAT_SINCE[name]} or newer; "
                          f"this is {trt.__version__}: use `hw_compat` none or ampere+, or upgrade TensorRT")
    return member


def engine_incompatibility(built: dict[str, Any], trt_version: str, compute_capability: str) -> str | None:
    """Why an engine built as ``built`` (its manifest's extra) cannot run here, or None when it can.

    TensorRT engines are tied to the TensorRT version (major.minor.patch) and the GPU's compute
    capability, unless built version- or hardware-compatible.
    """
    built_version = str(built.get("tensorrt_version", ""))
    if not built_version:
        return "its manifest does not say which TensorRT built it"
    parse_version(trt_version)
    if built_version.split(".")[:3] != trt_version.split(".")[:3] and not built.get("version_compatible", False):
        return f"it was built with TensorRT {built_version}, this is TensorRT {trt_version}"
    built_cc = str(built.get("compute_capability", ""))
    if built_cc != compute_capability:
        if built.get("hardware_compatible"):
            if float(compute_capability) < 8.0:
                return f"it is hardware-compatible for Ampere and newer (sm 8.0+), this GPU is sm {compute_capability}"
        else:
            return f"it was built for compute capability {built_cc} ({built.get('gpu', '?')}), this GPU is {compute_capability}"
    return None


# NVIDIA's release notes: "NVIDIA Volta support (GPUs with compute capability 7.0) has been removed starting
# with TensorRT 10.5" (10.5.0 release notes; NVIDIA/TensorRT-LLM#2400: "Target GPU SM 70 is not supported
# by this TensorRT release"); 10.x needs "SM 7.0 or higher" (10.1 support matrix)
LAST_FOR_VOLTA = (10, 4)


def gpu_unsupported(trt_version: str, compute_capability: str) -> str | None:
    """Why this TensorRT cannot build for this GPU, checked before the builder runs (None when it can)."""
    major, minor = parse_version(trt_version)
    try:
        cc = tuple(int(x) for x in str(compute_capability).split(".")[:2])
    except ValueError:
        return None
    if cc == (7, 0) and (major, minor) > LAST_FOR_VOLTA:
        return (f"TensorRT {trt_version} does not support Volta GPUs (sm 7.0, V100): NVIDIA removed them in 10.5; the "
                "last TensorRT that builds for them is 10.4: pip install 'tensorrt-cu12==10.4.*'")
    if cc < (7, 0) and major >= 10:
        return f"TensorRT {trt_version} needs a GPU of compute capability 7.0 or higher; this one is sm {compute_capability}"
    return None


def dla_unsupported(trt_version: str) -> str | None:
    """Why this TensorRT cannot build for DLA (None when it can): "TensorRT 10.7 was the last 10.x release
    that supported DLA", "DLA was unavailable in TensorRT 11.0 through 11.3", 11.4 brings it back (11.4.1:
    Jetson AGX Orin, JetPack 7.2.2+) (NVIDIA's TensorRT 11.x release notes)."""
    version = parse_version(trt_version)
    if (10, 7) < version < (11, 4):
        return (f"TensorRT {trt_version} has no DLA support (10.7 was the last 10.x with it, 11.4 brings it back); "
                "use the TensorRT of your JetPack (JetPack 6: 10.3)")
    return None
