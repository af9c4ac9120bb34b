"""Post-training remedies for depthwise nets: cross-layer equalization, bias correction, AdaRound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from edgeopt.artifacts import read_manifest
from edgeopt.cli.app import app
from edgeopt.quant.equalize import equalize, find_pairs
from edgeopt.quant.adaround import fake_quant
from edgeopt.quant.layers import quantizable_layers
from edgeopt.quant.ptq import _Taps
from edgeopt.quant.writers import check_qdq, fused_clip_bounds

runner = CliRunner()


def _chain(seed: int = 0) -> onnx.ModelProto:
    """Conv(3->8) -> ReLU6 -> depthwise Conv(8) -> Relu -> Conv(8->4): two equalizable pairs, and a first
    conv whose output channels span ranges 50x apart (as BN folding leaves them)."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * np.geomspace(0.05, 2.5, 8).reshape(-1, 1, 1, 1).astype(np.float32)
    b1 = rng.standard_normal(8).astype(np.float32)
    w2 = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    b2 = rng.standard_normal(8).astype(np.float32) * 0.1
    w3 = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (w3, "w3"),
                                                        (np.array(0.0, np.float32), "lo"), (np.array(6.0, np.float32), "hi"))]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["a1"], name="relu6"),
             helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], name="dw", pads=[1, 1, 1, 1], group=8),
             helper.make_node("Relu", ["c2"], ["a2"], name="relu"),
             helper.make_node("Conv", ["a2", "w3"], ["logits"], name="conv3")]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray, output: str = "logits") -> np.ndarray:
    return _Taps(model, [output]).values(output, [x])


def _ranges(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {"w1_out": np.abs(inits["w1"]).reshape(8, -1).max(1), "w2_in": np.abs(inits["w2"]).reshape(8, -1).max(1)}


def test_equalization_keeps_fp32_exactly_and_evens_out_channel_ranges() -> None:
    model = _chain()
    x = np.random.default_rng(1).standard_normal((16, 3, 8, 8)).astype(np.float32) * 3
    before, pre_clip = _run(model, x), _run(model, x, "c1")
    assert (pre_clip > 6).mean() > 0.01, "premise: the ReLU6 bound is reached, so rescaling it must be exact"
    ranges_before = _ranges(model)
    assert len(find_pairs(model)) == 2
    report = equalize(model)
    onnx.checker.check_model(model)
    after = _run(model, x)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())
    ranges_after = _ranges(model)
    spread = lambda r: r.max() / r.min()  # noqa: E731
    assert spread(ranges_after["w1_out"]) < spread(ranges_before["w1_out"]) / 3, (ranges_before, ranges_after)
    # the first pair equalized: each channel's range is the same on both sides of the ReLU6
    np.testing.assert_allclose(ranges_after["w1_out"], ranges_after["w2_in"], rtol=1e-3)
    assert report.pairs == 2 and report.clips_rewritten == 1
    ops = [n.op_type for n in model.graph.node]
    assert "Clip" not in ops and ops.count("Min") == 1 and ops.count("Relu") == 2
    # the rewritten ReLU6's range cap is what the Q/DQ writer sees (its largest per-channel bound)
    bound = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_eq_bound"))
    assert fused_clip_bounds(model)["c1"] == pytest.approx(float(bound.max()))


def test_equalization_leaves_unpaired_layers_alone() -> None:
    model = _chain()
    model.graph.output.append(helper.make_tensor_value_info("c1", TensorProto.FLOAT, None))  # conv1's output is read twice
    assert [p.first.name for p in find_pairs(model)] == ["dw"]


