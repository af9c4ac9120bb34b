"""TensorRT builders and versions: which builder, the generation that decides the API path, features added later.

Functions ending in ``_rtx`` use names only TensorRT-RTX's module has. Two builders share TensorRT's Python API: full TensorRT (module ``tensorrt``) and TensorRT for RTX
(module ``tensorrt_rtx_bindings``, versions 1.x), which builds ahead of time on a machine without a
GPU for RTX-class GPUs (compute capability 7.5+). Generation 10 covers TensorRT 8.6-10.x (builder
precision flags, legacy calibrators); 11 covers 11.x and TensorRT-RTX (strongly typed networks only;
precision lives in the ONNX). Members that appeared in a later minor release are looked up only
when asked for, with a one-line error naming the version needed.
"""

from __future__ import annotations

from typing import Any

from edgeopt.errors import ConfigError, MissingDependencyError

INSTALL_HINT = "pip install 'edgeopt[tensorrt]' on a machine with an NVIDIA GPU and driver"
RTX_INSTALL_HINT = "pip install 'edgeopt[tensorrt-rtx]' (builds on any x86-64 Linux or Windows machine, GPU or not)"
BUILDERS = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx_bindings"}  # builder name -> Python module
RTX_NAME = "TensorRT-RTX"
# TensorRT-RTX's ComputeCapability members by the compute capability a user names; "current" is the GPU here
RTX_TARGETS = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120", "12.1": "SM121",
               "current": "CURRENT"}
# "By default, an engine built by TensorRT-RTX can be run on GPU devices with compute capability 8.0, 8.6,
# 8.9, 12.0, and later. To build engines for Turing devices, a compute capability of 7.5 needs to be
# specified" (TensorRT-RTX docs, "CPU-Only AOT and TensorRT-RTX Engines")
RTX_DEFAULT_TARGETS = ("8.0", "8.6", "8.9", "12.0")
RTX_MIN_CC = (7, 5)  # support matrix: Turing (7.5), Ampere (8.6), Ada (8.9), Blackwell (12.0/12.1)
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


def parse_full_version(version: str) -> tuple[int, int, int]:
    """``"11.4.1.12"`` -> ``(11, 4, 1)`` (a missing patch is 0)."""
    major, minor = parse_version(version)
    parts = str(version).split(".")
    try:
        return major, minor, int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise ConfigError(f"cannot read TensorRT version {version!r}") from None


def trt_generation(version: str, builder: str = "tensorrt") -> int:
    """10 for TensorRT 8.6-10.x (builder flags, legacy calibrators), 11 for >= 11 and for TensorRT-RTX
    (strongly typed only)."""
    if builder == "tensorrt-rtx":
        parse_version(version)
        return 11
    major, minor = parse_version(version)
    if (major, minor) < (8, 6):
        raise MissingDependencyError(f"TensorRT {version} is too old: edgeopt supports 8.6 and newer ({INSTALL_HINT})")
    return 11 if major >= 11 else 10


def import_tensorrt(builder: str | None = "tensorrt"):
    """The builder's module: ``tensorrt`` (full TensorRT), ``tensorrt_rtx_bindings`` (``"tensorrt-rtx"``),
    or for ``None`` full TensorRT where it is installed, else TensorRT-RTX; a one-line error naming the
    extra to install otherwise."""
    import importlib

    if builder is not None and builder not in BUILDERS:
        raise ConfigError(f"`builder` {builder!r} is unknown: use {' or '.join(BUILDERS)}")
    for name in ([builder] if builder is not None else list(BUILDERS)):
        try:
            return importlib.import_module(BUILDERS[name])
        except ImportError:
            continue
    if builder == "tensorrt-rtx":
        raise MissingDependencyError(f"{RTX_NAME} is not installed: {RTX_INSTALL_HINT}")
    if builder is None:
        raise MissingDependencyError(f"neither TensorRT nor {RTX_NAME} is installed: {INSTALL_HINT}, or "
                                     f"{RTX_INSTALL_HINT}")
    raise MissingDependencyError(f"TensorRT is not installed: {INSTALL_HINT}")


