"""BatchNorm [+ Scale] [+ ReLU] chains run as one step (bnlint.forward.fusion) give the
exact ops' results within float32 rounding, and fuse only where nothing else needs
the blobs inside a chain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnlint.caffe.load import parse_text
from bnlint.caffe.net import NetState, net_view
from bnlint.caffe.phase import Phase
from bnlint.forward.executor import Network, load_network
from bnlint.source import SourceFile
from conftest import GOLDEN, needs_shared

INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 7 dim: 5 } } }\n'
CONV = ('layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}" '
        'convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 '
        'weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "gaussian" }} }} }}\n')


def layer(kind: str, name: str, bottom: str, top: str, extra: str = "") -> str:
    return f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" top: "{top}" {extra} }}\n'


def network(text: str, phase: Phase = Phase.TEST) -> Network:
    view = net_view(parse_text(SourceFile("net.prototxt", text)))
    net = Network(view, NetState(phase=phase), seed=5)
    rng = np.random.default_rng(9)
    for name, blobs in net.blobs.items():        # statistics a BatchNorm really has
        for i, blob in enumerate(blobs):
            if blob.ndim == 1 and blob.size == 4:
                blob[...] = rng.uniform(0.5, 2.0, 4) if i != 0 else rng.uniform(-1, 1, 4)
            elif blob.size == 1:
                blob[...] = 2.0                      # the scale factor: sums / 2
    for step in net.steps:                           # the ops read the blobs at build
        if step.op is not None and step.layer.type in ("BatchNorm", "Scale"):
            step.op.__init__(step.op.layer, net.blobs[step.layer.name], step.op.phase)
    return net


def fused_layers(net: Network) -> list[tuple[str, ...]]:
    steps, _ = net._fused_plan()
    return [tuple(layer.name for layer in step.covers) for step in steps if step.covers]


X = np.random.default_rng(1).uniform(-2, 2, (2, 3, 7, 5)).astype(np.float32)

IN_PLACE = (INPUT + CONV.format(name="conv", bottom="data", top="conv")
            + layer("BatchNorm", "bn", "conv", "conv")
            + layer("Scale", "sc", "conv", "conv", "scale_param { bias_term: true }")
            + layer("ReLU", "relu", "conv", "conv"))


def test_an_in_place_chain_is_one_step_with_the_exact_result():
    net = network(IN_PLACE)
    assert fused_layers(net) == [("bn", "sc", "relu")]
    exact = net.run({"data": X})["conv"]
    fused = net.run({"data": X}, fuse=True)["conv"]
    assert exact.min() == 0.0 and exact.max() > 0.5          # the chain did something
    np.testing.assert_allclose(fused, exact, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("tail, chain", [
    # no Scale, no ReLU: the BatchNorm alone
    ("", ("bn",)),
    # a Scale without bias, separate tops
    (layer("Scale", "sc", "b", "s") + layer("ReLU", "relu", "s", "r"), ("bn", "sc", "relu")),
    # a leaky ReLU stays an op of its own
    (layer("Scale", "sc", "b", "s", "scale_param { bias_term: true }")
     + layer("ReLU", "relu", "s", "r", "relu_param { negative_slope: 0.1 }"), ("bn", "sc")),
    # a second reader of the BatchNorm's top: the BatchNorm alone
    (layer("Scale", "sc", "b", "s") + layer("Sigmoid", "other", "b", "o"), ("bn",)),
])
def test_chains_fuse_only_as_far_as_nothing_else_reads_them(tail, chain):
    net = network(INPUT + CONV.format(name="conv", bottom="data", top="c")
                  + layer("BatchNorm", "bn", "c", "b") + tail)
    assert fused_layers(net) == ([chain] if chain else [])
    exact = net.run({"data": X})
    fused = net.run({"data": X}, fuse=True)
    assert list(fused) == list(exact)
    for name in exact:
        np.testing.assert_allclose(fused[name], exact[name], rtol=2e-6, atol=2e-6)


def test_a_chain_stops_at_a_blob_read_twice():
    text = (INPUT + CONV.format(name="conv", bottom="data", top="c")
            + layer("BatchNorm", "bn", "c", "b") + layer("Scale", "sc", "b", "s")
            + layer("ReLU", "relu", "s", "r"))
    assert fused_layers(network(text)) == [("bn", "sc", "relu")]
    text += layer("Sigmoid", "sig", "b", "b2")      # the BatchNorm's top read again
    assert fused_layers(network(text)) == [("bn",)]     # b is read twice


def test_batch_statistics_are_never_fused():
    text = (INPUT + CONV.format(name="conv", bottom="data", top="conv")
            + layer("BatchNorm", "bn", "conv", "conv", "batch_norm_param { use_global_stats: false }")
            + layer("Scale", "sc", "conv", "conv", "scale_param { bias_term: true }"))
    assert fused_layers(network(text)) == []


def test_other_keeps_and_hooks_see_every_layer():
    net = network(IN_PLACE)
    exact_all = net.run({"data": X}, keep="all")
    assert all(np.array_equal(a, b) for a, b in
               zip(exact_all.values(), net.run({"data": X}, keep="all", fuse=True).values()))
    seen = []
    net.run({"data": X}, fuse=True, on_layer=lambda layer, tops: seen.append(layer.name))
    assert seen == ["data", "conv", "bn", "sc", "relu"]


BN_ON_INPUT = (INPUT + layer("BatchNorm", "bn", "data", "data")
               + layer("Scale", "sc", "data", "data", "scale_param { bias_term: true }"))


def _bn_on_input(mean: float, variance: float) -> Network:
    net = network(BN_ON_INPUT)
    blobs = net.blobs["bn"]
    blobs[0][...], blobs[1][...], blobs[2][...] = mean, variance, 1.0
    bn = next(step.op for step in net.steps if step.layer.name == "bn")
    bn.__init__(bn.layer, blobs, Phase.TEST)
    return net


@pytest.mark.parametrize("mean, variance, subtracts", [
    (0.5, 1.0, False),          # the usual statistics: x * k + c, three passes
    (1000.0, 1e-4, True),       # |mean| / std 1e5: (x - mean) * k + c, as Caffe
])
def test_a_large_mean_over_std_subtracts_the_mean_first(monkeypatch, mean, variance,
                                                         subtracts):
    net = _bn_on_input(mean, variance)
    # inputs within a few std of the mean, as a trained BatchNorm sees them
    x = (mean + np.random.default_rng(3).normal(0, 2 * variance ** 0.5, X.shape)
         ).astype(np.float32)
    exact = net.run({"data": x})["data"]
    fused = net.run({"data": x}, fuse=True)["data"]
    (step,) = [s for s in net._fused_plan()[0] if s.covers]
    assert step.op.subtract is subtracts
    scale = max(1.0, float(np.abs(exact).max()))
    assert float(np.abs(fused - exact).max()) <= 1e-5 * scale
    if subtracts:               # the x * k + c form would miss the golden tolerance
        from bnlint.forward import fusion

        monkeypatch.setattr(fusion, "MAX_MEAN_OVER_STD", float("inf"))
        net._fused = None
        cancelled = net.run({"data": x}, fuse=True)["data"]
        assert float(np.abs(cancelled - exact).max()) > 1e-4 * scale   # golden bound


def test_a_zero_std_is_left_to_the_exact_op():
    text = (INPUT + CONV.format(name="conv", bottom="data", top="conv")
            + layer("BatchNorm", "bn", "conv", "conv", "batch_norm_param { eps: 0 }"))
    net = network(text)
    net.blobs["bn"][1][...] = 0.0                 # variance 0, eps 0: x / 0
    net.steps[-1].op.__init__(net.steps[-1].op.layer, net.blobs["bn"], Phase.TEST)
    net._fused = None
    assert fused_layers(net) == []


GOLDEN_FUSED = ["bn_variants", "mobilenet_v1", "densenet121", "mobilenet_ssd"]


@needs_shared
@pytest.mark.parametrize("name", GOLDEN_FUSED)
def test_fused_golden_outputs_stay_within_the_golden_tolerances(name):
    from bnlint.forward.compare import golden_close, input_sensitivity

    folder = Path(GOLDEN) / name

    def load(path):
        with np.load(path) as archive:
            return {k: archive[k] for k in archive.files}

    inputs = load(folder / "inputs.npz")
    references = {**load(folder / "blobs.npz"), **load(folder / "outputs.npz")}
    net = load_network(str(folder / "net.prototxt"), str(folder / "weights.caffemodel"),
                       input_shapes={k: v.shape for k, v in inputs.items()})
    got = net.run(inputs, fuse=True)
    assert len(net._fused_plan()[0]) < len(net.steps)           # something fused
    noise = (input_sensitivity(net, inputs, set(got) - {"detection_out"})
             if name == "mobilenet_ssd" else {})
    for blob, value in got.items():
        result = golden_close(value, references[blob], uncertainty=noise.get(blob))
        assert result.ok, f"{blob}: {result.describe()}"
