"""Convolution, pooling, dense and structural ops against slow loop references.

Each reference states Caffe's definition directly (a loop over output positions and
kernel taps with explicit bounds checks, or a port of Caffe's own CPU loop), so the
strided-view tricks of the fast ops cannot be repeated in their references. Pooling is
compared bit for bit: the reference adds in Caffe's order in float32.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import bnlint.forward.ops  # noqa: F401  (registers the ops)
from bnlint.caffe import caffe_pb2, shapes
from bnlint.caffe.layers import pooling, structure
from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError, ForwardError
from bnlint.forward.ops import conv as conv_module
from bnlint.forward.ops.base import scratch_buffer
from bnlint.forward.registry import op_for

F32 = np.float32
FLT_MAX = np.finfo(F32).max
FLT_MIN = np.finfo(F32).tiny
SETTINGS = settings(max_examples=40, deadline=None)


def make_layer(text: str, bottoms: int = 1, tops: int = 1):
    layer = text_format.Parse(text, caffe_pb2.LayerParameter())
    layer.name = layer.name or "probe"
    layer.bottom.extend(f"b{i}" for i in range(bottoms))
    if not layer.top:
        layer.top.extend(f"t{i}" for i in range(tops))
    return layer


def run_all(text: str, bottoms, blobs=(), tops: int = 1, phase=Phase.TEST):
    """Run the op; check every top is float32 and shaped as shapes.infer says."""
    layer = make_layer(text, len(bottoms), tops)
    bottoms = [np.asarray(b, dtype=F32) for b in bottoms]
    op = op_for(layer, [np.asarray(b, dtype=F32) for b in blobs], phase)
    outs = op.run(bottoms)
    expected = shapes.infer(layer, [b.shape for b in bottoms]).tops
    assert [o.shape for o in outs] == expected
    assert all(o.dtype == F32 for o in outs)
    return outs


def run(text: str, bottoms, blobs=(), tops: int = 1, phase=Phase.TEST):
    return run_all(text, bottoms, blobs, tops, phase)[0]


def rand(rng, *shape):
    return rng.uniform(-1.0, 1.0, shape).astype(F32)


def assert_close(out, ref, tol=1e-5):
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


# ---------------------------------------------------------------- references


def conv_reference(x, weights, bias, stride, pad, dilation, group):
    """out[n, o, q] = b[o] + sum over c in o's group and taps t of
    w[o, c, t] * x[n, c, q*s - p + t*d]; inputs outside the image are 0. N-D."""
    x64, w64 = x.astype(np.float64), weights.astype(np.float64)
    channels, spatial = x.shape[1], x.shape[2:]
    num_output, kernel = weights.shape[0], weights.shape[2:]
    in_group, out_group = channels // group, num_output // group
    out_spatial = tuple((size + 2 * p - (d * (k - 1) + 1)) // s + 1
                        for size, k, s, p, d in zip(spatial, kernel, stride, pad, dilation))
    out = np.zeros((x.shape[0], num_output) + out_spatial)
    for q in itertools.product(*map(range, out_spatial)):
        for t in itertools.product(*map(range, kernel)):
            pos = tuple(qi * s - p + ti * d
                        for qi, ti, s, p, d in zip(q, t, stride, pad, dilation))
            if not all(0 <= at < size for at, size in zip(pos, spatial)):
                continue
            for g in range(group):
                inputs = x64[(slice(None), slice(g * in_group, (g + 1) * in_group)) + pos]
                taps = w64[(slice(g * out_group, (g + 1) * out_group), slice(None)) + t]
                out[(slice(None), slice(g * out_group, (g + 1) * out_group)) + q] += \
                    inputs @ taps.T
    if bias is not None:
        out += bias.reshape((1, -1) + (1,) * len(out_spatial))
    return out


def deconv_reference(x, weights, bias, stride, pad, dilation, group):
    """Scatter form: every input x[n, c, q] adds w[c, o, t] * x to
    out[n, o, q*s - p + t*d] (o in c's group); outside the output is dropped."""
    x64, w64 = x.astype(np.float64), weights.astype(np.float64)
    channels, spatial = x.shape[1], x.shape[2:]
    kernel = weights.shape[2:]
    out_group = weights.shape[1]
    in_group = channels // group
    out_spatial = tuple(s * (size - 1) + d * (k - 1) + 1 - 2 * p
                        for size, k, s, p, d in zip(spatial, kernel, stride, pad, dilation))
    out = np.zeros((x.shape[0], out_group * group) + out_spatial)
    for q in itertools.product(*map(range, spatial)):
        for t in itertools.product(*map(range, kernel)):
            pos = tuple(qi * s - p + ti * d
                        for qi, ti, s, p, d in zip(q, t, stride, pad, dilation))
            if not all(0 <= at < size for at, size in zip(pos, out_spatial)):
                continue
            for g in range(group):
                inputs = x64[(slice(None), slice(g * in_group, (g + 1) * in_group)) + q]
                taps = w64[(slice(g * in_group, (g + 1) * in_group), slice(None)) + t]
                out[(slice(None), slice(g * out_group, (g + 1) * out_group)) + pos] += \
                    inputs @ taps
    if bias is not None:
        out += bias.reshape((1, -1) + (1,) * len(out_spatial))
    return out


def caffe_pooled_size(size, kernel, stride, pad, ceil_mode=True):
    rounding = math.ceil if ceil_mode else math.floor
    pooled = int(rounding((size + 2 * pad - kernel) / stride)) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def pool_reference(x, method, kernel, stride, pad, ceil_mode=True):
    """A port of PoolingLayer::Forward_cpu (MAX and AVE), vectorised over (N, C) only.

    Returns (top, mask); AVE adds in Caffe's order in float32, so this is bit-exact.
    """
    num, channels, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    out_h = caffe_pooled_size(height, kh, sh, ph, ceil_mode)
    out_w = caffe_pooled_size(width, kw, sw, pw, ceil_mode)
    top = np.empty((num, channels, out_h, out_w), dtype=F32)
    mask = np.full(top.shape, -1.0, dtype=F32)
    for oh in range(out_h):
        for ow in range(out_w):
            hstart, wstart = oh * sh - ph, ow * sw - pw
            if method == "MAX":
                hend, wend = min(hstart + kh, height), min(wstart + kw, width)
                hstart, wstart = max(hstart, 0), max(wstart, 0)
                best = np.full((num, channels), -FLT_MAX, dtype=F32)
                where = np.full((num, channels), -1.0, dtype=F32)
                for h in range(hstart, hend):
                    for w in range(wstart, wend):
                        value = x[:, :, h, w]
                        better = value > best
                        best = np.where(better, value, best)
                        where = np.where(better, F32(h * width + w), where)
                top[:, :, oh, ow] = best
                mask[:, :, oh, ow] = where
            else:
                hend, wend = min(hstart + kh, height + ph), min(wstart + kw, width + pw)
                pool_size = (hend - hstart) * (wend - wstart)
                hstart, wstart = max(hstart, 0), max(wstart, 0)
                hend, wend = min(hend, height), min(wend, width)
                total = np.zeros((num, channels), dtype=F32)
                for h in range(hstart, hend):
                    for w in range(wstart, wend):
                        total = total + x[:, :, h, w]
                with np.errstate(divide="ignore", invalid="ignore"):
                    top[:, :, oh, ow] = total / F32(pool_size)
    return top, mask


# ---------------------------------------------------------------- Convolution


def conv_text(type_name, num_output, kernel, stride, pad, dilation, group, bias_term,
              extra=""):
    return (f'name: "conv" type: "{type_name}" convolution_param {{ '
            f'num_output: {num_output} kernel_h: {kernel[0]} kernel_w: {kernel[1]} '
            f'stride_h: {stride[0]} stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]} '
            f'dilation: {dilation[0]} dilation: {dilation[1]} group: {group} '
            f'bias_term: {str(bias_term).lower()} {extra}}}')


@st.composite
def conv_cases(draw):
    group = draw(st.integers(1, 3))
    return dict(
        num=draw(st.integers(1, 2)), group=group,
        channels=group * draw(st.integers(1, 3)),
        num_output=group * draw(st.integers(1, 3)),
        size=(draw(st.integers(1, 9)), draw(st.integers(1, 9))),
        kernel=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        pad=(draw(st.integers(0, 2)), draw(st.integers(0, 2))),
        dilation=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        bias_term=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)))