def test_equalize_through_the_cli_on_an_exported_model(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "eq.onnx"
    result = runner.invoke(app, ["calibrate", str(tiny_onnx), "--data", str(synth_data), "--out", str(out),
                                 "--num-images", "24", "--batch-size", "8", "--equalize"])
    assert result.exit_code == 0, result.output
    record = __import__("json").loads((tmp_path / "eq.calib.json").read_text())
    assert record["ptq"]["equalize"] is True and record["ptq"]["equalized"]["pairs"] >= 2
    assert read_manifest(out).extra["quantization"]["ptq"]["equalize"] is True
    assert check_qdq(onnx.load(str(out))) == []


def _calibration(tiny_onnx: Path, synth_data: Path) -> list[np.ndarray]:
    from edgeopt.data.calibration import calibration_set, iter_calibration_batches
    from edgeopt.data.presets import Preprocess

    manifest = read_manifest(tiny_onnx)
    with pytest.warns(Warning):
        cset = calibration_set(synth_data, manifest.classes, 24, 8)
    return list(iter_calibration_batches(cset, Preprocess.from_dict(manifest.preprocess), 8))


def _mean_errors(fp32: Path, quantized: Path, batches: list[np.ndarray]) -> dict[str, float]:
    """Per layer: the largest |mean over images and positions| of (INT8 output - FP32 output) over its channels."""
    model, qmodel = onnx.load(str(fp32)), onnx.load(str(quantized))
    layers = quantizable_layers(model)
    qnodes = {n.name: n for n in qmodel.graph.node}
    taps, qtaps = _Taps(model, [l.node.output[0] for l in layers]), _Taps(qmodel, [qnodes[l.name].output[0] for l in layers])
    errors = {}
    for layer in layers:
        diff = qtaps.values(qnodes[layer.name].output[0], batches) - taps.values(layer.node.output[0], batches)
        errors[layer.name] = float(np.abs(diff.mean(axis=tuple(i for i in range(diff.ndim) if i != 1))).max())
    return errors


def test_bias_correction_removes_the_mean_output_error_it_targets(tiny_onnx: Path, synth_data: Path, tmp_path: Path) -> None:
    from edgeopt.quant.calibrate import calibrate_onnx
    from edgeopt.quant.ptq import PtqConfig

    batches = _calibration(tiny_onnx, synth_data)
    plain = calibrate_onnx(tiny_onnx, synth_data, tmp_path / "plain.onnx", num_images=24, batch_size=8).path
    corrected = calibrate_onnx(tiny_onnx, synth_data, tmp_path / "bc.onnx", num_images=24, batch_size=8,
                               ptq=PtqConfig(bias_correction=True)).path
    before, after = _mean_errors(tiny_onnx, plain, batches), _mean_errors(tiny_onnx, corrected, batches)
    assert max(before.values()) > 1e-3, f"premise: INT8 shifts some layer's mean output ({before})"
    for name in before:
        assert after[name] <= 1e-4 + 1e-3 * before[name], (name, before[name], after[name])
    assert check_qdq(onnx.load(str(corrected))) == []


def _conv_layer(seed: int = 0):
    import torch

    from edgeopt.quant.layers import Layer

    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])
    layer = Layer(node, weight, np.zeros(6, np.float32), "x")
    x = torch.from_numpy(np.maximum(rng.standard_normal((64, 4, 6, 6)), 0).astype(np.float32))
    return layer, x, fake_quant(x, float(x.max()))  # the input as INT8 at its full range


def _error(layer, x, xq, weight_int: np.ndarray) -> float:
    import torch

    w = torch.from_numpy(layer.weight)
    s = torch.from_numpy(layer.scale().astype(np.float32)).reshape(-1, 1, 1, 1)
    with torch.no_grad():
        return float((layer.forward(xq, s * torch.from_numpy(weight_int.astype(np.float32))) - layer.forward(x, w)).pow(2).sum(1).mean())


def test_adaround_beats_nearest_rounding_and_never_does_worse() -> None:
    from edgeopt.quant.adaround import adaround_layer
    from edgeopt.quant.ptq import nearest_int

    layer, x, xq = _conv_layer()
    nearest = nearest_int(layer)
    learned, result = adaround_layer(layer, x, xq, iterations=300, seed=0)
    assert result.kept and result.flipped > 0
    assert _error(layer, x, xq, learned) < 0.97 * _error(layer, x, xq, nearest)  # measured: 0.93
    assert result.loss_nearest == pytest.approx(_error(layer, x, xq, nearest), rel=1e-4)
    assert np.abs(learned.astype(int) - nearest.astype(int)).max() <= 1 and np.abs(learned).max() <= 127
    # a learned rounding worse than nearest (here: pushed by a huge regulariser) is not used
    worse, result = adaround_layer(layer, x, xq, iterations=5, seed=0, reg=1e4, lr=5.0)
    assert _error(layer, x, xq, worse) <= _error(layer, x, xq, nearest) + 1e-9
    assert result.kept == (result.loss_adaround < result.loss_nearest)


def test_adaround_through_the_cli_writes_its_integers_within_the_qdq_rules(tiny_onnx: Path, synth_data: Path,
                                                                           tmp_path: Path) -> None:
    import json

    from edgeopt.quant.ptq import nearest_int

    out = tmp_path / "ada.onnx"
    result = runner.invoke(app, ["calibrate", str(tiny_onnx), "--data", str(synth_data), "--out", str(out), "--num-images", "24",
                                 "--batch-size", "8", "--adaround", "--adaround-iterations", "100", "--bias-correction"])
    assert result.exit_code == 0, result.output
    quantized = onnx.load(str(out))
    assert check_qdq(quantized) == []
    record = json.loads((tmp_path / "ada.calib.json").read_text())["ptq"]
    layers = {l["name"]: l["adaround"] for l in record["layers"]}
    assert layers and all(l["loss_adaround"] < l["loss_nearest"] for l in layers.values() if l["kept"])
    kept = [name for name, l in layers.items() if l["kept"]]
    assert kept, "premise: AdaRound improved at least one layer of the tiny model"
    inits = {i.name: numpy_helper.to_array(i) for i in quantized.graph.initializer}
    producers = {o: n for n in quantized.graph.node for o in n.output}
    fp32 = {l.name: l for l in quantizable_layers(onnx.load(str(tiny_onnx)))}
    changed = 0
    for node in quantized.graph.node:
        if node.name in kept:
            dq = producers[node.input[1]]
            written = inits[dq.input[0]]
            np.testing.assert_allclose(inits[dq.input[1]], fp32[node.name].scale(), rtol=1e-6)  # TensorRT's scale: max|w| / 127
            changed += int((written != nearest_int(fp32[node.name])).any())
    assert changed == len(kept)  # the written integers are AdaRound's, not nearest rounding's
