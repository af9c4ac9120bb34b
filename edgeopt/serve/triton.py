"""A Triton Inference Server model-repository entry from an ONNX model or a TensorRT engine.

``REPO/<name>/config.pbtxt`` + ``REPO/<name>/<version>/model.onnx`` (ONNX Runtime backend) or
``model.plan`` (TensorRT backend), with input/output names, data types and dims from the
artifact, ``max_batch_size`` and dynamic batching from its batch axis (an engine's profile), the
class names as a labels file, and edgeopt's preprocessing recorded as a model parameter (Triton
does not preprocess images; a client must apply it). The entry is assembled in a temporary folder
and renamed into place, so an interrupted export leaves the repository as it was.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import shutil
from pathlib import Path
from typing import Any

from edgeopt.artifacts import artifact_kind, atomic_dir, manifest_path, read_manifest
from edgeopt.errors import ArtifactError, ConfigError
from edgeopt.formats import FORMATS, format_of
from edgeopt.settings import check_settings, setting
from edgeopt.trt.model_info import InputDescription  # a field's type: check_settings reads the hints

# ONNX TensorProto data type names -> Triton's model_config.proto DataType
TRITON_DTYPES = {"FLOAT": "TYPE_FP32", "FLOAT16": "TYPE_FP16", "BFLOAT16": "TYPE_BF16", "DOUBLE": "TYPE_FP64",
                 "INT8": "TYPE_INT8", "UINT8": "TYPE_UINT8", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64", "BOOL": "TYPE_BOOL"}
# the file name each Triton platform loads from a version folder (its default ``default_model_filename``);
# which platform serves which format is the format's row (``edgeopt.formats.Format.triton_platform``)
MODEL_FILENAMES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan", "pytorch_libtorch": "model.pt"}


class InstanceKind(enum.StrEnum):
    """Where Triton runs a model's instances."""

    gpu = "KIND_GPU"
    cpu = "KIND_CPU"


@dataclasses.dataclass(frozen=True)
class TritonConfig:
    artifact: Path  # the CLI's argument, not a setting of its own
    repo: Path = setting(help="Triton model repository folder.")
    describe: InputDescription | None = None  # for an ONNX without an edgeopt manifest or metadata
    name: str | None = setting(None, help="Model name (default: the artifact's file stem).")
    version: int = setting(1, low=1, example="1 (Triton model versions start at 1)", help="Model version folder.")
    max_batch_size: int | None = setting(None, low=0, high=1_000_000, help="Default: the engine profile's max, or 32.")
    dynamic_batching: bool = setting(True, help="Let Triton batch requests that arrive together (up to `max_batch_size`).")
    preferred_batch_sizes: tuple[int, ...] = setting((), low=1, high=1_000_000, example="8,16", help="e.g. 8,16")
    max_queue_delay_us: int = setting(100, low=0, high=10**9, help="How long a request may wait for others to batch with, "
                                      "microseconds.")
    instances: int = setting(1, low=1, high=1024, help="Model instances.")
    instance_kind: InstanceKind = setting(InstanceKind.gpu, help="KIND_GPU or KIND_CPU (ONNX Runtime on the CPU).")
    force: bool = setting(False, help="Replace a model of the same name in the repository.")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclasses.dataclass(frozen=True)
class TritonResult:
    model_dir: Path
    config_path: Path
    model_path: Path
    platform: str
    max_batch_size: int


def _model_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).strip("._-")
    return name or "model"


def _describe(path: Path, kind: str, config: TritonConfig) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The artifact's I/O (name, ONNX dtype name, shape with -1 for dynamic) and what it is: classes,
    preprocessing, sha256, precision. Any classifier ONNX is taken as ``build-engine`` takes it:
    from its manifest, else its metadata, else ``config.describe``; an engine from its manifest."""
    if kind == "engine":
        manifest = read_manifest(path, expect_kind=kind)
        if manifest.extra.get("builder") == "tensorrt-rtx":  # Triton's tensorrt_plan backend is full TensorRT's
            raise ArtifactError(f"{path}: a TensorRT-RTX engine, which Triton's TensorRT backend cannot load; serve the "
                                "ONNX model, or an engine built with full TensorRT (`builder` tensorrt)")
        io = manifest.extra.get("io")
        if not io:
            raise ArtifactError(f"{path}: its manifest has no I/O record (built by an older edgeopt): rebuild it")
        return io, {"classes": list(manifest.classes), "preprocess": manifest.preprocess, "sha256": manifest.sha256,
                    "precision": manifest.precision, "profile": manifest.extra.get("profile", {}),
                    "tensorrt_version": manifest.extra.get("tensorrt_version"),
                    "compute_capability": manifest.extra.get("compute_capability")}
    from edgeopt.trt.model_info import read_onnx_info

    info = read_onnx_info(path, config.describe, needed_by="clients of the Triton model")
    return info.io, {"classes": info.classes, "preprocess": info.preprocess, "sha256": info.sha256,
                     "precision": info.precision, "described_by": info.source}


def _batching(path: Path, kind: str, about: dict[str, Any], io: dict, config: TritonConfig) -> int:
    """Triton's ``max_batch_size``: 0 when the artifact has no batch axis (a fixed batch)."""
    first = io["input"]["shape"][0] if io["input"]["shape"] else 1
    if kind == "engine":
        profile = about["profile"]
        lo, hi = profile.get("min", [1])[0], profile.get("max", [1])[0]
        has_axis = first == -1 and lo == 1
        limit = hi
    else:
        has_axis, limit = first == -1, 32
    if not has_axis:
        if config.dynamic_batching:
            fixed = f"a fixed batch of {first}" + (f" (profile {lo}..{hi})" if kind == "engine" else "")
            raise ConfigError(f"{path.name} has no batch axis ({fixed}), so Triton cannot batch it dynamically: "
                              "export it with a dynamic batch (engines: a profile from 1), or pass `no_dynamic_batching`")
        return 0
    if config.max_batch_size is not None:
        if config.max_batch_size > limit and kind == "engine":
            raise ConfigError(f"`max_batch_size` {config.max_batch_size} is above the engine profile's max {limit}: "
                              "rebuild the engine with `max_batch`")
        return config.max_batch_size
    return limit


