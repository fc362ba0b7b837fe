"""Caffe's fillers: shapes, dtypes, statistics of big samples, exact kernels, seeding,
and the blobs a layer's setup creates when no weights are stored."""

from __future__ import annotations

import math

import numpy as np
import pytest
from google.protobuf import text_format

from bnlint.caffe import caffe_pb2
from bnlint.errors import BnlintError
from bnlint.forward.fillers import blobs_from_fillers, fill

F32 = np.float32


def filler(text: str = ""):
    return text_format.Parse(text, caffe_pb2.FillerParameter())


def layer(text: str, bottoms: int = 1):
    msg = text_format.Parse(text, caffe_pb2.LayerParameter())
    msg.name = msg.name or "probe"
    msg.bottom.extend(f"b{i}" for i in range(bottoms))
    return msg


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_default_filler_is_constant_zero():
    out = fill(filler(), (2, 3), rng())
    assert out.dtype == F32 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, 0)


def test_constant_value():
    np.testing.assert_array_equal(fill(filler("value: 0.25"), (4,), rng()), F32(0.25))


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-0.3, 0.7), (2.0, 2.0)])
def test_uniform_bounds_and_moments(low, high):
    out = fill(filler(f"type: 'uniform' min: {low} max: {high}"), (200, 500), rng(1))
    assert out.dtype == F32 and out.shape == (200, 500)
    assert out.min() >= F32(low) and out.max() <= F32(high)
    assert abs(out.mean() - (low + high) / 2) < 0.01
    assert abs(out.std() - (high - low) / math.sqrt(12)) < 0.01


def test_uniform_needs_min_at_most_max():
    with pytest.raises(BnlintError, match="min <= max"):
        fill(filler("type: 'uniform' min: 1 max: 0"), (3,), rng())


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (0.5, 0.01), (-2.0, 3.0)])
def test_gaussian_moments(mean, std):
    out = fill(filler(f"type: 'gaussian' mean: {mean} std: {std}"), (400, 250), rng(2))
    assert out.dtype == F32
    assert abs(out.mean() - mean) < 0.02 * std + 1e-6
    assert abs(out.std() - std) < 0.02 * std


def test_gaussian_needs_positive_std():
    with pytest.raises(BnlintError, match="std > 0"):
        fill(filler("type: 'gaussian' std: 0"), (3,), rng())


def test_sparse_gaussian_keeps_sparse_over_num_outputs_of_the_weights():
    # Caffe keeps each weight with probability sparse / shape[0].
    out = fill(filler("type: 'gaussian' std: 1 sparse: 25"), (100, 4000), rng(3))
    assert abs(np.count_nonzero(out) / out.size - 0.25) < 0.01
    dense = fill(filler("type: 'gaussian' std: 1 sparse: 100"), (100, 50), rng(3))
    assert np.count_nonzero(dense) == dense.size


def test_sparse_above_first_dimension_is_an_error():
    with pytest.raises(BnlintError, match="above 1"):
        fill(filler("type: 'gaussian' sparse: 11"), (10, 3), rng())


@pytest.mark.parametrize("kind", ["constant", "uniform", "xavier", "msra", "positive_unitball"])
def test_sparsity_is_only_for_gaussian(kind):
    with pytest.raises(BnlintError, match="only supported by the gaussian filler"):
        fill(filler(f"type: '{kind}' sparse: 2"), (4, 4), rng())


def test_positive_unitball_rows_sum_to_one():
    out = fill(filler("type: 'positive_unitball'"), (5, 3, 2, 2), rng(4))
    assert out.dtype == F32 and (out >= 0).all() and (out <= 1).all()
    np.testing.assert_allclose(out.reshape(5, -1).sum(axis=1), 1, rtol=1e-6)


SHAPE = (64, 32, 3, 3)          # fan_in = 32*9 = 288, fan_out = 64*9 = 576


@pytest.mark.parametrize("norm, n", [("FAN_IN", 288), ("FAN_OUT", 576),
                                     ("AVERAGE", (288 + 576) / 2)])
def test_xavier_is_uniform_with_limit_sqrt_3_over_n(norm, n):
    out = fill(filler(f"type: 'xavier' variance_norm: {norm}"), SHAPE, rng(5))
    limit = math.sqrt(3 / n)
    assert out.dtype == F32 and out.shape == SHAPE
    assert out.min() >= -limit and out.max() <= limit
    assert abs(out.std() - limit / math.sqrt(3)) < 0.02 * limit


