"""predict's library half: the CSV, the layout rule, and a folder through a real ONNX."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import ConfigError, DataError
from edgeopt.runtime.classify import PredictConfig, classify_folder, folder_labels, predictions_csv, softmax


def test_csv_has_submit_times_columns_then_the_runners_up() -> None:
    probs = softmax(np.log(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])))
    rows = list(csv.reader(predictions_csv(["a.jpg", "d/b.jpg"], probs, ["x", "y", "z"], top_k=2).splitlines()))
    assert rows[0] == ["path", "prediction", "confidence", "prediction_2", "confidence_2"]
    assert rows[1] == ["a.jpg", "y", "0.70000", "z", "0.20000"]
    assert rows[2] == ["d/b.jpg", "x", "0.50000", "z", "0.30000"]
    assert list(csv.reader(predictions_csv(["a.jpg"], probs[:1], ["x", "y", "z"]).splitlines()))[0] == ["path", "prediction", "confidence"]


def test_labels_only_from_the_models_own_class_folders(tmp_path: Path) -> None:
    classes = ["cat", "dog"]
    labelled = [tmp_path / "dog" / "1.jpg", tmp_path / "cat" / "2.jpg"]
    assert folder_labels(tmp_path, labelled, classes, unlabelled=False).tolist() == [1, 0]
    flat = [tmp_path / "1.jpg", tmp_path / "cat" / "2.jpg"]
    assert folder_labels(tmp_path, flat, classes, unlabelled=False) is None
    foreign = [tmp_path / "car" / "1.jpg", tmp_path / "bus" / "2.jpg"]
    with pytest.raises(DataError, match="a model of other classes"):
        folder_labels(tmp_path, foreign, classes, unlabelled=False)
    assert folder_labels(tmp_path, foreign, classes, unlabelled=True) is None


def test_a_nested_unlabelled_folder_through_an_onnx(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    images = tmp_path / "inbox"
    for i, src in enumerate(sorted(synth_data.rglob("*.jpg"))[:10]):
        dest = images / ("deep/er" if i % 2 else "") / f"img{i}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
    (images / "notes.txt").write_text("not an image")
    calls: list[tuple[int, int]] = []
    result = classify_folder(PredictConfig(artifact=tiny_onnx, folder=images, out=tmp_path / "p.csv", top_k=3, batch_size=4),
                             progress=lambda done, total: calls.append((done, total)))
    rows = list(csv.DictReader((tmp_path / "p.csv").read_text().splitlines()))
    assert result.images == len(rows) == 10 and sum(result.counts.values()) == 10
    assert {r["path"] for r in rows} == {p.relative_to(images).as_posix() for p in images.rglob("*.jpg")}
    assert all(float(r["confidence"]) >= float(r["confidence_2"]) >= float(r["confidence_3"]) for r in rows)
    assert calls[0] == (0, 10) and calls[-1] == (10, 10) and len(calls) == 4  # batches of 4, 4, 2
    assert result.macro_f1 is None


def test_a_labelled_folder_is_scored_too(tiny_ckpts: dict[str, Path], synth_data: Path, tmp_path: Path) -> None:
    result = classify_folder(PredictConfig(artifact=tiny_ckpts["yaml"], folder=synth_data, out=tmp_path / "p.csv"))
    assert result.macro_f1 is not None and 0 <= result.accuracy <= 1 and result.backend == "torch"


def test_refusals(tiny_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable images"):
        classify_folder(PredictConfig(artifact=tiny_onnx, folder=tmp_path / "empty", out=tmp_path / "p.csv"))
    with pytest.raises(ConfigError, match="`top_k` 7"):
        classify_folder(PredictConfig(artifact=tiny_onnx, folder=tmp_path / "empty", out=tmp_path / "p.csv", top_k=7))
    with pytest.raises(ConfigError, match="`top_k` 0"):
        PredictConfig(artifact=tiny_onnx, folder=tmp_path, out=tmp_path / "p.csv", top_k=0)
    assert not (tmp_path / "p.csv").exists()
