"""Soft-label bank: the teachers' logits on N augmented views of every image, computed once.

``make_soft_labels(SoftLabelConfig)`` draws N views per image (``edgeopt.data.views``: crop box in the
image's own coordinates, flip, brightness, a seed per view), renders each at every teacher's own
input size and normalisation, and stores the views and the logits (float16) in one safetensors
file (``BANK.bank``; no pickle, nothing to execute) with a manifest beside it: the teachers and
their sha256, every image's relative path and sha256, the classes, N and the augmentation
settings. A student trained with ``--soft-labels BANK`` crops the same regions at its own size
and learns the stored targets without running a teacher (FKD, Shen & Xing, ECCV 2022).

The bank is made in fixed chunks of images, each written atomically into ``BANK.bank.partial/``;
an interrupted run continues from the chunks it has (same chunks, same batches, same bytes), and
the bank appears under its name only when complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifacts import (
    Manifest,
    atomic_path,
    atomic_write_json,
    read_manifest,
    require_kind,
    sha256_file,
    tool_versions,
    write_artifact_manifest,
)
from edgeopt.data.folder import FolderScan, scan_folder
from edgeopt.errors import ArtifactError, ConfigError, DataError, EdgeoptWarning
from edgeopt.settings import check_settings, choices, setting
from edgeopt.train.config import Mix

BANK_FORMAT = "edgeopt-soft-labels-1"


Precision = choices("Precision", "fp32", "bf16", "auto",
                    doc="The teachers' arithmetic: fp32, bf16 (autocast, channels-last), or auto (bf16 where the CPU or GPU has bf16 units).")


PRECISIONS = tuple(p.value for p in Precision)


@dataclasses.dataclass(frozen=True)
class SoftLabelConfig:
    teachers: Sequence[Path] = setting(help="Teacher checkpoint(s); their logits are averaged in training.")
    data: Path = setting(help="Folder of <class>/<image> crops.")
    out: Path = setting(Path("runs/soft_labels.bank"), help="The bank file (NAME.bank) and its manifest NAME.bank.json.")
    views: int = setting(20, low=1, high=100_000, help="Augmented views per image: one per student epoch (the bank optimize "
                         "makes has 20).")
    # the augmentation of a pretrained student (``TrainConfig``'s defaults with ``pretrained``), which
    # is what ``optimize`` and ``soft-labels`` distil into; a scratch student's is 0.35 and 0
    scale_min: float = setting(0.6, low=0.05, high=1.0, help="Smallest random crop, as a share of the image (train's default for "
                               "pretrained students, and optimize's bank).")
    brightness: float = setting(0.2, low=0.0, high=1.0, help="Brightness jitter (train's default for pretrained students, and "
                                "optimize's bank).")
    seed: int = setting(0, low=0, high=2**32 - 1, help="Seed of the views (the student's seed, so seeds do not share views).")
    batch_size: int = setting(64, low=1, high=65_536, help="Batch size.")
    device: str = setting("auto", help="auto, cpu or cuda.")
    chunk_images: int = setting(64, low=1, high=1_000_000, help="Images per resumable chunk.")
    tta_flip: bool = setting(False, help="Store the mean of the teachers' logits on each view and its mirror image (the student "
                             "pays nothing).")
    mix: Mix = setting(Mix.none, help="Also store each view blended with another image's (mixup or cutmix) and the teachers' "
                       "logits on it: a bank for `kd_mix`.")
    mix_alpha: float = setting(1.0, low=0.0, low_open=True, high=100.0, example="1", help="The blend ratio's Beta(alpha, alpha).")
    precision: Precision = setting(Precision.fp32, help="The teachers' arithmetic: fp32, bf16, or auto (bf16 where the CPU or GPU "
                                   "has bf16 units).")

    def __post_init__(self) -> None:
        if not self.teachers:
            raise ConfigError("a soft-label bank needs at least one teacher checkpoint")
        check_settings(self)
        require_kind(self.out, "soft-labels", "soft-label bank")

    def augmentation(self) -> dict[str, Any]:
        return {"scale_min": self.scale_min, "brightness": self.brightness, "flip": True, "seed": self.seed}



def teacher_precision(requested: str, device: Any) -> str:
    """What the teachers compute in: bf16 only where this device has bf16 arithmetic (a CPU's AVX-512
    BF16 or AMX, a GPU that supports it); asked for where it has none, a warning and FP32."""
    import torch

    if requested == "fp32":
        return "fp32"
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
    else:
        supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and bool(_cpu_bf16_units())
    if supported:
        return "bf16"
    if requested == "bf16":
        warnings.warn(f"`precision` bf16: this {device.type.upper()} has no bf16 arithmetic (AVX-512 BF16 or AMX); the "
                      "teachers run in FP32", EdgeoptWarning, stacklevel=3)
    return "fp32"


def _cpu_bf16_units() -> list[str]:
    """The CPU's bf16 feature flags (Linux), e.g. ``avx512_bf16``, ``amx_bf16``."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in flags if f in ("avx512_bf16", "amx_bf16")]