def check_convolution(case):
    rng = np.random.default_rng(case["seed"])
    x = rand(rng, case["num"], case["channels"], *case["size"])
    weights = rand(rng, case["num_output"], case["channels"] // case["group"], *case["kernel"])
    bias = rand(rng, case["num_output"]) if case["bias_term"] else None
    text = conv_text("Convolution", case["num_output"], case["kernel"], case["stride"],
                     case["pad"], case["dilation"], case["group"], case["bias_term"])
    blobs = [weights] + ([bias] if bias is not None else [])
    out = run(text, [x], blobs)
    ref = conv_reference(x, weights, bias, case["stride"], case["pad"], case["dilation"],
                         case["group"])
    assert_close(out, ref)


@SETTINGS
@given(conv_cases())
def test_convolution_matches_the_definition(case):
    extents = [d * (k - 1) + 1 for k, d in zip(case["kernel"], case["dilation"])]
    assume(all(size + 2 * p >= e for size, p, e in zip(case["size"], case["pad"], extents)))
    check_convolution(case)


@pytest.mark.parametrize("channels, num_output, stride", [
    (8, 8, (1, 1)), (8, 16, (1, 1)), (6, 6, (2, 2)), (4, 12, (2, 1))])
def test_depthwise_convolution(channels, num_output, stride):
    check_convolution(dict(num=2, group=channels, channels=channels, num_output=num_output,
                           size=(7, 9), kernel=(3, 3), stride=stride, pad=(1, 1),
                           dilation=(1, 2), bias_term=True, seed=channels + num_output))


@pytest.mark.parametrize("stride, group", [((1, 1), 1), ((2, 2), 1), ((1, 2), 2),
                                           ((3, 3), 4)])
def test_pointwise_convolution(stride, group):
    check_convolution(dict(num=2, group=group, channels=8, num_output=4 * group,
                           size=(7, 8), kernel=(1, 1), stride=stride, pad=(0, 0),
                           dilation=(1, 1), bias_term=True, seed=3))


def test_im2col_in_row_chunks(monkeypatch):
    monkeypatch.setattr(conv_module, "COL_BUFFER_FLOATS", 50)
    check_convolution(dict(num=2, group=2, channels=4, num_output=6, size=(9, 7),
                           kernel=(3, 2), stride=(1, 2), pad=(1, 1), dilation=(2, 1),
                           bias_term=True, seed=11))


# The fast paths are picked by image size and channel counts (flat or strided im2col,
# tap products, flat or strided depthwise columns, channel blocks, row chunks): each is
# forced here, so every one is checked against the definition whatever sizes the other
# tests happen to draw.
FLAT = dict(FLAT_MAX_WASTE=float("inf"), FLAT_MAX_WIDTH=10**9, TAP_PRODUCTS_RATIO=0.0)
STRIDED = dict(FLAT_MAX_WASTE=-1.0, FLAT_MAX_WIDTH=-1, TAP_PRODUCTS_RATIO=0.0)
TAPS = dict(TAP_PRODUCTS_RATIO=float("inf"))
SMALL = dict(COL_BUFFER_FLOATS=40, DEPTHWISE_BLOCK_FLOATS=30)
PATHS = {"flat": FLAT, "strided": STRIDED, "tap products": TAPS,
         "flat, small buffers": dict(FLAT, **SMALL),
         "strided, small buffers": dict(STRIDED, **SMALL),
         "tap products, small buffers": dict(TAPS, **SMALL)}


@st.composite
def depthwise_cases(draw):
    case = draw(conv_cases())
    channels = draw(st.integers(1, 5))
    return dict(case, group=channels, channels=channels,
                num_output=channels * draw(st.integers(1, 3)))


def unit_stride(cases):
    """The flat paths take unit strides only: draw them often."""
    return cases.map(lambda case: dict(case, stride=(1, 1)))


@pytest.mark.parametrize("path", list(PATHS))
@SETTINGS
@given(case=st.one_of(conv_cases(), depthwise_cases(), unit_stride(conv_cases()),
                      unit_stride(depthwise_cases())))
def test_convolution_paths_match_the_definition(path, case):
    extents = [d * (k - 1) + 1 for k, d in zip(case["kernel"], case["dilation"])]
    assume(all(size + 2 * p >= e for size, p, e in zip(case["size"], case["pad"], extents)))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in PATHS[path].items():
            patch.setattr(conv_module, name, value)
        check_convolution(case)


@pytest.mark.parametrize("path", list(PATHS))
def test_convolution_paths_in_1d_and_3d(path):
    rng = np.random.default_rng(9)
    cases = [  # (x shape, weight shape, stride, pad, dilation, group)
        ((2, 4, 11), (6, 2, 3), (1,), (1,), (2,), 2),
        ((1, 3, 9), (6, 1, 4), (1,), (2,), (1,), 3),                  # depthwise
        ((1, 4, 4, 5, 3), (4, 2, 2, 3, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1), 2),
        ((2, 3, 5, 4, 6), (3, 1, 3, 2, 3), (1, 1, 1), (1, 0, 2), (1, 2, 1), 3),   # depthwise
        ((1, 2, 6, 5, 7), (4, 1, 2, 2, 3), (2, 1, 2), (0, 1, 1), (1, 1, 1), 2),   # depthwise
        ((2, 5, 10), (3, 5, 4), (1,), (1,), (2,), 1),
        ((1, 5, 4, 6, 5), (2, 5, 3, 2, 3), (1, 1, 1), (1, 0, 1), (1, 2, 1), 1),
    ]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in PATHS[path].items():
            patch.setattr(conv_module, name, value)
        for shape, weight_shape, stride, pad, dilation, group in cases:
            x, weights = rand(rng, *shape), rand(rng, *weight_shape)
            kernel = " ".join(f"kernel_size: {k}" for k in weight_shape[2:])
            text = (f'name: "c" type: "Convolution" convolution_param {{ '
                    f'num_output: {weight_shape[0]} {kernel} group: {group} '
                    + " ".join(f"stride: {s}" for s in stride) + " "
                    + " ".join(f"pad: {p}" for p in pad) + " "
                    + " ".join(f"dilation: {d}" for d in dilation) + " bias_term: false }")
            assert_close(run(text, [x], [weights]),
                         conv_reference(x, weights, None, stride, pad, dilation, group))


def test_convolution_on_axis_2_and_3d():
    rng = np.random.default_rng(5)
    x = rand(rng, 2, 3, 4, 10)                      # 1-D convolution, channels on axis 2
    weights, bias = rand(rng, 5, 4, 3), rand(rng, 5)
    out = run('name: "c" type: "Convolution" convolution_param '
              '{ num_output: 5 kernel_size: 3 stride: 2 pad: 1 axis: 2 }', [x], [weights, bias])
    ref = conv_reference(x.reshape(6, 4, 10), weights, bias, (2,), (1,), (1,), 1)
    assert_close(out, ref.reshape(2, 3, 5, 5))
    x = rand(rng, 1, 4, 4, 5, 3)                    # 3-D convolution, groups
    weights = rand(rng, 4, 2, 2, 3, 2)
    out = run('name: "c" type: "Convolution" convolution_param { num_output: 4 '
              'kernel_size: 2 kernel_size: 3 kernel_size: 2 pad: 1 group: 2 '
              'bias_term: false }', [x], [weights])
    assert_close(out, conv_reference(x, weights, None, (1, 1, 1), (1, 1, 1), (1, 1, 1), 2))


def test_convolution_several_bottoms():
    rng = np.random.default_rng(6)
    a, b = rand(rng, 1, 2, 5, 5), rand(rng, 1, 2, 5, 5)
    weights = rand(rng, 3, 2, 3, 3)
    text = ('name: "c" type: "Convolution" convolution_param '
            '{ num_output: 3 kernel_size: 3 bias_term: false }')
    layer = make_layer(text, 2, 2)
    out_a, out_b = op_for(layer, [weights], Phase.TEST).run([a, b])
    assert_close(out_a, conv_reference(a, weights, None, (1, 1), (0, 0), (1, 1), 1))
    assert_close(out_b, conv_reference(b, weights, None, (1, 1), (0, 0), (1, 1), 1))


def test_convolution_weight_errors():
    x = np.zeros((1, 3, 5, 5), F32)
    text = 'name: "c" type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 }'
    with pytest.raises(ForwardError, match="2 blobs|has 1 blobs"):
        op_for(make_layer(text), [np.zeros((4, 3, 3, 3), F32)], Phase.TEST)
    op = op_for(make_layer(text), [np.zeros((4, 3, 3, 2), F32), np.zeros(4, F32)], Phase.TEST)
    with pytest.raises(ForwardError, match=r"weight blob has shape \(4, 3, 3, 2\)"):
        op.run([x])
    legacy_bias = np.ones((1, 1, 1, 4), F32)        # pre-2015 caffemodels store (1, 1, 1, O)
    op = op_for(make_layer(text), [np.zeros((4, 3, 3, 3), F32), legacy_bias], Phase.TEST)
    assert np.all(op.run([x])[0] == 1)
    with pytest.raises(BnlintError, match="larger than the padded input"):
        op.run([np.zeros((1, 3, 2, 2), F32)])


# ---------------------------------------------------------------- Deconvolution


@SETTINGS
@given(conv_cases())
def test_deconvolution_matches_the_definition(case):
    out_sizes = [s * (size - 1) + d * (k - 1) + 1 - 2 * p for size, k, s, p, d in
                 zip(case["size"], case["kernel"], case["stride"], case["pad"],
                     case["dilation"])]
    assume(all(size > 0 for size in out_sizes))
    rng = np.random.default_rng(case["seed"])
    group = case["group"]
    x = rand(rng, case["num"], case["channels"], *case["size"])
    weights = rand(rng, case["channels"], case["num_output"] // group, *case["kernel"])
    bias = rand(rng, case["num_output"]) if case["bias_term"] else None
    text = conv_text("Deconvolution", case["num_output"], case["kernel"], case["stride"],
                     case["pad"], case["dilation"], group, case["bias_term"])
    out = run(text, [x], [weights] + ([bias] if bias is not None else []))
    assert_close(out, deconv_reference(x, weights, bias, case["stride"], case["pad"],
                                       case["dilation"], group))


def test_deconvolution_upsampling_with_groups():
    rng = np.random.default_rng(8)
    x = rand(rng, 2, 9, 6, 12)
    weights, bias = rand(rng, 9, 2, 4, 4), rand(rng, 6)
    out = run('name: "d" type: "Deconvolution" convolution_param { num_output: 6 '
              'kernel_size: 4 stride: 2 pad: 1 group: 3 }', [x], [weights, bias])
    assert out.shape == (2, 6, 12, 24)
    assert_close(out, deconv_reference(x, weights, bias, (2, 2), (1, 1), (1, 1), 3))


# ---------------------------------------------------------------- Pooling


@st.composite
def pool_cases(draw):
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    return dict(
        method=draw(st.sampled_from(["MAX", "AVE"])),
        shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)),
               draw(st.integers(1, 12)), draw(st.integers(1, 12))),
        kernel=kernel,
        stride=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
        pad=(draw(st.integers(0, kernel[0] - 1)), draw(st.integers(0, kernel[1] - 1))),
        ceil_mode=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)))


