"""NVIDIA Caffe's BatchNorm (and SegNet's BN fillers) in bnlint's forward, shape rule,
fillers and W rules, on small hand-written nets.

The expected values are written from NVIDIA/caffe src/caffe/layers/batch_norm_layer.cpp
(Forward_cpu, LayerSetUp), not from running the op: at TEST, y = (x - blobs[0]) *
powf(blobs[1] + eps, -0.5), eps = max(eps, 1e-5), blobs[2] never read, then with
scale_bias y * blobs[3] + blobs[4]; each step a float32 operation.
"""

from __future__ import annotations

import numpy as np
import pytest

from bnlint.caffe import shapes
from bnlint.caffe.layers import batchnorm
from bnlint.caffe.load import parse_text
from bnlint.caffe.net import NetState, net_view
from bnlint.caffe.phase import Phase
from bnlint.caffe.weights import read_weights, write_caffemodel
from bnlint.errors import ForwardError, WeightsError
from bnlint.forward.executor import Network
from bnlint.forward.registry import op_for
from bnlint.lint.config import LintConfig
from bnlint.lint.runner import lint_source
from bnlint.source import SourceFile

F32 = np.float32
C = 3

NET = """name: "nv"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data"
  batch_norm_param { %s } }
"""
SCALE_BIAS = "scale_bias: true use_global_stats: false eps: 1e-06"


def network(text: str, weights=None, dialect: str = "auto", **kwargs) -> Network:
    source = SourceFile("<net>", text)
    parsed = parse_text(source, dialect=dialect)
    assert not parsed.problems, parsed.problems
    return Network(net_view(parsed), kwargs.pop("state", None), weights, source=source,
                   **kwargs)


def nv_blobs(seed: int = 0, affine: bool = True, correction: float = 7.0):
    """mean, variance, a correction NVCaffe never applies, and scale and bias."""
    rng = np.random.default_rng(seed)
    blobs = [rng.normal(0, 1, C).astype(F32), rng.uniform(0.1, 2, C).astype(F32),
             np.array([correction], F32)]
    if affine:
        blobs += [rng.uniform(0.5, 1.5, C).astype(F32), rng.normal(0, 0.5, C).astype(F32)]
    return blobs


def nv_test_formula(x, blobs, eps):
    """Forward_cpu at TEST, step by step in float32 (powf correctly rounded)."""
    eps = max(F32(eps), F32(1e-5))
    inv_std = (np.asarray(blobs[1] + eps, np.float64) ** -0.5).astype(F32)
    view = lambda v: v.reshape(1, -1, 1, 1)          # noqa: E731
    y = (x - view(blobs[0])).astype(F32)
    y = (y * view(inv_std)).astype(F32)
    if len(blobs) == 5:
        y = (y * view(blobs[3])).astype(F32)
        y = (y + view(blobs[4])).astype(F32)
    return y


def sample(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2, 2, (2, C, 4, 5)).astype(F32)


# --- the forward --------------------------------------------------------------------------

def test_five_blob_batchnorm_runs_nvcaffes_test_formula():
    """No workaround: the executor loads the 5 blobs and the op computes NVCaffe's TEST
    formula (eps 1e-6 raised to 1e-5, correction 7 and use_global_stats: false ignored)."""
    blobs = nv_blobs()
    net = network(NET % SCALE_BIAS, {"bn": blobs})
    x = sample()
    out = net.run({"data": x})["data"]
    np.testing.assert_array_equal(out, nv_test_formula(x, blobs, 1e-6))
    # the textbook formula, in float64
    mean, var, _, gamma, beta = (b.astype(np.float64).reshape(1, -1, 1, 1) for b in blobs)
    ref = (x - mean) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_three_blob_nvcaffe_batchnorm_never_divides_by_blobs_2():
    """Without scale_bias NVCaffe has 3 blobs, and blobs[2] is a correction it does not
    apply; BVLC divides the statistics by it. The dialect decides, not the text."""
    blobs = nv_blobs(affine=False, correction=999.982)
    x = sample()
    text = NET % "eps: 1e-06"
    nv = network(text, {"bn": blobs}, dialect="nvcaffe").run({"data": x})["data"]
    np.testing.assert_array_equal(nv, nv_test_formula(x, blobs, 1e-6))
    bvlc = network(text, {"bn": blobs}, dialect="bvlc").run({"data": x})["data"]
    mean, var = (b.astype(np.float64).reshape(1, -1, 1, 1) / 999.982 for b in blobs[:2])
    np.testing.assert_allclose(bvlc, (x - mean) / np.sqrt(var + 1e-6), rtol=1e-5, atol=1e-6)


