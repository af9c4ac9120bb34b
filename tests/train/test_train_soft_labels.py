"""The soft-label bank: exact (a student learns the same as from the teacher online), resumable to the
same bytes, refused when it does not fit the data; and train/search/prune/qat taking it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from edgeopt.artifacts import read_manifest
from edgeopt.cli.app import app
from edgeopt.data.views import render_view, sample_view, view_seed
from edgeopt.train.config import KDConfig
from edgeopt.errors import ArtifactError, ConfigError, DataError
from edgeopt.train.soft_labels import SoftLabelConfig, make_soft_labels, read_bank
from edgeopt.train.loop import TrainConfig, train_classifier

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "models" / "tiny_cnn.yaml")
runner = CliRunner()


@pytest.fixture(scope="module")
def teacher(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small teacher at 48 px (the students below run at 32 px: each model at its own size)."""
    out = tmp_path_factory.mktemp("teacher")
    return train_classifier(TrainConfig(model=TINY, data=synth_data, out=out, img_size=48, epochs=2, batch_size=16,
                                        device="cpu", workers=0)).best_checkpoint


@pytest.fixture(scope="module")
def bank(teacher: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bank") / "teacher.bank"
    make_soft_labels(SoftLabelConfig(teachers=[teacher], data=synth_data, out=out, views=3, batch_size=16, device="cpu",
                              scale_min=0.35, brightness=0.0,  # the scratch student's augmentation: online views agree
                              chunk_images=20))
    return out


def _student(data: Path, out: Path, teachers: tuple = (), soft_labels: Path | None = None, **kw) -> TrainConfig:
    """The same student and KD loss whatever the source: one KDConfig says whether teachers run or a bank is read."""
    return TrainConfig(model=TINY, data=data, out=out, img_size=32, epochs=2, batch_size=16, device="cpu", workers=0,
                       kd=KDConfig(4.0, 0.7, teachers=tuple(teachers), soft_labels=soft_labels), **kw)


def test_views_are_seeded_per_image_and_rendered_as_drawn() -> None:
    a = sample_view(view_seed(0, "glass/1.jpg", 3), 0.35, 0.2)
    assert np.array_equal(a, sample_view(view_seed(0, "glass/1.jpg", 3), 0.35, 0.2))
    assert not np.array_equal(a, sample_view(view_seed(0, "glass/1.jpg", 4), 0.35, 0.2))
    assert not np.array_equal(a, sample_view(view_seed(0, "glass/2.jpg", 3), 0.35, 0.2))
    assert 0.35 - 1e-6 <= a[2] * a[3] <= 1 and 0.8 - 1e-6 <= a[5] <= 1.2
    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    image[:, :, 20:] = 255  # right half white
    left = render_view(image, np.asarray([0, 0, 0.5, 1, 0, 1], np.float32), 8)
    flipped = render_view(image, np.asarray([0.5, 0, 0.5, 1, 1, 0.5], np.float32), 8)
    assert float(left.max()) == 0.0 and torch.allclose(flipped, torch.full_like(flipped, 0.5))


def test_a_student_from_the_bank_learns_exactly_what_it_learns_online(teacher: Path, bank: Path, synth_data: Path,
                                                                      tmp_path: Path) -> None:
    """Same views (same seed), teacher online vs its stored logits: the same loss, epoch by epoch."""
    online = train_classifier(_student(synth_data, tmp_path / "online", teachers=[teacher]))
    banked = train_classifier(_student(synth_data, tmp_path / "bank", soft_labels=bank))
    losses = [h.train_loss for h in online.history], [h.train_loss for h in banked.history]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)  # float16 logits, nothing else differs
    hard = train_classifier(_student(synth_data, tmp_path / "hard"))  # without distillation: another loss
    assert abs(hard.history[0].train_loss - losses[1][0]) > 1e-3
    record = read_manifest(banked.best_checkpoint).extra["soft_labels"]
    assert record["sha256"] == read_manifest(bank).sha256 and record["views"] == 3