def pool_text(method, kernel, stride, pad, ceil_mode=True):
    return (f'name: "pool" type: "Pooling" pooling_param {{ pool: {method} '
            f'kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} '
            f'stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]} '
            f'{"" if ceil_mode else "round_mode: FLOOR"} }}')


@SETTINGS
@given(pool_cases())
def test_pooling_is_bit_exact_with_caffes_loop(case):
    height, width = case["shape"][2:]
    assume(caffe_pooled_size(height, case["kernel"][0], case["stride"][0], case["pad"][0],
                             case["ceil_mode"]) > 0)
    assume(caffe_pooled_size(width, case["kernel"][1], case["stride"][1], case["pad"][1],
                             case["ceil_mode"]) > 0)
    x = rand(np.random.default_rng(case["seed"]), *case["shape"])
    text = pool_text(case["method"], case["kernel"], case["stride"], case["pad"],
                     case["ceil_mode"])
    top, mask = pool_reference(x, case["method"], case["kernel"], case["stride"],
                               case["pad"], case["ceil_mode"])
    if case["method"] == "MAX":
        outs = run_all(text, [x], tops=2)
        assert np.array_equal(outs[0], top) and np.array_equal(outs[1], mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.array_equal(run(text, [x]), top, equal_nan=True)


def test_pooling_window_past_the_input_gives_caffes_garbage():
    # 1x1/2 pooling on a width of 2 (no pad): ceil gives 2 outputs, the second window
    # starts at 2 = W and covers nothing. Caffe: MAX -FLT_MAX, AVE 0/0 = NaN; with a
    # stride of 3 on width 2 the divisor is 2 - 3 = -1 and AVE gives -0.0.
    x = np.ones((1, 1, 1, 2), F32)
    layer = make_layer(pool_text("AVE", (1, 1), (1, 2), (0, 0)))
    assert pooling.pool_geometry(layer, x.shape).has_empty_windows
    assert run(pool_text("MAX", (1, 1), (1, 2), (0, 0)), [x]).tolist() == [[[[1.0, -FLT_MAX]]]]
    ave = run(pool_text("AVE", (1, 1), (1, 2), (0, 0)), [x])
    assert ave[0, 0, 0, 0] == 1.0 and np.isnan(ave[0, 0, 0, 1])
    ave = run(pool_text("AVE", (1, 1), (1, 3), (0, 0)), [x])
    assert ave[0, 0, 0, 1] == 0.0 and np.signbit(ave[0, 0, 0, 1])
    layer = make_layer(pool_text("AVE", (3, 3), (2, 2), (1, 1)))
    assert not pooling.pool_geometry(layer, (1, 1, 6, 6)).has_empty_windows


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("pad", [(0, 0), (1, 1), (0, 1)])
def test_pooling_refills_the_reused_padding_buffer(method, pad):
    # The padded input lives in a buffer reused across layers: its border (the padding,
    # and the ceil overhang past the input: 3x3/2 on 6x6 reads a 7th row and column)
    # must be filled on every call, whatever an earlier layer left there.
    x = rand(np.random.default_rng(12), 1, 2, 6, 6) - F32(2)    # all negative
    top, _ = pool_reference(x, method, (3, 3), (2, 2), pad)
    scratch_buffer("padded", (4096,))[...] = F32(1e30)
    assert np.array_equal(run(pool_text(method, (3, 3), (2, 2), pad), [x]), top)


def test_ave_pooling_divisor_counts_padding_but_not_the_ceil_overhang():
    # 3x3/2 pad 1 on 4x4: windows start at rows -1, 1, 3. The first counts its padding
    # row (divisor 3 for 2 real rows); the last covers rows 3..5, clipped to the padded
    # extent 3..4 (size + pad = 5): divisor 2, not 3 (kernel) and not 1 (real rows).
    x = np.ones((1, 1, 4, 4), F32)
    out = run(pool_text("AVE", (3, 3), (2, 2), (1, 1)), [x])
    divisor_1d = np.array([3, 3, 2], F32)
    real_1d = np.array([2, 3, 1], F32)
    assert out.shape == (1, 1, 3, 3)
    assert np.array_equal(out[0, 0], np.outer(real_1d, real_1d) / np.outer(divisor_1d,
                                                                            divisor_1d))


def test_ave_pooling_ceil_window_without_padding():
    # 2x2/2 on 5x5, no pad: ceil gives 3 outputs; the last window holds one real row and
    # Caffe divides by min(4 + 2, 5 + 0) - 4 = 1, i.e. it is the plain value.
    x = np.arange(25, dtype=F32).reshape(1, 1, 5, 5)
    out = run(pool_text("AVE", (2, 2), (2, 2), (0, 0)), [x])
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0, 2, 2] == x[0, 0, 4, 4]
    assert out[0, 0, 0, 2] == (x[0, 0, 0, 4] + x[0, 0, 1, 4]) / 2


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 4, 13, 17), (1, 2, 1, 1), (1, 5, 40, 3)])
def test_global_pooling_is_bit_exact(method, shape):
    x = rand(np.random.default_rng(sum(shape)), *shape) * 100
    out = run(f'name: "g" type: "Pooling" pooling_param {{ pool: {method} '
              f'global_pooling: true }}', [x])
    ref, _ = pool_reference(x, method, shape[2:], (1, 1), (0, 0))
    assert out.shape == shape[:2] + (1, 1)
    assert np.array_equal(out, ref)


