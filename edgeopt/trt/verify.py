"""Engines users can trust: a freshly built engine against its FP32 source ONNX on real images.

``build-engine --verify DIR`` runs the engine and the FP32 ONNX it comes from (ONNX Runtime) on the
images under ``DIR``. Labelled images (``<class>/<image>`` of the model's classes) give both
macro-F1s and the drop, judged against ``max_f1_drop``; unlabelled ones (any other folder of
images) give the share of images whose top-1 class changed, judged against ``max_disagreement``.
Both report top-1 agreement and the largest |Δlogit|. An engine past its budget is not handed over:
``build_engine`` builds under a staging name and moves it to the final name only when it passes.

The FP32 reference of an INT8 engine built from a Q/DQ ONNX is that ONNX's FP32 parent (from its
manifest): a Q/DQ model run in ONNX Runtime is itself quantized, and would hide what quantization
lost. Without the parent, the given ONNX is the reference, and the record says so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgeopt.errors import ConfigError

from edgeopt.runtime.scoring import ImageSet
from edgeopt.settings import check_settings, setting

if TYPE_CHECKING:
    from edgeopt.artifacts import Manifest


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    data: Path = setting(key="verify", help="Run the engine against its FP32 ONNX on these images; refuse it past the budget.")
    max_f1_drop: float = setting(0.01, low=0.0, high=1.0, high_open=True, example="0.01 (a macro-F1 drop)",
                                 help="`verify` budget on labelled images: macro-F1 drop against the FP32 ONNX.")
    max_disagreement: float = setting(0.02, low=0.0, high=1.0, high_open=True, example="0.02 (a share of the images)",
                                      help="`verify` budget on unlabelled images: share of top-1 changes.")
    batch_size: int = setting(32, low=1, high=65_536, help="Images per batch when running the engine and the ONNX.")

    def __post_init__(self) -> None:
        check_settings(self)
        if not self.data.is_dir():
            raise ConfigError(f"`verify` {self.data}: no such folder of images")


def reference_onnx(onnx: Path) -> tuple[Path, str]:
    """The FP32 ONNX to judge an engine built from ``onnx`` against, and where it came from."""
    from edgeopt.artifacts import read_manifest

    try:
        manifest = read_manifest(onnx, expect_kind="onnx")
    except Exception:  # a foreign ONNX: no manifest, no parent
        return onnx, "the ONNX it was built from (it has no manifest)"
    if manifest.precision == "fp32":
        return onnx, "the FP32 ONNX it was built from"
    parent = Path(manifest.parent["path"]) if manifest.parent else None
    if parent is not None and parent.is_file():
        try:
            if read_manifest(parent, expect_kind="onnx").precision == "fp32":
                return parent, f"the FP32 parent of its {manifest.precision.upper()} ONNX"
        except Exception:  # a parent that changed since: fall through to the ONNX itself
            pass
    return onnx, f"its {manifest.precision.upper()} ONNX (the FP32 parent is missing or changed)"


def _images(data: Path, classes: list[str]) -> ImageSet:
    """Labelled when every sub-folder of ``data`` is one of ``classes``; else every image under it, unlabelled."""
    from edgeopt.data.folder import list_images
    from edgeopt.runtime.scoring import labelled_folder

    folders = [p for p in data.iterdir() if p.is_dir()]
    if folders and all(p.name in classes for p in folders):
        images = labelled_folder(data, classes)
        if images.paths:
            return images
    paths = list_images(data)
    if not paths:
        raise ConfigError(f"`verify` {data} holds no images")
    return ImageSet(paths)


def verify_engine(engine: Path, reference: Path, config: VerifyConfig, provenance: str = "") -> dict[str, Any]:
    """Run both on the images (``runtime.judge``); the comparison, the budget and whether the engine passed."""
    from edgeopt.artifacts import read_manifest
    from edgeopt.data.presets import Preprocess
    from edgeopt.runtime.judge import judge_against_parent
    from edgeopt.runtime.ort_runner import make_session
    from edgeopt.trt.runner import TensorRTRunner

    manifest = read_manifest(engine, expect_kind="engine")
    classes = list(manifest.classes)
    images = _images(config.data, classes)
    profile_max = int(manifest.extra.get("profile", {}).get("max", [config.batch_size])[0])
    batch = max(1, min(config.batch_size, profile_max))
    session = make_session(reference)  # the FP32 ONNX as ONNX Runtime optimizes it
    name = session.get_inputs()[0].name
    judged = judge_against_parent(TensorRTRunner(engine).run, lambda x: session.run(None, {name: x})[0], images,
                                  classes=classes, preprocess=Preprocess.from_dict(manifest.preprocess), batch_size=batch)
    record: dict[str, Any] = {"data": str(config.data), "images": judged.images, "labelled": judged.labelled,
                              "reference": str(reference), "reference_is": provenance,
                              "top1_agreement": round(judged.agreement, 4),
                              "max_abs_logit_diff": round(judged.max_abs_logit_diff, 5)}
    if judged.labelled:
        record.update({"f1_reference": round(judged.f1_parent, 4), "f1_engine": round(judged.f1_candidate, 4),
                       "drop": round(judged.drop, 4), "max_f1_drop": config.max_f1_drop,
                       "passed": judged.drop <= config.max_f1_drop + 1e-12})
    else:
        record.update({"disagreement": round(judged.disagreement, 4), "max_disagreement": config.max_disagreement,
                       "passed": judged.disagreement <= config.max_disagreement + 1e-12})
    return record


def describe(record: dict[str, Any]) -> str:
    """One line: the figures and the budget."""
    if record["labelled"]:
        figures = (f"macro-F1 {record['f1_engine']:.4f} against {record['f1_reference']:.4f} for the FP32 ONNX "
                   f"(a drop of {record['drop']:.4f}; budget {record['max_f1_drop']})")
    else:
        figures = (f"top-1 class changed on {record['disagreement']:.1%} of the images "
                   f"(budget {record['max_disagreement']:.1%})")
    return (f"{figures}, top-1 agreement {record['top1_agreement']:.1%}, max |Δlogit| {record['max_abs_logit_diff']:.4g} "
            f"on {record['images']} images of {record['data']}")


def verify_and_hand_over(staged: Path, final: Path, onnx: Path, manifest: Manifest, parsed: Path, config: VerifyConfig,
                          log: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
    """``build_engine``'s last step with ``verify``: run the staged engine against its FP32 source; move it
    to ``final`` when within budget, else remove it (an engine that was not judged never takes the name)."""
    import os

    from edgeopt.artifacts import manifest_path, write_artifact_manifest
    from edgeopt.errors import VerificationError

    reference, provenance = reference_onnx(onnx)
    try:
        record = verify_engine(staged, reference, config, provenance)
    except BaseException:
        staged.unlink(missing_ok=True)
        manifest_path(staged).unlink(missing_ok=True)
        raise
    if not record["passed"]:
        staged.unlink(missing_ok=True)
        manifest_path(staged).unlink(missing_ok=True)
        raise VerificationError(f"engine refused, not written to {final}: {describe(record)}")
    os.replace(staged, final)
    manifest.extra["verification"] = record
    write_artifact_manifest(final, manifest, parent=parsed)
    manifest_path(staged).unlink(missing_ok=True)
    log(f"verified against {provenance}: {describe(record)}")
    return final, record
