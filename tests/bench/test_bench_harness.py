from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.data.presets import Preprocess
from edgeopt.errors import ConfigError, DataError
from edgeopt.bench.score import score_f1
from edgeopt.bench.timing import LatencyStats, list_images, measure_interleaved, submit_time

runner = CliRunner()


class FakeClock:
    """Advances only when a fake model runs, by that model's cost: exact, noise-free timing."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def model(self, cost: float, log: list, name: str):
        def run(batch):
            self.now += cost * len(batch)
            log.append(name)
        return run


def test_latency_statistics_from_known_times() -> None:
    stats = LatencyStats.from_times(4, [0.001 * i for i in range(1, 101)])  # 1..100 ms
    assert stats.p50_ms == pytest.approx(50.5) and stats.p90_ms == pytest.approx(90.1) and stats.p99_ms == pytest.approx(99.01)
    assert stats.mean_ms == pytest.approx(50.5) and stats.throughput == pytest.approx(4 / 0.0505)
    with pytest.raises(ConfigError):
        LatencyStats.from_times(1, [])


def test_interleaving_and_warmup_on_a_fake_clock() -> None:
    clock, log = FakeClock(), []
    batch = np.zeros((2, 3, 8, 8), np.float32)
    runners = {"a": (clock.model(0.001, log, "a"), batch), "b": (clock.model(0.004, log, "b"), batch)}
    stats = measure_interleaved(runners, runs=5, warmup=3, clock=clock, block=1, settle=0)
    assert log[:6] == ["a"] * 3 + ["b"] * 3  # warm-up first, per runner
    assert log[6:] == ["a", "b"] * 5  # then alternating, round by round
    assert stats["a"].p50_ms == pytest.approx(2.0) and stats["b"].p50_ms == pytest.approx(8.0)  # warm-up not timed
    assert stats["a"].runs == 5 and stats["b"].throughput == pytest.approx(2 / 0.008)
    log.clear()
    stats = measure_interleaved(runners, runs=5, warmup=0, clock=clock, block=2, settle=1)
    # rounds of (1 untimed + 2 timed) per runner; the last round only has the 1 timed call left
    assert log == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 2 + ["b"] * 2
    assert stats["a"].runs == 5 and stats["b"].p99_ms == pytest.approx(8.0)  # settle calls not timed
    log.clear()
    seen = []

    def timer(call) -> float:  # a device timer: measures each call itself, no clock or sync involved
        call()
        seen.append(log[-1])
        return 0.003

    stats = measure_interleaved(runners, runs=2, warmup=0, clock=lambda: 1 / 0, block=2, settle=0, timer=timer)
    assert seen == ["a", "a", "b", "b"] and stats["b"].p50_ms == pytest.approx(3.0)
    with pytest.raises(ConfigError):
        measure_interleaved(runners, runs=0, warmup=0, clock=clock)


def test_submit_time_writes_a_complete_csv_and_scores(synth_data: Path, tmp_path: Path) -> None:
    classes = sorted(p.name for p in synth_data.iterdir() if p.is_dir())
    pre = Preprocess(size=24)

    def oracle(batch: np.ndarray) -> np.ndarray:  # predicts class 0 always
        out = np.zeros((len(batch), len(classes)), np.float32)
        out[:, 0] = 1.0
        return out

    result = submit_time(oracle, classes, pre, synth_data, tmp_path / "pred.csv", batch_size=5, workers=2)
    rows = list(csv.DictReader((tmp_path / "pred.csv").open()))
    assert len(rows) == result.images == 72
    assert {r["path"] for r in rows} == {str(p.relative_to(synth_data)) for p in list_images(synth_data)}
    assert all(r["prediction"] == classes[0] for r in rows)
    # a constant predictor on 6 balanced classes: F1 2/7 for its class, 0 elsewhere -> macro 1/21
    assert result.accuracy == pytest.approx(1 / 6) and result.macro_f1 == pytest.approx(1 / 21)
    assert result.seconds > 0 and result.decode_seconds > 0


def test_submit_time_reports_medians_over_rounds(synth_data: Path, tmp_path: Path) -> None:
    clock, calls = FakeClock(), []
    costs = [0.010] * 9 + [0.050] * 9 + [0.020] * 9  # per-image cost: 72 images = 9 batches of 8 a round

    def model(batch: np.ndarray) -> np.ndarray:
        clock.now += costs[len(calls)] * len(batch)
        calls.append(len(batch))
        return np.zeros((len(batch), 6), np.float32)

    classes = sorted(p.name for p in synth_data.iterdir() if p.is_dir())
    result = submit_time(model, classes, Preprocess(size=16), synth_data, tmp_path / "p.csv", batch_size=8,
                         workers=1, runs=3, clock=clock)
    assert result.runs == 3 and len(calls) == 27
    assert result.seconds == pytest.approx(72 * 0.020)  # the median round, not the first or the mean
    assert result.decode_seconds == 0.0  # decoding costs nothing on the fake clock: no model inside it
    with pytest.raises(ConfigError, match="`submit_runs`"):
        submit_time(model, classes, Preprocess(size=16), synth_data, None, runs=0)


def test_submit_time_reopens_cpu_sessions_without_spinning(tiny_onnx: Path) -> None:
    from edgeopt.bench.harness import _submit_runner
    from edgeopt.runtime import open_runner

    timed = open_runner(tiny_onnx)  # latency loop: ORT's default busy-waiting intra-op threads
    submit = _submit_runner(timed)
    spin = "session.intra_op.allow_spinning"
    assert submit is not timed and submit.session.get_session_options().get_session_config_entry(spin) == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # left at ORT's default
        timed.session.get_session_options().get_session_config_entry(spin)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(submit.run(x), timed.run(x))


def test_submit_time_on_unlabelled_and_empty_folders(synth_data: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in list(synth_data.rglob("*.jpg"))[:3]:
        (flat / p.name).write_bytes(p.read_bytes())
    result = submit_time(lambda b: np.ones((len(b), 2), np.float32), ["x", "y"], Preprocess(size=16), flat, None)
    assert result.images == 3 and result.macro_f1 is None
    # a folder laid out as other classes fails before timing, in one line saying what to pass; unlabelled times it
    with pytest.raises(DataError, match="Pass `unlabelled` to classify the images anyway"):
        submit_time(lambda b: np.ones((len(b), 2), np.float32), ["x", "y"], Preprocess(size=16), synth_data, None)
    result = submit_time(lambda b: np.ones((len(b), 2), np.float32), ["x", "y"], Preprocess(size=16), synth_data, None,
                         unlabelled=True)
    assert result.images > 3 and result.macro_f1 is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no usable images"):
        list_images(tmp_path / "empty")


def test_bench_with_named_baseline_and_report(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.bench.harness import BenchConfig, bench_artifacts

    report = bench_artifacts(BenchConfig(artifacts=(tiny_onnx,), baseline="resnet18d", data=synth_data, batch_sizes=(1, 4),
                                   runs=3, warmup=1, submit_runs=1, baseline_f1=0.5, out=tmp_path / "b",
                                   json_path=tmp_path / "r.json", plot_path=tmp_path / "p.png"))
    student, base = report.rows
    # a fixed reference: resnet18d at its own 224 px (2.05 G MACs per timm's flop count), FP32, not the artifact's 32 px
    assert base.is_baseline and base.input_size == 224 and student.input_size == 32
    assert base.macs == pytest.approx(2.05e9, rel=0.05) and base.precision == "fp32"
    assert base.f1 == 0.5 and base.time_ratio == 1.0 and report.notes[0].startswith("baseline resnet18d: 224 px, FP32")
    assert "random weights" in report.notes[1]
    # the scores are the formulas applied to the measured rows
    assert student.score_time == pytest.approx(0.5 * student.submit.seconds / base.submit.seconds
                                               + 1 / (1 + math.exp(-20 * (0.5 - student.f1))))
    assert student.score_macs == pytest.approx(student.macs / base.macs + score_f1(student.f1, 0.5))
    assert report.time_basis == "submit time" and student.submit.images == 72
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["baseline"]["input_size"] == 224 and data["baseline"]["precision"] == "fp32"
    assert data["machine"]["cores"] and set(data["rows"][0]["latency"]) == {"1", "4"}
    assert (tmp_path / "p.png").exists() and (tmp_path / "b" / "baseline" / "baseline_resnet18d_224.onnx").exists()


def _always_predicts(onnx_path: Path, out: Path, cls: int) -> Path:
    """A copy of an edgeopt ONNX whose classifier bias makes it predict ``cls`` for every image."""
    import onnx
    from onnx import numpy_helper

    from edgeopt.artifacts import read_manifest, write_artifact_manifest

    model = onnx.load(str(onnx_path))
    last = [n for n in model.graph.node if n.op_type in ("Gemm", "Conv", "MatMul", "Add")][-1]
    inits = {i.name: i for i in model.graph.initializer}
    bias = next(inits[name] for name in reversed(last.input) if name in inits and len(inits[name].dims) == 1)
    value = np.zeros(numpy_helper.to_array(bias).shape, np.float32)
    value[cls] = 1e4
    bias.CopyFrom(numpy_helper.from_array(value, bias.name))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    manifest = read_manifest(onnx_path)
    manifest.sha256 = None
    write_artifact_manifest(out, manifest)
    return out


def test_bench_rows_keep_their_own_identity_with_equal_file_names(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    """Two artifacts named model.onnx: each row reports its own model's F1, predictions and path."""
    from edgeopt.bench.harness import BenchConfig, bench_artifacts
    from edgeopt.runtime.evaluate import evaluate_artifact

    a = _always_predicts(tiny_onnx, tmp_path / "a" / "model.onnx", 0)
    b = _always_predicts(tiny_onnx, tmp_path / "b" / "model.onnx", 1)
    f1_a, f1_b = (evaluate_artifact(p, synth_data).metrics for p in (a, b))
    assert f1_a.per_class_f1[f1_a.classes[0]] > 0 and f1_b.per_class_f1[f1_b.classes[0]] == 0  # they differ
    report = bench_artifacts(BenchConfig(artifacts=(a, b), baseline=None, data=synth_data, batch_sizes=(2,), runs=2,
                                   warmup=0, submit_runs=1, out=tmp_path / "o"))
    row_a, row_b = report.rows
    assert (row_a.name, row_b.name) == ("a/model.onnx", "b/model.onnx")
    assert (row_a.path, row_b.path) == (str(a), str(b))
    assert row_a.f1 == pytest.approx(f1_a.macro_f1) and row_b.f1 == pytest.approx(f1_b.macro_f1)
    with open(row_a.submit.predictions_csv) as fa, open(row_b.submit.predictions_csv) as fb:
        preds_a = {r["prediction"] for r in csv.DictReader(fa)}
        preds_b = {r["prediction"] for r in csv.DictReader(fb)}
    assert f1_a.classes[0] in preds_a and f1_a.classes[0] not in preds_b


