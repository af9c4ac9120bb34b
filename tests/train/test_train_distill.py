from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeopt.train.config import KDConfig
from edgeopt.train.distill import kd_loss, soft_targets
from edgeopt.errors import ConfigError


def test_kd_term_is_zero_when_student_matches_teacher() -> None:
    logits = torch.randn(8, 5)
    y = torch.randint(0, 5, (8,))
    loss = kd_loss(logits, [logits.clone()], y, KDConfig(4.0, 1.0), hard_loss=torch.tensor(3.0))
    assert loss.abs() < 1e-6


def test_kd_is_positive_otherwise_and_alpha_blends_hard_loss() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    hard = F.cross_entropy(s, y)
    pure_kd = kd_loss(s, [t], y, KDConfig(4.0, 1.0), hard)
    # T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch, written out with numpy
    ps, pt = (np.exp(v / 4.0) / np.exp(v / 4.0).sum(1, keepdims=True) for v in (s.numpy().astype(np.float64), t.numpy().astype(np.float64)))
    expected = 16.0 * (pt * (np.log(pt) - np.log(ps))).sum(1).mean()
    assert float(pure_kd) == pytest.approx(expected, rel=1e-5) and expected > 0
    assert kd_loss(s, [t], y, KDConfig(4.0, 0.0), hard) == pytest.approx(float(hard))
    assert kd_loss(s, [t], y, KDConfig(4.0, 0.5), hard) == pytest.approx(0.5 * float(pure_kd) + 0.5 * float(hard), rel=1e-5)


def test_temperature_squared_scaling() -> None:
    # KL between softened distributions shrinks ~1/T^2 for large T; the T^2 factor compensates
    s, t = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    y = torch.tensor([1])
    l8 = kd_loss(s, [t], y, KDConfig(8.0, 1.0), torch.tensor(0.0))
    l16 = kd_loss(s, [t], y, KDConfig(16.0, 1.0), torch.tensor(0.0))
    assert float(l16) == pytest.approx(float(l8), rel=0.1)


def test_true_label_mode_ignores_samples_the_teacher_gets_wrong() -> None:
    s = torch.zeros(2, 3)
    teacher = torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])  # predicts class 0 for both
    y = torch.tensor([0, 2])  # right on the first, wrong on the second
    both = kd_loss(s, [teacher], y, KDConfig(1.0, 1.0, "all"), torch.tensor(0.0))
    right_only = kd_loss(s, [teacher], y, KDConfig(1.0, 1.0, "true-label"), torch.tensor(0.0))
    assert float(right_only) == pytest.approx(float(both) / 2, rel=1e-5)


def test_several_teachers_average_their_soft_targets() -> None:
    a, b = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    p = soft_targets([a, b], 1.0)
    assert torch.allclose(p, torch.tensor([[0.5, 0.5]]))


def test_bad_kd_options() -> None:
    with pytest.raises(ConfigError, match="`kd_alpha`"):
        KDConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="`kd` 'sometimes'"):
        KDConfig(mode="sometimes")
    with pytest.raises(ConfigError, match="`kd_temperature`"):
        KDConfig(temperature=0)


def test_one_kd_config_carries_where_the_targets_come_from(tmp_path: Path) -> None:
    from edgeopt.compress.finetune import FinetuneConfig
    from edgeopt.quant.qat import QatConfig
    from edgeopt.search import SearchConfig
    from edgeopt.train.loop import TrainConfig

    bank, teacher = tmp_path / "b.bank", tmp_path / "t.pt"
    with pytest.raises(ConfigError, match="not both"):
        KDConfig(teachers=(teacher,), soft_labels=bank)
    online, banked = KDConfig(teachers=[str(teacher)]), KDConfig(soft_labels=str(bank))
    assert online.teachers == (teacher,) and online.enabled and banked.enabled and not KDConfig().enabled
    # a stage's own teacher (the uncompressed model) goes in only where no bank supplies the targets
    assert KDConfig().with_teachers(teacher).teachers == (teacher,) and banked.with_teachers(teacher) is banked
    # the same object in every stage that distils
    assert TrainConfig(model="m", data=tmp_path, kd=banked).distilled
    assert FinetuneConfig(kd=banked).kd == QatConfig(checkpoint=teacher, data=tmp_path, out=tmp_path / "q.onnx", kd=banked).kd
    assert SearchConfig(data=tmp_path, kd=online).kd.teachers == (teacher,)
    with pytest.raises(ConfigError, match="QAT distils from the unquantized model"):
        QatConfig(checkpoint=teacher, data=tmp_path, out=tmp_path / "q.onnx", kd=online)
    assert TrainConfig(model="m", data=tmp_path, kd=online).to_dict()["kd"]["teachers"] == [str(teacher)]