@pytest.mark.parametrize("norm, n", [("FAN_IN", 288), ("FAN_OUT", 576),
                                     ("AVERAGE", (288 + 576) / 2)])
def test_msra_is_gaussian_with_std_sqrt_2_over_n(norm, n):
    out = fill(filler(f"type: 'msra' variance_norm: {norm}"), SHAPE, rng(6))
    std = math.sqrt(2 / n)
    assert abs(out.mean()) < 0.02 * std
    assert abs(out.std() - std) < 0.02 * std


def test_xavier_fans_use_caffes_legacy_num_and_channels():
    # A 1-axis blob has channels() == 1, so fan_out is the whole count.
    out = fill(filler("type: 'xavier' variance_norm: FAN_OUT"), (10000,), rng(7))
    assert out.max() <= math.sqrt(3 / 10000)
    with pytest.raises(BnlintError, match="more than 4 axes"):
        fill(filler("type: 'msra'"), (2, 2, 2, 2, 2), rng())


def test_bilinear_4x4_kernel_by_hand():
    # K = 4: f = ceil(4/2) = 2, c = (2f - 1 - f%2) / 2f = 3/4,
    # so along each axis 1 - |x/2 - 3/4| for x = 0..3 gives 1/4, 3/4, 3/4, 1/4.
    profile = np.array([0.25, 0.75, 0.75, 0.25])
    expected = np.outer(profile, profile)
    out = fill(filler("type: 'bilinear'"), (3, 1, 4, 4), rng())
    assert out.dtype == F32 and out.shape == (3, 1, 4, 4)
    for c in range(3):
        np.testing.assert_array_equal(out[c, 0], expected)


def test_bilinear_odd_kernel():
    # K = 5 (factor 3): f = 3, c = 4/6, profile 1/3, 2/3, 1, 2/3, 1/3.
    profile = np.array([1, 2, 3, 2, 1]) / 3
    out = fill(filler("type: 'bilinear'"), (1, 1, 5, 5), rng())
    np.testing.assert_allclose(out[0, 0], np.outer(profile, profile), rtol=1e-6)


@pytest.mark.parametrize("shape, message", [((1, 1, 4, 3), "square"), ((4, 4), "4-axis")])
def test_bilinear_shape_errors(shape, message):
    with pytest.raises(BnlintError, match=message):
        fill(filler("type: 'bilinear'"), shape, rng())


def test_unknown_filler_names_it():
    with pytest.raises(BnlintError, match="unknown filler type 'orthogonal'"):
        fill(filler("type: 'orthogonal'"), (2, 2), rng())


@pytest.mark.parametrize("text", ["type: 'uniform'", "type: 'gaussian' sparse: 3",
                                  "type: 'xavier'", "type: 'msra'", "type: 'positive_unitball'"])
def test_seeding_is_reproducible(text):
    first = fill(filler(text), (8, 4, 3, 3), rng(42))
    again = fill(filler(text), (8, 4, 3, 3), rng(42))
    other = fill(filler(text), (8, 4, 3, 3), rng(43))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


# ---------------------------------------------------------------- blobs_from_fillers

def test_convolution_weight_filler_and_zero_bias_by_default():
    conv = layer("type: 'Convolution' convolution_param { num_output: 8 kernel_size: 3 "
                 "weight_filler { type: 'gaussian' std: 0.01 } }")
    weight, bias = blobs_from_fillers(conv, [(8, 4, 3, 3), (8,)], rng(8))
    assert weight.shape == (8, 4, 3, 3) and weight.dtype == F32
    assert 0.005 < weight.std() < 0.015
    np.testing.assert_array_equal(bias, 0)


def test_missing_weight_filler_is_constant_zero():
    conv = layer("type: 'Convolution' convolution_param { num_output: 2 bias_term: false }")
    (weight,) = blobs_from_fillers(conv, [(2, 3, 1, 1)], rng())
    np.testing.assert_array_equal(weight, 0)


@pytest.mark.parametrize("text", [
    "type: 'InnerProduct' inner_product_param { weight_filler { type: 'xavier' } "
    "bias_filler { type: 'constant' value: 0.5 } }",
    "type: 'Deconvolution' convolution_param { weight_filler { type: 'xavier' } "
    "bias_filler { type: 'constant' value: 0.5 } }",
    "type: 'Embed' embed_param { weight_filler { type: 'xavier' } "
    "bias_filler { type: 'constant' value: 0.5 } }",
])
def test_weight_and_bias_layers(text):
    weight, bias = blobs_from_fillers(layer(text), [(6, 20), (6,)], rng(9))
    assert np.abs(weight).max() <= math.sqrt(3 / 20)
    np.testing.assert_array_equal(bias, 0.5)