def test_bank_manifest_records_teachers_data_and_views(bank: Path, teacher: Path, synth_data: Path) -> None:
    loaded = read_bank(bank)
    extra = loaded.manifest.extra
    n = sum(1 for _ in synth_data.rglob("*.jpg"))
    assert loaded.logits.shape == (n, 3, 1, 6) and loaded.logits.dtype == np.float16 and loaded.views.shape == (n, 3, 6)
    assert extra["teachers"][0]["sha256"] == read_manifest(teacher).sha256
    assert len(extra["files"]) == n and extra["augmentation"]["scale_min"] == 0.35
    assert not bank.with_name(bank.name + ".partial").exists()


def test_an_interrupted_bank_resumes_to_the_same_bytes(bank: Path, teacher: Path, synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "again.bank"
    config = SoftLabelConfig(teachers=[teacher], data=synth_data, out=out, views=3, batch_size=16, device="cpu",
                             chunk_images=20, scale_min=0.35, brightness=0.0)  # the fixture bank's settings

    def interrupt(done: int, total: int) -> None:
        if done >= 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_soft_labels(config, progress=interrupt)
    assert not out.exists() and len(list(out.with_name("again.bank.partial").glob("chunk-*"))) == 2
    result = make_soft_labels(config)
    assert result.resumed_chunks == 2 and out.read_bytes() == bank.read_bytes()
    again = make_soft_labels(config)  # complete with these settings: nothing recomputed
    assert again.reused and again.seconds == 0 and out.read_bytes() == bank.read_bytes()
    other = SoftLabelConfig(teachers=[teacher], data=synth_data, out=out, views=4, device="cpu", chunk_images=20)
    (out.with_name("again.bank.partial")).mkdir()
    (out.with_name("again.bank.partial") / "settings.json").write_text(json.dumps({"views": 3}))
    with pytest.raises(ConfigError, match="other settings .*views"):
        make_soft_labels(other)


def test_a_bank_that_does_not_fit_the_data_is_refused(bank: Path, synth_data: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(synth_data, changed)
    victim = sorted(changed.rglob("*.jpg"))[0]
    Image.open(victim).rotate(90).save(victim)
    with pytest.raises(DataError, match=f"image {victim.parent.name}/{victim.name} changed"):
        train_classifier(_student(changed, tmp_path / "s1", soft_labels=bank, val_split=0))
    extra = tmp_path / "extra"
    shutil.copytree(synth_data, extra)
    shutil.copy(victim.with_name(victim.name), extra / victim.parent.name / "new.jpg")
    with pytest.raises(DataError, match="no views of 1 training image"):
        train_classifier(_student(extra, tmp_path / "s2", soft_labels=bank, val_split=0))
    fewer = tmp_path / "fewer"
    shutil.copytree(synth_data, fewer)
    shutil.rmtree(sorted(p for p in fewer.iterdir() if p.is_dir())[0])
    result = runner.invoke(app, ["train", "--model", TINY, "--data", str(fewer), "--soft-labels", str(bank), "--epochs", "1",
                                 "--img-size", "32", "--out", str(tmp_path / "s3"), "--device", "cpu"])
    assert result.exit_code == 1 and "was made for classes" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s3" / "best.pt").exists()


def test_bad_banks_and_settings_are_one_line(bank: Path, teacher: Path, synth_data: Path, tmp_path: Path) -> None:
    base = ["train", "--model", TINY, "--data", str(synth_data), "--img-size", "32", "--device", "cpu", "--epochs", "1"]
    cases = [
        (["soft-labels", str(teacher), "--data", str(synth_data), "--out", str(tmp_path / "z.bank"), "--views", "0"], "views 0 is out of range"),
        (["soft-labels", str(teacher), "--data", str(synth_data), "--out", str(tmp_path / "z.npz")], "must end in .bank"),
        ([*base, "--out", str(tmp_path / "a"), "--soft-labels", str(bank), "--teacher", str(teacher)], "not both"),
        ([*base, "--out", str(tmp_path / "b"), "--soft-labels", str(bank), "--mixup", "0.4"], "--mixup 0.4 with --soft-labels"),
        ([*base, "--out", str(tmp_path / "c"), "--soft-labels", str(bank), "--randaugment", "9"], "--randaugment 9 with distillation"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, (args, result.output)
    assert not list(tmp_path.rglob("*.bank")) and not list(tmp_path.rglob("best.pt"))
    # an unreadable bank: damaged bytes (the manifest's hash catches it), or a forged manifest over garbage
    broken = tmp_path / "broken.bank"
    shutil.copy(bank, broken)
    shutil.copy(bank.with_name(bank.name + ".json"), broken.with_name("broken.bank.json"))
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        read_bank(broken)
    manifest = json.loads(broken.with_name("broken.bank.json").read_text())
    from edgeopt.artifacts import sha256_file

    manifest["sha256"] = sha256_file(broken)
    broken.with_name("broken.bank.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "d"), "--soft-labels", str(broken)])
    assert result.exit_code == 1 and "not a readable soft-label bank" in result.output and "Traceback" not in result.output


def test_a_teacher_of_other_classes_is_refused(synth_data: Path, tmp_path: Path) -> None:
    fewer = tmp_path / "fewer"
    shutil.copytree(synth_data, fewer)
    shutil.rmtree(sorted(p for p in fewer.iterdir() if p.is_dir())[0])
    other = train_classifier(TrainConfig(model=TINY, data=fewer, out=tmp_path / "t", img_size=32, epochs=1, batch_size=16,
                                         device="cpu", workers=0)).best_checkpoint
    result = runner.invoke(app, ["soft-labels", str(other), "--data", str(synth_data), "--out", str(tmp_path / "x.bank"),
                                 "--device", "cpu"])
    assert result.exit_code == 1 and "was trained on classes" in result.output
    assert not (tmp_path / "x.bank").exists() and not (tmp_path / "x.bank.partial").exists()


def test_cli_bank_then_train_warns_when_views_repeat(teacher: Path, synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.bank"
    result = runner.invoke(app, ["soft-labels", str(teacher), "--data", str(synth_data), "--out", str(out), "--views", "2",
                                 "--device", "cpu", "--batch-size", "32"])
    assert result.exit_code == 0, result.output
    assert "x 2 views x 1 teacher(s)" in result.output and out.exists()
    result = runner.invoke(app, ["info", str(out)])
    assert result.exit_code == 0 and "soft-labels" in result.output
    result = runner.invoke(app, ["train", "--model", TINY, "--data", str(synth_data), "--soft-labels", str(out), "--epochs", "3",
                                 "--img-size", "32", "--out", str(tmp_path / "s"), "--device", "cpu", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "views repeat from epoch 3" in result.output


def test_prune_and_qat_fine_tune_from_a_bank(tiny_ckpts: dict[str, Path], synth_data: Path, tmp_path: Path) -> None:
    """The bank of the checkpoint itself replaces running it as the teacher of its own compressed copy."""
    own = tmp_path / "own.bank"
    make_soft_labels(SoftLabelConfig(teachers=[tiny_ckpts["yaml"]], data=synth_data, out=own, views=2, device="cpu"))
    result = runner.invoke(app, ["prune", str(tiny_ckpts["yaml"]), "--target-macs", "0.4M", "--data", str(synth_data),
                                 "--out", str(tmp_path / "p"), "--epochs", "1", "--device", "cpu", "--soft-labels", str(own)])
    assert result.exit_code == 0, result.output
    best = read_manifest(tmp_path / "p" / "best.pt")
    assert best.extra["soft_labels"]["sha256"] == read_manifest(own).sha256 and best.extra["teachers"] == []
    result = runner.invoke(app, ["qat", str(tiny_ckpts["yaml"]), "--data", str(synth_data), "--out", str(tmp_path / "q.onnx"),
                                 "--epochs", "1", "--num-images", "16", "--soft-labels", str(own)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "q.onnx").exists()


@pytest.mark.slow
def test_search_trials_learn_from_the_bank(bank: Path, synth_data: Path, tmp_path: Path) -> None:
    """Each trial distils from the bank (KD T and alpha searched), with no teacher run; a bank that does
    not fit the data stops the search before any trial."""
    yaml_only = ["--backbones", TINY, "--sizes", "32", "--max-prune", "0", "--scratch", "--epochs", "1", "--batch-size", "16",
                 "--device", "cpu"]
    result = runner.invoke(app, ["search", "--data", str(synth_data), "--out", str(tmp_path / "s"), "--trials", "2",
                                 "--soft-labels", str(bank), "--seed", "0", "--final-epochs", "0", *yaml_only])
    assert result.exit_code == 0, result.output
    for trial in sorted((tmp_path / "s" / "edgeopt").glob("trial-*")):
        manifest = read_manifest(trial / "best.pt")
        assert manifest.extra["soft_labels"]["sha256"] == read_manifest(bank).sha256 and manifest.extra["teachers"] == []
    report = json.loads((tmp_path / "s" / "edgeopt" / "pareto.json").read_text())
    assert len(report["trials"]) == 2 and all({"kd_temperature", "kd_alpha"} <= set(t["params"]) for t in report["trials"])
    fewer = tmp_path / "fewer"
    shutil.copytree(synth_data, fewer)
    shutil.rmtree(sorted(p for p in fewer.iterdir() if p.is_dir())[0])
    result = runner.invoke(app, ["search", "--data", str(fewer), "--out", str(tmp_path / "f"), "--trials", "1",
                                 "--soft-labels", str(bank), *yaml_only])
    assert result.exit_code == 1 and "was made for classes" in result.output
    assert not list((tmp_path / "f").rglob("trial-*"))


def _forge(bank: Path, dest: Path, logits: np.ndarray, classes_recorded: int) -> Path:
    """A copy of ``bank`` holding ``logits``, its manifest's shape record and hash edited to match."""
    from edgeopt.artifacts import sha256_file
    from edgeopt.train.soft_labels import _load_tensors, _save_tensors

    arrays = _load_tensors(bank)
    _save_tensors(dest, {"views": arrays["views"], "logits": logits})
    manifest = json.loads(bank.with_name(bank.name + ".json").read_text())
    manifest["extra"]["shape"]["classes"] = classes_recorded
    manifest["sha256"] = sha256_file(dest)
    dest.with_name(dest.name + ".json").write_text(json.dumps(manifest))
    return dest


def test_a_forged_class_count_or_nan_logits_are_refused_on_load(bank: Path, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.train.soft_labels import _load_tensors

    logits = _load_tensors(bank)["logits"]
    three = _forge(bank, tmp_path / "three.bank", np.ascontiguousarray(logits[..., :3]), 3)  # 3 logits for 6 named classes
    with pytest.raises(ArtifactError, match="holds 3 logits per view for the 6 classes"):
        read_bank(three)
    poisoned = logits.copy()
    poisoned[1, 0, 0, 2] = np.nan
    nan = _forge(bank, tmp_path / "nan.bank", poisoned, logits.shape[-1])
    with pytest.raises(ArtifactError, match="1 image\\(s\\) have NaN or infinite teacher logits"):
        read_bank(nan)
    for forged in (three, nan):  # through the CLI: one line, no traceback, nothing trained
        result = runner.invoke(app, ["train", "--model", TINY, "--data", str(synth_data), "--img-size", "32", "--device", "cpu",
                                     "--epochs", "1", "--out", str(tmp_path / forged.stem), "--soft-labels", str(forged)])
        assert result.exit_code == 1 and result.output.count("error:") == 1 and "Traceback" not in result.output, result.output
        assert not (tmp_path / forged.stem / "best.pt").exists()


def test_a_bank_follows_its_seed_and_tta_flip_stores_the_mean_over_the_mirror(teacher: Path, synth_data: Path,
                                                                              tmp_path: Path) -> None:
    from edgeopt.data.loaders import cache_preprocess, decode_all
    from edgeopt.data.presets import Preprocess
    from edgeopt.models.checkpoint import load_checkpoint
    from edgeopt.train.distill import view_for

    banks = {}
    for name, seed, tta in (("s0", 0, False), ("s1", 1, False), ("s0-tta", 0, True)):
        make_soft_labels(SoftLabelConfig(teachers=[teacher], data=synth_data, out=tmp_path / f"{name}.bank", views=2, seed=seed,
                                  batch_size=16, device="cpu", tta_flip=tta))
        banks[name] = read_bank(tmp_path / f"{name}.bank")
    assert not np.array_equal(banks["s0"].views, banks["s1"].views)  # a student's seed gives its bank its own views
    assert np.array_equal(banks["s0"].views, banks["s0-tta"].views)
    assert banks["s0-tta"].manifest.extra["teacher_tta"] == "flip" and banks["s0"].manifest.extra["teacher_tta"] is None
    model, manifest = load_checkpoint(teacher)
    pre = Preprocess.from_dict(manifest.preprocess)
    files = banks["s0"].manifest.extra["files"]
    images = decode_all([synth_data / key for key, _ in files], cache_preprocess(pre))
    x = view_for(torch.stack([render_view(images[r], banks["s0"].views[r, 1], pre.size) for r in range(len(files))]), pre)
    with torch.no_grad():
        plain, mirrored = model(x).numpy().astype(np.float64), model(x.flip(-1)).numpy().astype(np.float64)
    stored, tta = banks["s0"].logits[:, 1, 0].astype(np.float64), banks["s0-tta"].logits[:, 1, 0].astype(np.float64)
    resolution = np.spacing(np.abs(plain).astype(np.float16)).astype(np.float64)  # what float16 storage rounds to
    np.testing.assert_array_less(np.abs(stored - plain), 2 * resolution + 1e-6)
    np.testing.assert_array_less(np.abs(tta - (plain + mirrored) / 2), 2 * resolution + 1e-6)
    r = int(np.argmax(np.abs(plain - mirrored).max(1) / resolution.max(1)))
    assert np.abs(plain[r] - mirrored[r]).max() > 8 * resolution[r].max(), \
        "premise: on some image the teacher's answer changes with the mirror image by more than float16 rounds"
    assert np.abs(tta[r] - plain[r]).max() > 2 * resolution[r].max()  # so the stored mean is not the plain view's


def test_bf16_asked_for_where_the_cpu_has_none_warns_and_runs_fp32(teacher: Path, synth_data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeopt.train.soft_labels as soft_labels
    from edgeopt.errors import EdgeoptWarning

    monkeypatch.setattr(soft_labels, "_cpu_bf16_units", lambda: [])  # a CPU without AVX-512 BF16 or AMX
    with pytest.warns(EdgeoptWarning, match="no bf16 arithmetic"):
        make_soft_labels(SoftLabelConfig(teachers=[teacher], data=synth_data, out=tmp_path / "b.bank", views=1, batch_size=16,
                                  device="cpu", precision="bf16"))
    assert read_bank(tmp_path / "b.bank").manifest.extra["teacher_precision"] == "fp32"
    with pytest.raises(ConfigError, match="`precision` 'fp8' is unknown"):
        SoftLabelConfig(teachers=[teacher], data=synth_data, out=tmp_path / "c.bank", precision="fp8")


def test_student_views_come_from_a_cache_of_at_least_twice_their_size() -> None:
    from edgeopt.data.loaders import cache_size

    for size in (32, 48, 64, 96, 128):
        assert cache_size(size) >= 2 * size  # every random-resized crop is a downsample, as deployed inputs are
    assert size < cache_size(224) < 2 * 224  # a 224 px teacher's photos are rarely twice its size


def test_a_bf16_bank_where_the_cpu_has_bf16_units_is_close_to_fp32(teacher: Path, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.train.soft_labels import teacher_precision

    if teacher_precision("auto", torch.device("cpu")) != "bf16":
        pytest.skip("this CPU has no bf16 units (AVX-512 BF16 or AMX): auto runs the teachers in FP32")
    for precision in ("fp32", "bf16"):
        make_soft_labels(SoftLabelConfig(teachers=[teacher], data=synth_data, out=tmp_path / f"{precision}.bank", views=1,
                                  batch_size=16, device="cpu", precision=precision))
    a, b = (read_bank(tmp_path / f"{p}.bank") for p in ("fp32", "bf16"))
    assert b.manifest.extra["teacher_precision"] == "bf16"
    spread = float(np.abs(a.logits.astype(np.float32)).max())
    assert np.abs(a.logits.astype(np.float32) - b.logits.astype(np.float32)).max() < 0.05 * spread + 1e-2


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_a_student_from_a_bank_of_blends_learns_exactly_what_it_learns_online(mix: str, teacher: Path, bank: Path,
                                                                             synth_data: Path, tmp_path: Path) -> None:
    """Function matching from a bank: every stored view blended with a partner's view of the same index;
    the student from the bank sees the blends the teacher labelled, the same as with the teacher online."""
    teacher = _sharpened(teacher, tmp_path / "sharp.pt")
    blended = tmp_path / f"{mix}.bank"
    make_soft_labels(SoftLabelConfig(teachers=[teacher], data=synth_data, out=blended, views=2, batch_size=16, device="cpu",
                              chunk_images=20, mix=mix, mix_alpha=1.0, scale_min=0.35, brightness=0.0))
    loaded = read_bank(blended)
    assert loaded.blends.shape == loaded.views.shape and loaded.blend_logits.shape == loaded.logits.shape
    partners = loaded.blends[..., 0].astype(int)
    assert (partners != np.arange(len(partners))[:, None]).mean() > 0.8  # blended with other images
    if mix == "cutmix":
        assert (loaded.blends[..., 4] * loaded.blends[..., 5] > 0).mean() > 0.9  # a box of the partner pasted in
    assert np.abs(loaded.blend_logits.astype(np.float32) - loaded.logits.astype(np.float32)).max() > 1e-3

    def student(out: Path, **source) -> TrainConfig:
        return TrainConfig(model=TINY, data=synth_data, out=out, img_size=32, epochs=2, batch_size=16, device="cpu", workers=0,
                           kd=KDConfig(4.0, 1.0, mix=mix, mix_alpha=1.0, **source))

    online = train_classifier(student(tmp_path / "online", teachers=(teacher,)))
    banked = train_classifier(student(tmp_path / "bank", soft_labels=blended))
    losses = [h.train_loss for h in online.history], [h.train_loss for h in banked.history]
    # the same up to the bank's float16 storage of the teacher's logits: with pure KD (alpha 1) on a confident
    # teacher that rounding is all that differs (at alpha 0.7 the label term hides it: the plain bank's test, 1e-4)
    assert losses[0] == pytest.approx(losses[1], rel=5e-3)
    # what the student learned from are the blends: its inputs are not the plain views
    from edgeopt.data.folder import scan_folder
    from edgeopt.data.loaders import cache_size, decode_all
    from edgeopt.data.presets import Preprocess
    from edgeopt.train.distill import DistillViews
    from edgeopt.train.soft_labels import image_keys

    scan = scan_folder(synth_data)
    images = decode_all([x.path for x in scan.samples], Preprocess(size=cache_size(32)))
    rows = loaded.rows_for(scan)
    views = DistillViews(images, scan.labels, image_keys(scan), 32, bank=loaded, rows=rows)
    changed = [float((views[i][0] - render_view(images[i], loaded.views[rows[i], 0], 32)).abs().max()) > 0.05
               for i in range(len(scan.samples))]
    assert np.mean(changed) > 0.8


def _sharpened(teacher: Path, out: Path) -> Path:
    """The teacher with its classifier scaled up: confident logits, so that a pure-KD loss is large
    against the float16 rounding of a bank (the two-epoch teacher's near-uniform answers are not)."""
    from edgeopt.models.checkpoint import load_model_and_arch, save_checkpoint
    from edgeopt.data.presets import Preprocess

    model, manifest, arch = load_model_and_arch(teacher)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(30.0)
        head.bias.mul_(30.0)
    return save_checkpoint(out, model, arch, list(manifest.classes), Preprocess.from_dict(manifest.preprocess))


def test_a_blend_setting_must_match_the_banks(teacher: Path, bank: Path, synth_data: Path, tmp_path: Path) -> None:
    blended = tmp_path / "mixup.bank"
    make_soft_labels(SoftLabelConfig(teachers=[teacher], data=synth_data, out=blended, views=1, batch_size=16, device="cpu", mix="mixup"))
    base = ["train", "--model", TINY, "--data", str(synth_data), "--img-size", "32", "--device", "cpu", "--epochs", "1",
            "--scratch", "--kd-alpha", "1"]
    for args, message in (([*base, "--soft-labels", str(bank), "--kd-mix", "mixup"], "with a bank of views without blends"),
                          ([*base, "--soft-labels", str(blended)], "--kd-mix none with a bank of mixup blends"),
                          ([*base, "--soft-labels", str(blended), "--kd-mix", "cutmix"], "--kd-mix cutmix (alpha 1.0) with a bank of mixup"),
                          ([*base[:-2], "--soft-labels", str(blended), "--kd-mix", "mixup"], "no single label"),
                          ([*base, "--kd-mix", "mixup"], "give --teacher or --soft-labels")):
        result = runner.invoke(app, [*args, "--out", str(tmp_path / "s")])
        assert result.exit_code == 1 and result.output.count("error:") == 1 and message in result.output, (args, result.output)
        assert not (tmp_path / "s" / "best.pt").exists()