def test_max_pooling_ignores_nan_and_floors_at_minus_flt_max():
    x = np.full((1, 1, 2, 4), -np.inf, F32)
    x[0, 0, :, 2:] = [[np.nan, 1.0], [np.nan, np.nan]]
    out, mask = run_all(pool_text("MAX", (2, 2), (2, 2), (0, 0)), [x], tops=2)
    assert out[0, 0, 0, 0] == -FLT_MAX and mask[0, 0, 0, 0] == -1
    assert out[0, 0, 0, 1] == 1.0 and mask[0, 0, 0, 1] == 3
    glob = run('name: "g" type: "Pooling" pooling_param { pool: MAX global_pooling: true }',
               [x[:, :, :, :2]])
    assert glob[0, 0, 0, 0] == -FLT_MAX


def test_max_pooling_mask_picks_the_first_maximum():
    x = np.array([[[[1, 5, 5], [5, 0, 2]]]], F32)
    _, mask = run_all(pool_text("MAX", (2, 3), (1, 1), (0, 0)), [x], tops=2)
    assert mask.reshape(-1).tolist() == [1.0]


def test_stochastic_pooling_at_test_is_the_weighted_average():
    x = np.random.default_rng(4).uniform(0.1, 1.0, (1, 2, 5, 5)).astype(F32)
    out = run('name: "s" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 '
              'stride: 2 }', [x])
    assert out.shape == (1, 2, 3, 3)                 # ceil: the last window is clipped
    for oh, ow in itertools.product(range(3), range(3)):
        window = x[:, :, 2 * oh:2 * oh + 2, 2 * ow:2 * ow + 2]
        weight_sum = np.full((1, 2), FLT_MIN, F32)
        weighted = np.zeros((1, 2), F32)
        for h, w in itertools.product(range(window.shape[2]), range(window.shape[3])):
            weight_sum = weight_sum + window[:, :, h, w]
            weighted = weighted + window[:, :, h, w] * window[:, :, h, w]
        assert np.array_equal(out[:, :, oh, ow], weighted / weight_sum)
    with pytest.raises(ForwardError, match="TRAIN"):
        op_for(make_layer('name: "s" type: "Pooling" pooling_param { pool: STOCHASTIC '
                          'kernel_size: 2 }'), [], Phase.TRAIN)