def test_scale_defaults_to_ones_and_a_zero_bias():
    scale, bias = blobs_from_fillers(layer("type: 'Scale' scale_param { bias_term: true }"),
                                     [(5,), (5,)], rng())
    np.testing.assert_array_equal(scale, 1)
    np.testing.assert_array_equal(bias, 0)


def test_scale_with_two_bottoms_creates_only_the_bias():
    msg = layer("type: 'Scale' scale_param { bias_term: true "
                "bias_filler { type: 'constant' value: 3 } }", bottoms=2)
    (bias,) = blobs_from_fillers(msg, [(2, 3)], rng())
    np.testing.assert_array_equal(bias, 3)


def test_scale_explicit_filler_wins():
    msg = layer("type: 'Scale' scale_param { filler { value: 2 } }")
    (scale,) = blobs_from_fillers(msg, [(3,)], rng())
    np.testing.assert_array_equal(scale, 2)


def test_prelu_slopes_default_to_a_quarter():
    (slopes,) = blobs_from_fillers(layer("type: 'PReLU'"), [(4,)], rng())
    np.testing.assert_array_equal(slopes, F32(0.25))
    (shared,) = blobs_from_fillers(layer("type: 'PReLU' prelu_param { channel_shared: true }"),
                                   [()], rng())
    assert shared.shape == () and shared == F32(0.25)


def test_batchnorm_blobs_are_zero():
    blobs = blobs_from_fillers(layer("type: 'BatchNorm'"), [(4,), (4,), (1,)], rng())
    assert [b.shape for b in blobs] == [(4,), (4,), (1,)]
    for b in blobs:
        np.testing.assert_array_equal(b, 0)


def test_bias_layer_filler():
    msg = layer("type: 'Bias' bias_param { filler { type: 'constant' value: -1 } }")
    (bias,) = blobs_from_fillers(msg, [(3,)], rng())
    np.testing.assert_array_equal(bias, -1)
    assert blobs_from_fillers(layer("type: 'Bias'", bottoms=2), [], rng()) == []


def test_blob_count_must_match_the_layer():
    conv = layer("name: 'c1' type: 'Convolution' convolution_param { bias_term: false }")
    with pytest.raises(BnlintError, match="layer 'c1'.*1 blobs here, but 2 shapes"):
        blobs_from_fillers(conv, [(2, 2, 1, 1), (2,)], rng())


def test_unknown_layer_with_blobs_is_an_error_and_without_is_fine():
    with pytest.raises(BnlintError, match="'Embedding' layer"):
        blobs_from_fillers(layer("type: 'Embedding'"), [(4, 4)], rng())
    assert blobs_from_fillers(layer("type: 'ReLU'"), [], rng()) == []


def test_filler_errors_name_the_layer_and_blob():
    conv = layer("name: 'up' type: 'Deconvolution' convolution_param { "
                 "weight_filler { type: 'bilinear' } bias_term: false }")
    with pytest.raises(BnlintError, match="layer 'up' \\(Deconvolution\\), blob 0: .*square"):
        blobs_from_fillers(conv, [(2, 1, 4, 3)], rng())


def test_recurrent_fillers_follow_the_unrolled_nets_blob_order():
    lstm = layer("type: 'LSTM' recurrent_param { num_output: 2 "
                 "weight_filler { type: 'constant' value: 3 } "
                 "bias_filler { type: 'constant' value: 5 } }", bottoms=3)
    blobs = blobs_from_fillers(lstm, [(8, 4), (8,), (8, 6), (8, 2)], rng())
    assert [float(b.flat[0]) for b in blobs] == [3, 5, 3, 3]
    rnn = layer("type: 'RNN' recurrent_param { num_output: 2 "
                "weight_filler { type: 'constant' value: 3 } "
                "bias_filler { type: 'constant' value: 5 } }", bottoms=2)
    blobs = blobs_from_fillers(rnn, [(2, 4), (2,), (2, 2), (2, 2), (2,)], rng())
    assert [float(b.flat[0]) for b in blobs] == [3, 5, 3, 3, 5]


def test_parameter_blob_is_zeros_as_caffe_allocates_it():
    (blob,) = blobs_from_fillers(layer("type: 'Parameter'", bottoms=0), [(2, 3)], rng())
    np.testing.assert_array_equal(blob, np.zeros((2, 3), np.float32))
