"""edgeopt search: an Optuna study on SQLite and on a real PostgreSQL server, resumed after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.errors import ConfigError
from edgeopt.search import (
    SearchConfig,
    SearchSpace,
    TrialRecord,
    choose,
    mask_url,
    pareto_front,
    search_models,
)

ROOT = Path(__file__).resolve().parents[2]
TINY_YAML = str(ROOT / "models" / "tiny_cnn.yaml")
pytestmark = pytest.mark.slow


def _tiny(data: Path, out: Path, **kw) -> SearchConfig:
    space = kw.pop("space", SearchSpace(backbones=(TINY_YAML, "mobilenetv3_small_050"), sizes=(32, 40), max_prune=0.5))
    return SearchConfig(data=data, out=out, space=space, trials=kw.pop("trials", 3), epochs=kw.pop("epochs", 1),
                        batch_size=16, pretrained=False, seed=kw.pop("seed", 0), device="cpu", workers=0,
                        latency_runs=5, **kw)


def _cli_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["search", "--data", str(data), "--out", str(out), "--backbones", f"{TINY_YAML},mobilenetv3_small_050",
            "--sizes", "32,40", "--scratch", "--epochs", "1", "--batch-size", "16", "--device", "cpu", *extra]


def test_search_reports_a_true_pareto_front_and_exports_the_chosen_model(synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.models.checkpoint import load_model_and_arch
    from edgeopt.models import count_complexity, create_model

    result = search_models(_tiny(synth_data, tmp_path / "s", trials=4, final_epochs=2), log=lambda m: None)
    assert len(result.trials) >= 1
    report = json.loads(result.report.read_text())
    assert len(report["trials"]) == len(result.trials) and report["chosen"] == result.chosen.number
    assert result.plot is not None and result.plot.stat().st_size > 1000
    for r in result.trials:
        folder = Path(r.artifacts)
        assert (folder / "best.pt").is_file() and (folder / "model.onnx").is_file() and r.latency_ms > 0
        model, _, arch = load_model_and_arch(folder / "best.pt")
        assert count_complexity(model, r.params["img_size"]).macs == r.macs  # the record is the model's own count
        unpruned = count_complexity(create_model(r.params["backbone"], 6)[0], r.params["img_size"]).macs
        assert r.macs <= unpruned * (1 - r.params["prune"]) + 1  # pruned to the sampled fraction of its MACs
        assert bool(arch.get("layer_shapes")) == (r.params["prune"] > 0)
    # the front, checked pairwise here: no trial beats a front member on both F1 and MACs, and every
    # trial off the front is beaten by some trial
    front = {r.number for r in result.trials if r.pareto}
    for r in result.trials:
        beaten = [o for o in result.trials if o.val_macro_f1 >= r.val_macro_f1 and o.macs <= r.macs
                  and (o.val_macro_f1, -o.macs) != (r.val_macro_f1, -r.macs)]
        assert (r.number in front) == (not beaten)
    # the chosen point (best competition score without a budget) is copied with its manifests
    assert result.chosen.score == min(r.score for r in result.trials)
    for name in ("best.pt", "best.pt.json", "model.onnx", "model.onnx.json", "trial.json"):
        assert (result.chosen_dir / name).is_file()
    # the final run: the chosen point trained again on all the data for a fixed number of epochs
    final_ckpt = Path(result.final["checkpoint"])
    assert report["final"]["trial"] == result.chosen.number and final_ckpt.parent.name == f"final-trial-{result.chosen.number:04d}"
    history = json.loads((final_ckpt.parent / "metrics.json").read_text())
    assert len(history["history"]) == 2 and history["validation"] is False and Path(result.final["onnx"]).is_file()
    _, _, final_arch = load_model_and_arch(final_ckpt)
    assert final_arch.get("layer_shapes") == load_model_and_arch(result.chosen_dir / "best.pt")[2].get("layer_shapes")
    # a second call with the same settings finds the study finished and runs nothing new; a report
    # of a study that wants more trials runs none either
    again = search_models(_tiny(synth_data, tmp_path / "s", trials=4), log=lambda m: None)
    assert [r.number for r in again.trials] == [r.number for r in result.trials]
    reported = search_models(_tiny(synth_data, tmp_path / "s", trials=9), log=lambda m: None, report_only=True)
    assert [r.number for r in reported.trials] == [r.number for r in result.trials] and reported.final is None


def test_the_final_run_holds_out_the_images_that_judge_its_int8(synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.artifacts import read_manifest
    from edgeopt.data.seen import digest, trained_on
    from edgeopt.quant.int8_choice import Int8ChoiceConfig

    int8 = Int8ChoiceConfig(max_drop=0.99, holdout=0.25, adaround=False)
    # a space with fixed values (no pruning, one lr): the final run gets them too, though the sampler never drew them
    space = SearchSpace(backbones=(TINY_YAML,), sizes=(32,), max_prune=0.0, lr=(2e-3, 2e-3))
    result = search_models(_tiny(synth_data, tmp_path / "s", trials=1, final_epochs=1, int8=int8, space=space), log=lambda m: None)
    assert result.chosen.params["prune"] == 0.0 and result.chosen.params["lr"] == 2e-3
    final = result.final
    record = final["int8"]
    judge = sorted(Path(record["judged_on"]).rglob("*.jpg"))
    assert judge and Path(final["trained_on"]) != synth_data and "held out" in final["selection"]
    trained = trained_on(read_manifest(final["checkpoint"]).extra)
    assert trained and not {digest(p) for p in judge} & trained  # no judging image trained the final model
    assert len(trained) + len(judge) == len(list(synth_data.rglob("*.jpg")))  # and every other image did
    assert record["chosen"] == "ptq" and list(record["candidates"]) == ["ptq"]  # within budget: no QAT
    assert read_manifest(record["onnx"]).precision == "int8"
    with pytest.raises(ConfigError, match="`final_epochs`"):
        _tiny(synth_data, tmp_path / "t", int8=int8)


def test_pareto_front_and_budgeted_choice() -> None:
    def rec(n: int, f1: float, macs: int, score: float) -> TrialRecord:
        return TrialRecord(n, {}, f1, macs, 0, 1.0, score, "h", "")

    records = [rec(0, 0.90, 70, 0.3), rec(1, 0.85, 20, 0.2), rec(2, 0.80, 25, 0.4), rec(3, 0.85, 30, 0.5), rec(4, 0.70, 5, 0.6)]
    assert [r.number for r in pareto_front(records)] == [4, 1, 0]
    assert choose(records, 25).number == 1 and choose(records, 4) is None and choose(records, None).number == 1


def test_other_settings_on_an_existing_study_is_one_line_and_writes_nothing(synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    runner = CliRunner()
    first = runner.invoke(app, _cli_args(synth_data, out, "--trials", "1", "--seed", "0"))
    assert first.exit_code == 0, first.output
    report = (out / "edgeopt" / "pareto.json").read_bytes()
    trials = sorted(p.name for p in (out / "edgeopt").glob("trial-*"))
    second = runner.invoke(app, [*_cli_args(synth_data, out, "--trials", "2"), "--max-prune", "0.3"])
    assert second.exit_code == 1
    line = second.output.strip()
    assert "\n" not in line and "other search settings" in line and "max_prune 0.5 (now 0.3)" in line
    assert (out / "edgeopt" / "pareto.json").read_bytes() == report
    assert sorted(p.name for p in (out / "edgeopt").glob("trial-*")) == trials


def test_unreachable_database_is_one_line_with_the_password_masked(synth_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("psycopg", reason="pip install 'edgeopt[postgres]'")
    url = "postgresql://edge:s3cret@127.0.0.1:1/studies"
    result = CliRunner().invoke(app, _cli_args(synth_data, tmp_path / "s", "--storage", url))
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "edge:***@127.0.0.1:1/studies" in line and "s3cret" not in line
    assert mask_url("postgresql://u:p@h/db") == "postgresql://u:***@h/db"


def test_bad_search_options_are_one_line(synth_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="`max_prune`"):
        SearchSpace(max_prune=0.99)
    with pytest.raises(ConfigError, match="`objective`"):
        SearchConfig(data=synth_data, objective="speed")
    with pytest.raises(ConfigError, match="`schedule` 'step'"):
        SearchConfig(data=synth_data, schedule="step")
    with pytest.raises(ConfigError, match="`study`"):
        SearchConfig(data=synth_data, study="../x")
    result = CliRunner().invoke(app, [*_cli_args(synth_data, tmp_path / "s"), "--backbones", "resnet_nope"])
    assert result.exit_code == 1 and "unknown model 'resnet_nope'" in result.output
    assert not (tmp_path / "s" / "search.db").exists()  # checked before any storage is made


def _worker(data: Path, out: Path, storage: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, "-m", "edgeopt", *_cli_args(data, out, "--storage", storage, *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.fixture()
def postgres(tmp_path: Path):
    pgserver = pytest.importorskip("pgserver", reason="pip install pgserver (a PostgreSQL 16 server from PyPI)")
    pytest.importorskip("psycopg", reason="pip install 'edgeopt[postgres]'")
    try:
        server = pgserver.get_server(tmp_path / "pg", cleanup_mode="stop")
    except Exception as exc:  # noqa: BLE001 - report why the server could not start
        pytest.skip(f"PostgreSQL from pgserver could not start here: {exc}")
    yield server.get_uri()
    server.cleanup()


def test_two_workers_share_one_study_on_a_real_postgresql_server(synth_data: Path, tmp_path: Path, postgres: str) -> None:
    import optuna

    from edgeopt.search import _driver_url

    workers = [_worker(synth_data, tmp_path / "s", postgres, "--study", "shared", "--trials", "6", "--seed", str(i))
               for i in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    for w, text in zip(workers, outputs):
        assert w.returncode == 0, text
    study = optuna.load_study(study_name="shared", storage=_driver_url(postgres))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 6 and len({t.number for t in complete}) == len(complete)
    assert len({t.user_attrs["worker"] for t in complete}) == 2  # both processes ran trials of the one study
    assert len({t.user_attrs["artifacts"] for t in complete}) == len(complete)  # each trial its own folder


def test_a_killed_search_resumes_its_trial_where_training_stopped(synth_data: Path, tmp_path: Path) -> None:
    import optuna

    out = tmp_path / "s"
    args = ("--trials", "1", "--epochs", "12", "--heartbeat", "1", "--seed", "0", "--max-prune", "0")
    first = _worker(synth_data, out, f"sqlite:///{out / 'search.db'}", *args)
    last = out / "edgeopt" / "trial-0000" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert last.exists(), "the first worker never finished an epoch"
    epochs_done = json.loads((out / "edgeopt" / "trial-0000" / "metrics.json").read_text())["history"]
    assert 1 <= len(epochs_done) < 12
    time.sleep(2.5)  # past the grace period of two missed heartbeats
    second = _worker(synth_data, out, f"sqlite:///{out / 'search.db'}", *args)
    text = second.communicate(timeout=300)[0]
    assert second.returncode == 0, text
    assert "(resuming)" in text
    study = optuna.load_study(study_name="edgeopt", storage=f"sqlite:///{out / 'search.db'}")
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    retried = study.trials[1]
    assert retried.params == study.trials[0].params and retried.user_attrs["resumed"] is True
    assert retried.user_attrs["artifacts"].endswith("trial-0000")
    history = json.loads((out / "edgeopt" / "trial-0000" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, 13))  # continued, not restarted
    assert history[:len(epochs_done)] == epochs_done


def test_the_final_run_defaults_to_the_bank_schedule_only_with_a_bank(tmp_path: Path) -> None:
    from edgeopt.search import BANK_FINAL_EPOCHS, SearchConfig
    from edgeopt.train.config import KDConfig

    assert SearchConfig(data=tmp_path).final_epochs == 0  # teachers online or none: each epoch costs them too
    assert SearchConfig(data=tmp_path, kd=KDConfig(soft_labels=tmp_path / "x.bank")).final_epochs == BANK_FINAL_EPOCHS == 100
    assert SearchConfig(data=tmp_path, kd=KDConfig(soft_labels=tmp_path / "x.bank"), final_epochs=0).final_epochs == 0


def test_a_teacher_assistant_teaches_a_final_run_below_its_size(synth_data: Path, tiny_ckpts: dict[str, Path],
                                                                tmp_path: Path) -> None:
    from edgeopt.artifacts import read_manifest, sha256_file
    from edgeopt.train.config import KDConfig
    from edgeopt.train.soft_labels import SoftLabelConfig, make_soft_labels, read_bank

    bank = tmp_path / "teacher.bank"
    make_soft_labels(SoftLabelConfig(teachers=[tiny_ckpts["yaml"]], data=synth_data, out=bank, views=2, batch_size=16,
                                     device="cpu", seed=3))
    space = SearchSpace(backbones=(TINY_YAML,), sizes=(32,), max_prune=0.0, lr=(2e-3, 2e-3))
    said: list[str] = []
    result = search_models(_tiny(synth_data, tmp_path / "s", trials=1, final_epochs=1, space=space,
                                 kd=KDConfig(soft_labels=bank), assistant_size=40, assistant_epochs=1), log=said.append)
    assistant = result.final["assistant"]
    assert assistant["img_size"] == 40 and any("teacher assistant" in line for line in said)
    # the assistant is the chosen backbone at its own size, distilled from the teacher's bank
    made_from = read_manifest(assistant["checkpoint"])
    assert made_from.preprocess["size"] == 40 and made_from.extra["soft_labels"]["sha256"] == sha256_file(bank)
    # its bank holds the teacher bank's views (count, augmentation, seed), labelled by the assistant
    ours, theirs = read_bank(assistant["bank"]).manifest.extra, read_bank(bank).manifest.extra
    assert ours["views"] == theirs["views"] == 2 and ours["augmentation"] == theirs["augmentation"]
    assert [t["sha256"] for t in ours["teachers"]] == [sha256_file(assistant["checkpoint"])]
    # and the final run learned from the assistant's bank, not the teacher's
    assert read_manifest(result.final["checkpoint"]).extra["soft_labels"]["sha256"] == sha256_file(assistant["bank"])
    assert result.final["started_from"] is None
    # above `assistant_for`, the assistant only starts the final run (progressive resizing): its weights, the teacher's bank
    init = search_models(_tiny(synth_data, tmp_path / "i", trials=1, final_epochs=1, space=space,
                               kd=KDConfig(soft_labels=bank), assistant_size=40, assistant_for=24, assistant_init=True),
                         log=lambda m: None)
    assert init.final["assistant"]["bank"] is None and init.final["started_from"] == init.final["assistant"]["checkpoint"]
    start = torch.load(Path(init.final["checkpoint"]).parent / "init.pt", weights_only=True)["state_dict"]
    assistant_weights = torch.load(init.final["assistant"]["checkpoint"], weights_only=True)["state_dict"]
    assert all(torch.equal(start[k], assistant_weights[k]) for k in assistant_weights)
    assert read_manifest(init.final["checkpoint"]).extra["soft_labels"]["sha256"] == sha256_file(bank)
    # and without `assistant_init` there is none
    same = search_models(_tiny(synth_data, tmp_path / "t", trials=1, final_epochs=1, space=space,
                               kd=KDConfig(soft_labels=bank), assistant_size=40, assistant_for=24), log=lambda m: None)
    assert same.final["assistant"] is None and same.final["started_from"] is None
    assert read_manifest(same.final["checkpoint"]).extra["soft_labels"]["sha256"] == sha256_file(bank)
    with pytest.raises(ConfigError, match="`assistant_size` 96: a teacher assistant learns from a soft-label bank"):
        _tiny(synth_data, tmp_path / "u", assistant_size=96)
    with pytest.raises(ConfigError, match="`assistant_for` 32 is not below `assistant_size` 32"):
        _tiny(synth_data, tmp_path / "u", kd=KDConfig(soft_labels=bank), assistant_size=32)