def test_named_baseline_options_are_honoured_or_refused(tiny_onnx: Path, tiny_ckpts: dict, tmp_path: Path) -> None:
    from edgeopt.bench.harness import BenchConfig, bench_artifacts

    report = bench_artifacts(BenchConfig(artifacts=(tiny_onnx,), baseline="resnet18d", baseline_size=64, runs=1, warmup=0,
                                   batch_sizes=(1,), out=tmp_path / "s"))
    assert report.rows[1].input_size == 64 and report.baseline["input_size"] == 64
    # a trained baseline runs at the size it was trained at, labelled with its own architecture
    report = bench_artifacts(BenchConfig(artifacts=(tiny_onnx,), baseline="resnet18d", baseline_checkpoint=tiny_ckpts["timm"],
                                   runs=1, warmup=0, batch_sizes=(1,), out=tmp_path / "c"))
    assert report.rows[1].name == "baseline mobilenetv3_small_050" and report.rows[1].input_size == 32
    for kw, match in ((dict(baseline_checkpoint=tiny_ckpts["timm"], baseline_size=224), "conflicts with `baseline_checkpoint`"),
                      (dict(baseline=str(tiny_onnx), baseline_size=64), "used as is"),
                      (dict(baseline_precision="fp8"), "`baseline_precision` 'fp8'")):
        with pytest.raises(ConfigError, match=match):
            bench_artifacts(BenchConfig(artifacts=(tiny_onnx,), **{"baseline": "resnet18d", **kw}, runs=1, warmup=0,
                                  batch_sizes=(1,), out=tmp_path / "x"))