def test_nvcaffe_train_phase_uses_the_batch_statistics():
    """Forward_cpu branches on the phase alone: in TRAIN the batch's mean and (biased)
    variance, even with use_global_stats: true."""
    blobs = nv_blobs()
    net = network(NET % "scale_bias: true use_global_stats: true", {"bn": blobs},
                  state=NetState(Phase.TRAIN))
    x = sample(3)
    out = net.run({"data": x})["data"]
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    gamma, beta = (b.astype(np.float64).reshape(1, -1, 1, 1) for b in blobs[3:])
    np.testing.assert_allclose(out, (x64 - mean) / np.sqrt(var + 1e-5) * gamma + beta,
                               rtol=1e-5, atol=1e-5)


# --- blob counts, shapes and fillers --------------------------------------------------------

@pytest.mark.parametrize("fields, count", [
    ("", 3), ("scale_bias: false", 3), ("scale_bias: true", 5),
    ('scale_filler { type: "constant" value: 2 }', 5),
    ('bias_filler { type: "constant" value: 0.5 }', 5), ("engine: CUDNN", 3)])
def test_blob_count_follows_nvcaffes_fields(fields, count):
    parsed = parse_text(SourceFile("<net>", NET % fields), dialect="nvcaffe")
    layer = net_view(parsed).layers[1].message
    inferred = shapes.infer(layer, [(2, C, 4, 5)])
    assert inferred.params == [(C,), (C,), (1,)] + [(C,), (C,)] * (count == 5)
    assert batchnorm.batch_norm_blob_count(layer) == count


def test_bvlc_batchnorm_has_three_blobs_whatever_the_weights():
    parsed = parse_text(SourceFile("<net>", NET % "eps: 0.001"), dialect="bvlc")
    layer = net_view(parsed).layers[1].message
    assert shapes.infer(layer, [(2, C, 4, 5)]).params == [(C,), (C,), (1,)]
    assert not batchnorm.nvcaffe_batch_norm(layer)


@pytest.mark.parametrize("fields, blobs, message", [
    ("scale_bias: true", nv_blobs(affine=False), "with scale_bias has 5 blobs"),
    ("", nv_blobs(), "without scale_bias .* has 3 blobs"),
])
def test_op_refuses_a_count_nvcaffe_would_not_load(fields, blobs, message):
    parsed = parse_text(SourceFile("<net>", NET % fields), dialect="nvcaffe")
    layer = net_view(parsed).layers[1].message
    with pytest.raises(ForwardError, match=message):
        op_for(layer, blobs, Phase.TEST)


def test_executor_refuses_five_blobs_without_scale_bias():
    """NVCaffe's LayerSetUp makes 3 blobs without scale_bias, and CopyTrainedLayersFrom
    then refuses 5 ("Incompatible number of blobs")."""
    with pytest.raises(WeightsError, match="5 vs 3"):
        network(NET % "engine: CAFFE", {"bn": nv_blobs()})


def test_fillers_are_nvcaffes_layer_setup():
    """No weights: mean and variance 0, correction 1, scale from scale_filler (else 1),
    bias from bias_filler (else 0)."""
    net = network(NET % 'scale_filler { type: "constant" value: 2 }')
    assert net.filled == ["bn"]
    mean, var, correction, scale, bias = net.blobs["bn"]
    assert not mean.any() and not var.any()
    assert correction.tolist() == [1.0] and scale.tolist() == [2.0] * C
    assert bias.tolist() == [0.0] * C
    plain = network(NET % "scale_bias: true").blobs["bn"]
    assert [b.tolist() for b in plain[2:]] == [[1.0], [1.0] * C, [0.0] * C]
    x = sample()
    out = net.run({"data": x})["data"]        # (x - 0) * (0 + 1e-5)^-0.5 * 2
    np.testing.assert_array_equal(out, nv_test_formula(x, net.blobs["bn"], 1e-5))


SEGNET = """name: "segnet_bn"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }
layer { name: "bn" type: "BN" bottom: "data" top: "data"
  bn_param { bn_mode: INFERENCE %s } }
"""


