"""Knowledge distillation: KL to the teachers' temperature-softened outputs.

Teachers may run at their own (larger) input size and normalisation on the same augmented view;
several teachers average their soft targets; ``true-label`` mode applies the KD term only where
the (averaged) teacher predicts the true class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeopt.data.presets import Preprocess
from edgeopt.data.views import render_view, sample_view, view_seed
from edgeopt.errors import ConfigError

KD_MODES = ("all", "true-label")
KD_LOSSES = ("kl", "dist")  # KL to the softened targets (Hinton); DIST's Pearson relations (Huang et al., NeurIPS 2022)


@dataclasses.dataclass(frozen=True)
class KDConfig:
    """Distillation: the loss (temperature, weight, mode) and where the soft targets come from, for
    ``train``, ``prune``/``decompose`` fine-tuning, ``qat`` and ``search`` alike: ``teachers`` run
    online on every step, or ``soft_labels``, a bank of their stored targets (``edgeopt soft-labels``),
    so no teacher runs. Neither: no distillation (a stage with a teacher of its own, e.g. the
    uncompressed model for fine-tuning, puts it in with ``with_teachers``)."""

    temperature: float = 4.0
    alpha: float = 0.7  # weight of the KD term; (1 - alpha) goes to the hard-label loss; 1: pure KD (function matching)
    mode: str = "all"
    teachers: tuple[Path, ...] = ()
    soft_labels: Path | None = None
    loss: str = "kl"  # ``KD_LOSSES``
    class_weighted: bool = False  # weigh each image's KD term by its class's weight (rare classes count more)
    mix: str = "none"  # function matching: each view blended with another image's (``data.views.MIX_MODES``), teacher and student alike
    mix_alpha: float = 1.0  # the blend ratio's Beta(alpha, alpha)

    def __post_init__(self) -> None:
        object.__setattr__(self, "teachers", tuple(Path(t) for t in self.teachers))
        object.__setattr__(self, "soft_labels", Path(self.soft_labels) if self.soft_labels else None)
        if self.soft_labels is not None and self.teachers:
            raise ConfigError("soft labels come from teachers online or from a bank, not both: pass `teacher` or `soft_labels`")
        if not self.temperature > 0:
            raise ConfigError(f"`kd_temperature` {self.temperature} must be > 0, e.g. 4")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"`kd_alpha` {self.alpha} is out of range: use 0..1, e.g. 0.7")
        if self.mode not in KD_MODES:
            raise ConfigError(f"`kd` {self.mode!r} is unknown: use one of {', '.join(KD_MODES)}")
        if self.loss not in KD_LOSSES:
            raise ConfigError(f"`kd_loss` {self.loss!r} is unknown: use one of {', '.join(KD_LOSSES)}")
        if self.loss == "dist" and self.mode != "all":
            raise ConfigError(f"`kd_loss` dist with `kd` {self.mode}: DIST matches relations across the whole batch "
                              "(each class's column too), so it cannot leave out the images the teacher gets wrong; use `kd` all")
        if self.loss == "dist" and self.class_weighted:
            raise ConfigError("`kd_loss` dist with `kd_class_weighted`: DIST's relations have no per-image term to weigh; "
                              "use `kd_loss` kl for class-weighted KD")
        from edgeopt.data.views import MIX_MODES

        if self.mix not in MIX_MODES:
            raise ConfigError(f"`kd_mix` {self.mix!r} is unknown: use one of {', '.join(MIX_MODES)}")
        if not 0 < self.mix_alpha <= 100:
            raise ConfigError(f"`kd_mix_alpha` {self.mix_alpha} is out of range: use (0, 100], e.g. 1")
        if self.mix != "none" and self.alpha != 1.0:
            raise ConfigError(f"`kd_mix` {self.mix} with `kd_alpha` {self.alpha}: a blend of two images has no single label "
                              "to learn; function matching learns the teacher alone: use `kd_alpha` 1")
        if self.loss == "dist" and self.alpha == 0:
            raise ConfigError("`kd_loss` dist with `kd_alpha` 0: the distillation term would have no weight; "
                              "give `kd_alpha` > 0 (1: DIST alone)")

    @property
    def enabled(self) -> bool:
        return bool(self.teachers) or self.soft_labels is not None

    def with_teachers(self, *teachers: str | Path) -> KDConfig:
        """This config with ``teachers`` online, unless a bank already supplies the targets."""
        return self if self.soft_labels is not None else dataclasses.replace(self, teachers=tuple(Path(t) for t in teachers))

    def to_dict(self) -> dict:
        return {"temperature": self.temperature, "alpha": self.alpha, "mode": self.mode, "loss": self.loss,
                "class_weighted": self.class_weighted, "mix": self.mix, "mix_alpha": self.mix_alpha, "teachers": [str(t) for t in self.teachers],
                "soft_labels": str(self.soft_labels) if self.soft_labels else None}


def soft_targets(teacher_logits: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
    """Average of the teachers' softmax(logits / T)."""
    probs = [F.softmax(t.float() / temperature, dim=1) for t in teacher_logits]
    return torch.stack(probs).mean(0)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: Sequence[torch.Tensor],
    targets: torch.Tensor,
    config: KDConfig,
    hard_loss: torch.Tensor,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``alpha * KD + (1 - alpha) * hard_loss``, KD being ``config.loss``:

    - ``kl``: ``T^2 * KL(teacher || student)`` on the softened outputs. The T^2 factor keeps the soft
      term's gradient scale independent of T (Hinton et al.). In ``true-label`` mode samples the teacher
      gets wrong contribute no KD term (averaged over the whole batch, so the term shrinks rather than
      re-weights). With ``class_weighted``, each image's term is weighed by its class's weight
      (``class_weights``, normalised to a batch mean of 1).
    - ``dist``: DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022):
      ``T^2 * ((1 - mean Pearson over images) + (1 - mean Pearson over classes))`` of the softened
      probabilities: the teacher's ranking within an image and across the batch, not its exact values.
    """
    T = config.temperature
    target_probs = soft_targets(teacher_logits, T)
    if config.loss == "dist":
        student_probs = F.softmax(student_logits.float() / T, dim=1)
        kd = (T * T) * (inter_class_relation(student_probs, target_probs) + intra_class_relation(student_probs, target_probs))
        return config.alpha * kd + (1.0 - config.alpha) * hard_loss
    log_student = F.log_softmax(student_logits.float() / T, dim=1)
    per_sample = F.kl_div(log_student, target_probs, reduction="none").sum(1) * (T * T)
    if config.mode == "true-label":
        per_sample = per_sample * (target_probs.argmax(1) == targets).float()
    if config.class_weighted and class_weights is not None:
        w = class_weights.to(per_sample.device)[targets]
        per_sample = per_sample * (w / w.mean())
    return config.alpha * per_sample.mean() + (1.0 - config.alpha) * hard_loss


def _pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Row-wise Pearson correlation of two ``N x C`` tensors (DIST's ``pearson_correlation``)."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def inter_class_relation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - the mean over images of the correlation of the two class distributions."""
    return 1 - _pearson(student, teacher).mean()


