"""Normalisation, affine, element-wise and Eltwise ops against slow loop references.

Each reference walks the elements one by one and states Caffe's formula directly,
with the index arithmetic spelled out, so a broadcasting or axis mistake in the fast
op cannot be repeated in its reference.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st

import bnlint.forward.ops  # noqa: F401  (registers the ops)
from bnlint.caffe import caffe_pb2
from bnlint.caffe.load import parse_text
from bnlint.caffe.net import net_view
from bnlint.caffe.phase import Phase
from bnlint.errors import ForwardError
from bnlint.forward.ops.base import overwriting
from bnlint.forward.executor import Network
from bnlint.forward.registry import OPS, op_for
from bnlint.source import SourceFile

F32 = np.float32
SETTINGS = settings(max_examples=30, deadline=None)


def make_layer(text: str, bottoms: int = 1):
    layer = text_format.Parse(text, caffe_pb2.LayerParameter())
    layer.name = layer.name or "probe"
    layer.bottom.extend(f"b{i}" for i in range(bottoms))
    layer.top.append("out")
    return layer


def run(text: str, bottoms, blobs=(), phase=Phase.TEST):
    layer = make_layer(text, len(bottoms))
    return op_for(layer, [np.asarray(b, dtype=F32) for b in blobs], phase).run(
        [np.asarray(b, dtype=F32) for b in bottoms])[0]


def rand(rng, *shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, shape).astype(F32)


def assert_close(out, ref, rtol=2e-6, atol=1e-6):
    assert out.dtype == F32
    assert out.shape == np.shape(ref)
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- BatchNorm

def bn_global_loop(x, mean_sum, var_sum, factor, eps):
    """Caffe's global-stats BatchNorm element by element, in float32 scalars."""
    f = F32(0) if factor == 0 else F32(1) / F32(factor)
    y = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        c = idx[1] if x.ndim > 1 else 0
        mean = f * F32(mean_sum[c])
        var = f * F32(var_sum[c])
        y[idx] = (x[idx] - mean) / np.sqrt(var + F32(eps))
    return y


def bn_blobs(rng, channels, factor):
    mean = rand(rng, channels) * F32(factor or 1)
    var = rng.uniform(0.1, 3.0, channels).astype(F32) * F32(factor or 1)
    return [mean, var, np.array([factor], dtype=F32)]


@pytest.mark.parametrize("factor", [1.0, 999.982, 0.0])
@pytest.mark.parametrize("eps", [1e-5, 1e-3, 1e-4, 0.1])
def test_batchnorm_global_stats_matches_caffe_bit_for_bit(factor, eps):
    rng = np.random.default_rng(1)
    x = rand(rng, 2, 3, 4, 5)
    blobs = bn_blobs(rng, 3, factor)
    out = run(f"type: 'BatchNorm' batch_norm_param {{ eps: {eps} }}", [x], blobs)
    np.testing.assert_array_equal(out, bn_global_loop(x, *blobs[:2], factor, F32(eps)))


def test_batchnorm_zero_factor_normalises_with_mean_0_and_var_0():
    rng = np.random.default_rng(2)
    x = rand(rng, 1, 4, 3, 3)
    out = run("type: 'BatchNorm'", [x], bn_blobs(rng, 4, 0.0))
    np.testing.assert_array_equal(out, x / np.sqrt(F32(1e-5)))


def test_batchnorm_on_a_2d_blob_uses_axis_1():
    rng = np.random.default_rng(3)
    x = rand(rng, 5, 7)
    blobs = bn_blobs(rng, 7, 999.982)
    out = run("type: 'BatchNorm' batch_norm_param { eps: 0.001 }", [x], blobs)
    np.testing.assert_array_equal(out, bn_global_loop(x, *blobs[:2], 999.982, F32(1e-3)))


def bn_batch_loop(x, eps):
    """Mean and biased variance over every axis but 1, in double."""
    y = np.empty(x.shape)
    for c in range(x.shape[1]):
        values = [float(x[idx]) for idx in np.ndindex(x.shape) if idx[1] == c]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / len(values)
        for idx in np.ndindex(x.shape):
            if idx[1] == c:
                y[idx] = (float(x[idx]) - mean) / math.sqrt(var + eps)
    return y