def test_segnet_bn_fillers_are_its_layer_setup():
    """caffe-segnet bn_layer.cpp: scale from scale_filler, shift from shift_filler; an
    absent filler is the default one, constant 0."""
    net = network(SEGNET % 'scale_filler { type: "constant" value: 1.5 }')
    scale, shift = net.blobs["bn"]
    assert scale.shape == shift.shape == (1, 2, 1, 1)
    assert scale.reshape(-1).tolist() == [1.5, 1.5] and not shift.any()
    x = np.arange(18, dtype=F32).reshape(1, 2, 3, 3)
    np.testing.assert_array_equal(net.run({"data": x})["data"], x * F32(1.5))


# --- the W rules follow the dialect --------------------------------------------------------

W_NET = """name: "w"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" batch_norm_param { %s } }
"""


def w_findings(tmp_path, fields: str, blobs, dialect: str) -> list[str]:
    path = tmp_path / "w.caffemodel"
    write_caffemodel(str(path), None, {"bn": blobs})
    result = lint_source(SourceFile("net.prototxt", W_NET % fields),
                         LintConfig(select=("W",), dialect=dialect), read_weights(str(path)))
    return sorted(d.code for d in result.diagnostics)


def test_five_blobs_are_right_in_nvcaffe_and_wrong_in_bvlc(tmp_path):
    assert w_findings(tmp_path, "scale_bias: true", nv_blobs(), "nvcaffe") == []
    assert w_findings(tmp_path, "scale_bias: true", nv_blobs(), "auto") == []
    assert w_findings(tmp_path, "eps: 0.001", nv_blobs(), "bvlc") == ["W001"]
    # NVCaffe with scale_bias refuses BVLC's three blobs, and without it five
    assert w_findings(tmp_path, "scale_bias: true", nv_blobs(affine=False),
                      "nvcaffe") == ["W001"]
    assert w_findings(tmp_path, "engine: CUDNN", nv_blobs(), "nvcaffe") == ["W001"]


def test_scale_factor_rules_read_nvcaffes_blobs_as_nvcaffe_does(tmp_path):
    """blobs[2] is never applied in NVCaffe: 0 there is not W002, and W003 reads the
    variance as stored."""
    blobs = nv_blobs(correction=0.0)
    assert w_findings(tmp_path, "scale_bias: true", blobs, "nvcaffe") == []
    assert w_findings(tmp_path, "", blobs[:3], "bvlc") == ["W002"]
    blobs[1][1] = -0.5
    assert w_findings(tmp_path, "scale_bias: true", blobs, "nvcaffe") == ["W003"]


# --- the facts of each form (caffe/layers/batchnorm.py) -------------------------------------

@pytest.mark.parametrize("dialect, fields, phase, global_stats, eps", [
    ("bvlc", "", Phase.TEST, True, F32(1e-5)),
    ("bvlc", "", Phase.TRAIN, False, F32(1e-5)),
    ("bvlc", "use_global_stats: false eps: 1e-06", Phase.TEST, False, F32(1e-6)),
    ("bvlc", "use_global_stats: true", Phase.TRAIN, True, F32(1e-5)),
    ("nvcaffe", "use_global_stats: false eps: 1e-06", Phase.TEST, True, F32(1e-5)),
    ("nvcaffe", "use_global_stats: true eps: 0.001", Phase.TRAIN, False, F32(1e-3)),
])
def test_uses_global_stats_and_effective_eps_by_form(dialect, fields, phase, global_stats,
                                                     eps):
    parsed = parse_text(SourceFile("<net>", NET % fields), dialect=dialect)
    layer = net_view(parsed).layers[1].message
    assert batchnorm.uses_global_stats(layer, phase) is global_stats
    assert F32(batchnorm.effective_eps(layer)) == eps
    assert batchnorm.batch_norm_form(layer) == ("NVCaffe" if dialect == "nvcaffe" else "BVLC")


def test_a_zero_scale_factor_means_zero_statistics():
    assert batchnorm.inverse_scale_factor(F32(0)) == 0
    assert type(batchnorm.inverse_scale_factor(F32(4))) is F32
    assert batchnorm.inverse_scale_factor(F32(4)) == F32(0.25)
    assert batchnorm.inverse_scale_factor(2.0) == 0.5