@dataclasses.dataclass(frozen=True)
class BankResult:
    path: Path
    images: int
    views: int
    teachers: int
    seconds: float  # this run's teacher time (0 when every chunk was there already)
    views_per_second: float  # teacher forward passes (views x teachers) per second in this run
    resumed_chunks: int
    bytes: int
    reused: bool = False  # the bank was there already, made with these settings from these files


def image_keys(scan: FolderScan) -> list[str]:
    """Each sample's path relative to the data root, POSIX-style: the bank's key for it."""
    return [s.path.relative_to(scan.root).as_posix() for s in scan.samples]


def make_soft_labels(config: SoftLabelConfig, progress: Callable[[int, int], None] | None = None) -> BankResult:
    """Write the bank for ``config.data`` (resuming a partial one made with the same settings)."""
    from edgeopt.train.distill import load_teachers
    from edgeopt.device import resolve_device

    device = resolve_device(config.device)
    scan = scan_folder(config.data)
    teachers = load_teachers(config.teachers, scan.classes, device)
    keys = image_keys(scan)
    files = [[key, sha256_file(s.path)] for key, s in zip(keys, scan.samples)]
    precision = teacher_precision(config.precision, device)
    settings = {"format": BANK_FORMAT, "classes": scan.classes, "views": config.views, "augmentation": config.augmentation(),
                "teacher_tta": "flip" if config.tta_flip else None, "teacher_precision": precision,
                "mix": {"mode": config.mix, "alpha": config.mix_alpha} if config.mix != "none" else None,
                "chunk_images": config.chunk_images, "batch_size": config.batch_size,
                "teachers": [{"path": str(t.path), "sha256": sha256_file(t.path), "preprocess": t.preprocess.to_dict()}
                             for t in teachers],
                "files_sha256": hashlib.sha256(json.dumps(files).encode()).hexdigest()}
    settings = json.loads(json.dumps(settings))  # as it reads back (tuples are lists in JSON)
    if _complete_bank(config.out, settings, files):
        if progress is not None:
            progress(len(keys), len(keys))
        return BankResult(config.out, len(keys), config.views, len(teachers), 0.0, float("nan"), 0,
                          config.out.stat().st_size, reused=True)
    partial = _partial_dir(config.out, settings)
    chunks = range(0, len(keys), config.chunk_images)
    resumed, spent, forwards = 0, 0.0, 0
    for k, start in enumerate(chunks):
        chunk_path = partial / f"chunk-{k:05d}.safetensors"
        stop = min(start + config.chunk_images, len(keys))
        if chunk_path.exists():
            resumed += 1
        else:
            t0 = time.perf_counter()
            arrays = _chunk(scan, keys, range(start, stop), teachers, config, device, precision)
            spent += time.perf_counter() - t0
            forwards += arrays["logits"].size // len(scan.classes) * (2 if config.mix != "none" else 1)
            _save_tensors(chunk_path, arrays)
        if progress is not None:
            progress(stop, len(keys))
    arrays = [_load_tensors(partial / f"chunk-{k:05d}.safetensors") for k in range(len(chunks))]
    _save_tensors(config.out, {name: np.concatenate([a[name] for a in arrays]) for name in arrays[0]})
    manifest = Manifest(kind="soft-labels", classes=list(scan.classes), tools=tool_versions("torch", "torchvision", "timm"),
                        extra={**{k: v for k, v in settings.items() if k != "files_sha256"}, "files": files,
                               "logits_dtype": "float16", "shape": {"images": len(keys), "views": config.views,
                                                                    "teachers": len(teachers), "classes": len(scan.classes)}})
    write_artifact_manifest(config.out, manifest)
    shutil.rmtree(partial)
    return BankResult(config.out, len(keys), config.views, len(teachers), spent, forwards / spent if spent else float("nan"),
                      resumed, config.out.stat().st_size)