# ---------------------------------------------------------------- InnerProduct, Embed


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
       axis_pick=st.integers(0, 7), num_output=st.integers(1, 5), transpose=st.booleans(),
       bias_term=st.booleans(), negative_axis=st.booleans(), seed=st.integers(0, 2**16))
def test_inner_product_matches_the_definition(shape, axis_pick, num_output, transpose,
                                              bias_term, negative_axis, seed):
    axis = axis_pick % len(shape)
    rng = np.random.default_rng(seed)
    x = rand(rng, *shape)
    inputs = int(np.prod(shape[axis:]))
    weights = rand(rng, inputs, num_output) if transpose else rand(rng, num_output, inputs)
    bias = rand(rng, num_output) if bias_term else None
    written_axis = axis - len(shape) if negative_axis else axis
    out = run(f'name: "ip" type: "InnerProduct" inner_product_param {{ num_output: '
              f'{num_output} axis: {written_axis} transpose: {str(transpose).lower()} '
              f'bias_term: {str(bias_term).lower()} }}', [x],
              [weights] + ([bias] if bias is not None else []))
    rows = x.reshape(-1, inputs).astype(np.float64)
    ref = np.zeros((rows.shape[0], num_output))
    for m in range(rows.shape[0]):
        for n in range(num_output):
            column = weights[:, n] if transpose else weights[n, :]
            ref[m, n] = sum(float(a) * float(b) for a, b in zip(rows[m], column))
            if bias is not None:
                ref[m, n] += bias[n]
    assert_close(out, ref.reshape(tuple(shape[:axis]) + (num_output,)))


