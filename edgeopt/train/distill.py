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
from edgeopt.train.config import KDConfig

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