@pytest.mark.parametrize("text, phase, batch", [
    ("", Phase.TRAIN, True),                                   # default at TRAIN
    ("", Phase.TEST, False),                                   # default at TEST
    ("batch_norm_param { use_global_stats: false }", Phase.TEST, True),
    ("batch_norm_param { use_global_stats: true }", Phase.TRAIN, False),
])
def test_batchnorm_statistics_follow_the_phase_unless_set(text, phase, batch):
    rng = np.random.default_rng(4)
    x = rand(rng, 3, 2, 4, 3)
    blobs = bn_blobs(rng, 2, 999.982)
    out = run(f"type: 'BatchNorm' {text}", [x], blobs, phase=phase)
    if batch:
        assert_close(out, bn_batch_loop(x, 1e-5), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(out, bn_global_loop(x, *blobs[:2], 999.982, F32(1e-5)))


def test_batchnorm_batch_stats_on_2d_input():
    rng = np.random.default_rng(5)
    x = rand(rng, 6, 3)
    out = run("type: 'BatchNorm' batch_norm_param { eps: 0.01 }", [x],
              bn_blobs(rng, 3, 1.0), phase=Phase.TRAIN)
    assert_close(out, bn_batch_loop(x, 0.01), rtol=1e-5, atol=1e-5)


@given(n=st.integers(1, 3), c=st.integers(1, 5), h=st.integers(1, 4), w=st.integers(1, 4),
       factor=st.sampled_from([0.0, 1.0, 999.982, 3.5]),
       eps=st.sampled_from([1e-5, 1e-3, 1e-4, 2e-5]), seed=st.integers(0, 2**16))
@SETTINGS
def test_batchnorm_global_property(n, c, h, w, factor, eps, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, n, c, h, w)
    blobs = bn_blobs(rng, c, factor)
    out = run(f"type: 'BatchNorm' batch_norm_param {{ eps: {eps} }}", [x], blobs)
    np.testing.assert_array_equal(out, bn_global_loop(x, *blobs[:2], factor, F32(eps)))


@pytest.mark.parametrize("blobs, message", [
    ([np.zeros(4), np.ones(4), np.ones(1)], "channels"),
    ([np.zeros(3), np.ones(3)], "3 blobs"),
    ([np.zeros(3)] * 5, "3 blobs"),
])
def test_batchnorm_rejects_blobs_that_do_not_fit(blobs, message):
    with pytest.raises(ForwardError, match=message):
        run("name: 'bn' type: 'BatchNorm'", [np.zeros((1, 3, 2, 2))], blobs)


# ---------------------------------------------------------------- Scale and Bias

def affine_loop(x, operand, axis, combine):
    """Apply `operand` (covering axes axis..axis+ndim-1) to every element of x."""
    y = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        y[idx] = combine(x[idx], operand[idx[axis:axis + operand.ndim]])
    return y


def scale_loop(x, scale, axis, bias=None):
    y = affine_loop(x, scale, axis, lambda v, s: v * s)
    return y if bias is None else affine_loop(y, bias, axis, lambda v, b: v + b)


@pytest.mark.parametrize("params, axis, shape_of", [
    ("", 1, lambda s: s[1:2]),                                  # default: channels
    ("axis: 0", 0, lambda s: s[0:1]),
    ("axis: -1", 3, lambda s: s[3:4]),
    ("axis: 1 num_axes: -1", 1, lambda s: s[1:]),
    ("axis: 2 num_axes: 2", 2, lambda s: s[2:4]),
    ("num_axes: 0", 0, lambda s: ()),                          # a scalar
    ("axis: 3 num_axes: 0", 0, lambda s: ()),                  # the axis is ignored
])
@pytest.mark.parametrize("bias_term", [False, True])
def test_scale_one_bottom(params, axis, shape_of, bias_term):
    rng = np.random.default_rng(6)
    x = rand(rng, 2, 3, 4, 5)
    scale = rand(rng, *shape_of(x.shape))
    blobs = [scale]
    bias = None
    if bias_term:
        bias = rand(rng, *shape_of(x.shape))
        blobs.append(bias)
    text = f"type: 'Scale' scale_param {{ {params} bias_term: {str(bias_term).lower()} }}"
    out = run(text, [x], blobs)
    np.testing.assert_array_equal(out, scale_loop(x, scale, axis, bias))


@pytest.mark.parametrize("axis, scale_shape", [(0, (2, 3)), (1, (3, 4)), (0, (2, 3, 4, 5)),
                                               (-2, (4, 5)), (1, (3,))])
def test_scale_two_bottoms_takes_its_shape_from_bottom_1(axis, scale_shape):
    rng = np.random.default_rng(7)
    x = rand(rng, 2, 3, 4, 5)
    scale = rand(rng, *scale_shape)
    bias = rand(rng, *scale_shape)
    canonical = axis % 4
    text = f"type: 'Scale' scale_param {{ axis: {axis} num_axes: 1 bias_term: true }}"
    out = run(text, [x, scale], [bias])
    np.testing.assert_array_equal(out, scale_loop(x, scale, canonical, bias))


def test_scale_without_bias_takes_no_blob_with_two_bottoms():
    rng = np.random.default_rng(8)
    x, s = rand(rng, 2, 3, 1, 1), rand(rng, 2, 3)
    np.testing.assert_array_equal(run("type: 'Scale' scale_param { axis: 0 }", [x, s]),
                                  scale_loop(x, s, 0))


@pytest.mark.parametrize("scale_shape, message", [((4,), "does not match"),
                                                  ((3, 4, 5, 6), "extends past")])
def test_scale_shape_mismatch_is_an_error(scale_shape, message):
    with pytest.raises(ForwardError, match=message):
        run("name: 'sc' type: 'Scale'", [np.zeros((2, 3, 4, 5))], [np.ones(scale_shape)])


def test_scale_blob_count_must_fit_bias_term():
    with pytest.raises(ForwardError, match="expected 2 blobs"):
        run("type: 'Scale' scale_param { bias_term: true }", [np.zeros((1, 3))], [np.ones(3)])


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data(),
       seed=st.integers(0, 2**16))