def test_embed_looks_up_rows():
    rng = np.random.default_rng(9)
    table, bias = rand(rng, 10, 4), rand(rng, 4)
    index = np.array([[3, 0, 9], [3, 3, 1]], F32)
    out = run('name: "e" type: "Embed" embed_param { num_output: 4 input_dim: 10 }',
              [index], [table, bias])
    for i, j in itertools.product(range(2), range(3)):
        assert np.array_equal(out[i, j], table[int(index[i, j])] + bias)
    with pytest.raises(ForwardError, match="not an integer in"):
        run('name: "e" type: "Embed" embed_param { num_output: 4 input_dim: 10 }',
            [np.array([1.5], F32)], [table, bias])
    with pytest.raises(ForwardError, match="not an integer in"):
        run('name: "e" type: "Embed" embed_param { num_output: 4 input_dim: 10 '
            'bias_term: false }', [np.array([10], F32)], [table])


# ---------------------------------------------------------------- structural


def test_input_and_silence_produce_nothing():
    layer = make_layer('name: "in" type: "Input" input_param { shape { dim: 1 } }', 0)
    assert op_for(layer, [], Phase.TEST).run([]) == []
    layer = make_layer('name: "s" type: "Silence"', 2, 0)
    assert op_for(layer, [], Phase.TEST).run([np.zeros(2, F32), np.zeros(3, F32)]) == []