def _complete_bank(out: Path, settings: dict[str, Any], files: list[list[str]]) -> bool:
    """Whether ``out`` is a finished bank of exactly these settings and files (then nothing is recomputed)."""
    from edgeopt.artifacts import manifest_path

    if not out.exists() or not manifest_path(out).exists():
        return False
    try:
        extra = read_manifest(out, expect_kind="soft-labels").extra
    except ArtifactError:
        return False
    recorded = {k: extra.get(k) for k in settings if k != "files_sha256"}
    return recorded == {k: v for k, v in settings.items() if k != "files_sha256"} and extra.get("files") == files


def _partial_dir(out: Path, settings: dict[str, Any]) -> Path:
    """The folder of finished chunks; one made with other settings is an error naming what differs."""
    partial = out.with_name(out.name + ".partial")
    record = partial / "settings.json"
    if record.exists():
        try:
            before = json.loads(record.read_text())
        except (OSError, ValueError):
            before = {}
        if before != settings:
            differ = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
            raise ConfigError(f"{partial} holds a partial bank made with other settings ({', '.join(differ)}): "
                              "remove it, or run with the settings it was made with")
    else:
        partial.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record, settings)
    return partial


def _chunk(scan: FolderScan, keys: list[str], indices: range, teachers: list[Any], config: SoftLabelConfig,
           device: Any, precision: str = "fp32") -> dict[str, np.ndarray]:
    """``views`` (n x V x 6, float32) and every teacher's ``logits`` on them (n x V x T x C, float16); with
    ``tta_flip`` the mean of the logits on the view and on its mirror image. With ``mix`` also each
    view's ``blends`` (n x V x 6: a partner among all the bank's images, the ratio, the CutMix box) and
    the teachers' ``blend_logits`` on the blended views (the partner's own view of the same index)."""
    import torch

    from edgeopt.data.loaders import cache_preprocess, decode_all
    from edgeopt.data.views import blend_seed, render_blend, render_view, sample_blend, sample_views
    from edgeopt.train.distill import view_for

    paths = [scan.samples[i].path for i in indices]
    views = np.stack([sample_views(config.seed, keys[i], range(config.views), config.scale_min, config.brightness)
                      for i in indices])
    shape = (len(paths), config.views, len(teachers), len(scan.classes))
    out: dict[str, np.ndarray] = {"views": views, "logits": np.zeros(shape, dtype=np.float16)}
    partners: list[int] = []
    if config.mix != "none":
        out["blends"] = np.stack([[sample_blend(blend_seed(config.seed, keys[i], v), len(keys), config.mix, config.mix_alpha)
                                   for v in range(config.views)] for i in indices]).astype(np.float32)
        out["blend_logits"] = np.zeros(shape, dtype=np.float16)
        partners = sorted({int(p) for p in out["blends"][..., 0].ravel()})
    partner_views = {p: sample_views(config.seed, keys[p], range(config.views), config.scale_min, config.brightness)
                     for p in partners}
    pairs = [(i, v) for i in range(len(paths)) for v in range(config.views)]
    # bf16 pays on CPUs with bf16 units in channels-last layout (oneDNN's fast path; benchmarks/README.md)
    layout = torch.channels_last if precision == "bf16" else torch.contiguous_format
    for t, teacher in enumerate(teachers):
        cache = cache_preprocess(teacher.preprocess)
        images = decode_all(paths, cache)
        partner_images = dict(zip(partners, decode_all([scan.samples[p].path for p in partners], cache))) if partners else {}
        size = teacher.preprocess.size
        teacher.model.to(memory_format=layout)

        def run(rendered: list) -> np.ndarray:
            batch = view_for(torch.stack(rendered).to(device), teacher.preprocess).contiguous(memory_format=layout)
            with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = teacher.model(batch).float()
                if config.tta_flip:
                    logits = (logits + teacher.model(batch.flip(-1)).float()) / 2
            return logits.cpu().numpy()

        for b in range(0, len(pairs), config.batch_size):
            part = pairs[b:b + config.batch_size]
            plain = [render_view(images[i], views[i, v], size) for i, v in part]
            for (i, v), row in zip(part, run(plain)):
                out["logits"][i, v, t] = row
            if partners:
                blended = []
                for (i, v), view in zip(part, plain):
                    p = int(out["blends"][i, v, 0])
                    blended.append(render_blend(view, render_view(partner_images[p], partner_views[p][v], size), out["blends"][i, v]))
                for (i, v), row in zip(part, run(blended)):
                    out["blend_logits"][i, v, t] = row
    return out