@SETTINGS
def test_scale_property(shape, data, seed):
    ndim = len(shape)
    axis = data.draw(st.integers(-ndim, ndim - 1))
    canonical = axis % ndim
    num_axes = data.draw(st.integers(0, ndim - canonical))
    rng = np.random.default_rng(seed)
    x = rand(rng, *shape)
    scale = rand(rng, *shape[canonical:canonical + num_axes])
    bias = rand(rng, *shape[canonical:canonical + num_axes])
    text = f"type: 'Scale' scale_param {{ axis: {axis} num_axes: {num_axes} bias_term: true }}"
    out = run(text, [x], [scale, bias])
    np.testing.assert_array_equal(out, scale_loop(x, scale, 0 if num_axes == 0 else canonical,
                                                  bias))


@pytest.mark.parametrize("params, axis, shape_of", [("", 1, lambda s: s[1:2]),
                                                    ("axis: -2 num_axes: 2", 2, lambda s: s[2:]),
                                                    ("num_axes: 0", 0, lambda s: ())])
def test_bias_one_bottom(params, axis, shape_of):
    rng = np.random.default_rng(9)
    x = rand(rng, 2, 3, 4, 5)
    bias = rand(rng, *shape_of(x.shape))
    out = run(f"type: 'Bias' bias_param {{ {params} }}", [x], [bias])
    np.testing.assert_array_equal(out, affine_loop(x, bias, axis, lambda v, b: v + b))


def test_bias_two_bottoms():
    rng = np.random.default_rng(10)
    x, b = rand(rng, 2, 3, 4), rand(rng, 2, 3)
    out = run("type: 'Bias' bias_param { axis: 0 }", [x, b])
    np.testing.assert_array_equal(out, affine_loop(x, b, 0, lambda v, c: v + c))


# ---------------------------------------------------------------- LRN

def lrn_across_loop(x, size, alpha, beta, k):
    n_, c_, h_, w_ = x.shape
    half = (size - 1) // 2
    y = np.empty(x.shape)
    for n, c, h, w in np.ndindex(x.shape):
        window = range(max(0, c - half), min(c_, c + half + 1))
        total = sum(float(x[n, j, h, w]) ** 2 for j in window)
        y[n, c, h, w] = x[n, c, h, w] * (k + alpha / size * total) ** -beta
    return y


def lrn_within_loop(x, size, alpha, beta):
    """Caffe's AVE pooling of x^2 (pad (size-1)/2, stride 1); the padded window is size^2."""
    _, _, h_, w_ = x.shape
    half = (size - 1) // 2
    y = np.empty(x.shape)
    for n, c, h, w in np.ndindex(x.shape):
        total = sum(float(x[n, c, i, j]) ** 2
                    for i in range(max(0, h - half), min(h_, h + half + 1))
                    for j in range(max(0, w - half), min(w_, w + half + 1)))
        y[n, c, h, w] = x[n, c, h, w] * (1 + alpha * total / (size * size)) ** -beta
    return y


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 7), st.integers(1, 5),
                       st.integers(1, 5)),
       size=st.sampled_from([1, 3, 5, 7]), alpha=st.sampled_from([1.0, 1e-4, 0.5, 2.0]),
       beta=st.sampled_from([0.75, 0.5, 1.0]), k=st.sampled_from([1.0, 2.0]),
       seed=st.integers(0, 2**16))
@SETTINGS
def test_lrn_across_channels(shape, size, alpha, beta, k, seed):
    x = rand(np.random.default_rng(seed), *shape)
    text = (f"type: 'LRN' lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta} "
            f"k: {k} }}")
    assert_close(run(text, [x]), lrn_across_loop(x, size, alpha, beta, k), rtol=1e-5)


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 6),
                       st.integers(1, 6)),
       size=st.sampled_from([1, 3, 5]), alpha=st.sampled_from([1.0, 0.9, 1e-4]),
       beta=st.sampled_from([0.75, 0.5]), seed=st.integers(0, 2**16))
@SETTINGS
def test_lrn_within_channel(shape, size, alpha, beta, seed):
    x = rand(np.random.default_rng(seed), *shape)
    text = (f"type: 'LRN' lrn_param {{ norm_region: WITHIN_CHANNEL local_size: {size} "
            f"alpha: {alpha} beta: {beta} }}")
    assert_close(run(text, [x]), lrn_within_loop(x, size, alpha, beta), rtol=1e-5)


