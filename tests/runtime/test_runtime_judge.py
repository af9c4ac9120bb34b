"""The one judge and the one scoring loop: figures from logits, labels collected from a loader's pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import DataError
from edgeopt.metrics import classification_metrics
from edgeopt.runtime.judge import compare_logits, judge_against_parent, mean_kl
from edgeopt.runtime.scoring import ImageSet, folder_labels, labelled_folder, score_batches


def test_compare_logits_gives_both_f1s_the_drop_agreement_and_kl() -> None:
    classes = ["a", "b", "c"]
    labels = np.array([0, 1, 2, 0])
    parent = np.eye(3)[[0, 1, 2, 0]] * 5.0
    candidate = np.eye(3)[[0, 1, 1, 0]] * 5.0  # one image changes class
    judged = compare_logits(parent, candidate, labels, classes)
    assert judged.images == 4 and judged.labelled and judged.agreement == 0.75
    assert judged.f1_parent == pytest.approx(1.0)
    assert judged.f1_candidate == pytest.approx(classification_metrics(labels, [0, 1, 1, 0], classes).macro_f1)
    assert judged.drop == pytest.approx(judged.f1_parent - judged.f1_candidate) and judged.drop > 0
    assert judged.mean_kl == pytest.approx(mean_kl(parent, candidate)) and judged.max_abs_logit_diff == 5.0
    record = judged.int8_record()
    assert set(record) == {"images", "f1_fp32", "f1_int8", "drop", "top1_agreement", "kl"} and record["top1_agreement"] == 0.75
    unlabelled = compare_logits(parent, candidate, None, classes)
    assert not unlabelled.labelled and unlabelled.drop is None and unlabelled.disagreement == 0.25


def test_score_batches_collects_labels_from_pairs_and_runs_each_model_on_the_same_batches() -> None:
    batches = [(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])), (np.array([[0.0, 1.0]]), np.array([0]))]
    right, wrong = score_batches([lambda x: x, lambda x: -x], batches, ["a", "b"])
    assert right.labels.tolist() == [0, 1, 0] and right.predictions.tolist() == [0, 1, 1]
    assert right.metrics.accuracy == pytest.approx(2 / 3) and wrong.metrics.accuracy == pytest.approx(1 / 3)
    assert score_batches([lambda x: x], [np.ones((2, 2))])[0].metrics is None  # no labels, nothing scored


def test_judge_against_parent_on_a_labelled_folder(synth_data: Path) -> None:
    from edgeopt.data.presets import Preprocess

    classes = sorted(p.name for p in synth_data.iterdir() if p.is_dir())
    images = labelled_folder(synth_data, classes)
    assert len(images) and len(images.labels) == len(images)
    labels = iter(images.labels)
    oracle = lambda x: np.eye(len(classes))[[next(labels) for _ in range(len(x))]]  # noqa: E731
    judged = judge_against_parent(lambda x: np.zeros((len(x), len(classes))), oracle, images, classes=classes,
                                  preprocess=Preprocess(size=16), batch_size=8)
    assert judged.f1_parent == pytest.approx(1.0) and judged.images == len(images) and judged.drop > 0.5
    flat = judge_against_parent(lambda x: np.ones((len(x), 2)), lambda x: np.ones((len(x), 2)),
                                ImageSet(images.paths[:3]), classes=["a", "b"], preprocess=Preprocess(size=16))
    assert not flat.labelled and flat.agreement == 1.0 and flat.mean_kl == pytest.approx(0.0, abs=1e-9)


def test_folder_labels_is_one_rule_for_predict_and_submit_time(synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.bench.timing import submit_time
    from edgeopt.data.presets import Preprocess

    foreign = tmp_path / "foreign"
    for i, p in enumerate(sorted(synth_data.rglob("*.jpg"))[:4]):
        (foreign / f"x{i % 2}").mkdir(parents=True, exist_ok=True)
        (foreign / f"x{i % 2}" / p.name).write_bytes(p.read_bytes())
    paths = sorted(foreign.rglob("*.jpg"))
    with pytest.raises(DataError, match="not among the model's classes"):
        folder_labels(foreign, paths, ["a", "b"], unlabelled=False)
    with pytest.raises(DataError, match="not among the model's classes"):  # submit time reads labels by the same rule
        submit_time(lambda b: np.ones((len(b), 2), np.float32), ["a", "b"], Preprocess(size=16), foreign, None)