def builder_of(trt) -> str:
    """``"tensorrt-rtx"`` for TensorRT-RTX's module, ``"tensorrt"`` for full TensorRT (or its test double)."""
    return "tensorrt-rtx" if str(getattr(trt, "__name__", "")).startswith("tensorrt_rtx") else "tensorrt"


def builder_label(builder: str, version: str) -> str:
    """``"TensorRT 10.13.3.9"`` / ``"TensorRT-RTX 1.7.1.116"``: figures of one are never named as the other's."""
    return f"{RTX_NAME if builder == 'tensorrt-rtx' else 'TensorRT'} {version}"


def rtx_targets_rtx(trt, requested: tuple[str, ...]) -> list[tuple[str, Any]]:
    """(compute capability, ``ComputeCapability`` member) for each requested target of a TensorRT-RTX build.
    (``_rtx``: names of TensorRT-RTX's module only, checked against it by tests/trt/test_trt_double.py.)"""
    chosen = []
    for cc in requested:
        name = RTX_TARGETS.get(str(cc).lower())
        member = getattr(trt.ComputeCapability, name, None) if name else None
        if member is None:
            known = [k for k, v in RTX_TARGETS.items() if hasattr(trt.ComputeCapability, v)]
            raise ConfigError(f"`compute_capability` {cc}: {RTX_NAME} {trt.__version__} builds for {', '.join(known)}")
        chosen.append((str(cc).lower(), member))
    return chosen


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
    if builder_of(trt) == "tensorrt-rtx":
        return 0  # strongly typed always, as 11.x; its flag enum has no EXPLICIT_BATCH
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
    capability, unless built version- or hardware-compatible. A TensorRT-RTX engine runs on the
    compute capabilities it was built for (``compute_capabilities``), with the TensorRT-RTX that built it.
    """
    if built.get("builder") == "tensorrt-rtx":
        return _rtx_engine_incompatibility(built, trt_version, compute_capability)
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


def _rtx_engine_incompatibility(built: dict[str, Any], rtx_version: str, compute_capability: str) -> str | None:
    built_version = str(built.get("builder_version", ""))
    if built_version.split(".")[:3] != str(rtx_version).split(".")[:3]:
        return f"it was built with {RTX_NAME} {built_version or '?'}, this is {RTX_NAME} {rtx_version}"
    targets = [str(t) for t in built.get("compute_capabilities") or ()]
    if compute_capability not in targets:
        return (f"it was built by {RTX_NAME} for compute capabilities {', '.join(targets) or '?'}, this GPU is sm "
                f"{compute_capability} ({RTX_NAME} engines run on RTX-class GPUs, sm 7.5+; data-centre Hopper is not "
                "among them)")
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
    """Why this TensorRT cannot build for Jetson's DLA (None when it can), from NVIDIA's "Working with DLA"
    (11.4.0, 11.4.1, 11.5.0): "TensorRT 10.7 was the last 10.x release that supported DLA"; "DLA was
    unavailable in TensorRT 11.0 through 11.3"; "TensorRT 11.4.0 supported DLA only on Windows on ARM";
    11.4.1 supports it "on NVIDIA Jetson AGX Orin when using NVIDIA JetPack 7.2.2 or later"; "NVIDIA
    JetPack is not supported in TensorRT 11.5.0" (11.4.1 is the latest release that supports JetPack)."""
    version = parse_full_version(trt_version)
    if (10, 7, 9999) < version < (11, 4, 0):
        return (f"TensorRT {trt_version} has no DLA support (10.7 was the last 10.x with it, 11.4.1 brings it back "
                "for Jetson AGX Orin); use the TensorRT of your JetPack (JetPack 6: 10.3)")
    if version[:2] == (11, 4) and version < (11, 4, 1):
        return (f"TensorRT {trt_version} has DLA only on Windows on ARM (no GPU fallback, batch 1), not on Jetson; "
                "Jetson AGX Orin needs TensorRT 11.4.1 with JetPack 7.2.2+, or the 10.x of JetPack 6")
    if version >= (11, 5, 0):
        return (f"TensorRT {trt_version} does not support JetPack, so no Jetson DLA: 11.4.1 is the latest TensorRT for "
                "JetPack 7.2.2+ (Jetson AGX Orin), 10.x for JetPack 6")
    return None