def test_lrn_within_channel_ignores_k():
    x = rand(np.random.default_rng(11), 1, 2, 5, 5)
    base = "type: 'LRN' lrn_param { norm_region: WITHIN_CHANNEL local_size: 3 alpha: 0.5"
    np.testing.assert_array_equal(run(base + " k: 7 }", [x]), run(base + " }", [x]))


def test_lrn_within_channel_with_zero_alpha_is_identity():
    x = rand(np.random.default_rng(12), 1, 2, 4, 4)
    out = run("type: 'LRN' lrn_param { norm_region: WITHIN_CHANNEL alpha: 0 }", [x])
    np.testing.assert_array_equal(out, x)


def test_lrn_even_local_size_is_rejected_as_caffe_does():
    with pytest.raises(ForwardError, match="odd values for local_size"):
        run("name: 'norm1' type: 'LRN' lrn_param { local_size: 4 }", [np.ones((1, 3, 2, 2))])


def test_lrn_needs_four_axes():
    with pytest.raises(ForwardError, match="4-axis"):
        run("type: 'LRN'", [np.ones((2, 3))])


# ---------------------------------------------------------------- MVN

def mvn_loop(x, across_channels, normalize_variance, eps):
    y = np.empty(x.shape)
    for n in range(x.shape[0]):
        groups = [None] if across_channels else range(x.shape[1])
        for c in groups:
            sel = (n,) if c is None else (n, c)
            values = x[sel].astype(np.float64)
            mean = values.mean()
            out = values - mean
            if normalize_variance:
                out = out / (math.sqrt(((values - mean) ** 2).mean()) + eps)
            y[sel] = out
    return y


@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("eps", [1e-9, 0.1, 0.5])
def test_mvn(across, normalize, eps):
    rng = np.random.default_rng(13)
    x = rand(rng, 2, 3, 4, 5) + F32(0.7)
    text = (f"type: 'MVN' mvn_param {{ across_channels: {str(across).lower()} "
            f"normalize_variance: {str(normalize).lower()} eps: {eps} }}")
    assert_close(run(text, [x]), mvn_loop(x, across, normalize, eps), rtol=1e-5, atol=2e-6)


def test_mvn_adds_eps_to_the_standard_deviation_not_the_variance():
    x = rand(np.random.default_rng(14), 1, 2, 3, 3)
    out = run("type: 'MVN' mvn_param { eps: 0.5 }", [x])
    centred = x - x.mean(axis=(2, 3), keepdims=True)
    on_variance = centred / np.sqrt(centred.var(axis=(2, 3), keepdims=True) + 0.5)
    assert not np.allclose(out, on_variance, rtol=1e-3)
    assert_close(out, mvn_loop(x, False, True, 0.5), rtol=1e-5)


def test_mvn_on_2d_input_normalises_each_value_alone():
    x = rand(np.random.default_rng(15), 3, 4)
    np.testing.assert_array_equal(run("type: 'MVN'", [x]), np.zeros_like(x))


# ---------------------------------------------------------------- Softmax

def softmax_loop(x, axis):
    y = np.empty(x.shape)
    for idx in np.ndindex(x.shape[:axis] + (1,) + x.shape[axis + 1:]):
        line = [idx[:axis] + (j,) + idx[axis + 1:] for j in range(x.shape[axis])]
        values = [float(x[i]) for i in line]
        top = max(values)
        exps = [math.exp(v - top) for v in values]
        for i, e in zip(line, exps):
            y[i] = e / sum(exps)
    return y


@pytest.mark.parametrize("axis", [1, 2, -1, 0])
def test_softmax_axis(axis):
    x = rand(np.random.default_rng(16), 2, 3, 4, 5, low=-30, high=30)
    out = run(f"type: 'Softmax' softmax_param {{ axis: {axis} }}", [x])
    assert_close(out, softmax_loop(x, axis % 4), rtol=1e-5, atol=1e-7)


def test_softmax_is_stable_for_large_logits():
    x = np.array([[1000.0, 1001.0, 999.0]], dtype=F32)
    out = run("type: 'Softmax'", [x])
    assert np.isfinite(out).all()
    assert_close(out, softmax_loop(x, 1), rtol=1e-6)


# ---------------------------------------------------------------- element-wise

def elementwise_loop(x, fn):
    return np.array([fn(float(v)) for v in x.reshape(-1)]).reshape(x.shape)


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