def _tensor(io: dict, has_batch: bool, label_file: str | None = None) -> str:
    if io["dtype"] not in TRITON_DTYPES:
        raise ArtifactError(f"tensor {io['name']}: data type {io['dtype']} has no Triton equivalent")
    dims = io["shape"][1:] if has_batch else io["shape"]
    lines = [f'    name: "{io["name"]}"', f"    data_type: {TRITON_DTYPES[io['dtype']]}",
             f"    dims: [ {', '.join(str(d) for d in dims)} ]"]
    if label_file:
        lines.append(f'    label_filename: "{label_file}"')
    return "  {\n" + "\n".join(lines) + "\n  }"


def render_config(name: str, platform: str, io: dict, max_batch: int, config: TritonConfig, preprocess: dict,
                  classes: list[str], source: dict[str, Any]) -> str:
    """The ``config.pbtxt`` text (protobuf text format of Triton's ``ModelConfig``)."""
    has_batch = max_batch > 0
    parts = [f'name: "{name}"', f'platform: "{platform}"', f"max_batch_size: {max_batch}",
             f"version_policy: {{ specific: {{ versions: [ {config.version} ] }} }}",
             "input [\n" + _tensor(io["input"], has_batch) + "\n]",
             "output [\n" + _tensor(io["output"], has_batch, "labels.txt" if classes else None) + "\n]",
             f"instance_group [\n  {{\n    count: {config.instances}\n    kind: {config.instance_kind}\n  }}\n]"]
    if has_batch and config.dynamic_batching:
        preferred = [b for b in config.preferred_batch_sizes if b <= max_batch]
        batching = "dynamic_batching {\n"
        if preferred:
            batching += f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]\n"
        parts.append(batching + f"  max_queue_delay_microseconds: {config.max_queue_delay_us}\n}}")
    params = {"edgeopt_preprocess": json.dumps(preprocess, sort_keys=True), "edgeopt_source": json.dumps(source, sort_keys=True)}
    for key, value in params.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{escaped}" }}\n}}')
    return "\n".join(parts) + "\n"


def _platform(path: Path, kind: str) -> str:
    """The Triton platform of the artifact's format (from its manifest; an ONNX without one is the plain ONNX row)."""
    row = format_of(read_manifest(path, verify=False)) if manifest_path(path).exists() else FORMATS.get(kind)
    if row is None or row.triton_platform is None:
        servable = sorted({f.kind for f in FORMATS.values() if f.triton_platform})
        raise ConfigError(f"{path}: Triton serves {' or '.join(servable)} artifacts, not a {kind}; "
                          "export the checkpoint first (edgeopt export)")
    return row.triton_platform


def export_triton(config: TritonConfig) -> TritonResult:
    """Write (atomically) the repository entry for ``config.artifact``."""
    path = Path(config.artifact)
    kind = artifact_kind(path)
    platform = _platform(path, kind)
    name = _model_name(config.name or path.name.split(".")[0])
    if config.name is not None and name != config.name:
        raise ConfigError(f"`name` {config.name!r}: use letters, digits, '_', '-' and '.' (e.g. {name!r})")
    repo = Path(config.repo)
    target = repo / name
    if target.exists() and not config.force:
        what = "another model" if (target / "config.pbtxt").exists() else "files"
        raise ConfigError(f"{target} already holds {what} named {name!r}: pass `force` to replace it, or `name` another")
    io, about = _describe(path, kind, config)
    max_batch = _batching(path, kind, about, io, config)
    filename = MODEL_FILENAMES[platform]
    source = {"artifact": str(path), "kind": kind,
              **{k: v for k, v in about.items() if k not in ("classes", "preprocess", "profile")}}
    classes = list(about["classes"])
    text = render_config(name, platform, io, max_batch, config, about["preprocess"], classes, source)
    repo.mkdir(parents=True, exist_ok=True)
    with atomic_dir(target) as staging:
        (staging / str(config.version)).mkdir()
        shutil.copy2(path, staging / str(config.version) / filename)
        (staging / "config.pbtxt").write_text(text)
        if classes:
            (staging / "labels.txt").write_text("\n".join(classes) + "\n")
    return TritonResult(target, target / "config.pbtxt", target / str(config.version) / filename, platform, max_batch)
