"""FixRes's BatchNorm recalibration: the statistics change to those of the deployed input, the weights do not."""

from __future__ import annotations

from pathlib import Path

import torch

from edgeopt.models.checkpoint import load_model_and_arch
from edgeopt.train.fixres import recalibrate_bn
from edgeopt.train.loop import TrainConfig, train_classifier

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "models" / "tiny_cnn.yaml")


def test_recalibration_sets_bn_statistics_to_the_batches_average_and_leaves_weights() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    bn = model[1]
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(9.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [torch.randn(4, 3, 8, 8) * 2 + 1, torch.randn(4, 3, 8, 8)]
    assert recalibrate_bn(model, batches) == 8
    with torch.no_grad():  # the average over batches of each batch's statistics (update_bn's running average)
        pre = [model[0](b) for b in batches]
    assert torch.allclose(bn.running_mean, torch.stack([p.mean((0, 2, 3)) for p in pre]).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack([p.var((0, 2, 3), unbiased=True) for p in pre]).mean(0), rtol=1e-4)
    after = model.state_dict()
    for name in before:
        if "running" in name or "num_batches" in name:
            continue
        assert torch.equal(before[name], after[name]), name  # no weight moved
    assert not model.training and bn.momentum == 0.1


def test_training_with_bn_recalibrate_rewrites_best_with_deployed_statistics(synth_data: Path, tmp_path: Path) -> None:
    plain = train_classifier(TrainConfig(model=TINY, data=synth_data, out=tmp_path / "a", img_size=32, epochs=1, batch_size=16,
                                         val_split=0.0, device="cpu", workers=0))
    fixed = train_classifier(TrainConfig(model=TINY, data=synth_data, out=tmp_path / "b", img_size=32, epochs=1, batch_size=16,
                                         val_split=0.0, device="cpu", workers=0, bn_recalibrate=True))
    (m1, _, _), (m2, manifest, _) = load_model_and_arch(plain.best_checkpoint), load_model_and_arch(fixed.best_checkpoint)
    s1, s2 = m1.state_dict(), m2.state_dict()
    stats = [k for k in s1 if k.endswith("running_mean") or k.endswith("running_var")]
    assert stats and any(not torch.allclose(s1[k], s2[k]) for k in stats)  # the statistics changed
    assert all(torch.equal(s1[k], s2[k]) for k in s1 if k not in stats and "num_batches" not in k)  # the weights did not
    assert manifest.extra["bn_recalibrated"]["images"] == len(list(synth_data.rglob("*.jpg")))