ELEMENTWISE_CASES = [
    ("type: 'ReLU'", lambda v: max(v, 0.0)),
    ("type: 'ReLU' relu_param { negative_slope: 0.1 }", lambda v: v if v > 0 else 0.1 * v),
    ("type: 'ELU'", lambda v: v if v > 0 else math.exp(v) - 1),
    ("type: 'ELU' elu_param { alpha: 0.7 }", lambda v: v if v > 0 else 0.7 * (math.exp(v) - 1)),
    ("type: 'Sigmoid'", sigmoid),
    ("type: 'TanH'", math.tanh),
    ("type: 'AbsVal'", abs),
    ("type: 'BNLL'", lambda v: math.log1p(math.exp(v)) if v < 30 else v),
    ("type: 'Power' power_param { power: 1.5 scale: 0.1 shift: 5 }",
     lambda v: (5 + 0.1 * v) ** 1.5),
    ("type: 'Power' power_param { power: 2 }", lambda v: v * v),
    ("type: 'Power' power_param { scale: -3 shift: 0.5 }", lambda v: 0.5 - 3 * v),
    ("type: 'Exp'", math.exp),
    ("type: 'Exp' exp_param { base: 2 scale: 0.5 shift: 0.1 }", lambda v: 2 ** (0.1 + 0.5 * v)),
    ("type: 'Exp' exp_param { shift: 1.5 scale: -1 }", lambda v: math.exp(1.5 - v)),
    ("type: 'Log' log_param { shift: 50 }", lambda v: math.log(50 + v)),
    ("type: 'Log' log_param { base: 10 scale: 0.1 shift: 9 }", lambda v: math.log10(9 + 0.1 * v)),
    ("type: 'Log' log_param { base: 2 shift: 45 }", lambda v: math.log2(45 + v)),
    ("type: 'Threshold' threshold_param { threshold: 0.25 }", lambda v: 1.0 if v > 0.25 else 0.0),
    ("type: 'Clip' clip_param { min: -0.5 max: 1.25 }", lambda v: min(max(v, -0.5), 1.25)),
    ("type: 'Swish'", lambda v: v * sigmoid(v)),
    ("type: 'Swish' swish_param { beta: 1.7 }", lambda v: v * sigmoid(1.7 * v)),
    ("type: 'Dropout' dropout_param { dropout_ratio: 0.3 }", lambda v: v),
]


@pytest.mark.parametrize("text, fn", ELEMENTWISE_CASES, ids=[c[0] for c in ELEMENTWISE_CASES])
def test_elementwise_ops(text, fn):
    rng = np.random.default_rng(17)
    x = np.concatenate([rand(rng, 2, 3, 4, 5, low=-6, high=6).reshape(-1),
                        np.array([0.0, -0.0, 1e-30, -40.0, 40.0], dtype=F32)])
    out = run(text, [x])
    assert_close(out, elementwise_loop(x, fn), rtol=3e-7, atol=1e-7)


@given(seed=st.integers(0, 2**16), slope=st.sampled_from([0.0, 0.01, 0.2, -0.5]),
       alpha=st.sampled_from([1.0, 0.3, 2.0]))
@SETTINGS
def test_relu_family_property(seed, slope, alpha):
    x = rand(np.random.default_rng(seed), 3, 7, low=-50, high=50)
    relu = run(f"type: 'ReLU' relu_param {{ negative_slope: {slope} }}", [x])
    np.testing.assert_array_equal(relu, elementwise_loop(x, lambda v: max(v, 0) + F32(slope)
                                                         * min(v, 0)).astype(F32))
    elu = run(f"type: 'ELU' elu_param {{ alpha: {alpha} }}", [x])
    assert_close(elu, elementwise_loop(x, lambda v: max(v, 0) + alpha * (math.exp(min(v, 0))
                                                                        - 1)))


def test_relu_keeps_caffes_nan_for_minus_infinity():
    # Caffe computes max(x, 0) + slope * min(x, 0): 0 * -inf is NaN even with slope 0.
    x = np.array([-np.inf, np.inf, np.nan, -1.0, 2.0], dtype=F32)
    out = run("type: 'ReLU'", [x])
    np.testing.assert_array_equal(out, [np.nan, np.inf, np.nan, 0.0, 2.0])


def test_clip_turns_nan_into_min_like_std_max():
    x = np.array([np.nan, -5.0, 5.0, 0.5], dtype=F32)
    out = run("type: 'Clip' clip_param { min: -1 max: 1 }", [x])
    np.testing.assert_array_equal(out, [-1.0, -1.0, 1.0, 0.5])


def test_threshold_is_strictly_greater():
    x = np.array([0.25, 0.2500001, np.nan, -1], dtype=F32)
    out = run("type: 'Threshold' threshold_param { threshold: 0.25 }", [x])
    np.testing.assert_array_equal(out, [0.0, 1.0, 0.0, 0.0])


@pytest.mark.parametrize("params, value", [("power: 0 scale: 3 shift: 2", 1.0),
                                           ("power: 3 scale: 0 shift: 2", 8.0)])
def test_power_ignores_the_input_when_power_times_scale_is_zero(params, value):
    x = np.array([np.nan, np.inf, -2.0], dtype=F32)
    out = run(f"type: 'Power' power_param {{ {params} }}", [x])
    np.testing.assert_array_equal(out, [value] * 3)


def test_bnll_does_not_overflow():
    x = np.array([-200.0, -90.0, 0.0, 90.0, 200.0], dtype=F32)
    out = run("type: 'BNLL'", [x])
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[3:], x[3:])