def test_concat_and_slice_round_trip():
    rng = np.random.default_rng(10)
    a, b, c = rand(rng, 2, 1, 3), rand(rng, 2, 4, 3), rand(rng, 2, 2, 3)
    joined = run('name: "c" type: "Concat"', [a, b, c])
    for i, j, k in np.ndindex(joined.shape):
        source = a if j < 1 else b if j < 5 else c
        offset = 0 if j < 1 else 1 if j < 5 else 5
        assert joined[i, j, k] == source[i, j - offset, k]
    parts = run_all('name: "s" type: "Slice" slice_param { slice_point: 1 slice_point: 5 }',
                    [joined], tops=3)
    assert all(np.array_equal(p, q) for p, q in zip(parts, [a, b, c]))
    thirds = run_all('name: "s" type: "Slice" slice_param { axis: -1 }', [joined], tops=3)
    assert all(np.array_equal(t, joined[:, :, i:i + 1]) for i, t in enumerate(thirds))
    with pytest.raises(BnlintError, match="axis 1"):
        run('name: "c" type: "Concat"', [a, rand(rng, 2, 1, 4)])


def test_split_flatten_reshape_keep_the_data_order():
    x = np.arange(120, dtype=F32).reshape(2, 3, 4, 5)
    first, second = run_all('name: "s" type: "Split"', [x], tops=2)
    assert np.array_equal(first, x) and np.array_equal(second, x)
    flat = run('name: "f" type: "Flatten" flatten_param { axis: 1 end_axis: 2 }', [x])
    assert flat.shape == (2, 12, 5) and np.array_equal(flat.ravel(), x.ravel())
    for param, shape in [("shape { dim: 0 dim: -1 }", (2, 60)),
                         ("shape { dim: 0 dim: 0 dim: -1 dim: 2 }", (2, 3, 10, 2)),
                         ("shape { dim: 2 dim: -1 } axis: 1 num_axes: 2", (2, 2, 6, 5))]:
        out = run(f'name: "r" type: "Reshape" reshape_param {{ {param} }}', [x])
        assert out.shape == shape and np.array_equal(out.ravel(), x.ravel())


@pytest.mark.parametrize("param, reference_shape", [
    ("", (1, 1, 3, 4)),
    ("offset: 2", (1, 1, 3, 4)),
    ("axis: 1 offset: 1 offset: 2 offset: 3", (1, 2, 3, 4)),
    ("axis: -1 offset: 1", (9, 9, 9, 4)),
    ("axis: 0 offset: 0 offset: 1 offset: 0 offset: 2", (2, 2, 5, 3)),
])
def test_crop_matches_index_arithmetic(param, reference_shape):
    x = np.arange(2 * 3 * 6 * 7, dtype=F32).reshape(2, 3, 6, 7)
    layer_text = f'name: "c" type: "Crop" crop_param {{ {param} }}'
    out = run(layer_text, [x, np.zeros(reference_shape, F32)])
    layer = make_layer(layer_text, 2)
    offsets = structure.crop_offsets(layer, x.shape, reference_shape)
    for index in np.ndindex(out.shape):
        assert out[index] == x[tuple(i + o for i, o in zip(index, offsets))]


def test_crop_too_large_is_an_error():
    with pytest.raises(BnlintError, match="does not fit"):
        run('name: "c" type: "Crop" crop_param { offset: 4 }',
            [np.zeros((1, 1, 6, 6), F32), np.zeros((1, 1, 3, 3), F32)])


@pytest.mark.parametrize("axis, tiles", [(0, 2), (1, 3), (2, 2), (-1, 4)])
def test_tile(axis, tiles):
    x = rand(np.random.default_rng(12), 2, 3, 4)
    out = run(f'name: "t" type: "Tile" tile_param {{ axis: {axis} tiles: {tiles} }}', [x])
    canonical = axis % 3
    outer = int(np.prod(x.shape[:canonical]))
    blocks = x.reshape(outer, -1)
    expected = np.concatenate([np.concatenate([blocks[i]] * tiles) for i in range(outer)])
    assert np.array_equal(out.ravel(), expected)


def argmax_reference(values, top_k):
    """std::partial_sort with std::greater on (value, index) pairs."""
    pairs = sorted(((float(v), j) for j, v in enumerate(values)), reverse=True)
    return pairs[:top_k]


def test_argmax_ties_pick_the_larger_index():
    x = np.array([[1, 3, 3, 2, 3]], F32)
    out = run('name: "a" type: "ArgMax" argmax_param { top_k: 2 }', [x])
    assert out.reshape(-1).tolist() == [4.0, 2.0]
    out = run('name: "a" type: "ArgMax" argmax_param { top_k: 3 out_max_val: true }', [x])
    assert out.shape == (1, 2, 3)
    assert out[0].tolist() == [[4.0, 2.0, 1.0], [3.0, 3.0, 3.0]]


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4), top_k=st.integers(1, 3),
       use_axis=st.booleans(), axis_pick=st.integers(0, 3), out_max_val=st.booleans(),
       seed=st.integers(0, 2**16))