def test_pure_kl_at_t1_on_fixed_logits_is_the_hand_computed_value() -> None:
    """Function matching's loss: alpha 1 (no label term), T 1, on logits worked out by hand."""
    s, t = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0]])
    # p_t = (1/3, 1/3, 1/3); p_s = (e^2, 1, 1) / (e^2 + 2)
    z = np.exp(2.0) + 2
    p_s = np.array([np.exp(2.0) / z, 1 / z, 1 / z])
    expected = float(np.sum((1 / 3) * (np.log(1 / 3) - np.log(p_s))))
    loss = kd_loss(s, [t], torch.tensor([0]), KDConfig(1.0, 1.0), hard_loss=torch.tensor(5.0))
    assert float(loss) == pytest.approx(expected, rel=1e-6) and expected == pytest.approx(0.4743, abs=1e-4)


def test_dist_on_fixed_logits_is_the_hand_computed_value() -> None:
    """DIST: 1 - mean Pearson over images + 1 - mean Pearson over classes, of the softened outputs."""
    s = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    t = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])

    def softmax(v: np.ndarray) -> np.ndarray:
        e = np.exp(v)
        return e / e.sum(1, keepdims=True)

    def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)])

    ps, pt = softmax(s.numpy().astype(np.float64)), softmax(t.numpy().astype(np.float64))
    inter = 1 - pearson_rows(ps, pt).mean()
    intra = 1 - pearson_rows(ps.T, pt.T).mean()
    loss = kd_loss(s, [t], torch.tensor([0, 2]), KDConfig(1.0, 1.0, loss="dist"), hard_loss=torch.tensor(9.0))
    assert float(loss) == pytest.approx(inter + intra, rel=1e-5) and inter + intra > 0
    assert float(kd_loss(t, [t], torch.tensor([0, 2]), KDConfig(1.0, 1.0, loss="dist"), torch.tensor(0.0))) == pytest.approx(0, abs=1e-5)
    # alpha blends the DIST term (0 here: the same outputs) with the hard loss
    assert float(kd_loss(s, [s * 1.0], torch.tensor([0, 2]), KDConfig(1.0, 0.5, loss="dist"), torch.tensor(2.0))) == \
        pytest.approx(1.0, abs=1e-5)


def test_class_weighted_kd_weighs_each_image_by_its_class() -> None:
    s, t = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    per_image = [float(kd_loss(s[i:i + 1], [t[i:i + 1]], y[i:i + 1], KDConfig(1.0, 1.0), torch.tensor(0.0))) for i in range(2)]
    weights = torch.tensor([1.0, 3.0])
    loss = kd_loss(s, [t], y, KDConfig(1.0, 1.0, class_weighted=True), torch.tensor(0.0), class_weights=weights)
    assert float(loss) == pytest.approx((0.5 * per_image[0] + 1.5 * per_image[1]) / 2, rel=1e-6)


def test_kd_loss_combinations_that_make_no_sense_are_one_line() -> None:
    for kw, message in (({"loss": "dist", "mode": "true-label"}, "cannot leave out the images"),
                        ({"loss": "dist", "alpha": 0.0}, "`kd_alpha` 0"),
                        ({"loss": "dist", "class_weighted": True}, "`kd_class_weighted`"),
                        ({"loss": "mse"}, "`kd_loss` 'mse' is unknown")):
        with pytest.raises(ConfigError, match=message):
            KDConfig(**kw)


def test_cli_kd_loss_flags_and_their_bad_combinations(synth_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeopt.cli.app import app

    tiny = str(Path(__file__).resolve().parents[2] / "edgeopt" / "models" / "tiny_cnn.yaml")
    if not Path(tiny).is_file():
        tiny = str(Path(__file__).resolve().parents[2] / "models" / "tiny_cnn.yaml")
    teacher = tmp_path / "t"
    base = ["train", "--model", tiny, "--data", str(synth_data), "--img-size", "32", "--epochs", "1", "--device", "cpu",
            "--scratch", "--val-split", "0"]
    assert CliRunner().invoke(app, [*base, "--out", str(teacher)]).exit_code == 0
    for flags, message in ((["--kd-loss", "dist", "--kd", "true-label"], "--kd-loss dist with --kd true-label"),
                           (["--kd-loss", "dist", "--kd-alpha", "0"], "--kd-loss dist with --kd-alpha 0")):
        result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "s"), "--teacher", str(teacher / "best.pt"), *flags])
        assert result.exit_code == 1 and result.output.count("error:") == 1 and message in result.output, result.output
    result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "d"), "--teacher", str(teacher / "best.pt"),
                                      "--kd-loss", "dist", "--kd-alpha", "1", "--kd-temperature", "1", "--bn-recalibrate"])
    assert result.exit_code == 0, result.output
    from edgeopt.artifacts import read_manifest

    manifest = read_manifest(tmp_path / "d" / "best.pt")
    assert manifest.extra["train_config"]["kd"]["loss"] == "dist" and "bn_recalibrated" in manifest.extra