@pytest.mark.parametrize("text", ["type: 'Exp' exp_param { base: 0 }",
                                  "type: 'Exp' exp_param { base: -2 }",
                                  "type: 'Log' log_param { base: 1 }"])
def test_exp_and_log_reject_a_bad_base(text):
    with pytest.raises(ForwardError, match="base"):
        run(text, [np.ones(3)])


def prelu_loop(x, slopes, shared):
    y = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        slope = slopes.reshape(-1)[0 if shared else idx[1]]
        y[idx] = max(x[idx], F32(0)) + slope * min(x[idx], F32(0))
    return y


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (4, 3), (2, 3, 2, 2, 2)])
def test_prelu_per_channel(shape):
    rng = np.random.default_rng(18)
    x, slopes = rand(rng, *shape), rand(rng, 3)
    np.testing.assert_array_equal(run("type: 'PReLU'", [x], [slopes]),
                                  prelu_loop(x, slopes, False))


def test_prelu_channel_shared_uses_a_scalar_blob():
    rng = np.random.default_rng(19)
    x, slope = rand(rng, 2, 3, 4), np.array(0.3, dtype=F32)       # Caffe's blob shape is ()
    out = run("type: 'PReLU' prelu_param { channel_shared: true }", [x], [slope])
    np.testing.assert_array_equal(out, prelu_loop(x, slope, True))


def test_prelu_slope_count_must_match():
    with pytest.raises(ForwardError, match="slope blob has 3 values, expected 1"):
        run("type: 'PReLU' prelu_param { channel_shared: true }", [np.ones((1, 3, 2))],
            [np.ones(3)])


def test_dropout_is_identity_at_test_and_refused_at_train():
    x = rand(np.random.default_rng(20), 2, 5)
    np.testing.assert_array_equal(run("type: 'Dropout'", [x]), x)
    with pytest.raises(ForwardError, match="layer 'drop'.*TRAIN phase is random"):
        run("name: 'drop' type: 'Dropout'", [x], phase=Phase.TRAIN)


def test_ops_keep_float32_and_do_not_write_into_their_bottoms():
    rng = np.random.default_rng(21)
    x = rand(rng, 2, 3, 4, 4)
    before = x.copy()
    cases = [c[0] for c in ELEMENTWISE_CASES] + [
        "type: 'LRN'", "type: 'LRN' lrn_param { norm_region: WITHIN_CHANNEL }", "type: 'MVN'",
        "type: 'Softmax'"]
    for text in cases:
        out = run(text, [x])
        assert out.dtype == F32, text
        np.testing.assert_array_equal(x, before, err_msg=text)


# ---------------------------------------------------------------- Eltwise

@pytest.mark.parametrize("coeffs", [[], [1, -0.5, 2], [0.25, 1, 1]])
def test_eltwise_sum_with_coefficients(coeffs):
    rng = np.random.default_rng(22)
    bottoms = [rand(rng, 2, 3, 4) for _ in range(3)]
    text = "type: 'Eltwise' eltwise_param { operation: SUM " + \
        " ".join(f"coeff: {c}" for c in coeffs) + " }"
    weights = coeffs or [1, 1, 1]
    ref = np.empty_like(bottoms[0])
    for idx in np.ndindex(ref.shape):
        total = F32(0)
        for w, b in zip(weights, bottoms):
            total = total + F32(w) * b[idx]
        ref[idx] = total
    np.testing.assert_array_equal(run(text, bottoms), ref)


def test_eltwise_default_operation_is_sum():
    a, b = np.ones((2, 2), F32), np.full((2, 2), 2, F32)
    np.testing.assert_array_equal(run("type: 'Eltwise'", [a, b]), np.full((2, 2), 3))


def test_eltwise_prod_and_max():
    rng = np.random.default_rng(23)
    bottoms = [rand(rng, 3, 4) for _ in range(4)]
    prod = run("type: 'Eltwise' eltwise_param { operation: PROD }", bottoms)
    largest = run("type: 'Eltwise' eltwise_param { operation: MAX }", bottoms)
    for idx in np.ndindex(prod.shape):
        values = [b[idx] for b in bottoms]
        assert prod[idx] == ((values[0] * values[1]) * values[2]) * values[3]
        assert largest[idx] == max(values)


def test_eltwise_max_tie_and_nan_rules():
    # bottom 0 wins only when strictly greater than bottom 1; later bottoms only when
    # strictly greater than the running max. Visible through signed zeros and NaN.
    a = np.array([-0.0, 0.0, np.nan, 1.0, 1.0], dtype=F32)
    b = np.array([0.0, -0.0, 1.0, np.nan, 0.5], dtype=F32)
    c = np.array([-0.0, 0.0, 0.5, 5.0, np.nan], dtype=F32)
    out = run("type: 'Eltwise' eltwise_param { operation: MAX }", [a, b, c])
    np.testing.assert_array_equal(out, [0.0, -0.0, 1.0, np.nan, 1.0])
    np.testing.assert_array_equal(np.signbit(out[:2]), [False, True])