def _save_tensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save

    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata={"format": BANK_FORMAT})
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _load_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as handle:
            if (handle.metadata() or {}).get("format") != BANK_FORMAT:
                raise ArtifactError(f"{path}: not an edgeopt soft-label bank; make one with edgeopt soft-labels")
            return {k: handle.get_tensor(k) for k in handle.keys()}
    except ArtifactError:
        raise
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise ArtifactError(f"{path}: not a readable soft-label bank ({str(exc).splitlines()[0]}); make it again "
                            "with edgeopt soft-labels") from None


@dataclasses.dataclass
class SoftLabelBank:
    """A bank read back: views (I x V x 6), logits (I x V x T x C) and what it was made from."""

    path: Path
    manifest: Manifest
    views: np.ndarray
    logits: np.ndarray
    rows: np.ndarray | None = None  # set by the trainer: the bank row of each training image
    blends: np.ndarray | None = None  # I x V x 6 (``data.views.BLEND_FIELDS``) in a bank made with ``mix``
    blend_logits: np.ndarray | None = None  # I x V x T x C: the teachers on the blended views

    @property
    def num_views(self) -> int:
        return int(self.views.shape[1])

    @property
    def augmentation(self) -> dict[str, Any]:
        return dict(self.manifest.extra["augmentation"])

    def record(self) -> dict[str, Any]:
        """What a student's manifest keeps of the bank it learned from."""
        extra = self.manifest.extra
        return {"path": str(self.path), "sha256": self.manifest.sha256, "views": self.num_views,
                "teachers": [{"path": t["path"], "sha256": t["sha256"]} for t in extra["teachers"]],
                "augmentation": self.augmentation}

    def rows_for(self, scan: FolderScan) -> np.ndarray:
        """The bank row of every sample of ``scan``; refuses other classes, images not in the bank, changed images."""
        if list(scan.classes) != list(self.manifest.classes):
            raise DataError(f"soft-label bank {self.path} was made for classes {self.manifest.classes}, "
                            f"the data has {scan.classes}: make a bank from this data")
        index = {key: (row, sha) for row, (key, sha) in enumerate(self.manifest.extra["files"])}
        keys = image_keys(scan)
        missing = [k for k in keys if k not in index]
        if missing:
            raise DataError(f"soft-label bank {self.path} has no views of {len(missing)} training image(s) "
                            f"(first: {missing[0]}): it was made from other data; make a bank from {scan.root}")
        for key, sample in zip(keys, scan.samples):
            if sha256_file(sample.path) != index[key][1]:
                raise DataError(f"soft-label bank {self.path}: image {key} changed since the bank was made; "
                                "make the bank again")
        return np.asarray([index[k][0] for k in keys], dtype=np.int64)


def read_bank(path: str | Path) -> SoftLabelBank:
    """Open a bank (its manifest's sha256 checked) and check its arrays have the recorded shape."""
    path = Path(path)
    manifest = read_manifest(path, expect_kind="soft-labels")
    arrays = _load_tensors(path)
    shape = manifest.extra.get("shape", {})
    views, logits = arrays.get("views"), arrays.get("logits")
    expected = (shape.get("images"), shape.get("views"), shape.get("teachers"), shape.get("classes"))
    if views is None or logits is None or logits.shape != expected or views.shape != expected[:2] + (6,):
        raise ArtifactError(f"{path}: its arrays do not have the shape its manifest records; make the bank again")
    blends, blend_logits = arrays.get("blends"), arrays.get("blend_logits")
    if (manifest.extra.get("mix") is not None) != (blends is not None) or (blends is not None and (
            blends.shape != expected[:2] + (6,) or blend_logits is None or blend_logits.shape != expected)):
        raise ArtifactError(f"{path}: its blends do not match its manifest's mix setting; make the bank again")
    if shape.get("classes") != len(manifest.classes):
        raise ArtifactError(f"{path}: holds {shape.get('classes')} logits per view for the {len(manifest.classes)} classes its "
                            "manifest names; make the bank again")
    every = logits if blend_logits is None else np.concatenate([logits, blend_logits], axis=1)
    if not np.isfinite(every).all():
        bad = int(np.count_nonzero(~np.isfinite(every).all(axis=(1, 2, 3))))
        raise ArtifactError(f"{path}: {bad} image(s) have NaN or infinite teacher logits; check the teacher "
                            "(edgeopt eval) and make the bank again")
    return SoftLabelBank(path, manifest, views, logits, blends=blends, blend_logits=blend_logits)