def test_argmax_matches_sorted_pairs(shape, top_k, use_axis, axis_pick, out_max_val, seed):
    shape = tuple(shape)
    x = np.random.default_rng(seed).integers(0, 3, shape).astype(F32)   # many ties
    axis = axis_pick % len(shape)
    size = shape[axis] if use_axis else int(np.prod(shape[1:]))
    assume(top_k <= size)
    param = (f"top_k: {top_k} out_max_val: {str(out_max_val).lower()}"
             + (f" axis: {axis}" if use_axis else ""))
    out = run(f'name: "a" type: "ArgMax" argmax_param {{ {param} }}', [x])
    if use_axis:
        moved_x, moved_out = np.moveaxis(x, axis, -1), np.moveaxis(out, axis, -1)
        for index in np.ndindex(moved_x.shape[:-1]):
            pairs = argmax_reference(moved_x[index], top_k)
            expected = [v if out_max_val else float(j) for v, j in pairs]
            assert moved_out[index].tolist() == expected
    else:
        for n in range(shape[0]):
            pairs = argmax_reference(x[n].ravel(), top_k)
            assert out[n, 0].ravel().tolist() == [float(j) for _, j in pairs]
            if out_max_val:
                assert out[n, 1].ravel().tolist() == [v for v, _ in pairs]


@pytest.mark.parametrize("operation", ["SUM", "ASUM", "SUMSQ", "MEAN"])
@pytest.mark.parametrize("axis, coeff", [(0, 1.0), (1, 0.5), (-1, -2.0), (2, 1.0)])
def test_reduction(operation, axis, coeff):
    x = rand(np.random.default_rng(13), 2, 3, 4)
    out = run(f'name: "r" type: "Reduction" reduction_param {{ operation: {operation} '
              f'axis: {axis} coeff: {coeff} }}', [x])
    canonical = axis % 3
    rows = x.reshape(int(np.prod(x.shape[:canonical])), -1)
    apply = {"SUM": lambda v: v, "ASUM": abs, "SUMSQ": lambda v: v * v,
             "MEAN": lambda v: v}[operation]
    expected = []
    for row in rows:
        total = math.fsum(apply(float(v)) for v in row)
        if operation == "MEAN":
            total /= len(row)
        expected.append(total * coeff)
    assert_close(out, np.array(expected).reshape(x.shape[:canonical]))


# ---------------------------------------------------------------- shapes agree with ops


AGREEMENT_CASES = [
    ('type: "Convolution" convolution_param { num_output: 6 kernel_size: 3 stride: 2 '
     'pad: 1 dilation: 2 group: 2 }', [(2, 4, 11, 9)]),
    ('type: "Convolution" convolution_param { num_output: 4 kernel_size: 1 stride: 2 }',
     [(1, 3, 5, 6)]),
    ('type: "Convolution" convolution_param { num_output: 8 kernel_size: 3 group: 4 }',
     [(1, 4, 5, 5)]),
    ('type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 3 stride: 3 '
     'pad: 1 group: 2 }', [(1, 6, 4, 5)]),
    ('type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 }', [(1, 2, 8, 8)]),
    ('type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }',
     [(1, 2, 9, 8)]),
    ('type: "Pooling" pooling_param { pool: AVE global_pooling: true }', [(2, 3, 5, 4)]),
    ('type: "InnerProduct" inner_product_param { num_output: 3 axis: 2 }', [(2, 3, 4, 5)]),
    ('type: "Embed" embed_param { num_output: 3 input_dim: 1 }', [(2, 3)]),
    ('type: "Concat" concat_param { axis: 2 }', [(1, 2, 3), (1, 2, 5)]),
    ('type: "Slice" slice_param { slice_point: 1 }', [(1, 4, 2)], 2),
    ('type: "Split"', [(1, 4, 2)], 3),
    ('type: "Flatten" flatten_param { axis: 2 }', [(1, 4, 2, 3)]),
    ('type: "Reshape" reshape_param { shape { dim: -1 dim: 4 } }', [(2, 4, 2)]),
    ('type: "Crop" crop_param { axis: 1 offset: 1 }', [(1, 4, 5, 6), (1, 2, 3, 4)]),
    ('type: "Tile" tile_param { tiles: 3 }', [(2, 4)]),
    ('type: "ArgMax" argmax_param { top_k: 2 out_max_val: true }', [(2, 5, 3, 1)]),
    ('type: "ArgMax" argmax_param { axis: -1 }', [(2, 5, 3)]),
    ('type: "Reduction" reduction_param { operation: MEAN axis: 0 }', [(2, 5)]),
]


@pytest.mark.parametrize("case", AGREEMENT_CASES, ids=lambda case: case[0].split('"')[1])
def test_op_output_shapes_agree_with_shape_inference(case):
    text, bottom_shapes = case[0], case[1]
    tops = case[2] if len(case) > 2 else 1
    layer = make_layer(f'name: "x" {text}', len(bottom_shapes), tops)
    params = shapes.infer(layer, bottom_shapes).params
    rng = np.random.default_rng(14)
    blobs = [rand(rng, *p) for p in params]
    if layer.type == "Embed":
        bottoms = [np.zeros(bottom_shapes[0], F32)]
    else:
        bottoms = [rand(rng, *s) for s in bottom_shapes]
    run_all(f'name: "x" {text}', bottoms, blobs, tops=tops)