@pytest.mark.parametrize("text, message", [
    ("eltwise_param { operation: SUM coeff: 1 coeff: 2 coeff: 3 }", "one coefficient per bottom"),
    ("eltwise_param { operation: PROD coeff: 1 coeff: 2 }", "only takes coefficients"),
])
def test_eltwise_rejects_bad_coefficients(text, message):
    with pytest.raises(ForwardError, match=message):
        run(f"name: 'e' type: 'Eltwise' {text}", [np.ones(2), np.ones(2)])


def test_eltwise_needs_equal_shapes():
    with pytest.raises(ForwardError, match="equal shapes"):
        run("type: 'Eltwise'", [np.ones((2, 3)), np.ones((3, 2))])


# ---------------------------------------------------------------- writing into bottoms

def assert_same_bits(out, ref):
    """Equal values, NaN where NaN, and the same sign on zeros."""
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(ref))


IN_PLACE_CASES = [
    ("type: 'BatchNorm' batch_norm_param { eps: 0.001 }",
     lambda rng: bn_blobs(rng, 3, 999.982), Phase.TEST),
    ("type: 'BatchNorm'", lambda rng: bn_blobs(rng, 3, 1.0), Phase.TRAIN),
    ("type: 'Scale' scale_param { bias_term: true }", lambda rng: [rand(rng, 3), rand(rng, 3)],
     Phase.TEST),
    ("type: 'Scale'", lambda rng: [rand(rng, 3)], Phase.TEST),
    ("type: 'Bias'", lambda rng: [rand(rng, 3)], Phase.TEST),
    ("type: 'ReLU'", lambda rng: [], Phase.TEST),
    ("type: 'ReLU' relu_param { negative_slope: 0.1 }", lambda rng: [], Phase.TEST),
    ("type: 'PReLU'", lambda rng: [rand(rng, 3)], Phase.TEST),
]


@pytest.mark.parametrize("text, blobs, phase", IN_PLACE_CASES,
                         ids=[c[0] for c in IN_PLACE_CASES])
@pytest.mark.parametrize("special", [False, True])
def test_a_handed_over_bottom_takes_the_same_result(text, blobs, phase, special):
    # The executor hands over a bottom nothing reads afterwards; the op then writes its
    # result there, and it must be the out-of-place result bit for bit.
    rng = np.random.default_rng(30)
    x = rand(rng, 2, 3, 4, 5)
    if special:                                  # ReLU's literal form, signed zeros
        x[0, 0, 0, :4] = [-np.inf, np.nan, -0.0, np.inf]
    params = blobs(rng)
    expected = run(text, [x], params, phase)
    op = op_for(make_layer(text), [np.asarray(b, dtype=F32) for b in params], phase)
    given = x.copy()
    with overwriting([given]):
        out = op.run([given])[0]
    assert out is given
    assert_same_bits(out, expected)


def test_per_channel_ops_on_long_rows():
    # Rows of at least UNBUFFERED_MIN_ROW values are computed with NumPy's ufunc
    # buffering off; the results are the same and the buffer size is restored after.
    rng = np.random.default_rng(34)
    x = rand(rng, 1, 2, 13, 13)                       # rows of 169 values
    blobs = bn_blobs(rng, 2, 999.982)
    np.testing.assert_array_equal(run("type: 'BatchNorm'", [x], blobs),
                                  bn_global_loop(x, *blobs[:2], 999.982, F32(1e-5)))
    scale, bias = rand(rng, 2), rand(rng, 2)
    np.testing.assert_array_equal(
        run("type: 'Scale' scale_param { bias_term: true }", [x], [scale, bias]),
        scale_loop(x, scale, 1, bias))
    np.testing.assert_array_equal(run("type: 'Bias'", [x], [bias]),
                                  affine_loop(x, bias, 1, lambda v, b: v + b))
    np.testing.assert_array_equal(
        run("type: 'PReLU'", [x], [scale]),
        affine_loop(x, scale, 1, lambda v, s: max(v, F32(0)) + s * min(v, F32(0))))
    assert np.getbufsize() == 8192


@pytest.mark.parametrize("operation", ["SUM", "SUM coeff: 0.5 coeff: -2", "PROD", "MAX"])
@pytest.mark.parametrize("handed", [(0,), (1,), (0, 1)])
def test_eltwise_writes_into_a_handed_over_bottom(operation, handed):
    rng = np.random.default_rng(31)
    a, b = rand(rng, 2, 3, 4), rand(rng, 2, 3, 4)
    a[0, 0, :2], b[0, 0, :2] = [-0.0, 0.0], [0.0, -0.0]
    text = f"type: 'Eltwise' eltwise_param {{ operation: {operation} }}"
    expected = run(text, [a, b])
    bottoms = [a.copy(), b.copy()]
    with overwriting([bottoms[i] for i in handed]):
        out = op_for(make_layer(text, 2), [], Phase.TEST).run(bottoms)[0]
    assert_same_bits(out, expected)
    for i, original in enumerate([a, b]):
        if i not in handed:
            assert_same_bits(bottoms[i], original)
    if operation != "MAX":
        assert any(out is bottoms[i] for i in handed)