def test_bench_without_baseline_f1_reports_no_score(tiny_ckpts: dict, tmp_path: Path) -> None:
    from edgeopt.bench.harness import BenchConfig, bench_artifacts

    report = bench_artifacts(BenchConfig(artifacts=(tiny_ckpts["yaml"],), baseline="resnet18d", baseline_size=64,
                                   batch_sizes=(2,), runs=2, warmup=0, out=tmp_path))
    assert report.rows[1].backend == "torch" and report.rows[1].score_time is None
    assert report.time_basis == "batch-2 latency p50" and "pass `baseline_f1`" in report.notes[1]


def test_bench_cli_success_and_bad_inputs(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", str(tiny_onnx), "--baseline", str(tiny_onnx), "--batch-sizes", "1,2", "--runs", "2",
                                 "--warmup", "0", "--data", str(synth_data), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "score vs baseline" in result.output and "latency (ms)" in result.output
    header = next(line for line in result.output.splitlines() if "artifact" in line and "MMACs" in line)
    for column in ("prec", "M params", "MB", "F1", "submit s", "decode s", "time ratio", "score MACs"):
        assert column in header
    assert "median of 3 runs" in result.output
    result = runner.invoke(app, ["bench", str(tiny_onnx), "--baseline", "resnet18d", "--batch-sizes", "1", "--runs", "1",
                                 "--warmup", "0", "--out", str(tmp_path / "n"), "--json", str(tmp_path / "n.json")])
    assert result.exit_code == 0, result.output
    assert "baseline resnet18d: 224 px, FP32" in result.output
    assert json.loads((tmp_path / "n.json").read_text())["baseline"]["input_size"] == 224
    result = runner.invoke(app, ["bench", str(tiny_onnx), "--backend", "cuda-magic"])
    assert result.exit_code == 1 and "unknown backend" in result.output
    result = runner.invoke(app, ["bench", str(tiny_onnx), "--backend", "torch", "--baseline", "none"])
    assert result.exit_code == 1 and "runs on the onnxruntime backend, not torch" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["bench", str(tiny_onnx), "--baseline", "none", "--data", str(tmp_path / "empty"), "--runs", "1"])
    assert result.exit_code == 1 and "holds no usable images" in result.output
    result = runner.invoke(app, ["bench", str(tiny_onnx), "--batch-sizes", "1,x"])
    assert result.exit_code == 1 and "--batch-sizes 'x': expected a whole number" in result.output, result.output
    result = runner.invoke(app, ["bench", str(tiny_onnx), "--baseline", "resnet18dd", "--runs", "1"])
    assert result.exit_code == 1 and "did you mean" in result.output


def test_bench_and_eval_read_a_folder_by_one_rule(synth_data: Path, tmp_path: Path) -> None:
    """A 0-byte or truncated .jpg is skipped with one warning by both: bench's submit time and eval's scan."""
    import shutil
    import warnings

    from edgeopt.data.folder import scan_folder
    from edgeopt.errors import EdgeoptWarning

    folder = tmp_path / "crops"
    shutil.copytree(synth_data, folder)
    (folder / "synthetic_metal" / "empty.jpg").write_bytes(b"")
    good = next((folder / "synthetic_paper").glob("*.jpg"))
    (folder / "synthetic_paper" / "cut.jpg").write_bytes(good.read_bytes()[:100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        benched, scanned = list_images(folder), [s.path for s in scan_folder(folder).samples]
    assert sorted(benched) == sorted(scanned) and len(benched) == len(list(synth_data.rglob("*.jpg")))
    skips = [str(w.message) for w in caught if issubclass(w.category, EdgeoptWarning)]
    assert len(skips) == 2 and all("skipped 2 file(s)" in m for m in skips), skips