def intra_class_relation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - the mean over classes of the correlation of the two across the batch."""
    return inter_class_relation(student.transpose(0, 1), teacher.transpose(0, 1))


@dataclasses.dataclass
class Teacher:
    model: nn.Module
    preprocess: Preprocess
    path: Path


def load_teachers(paths: Sequence[str | Path], classes: Sequence[str], device: torch.device) -> list[Teacher]:
    """Load teacher checkpoints (frozen, eval mode); their classes must match the student's."""
    from edgeopt.models.checkpoint import load_checkpoint

    teachers = []
    for path in paths:
        model, manifest = load_checkpoint(path, device)
        if list(manifest.classes) != list(classes):
            raise ConfigError(
                f"teacher {path} was trained on classes {manifest.classes}, the data has {list(classes)}"
            )
        model.eval().requires_grad_(False)
        teachers.append(Teacher(model, Preprocess.from_dict(manifest.preprocess), Path(path)))
    return teachers


def view_for(view01: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """A [0, 1] batch -> the model's own size and normalisation."""
    if view01.shape[-1] != preprocess.size or view01.shape[-2] != preprocess.size:
        view01 = F.interpolate(view01, size=(preprocess.size, preprocess.size), mode="bilinear",
                               antialias=True, align_corners=False)
    mean = torch.tensor(preprocess.mean, device=view01.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, device=view01.device).view(1, 3, 1, 1)
    return (view01 - mean) / std


class DistillViews(torch.utils.data.Dataset):
    """Distillation's training views: the same view (box, flip, brightness, and blend) for the student and its soft targets.

    Epoch ``e`` shows every image's view ``e`` (``edgeopt.data.views``): drawn from the run's seed with
    online teachers, who see it rendered at their own size from their own cache of the image; or view
    ``e mod V`` of a soft-label bank, whose stored logits are the targets. With ``mix`` a view is
    blended with a partner image's view of the same index (``sample_blend``): online, the teachers see
    the same blend; from a bank, its stored blend and the teachers' logits on it, or, where the bank's
    partner is not among these training images, the plain view and its logits. Items are ``(student
    view, label, teacher views)`` or ``(student view, label, bank logits T x C)``. Set ``epoch`` before
    each epoch (a loader's workers copy the dataset at the start of the epoch, so not with persistent workers).
    """

    def __init__(self, images: torch.Tensor, labels: Sequence[int], keys: Sequence[str], size: int, *, seed: int = 0,
                 scale_min: float = 0.35, brightness: float = 0.0, teacher_images: Sequence[torch.Tensor] = (),
                 teacher_sizes: Sequence[int] = (), bank=None, rows=None, mix: str = "none", mix_alpha: float = 1.0) -> None:
        self.images, self.keys, self.size = images, list(keys), size
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.seed, self.scale_min, self.brightness = seed, scale_min, brightness
        self.teacher_images, self.teacher_sizes = list(teacher_images), list(teacher_sizes)
        self.bank, self.rows = bank, rows
        self.mix, self.mix_alpha = mix, mix_alpha
        # a bank row -> the index of that image here (a blend's partner must be one of these images)
        self.index_of_row = {int(r): i for i, r in enumerate(rows)} if rows is not None else {}
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from edgeopt.data.views import blend_seed, render_blend, sample_blend

        if self.bank is not None:
            row, v = int(self.rows[i]), self.epoch % self.bank.views.shape[1]
            view = render_view(self.images[i], self.bank.views[row, v], self.size)
            if self.bank.blends is not None:
                blend = self.bank.blends[row, v]
                partner = self.index_of_row.get(int(blend[0]))
                if partner is not None:
                    partner_view = render_view(self.images[partner], self.bank.views[int(blend[0]), v], self.size)
                    soft = torch.from_numpy(self.bank.blend_logits[row, v].astype("float32"))
                    return render_blend(view, partner_view, blend), self.labels[i], soft
            soft = torch.from_numpy(self.bank.logits[row, v].astype("float32"))
            return view, self.labels[i], soft
        params = sample_view(view_seed(self.seed, self.keys[i], self.epoch), self.scale_min, self.brightness)
        student = render_view(self.images[i], params, self.size)
        teacher_views = [render_view(images[i], params, s) for images, s in zip(self.teacher_images, self.teacher_sizes)]
        if self.mix != "none":
            blend = sample_blend(blend_seed(self.seed, self.keys[i], self.epoch), len(self.keys), self.mix, self.mix_alpha)
            j = int(blend[0])
            partner = sample_view(view_seed(self.seed, self.keys[j], self.epoch), self.scale_min, self.brightness)
            student = render_blend(student, render_view(self.images[j], partner, self.size), blend)
            teacher_views = [render_blend(v, render_view(images[j], partner, s), blend)
                             for v, images, s in zip(teacher_views, self.teacher_images, self.teacher_sizes)]
        return student, self.labels[i], teacher_views