def test_eltwise_sum_of_three_writes_only_into_bottom_0():
    # With three bottoms the order of the additions matters, so only bottom 0 may hold it.
    rng = np.random.default_rng(32)
    bottoms = [rand(rng, 5, 6) for _ in range(3)]
    expected = run("type: 'Eltwise'", bottoms)
    given = [b.copy() for b in bottoms]
    with overwriting(given[1:]):
        out = op_for(make_layer("type: 'Eltwise'", 3), [], Phase.TEST).run(given)[0]
    assert all(out is not g for g in given)
    for g, b in zip(given, bottoms):
        assert_same_bits(g, b)
    assert_same_bits(out, expected)


ALIASES = """
input: "data"
input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }
layer { name: "p" type: "Power" bottom: "data" top: "p" power_param { scale: 2 shift: -1 } }
layer { name: "split" type: "Split" bottom: "p" top: "s1" top: "s2" }
layer { name: "r1" type: "ReLU" bottom: "s1" top: "s1" }
layer { name: "q" type: "Power" bottom: "s2" top: "q" power_param { scale: 3 } }
layer { name: "drop" type: "Dropout" bottom: "q" top: "d" }
layer { name: "r2" type: "ReLU" bottom: "d" top: "d" }
layer { name: "flat" type: "Flatten" bottom: "q" top: "f" }
layer { name: "r3" type: "ReLU" bottom: "q" top: "q" }
layer { name: "sum" type: "Eltwise" bottom: "s1" bottom: "d" top: "e" }
layer { name: "neg" type: "Power" bottom: "f" top: "g" power_param { scale: -1 } }
layer { name: "r4" type: "ReLU" bottom: "e" top: "e" }
"""


@pytest.mark.parametrize("keep", ["outputs", "all", {"p", "d"}])
def test_executor_hands_over_only_blobs_nothing_else_holds(keep):
    # A Split's tops are one array, Dropout returns its bottom, Flatten a view of it:
    # an in-place ReLU on one holder must not change what another holder reads later,
    # nor the input, nor a blob that is returned.
    parsed = parse_text(SourceFile("<net>", ALIASES))
    net = Network(net_view(parsed), source=parsed.source)
    x = rand(np.random.default_rng(33), 1, 2, 3, 3)
    before = x.copy()
    reused = net.run({"data": x}, keep=keep, reuse=True)
    assert_same_bits(x, before)
    fresh = net.run({"data": x}, keep=keep, reuse=False)
    assert list(reused) == list(fresh)
    for name in fresh:
        assert_same_bits(reused[name], fresh[name])
    p = 2 * before - 1
    q = 3 * p
    np.testing.assert_allclose(fresh.get("g", -q.reshape(1, -1)), -q.reshape(1, -1))
    if "e" in fresh:
        np.testing.assert_allclose(fresh["e"], np.maximum(np.maximum(p, 0) + np.maximum(q, 0), 0))


# ---------------------------------------------------------------- golden Caffe outputs

GOLDEN = "../shared/golden/opencv_layers"


@pytest.mark.parametrize("name, text", [
    ("lrn_channels", "type: 'LRN' lrn_param { local_size: 5 alpha: 1.1 beta: 0.75 }"),
    ("lrn_spatial", "type: 'LRN' lrn_param { norm_region: WITHIN_CHANNEL local_size: 5 "
                    "alpha: 0.9 beta: 0.75 }"),
    ("softmax", "type: 'Softmax'"),
    ("relu", "type: 'ReLU'"),
    ("mvn", "type: 'MVN' mvn_param { eps: 0.1 }"),
    ("dropout", "type: 'Dropout' dropout_param { dropout_ratio: 0.12345 }"),
])
def test_against_caffe_outputs_from_opencv_test_data(name, text):
    root = Path(__file__).resolve().parents[1] / GOLDEN
    if not root.is_dir():
        pytest.skip("../shared/golden is not beside the repository")
    x = np.load(root / "blob.npy").astype(F32)
    ref = np.load(root / f"layer_{name}.npy")
    diff = np.abs(run(text, [x]).astype(np.float64) - ref)
    assert diff.max() <= 1e-4 and diff.mean() <= 1e-5
    if name != "mvn":          # reductions aside, these match Caffe bit for bit
        assert diff.max() == 0


def test_every_op_of_this_suite_is_registered():
    mine = {"BatchNorm", "Scale", "Bias", "LRN", "MVN", "Softmax", "ReLU", "PReLU", "ELU",
            "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log", "Threshold", "Clip",
            "Swish", "Dropout", "Eltwise"}
    assert mine <= set(OPS)
