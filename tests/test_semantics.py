"""The normal form of a layer's parameters (bnlint.caffe.semantics), which both
`to-deploy --check` and `verify`'s reuse of identical layers compare."""

from __future__ import annotations

import pytest

from bnlint.caffe.load import parse_text
from bnlint.caffe.net import NetState, net_view
from bnlint.caffe.phase import Phase
from bnlint.caffe.semantics import normal_form
from bnlint.forward.verify import forward_key
from bnlint.source import SourceFile


def layer(body: str):
    text = parse_text(SourceFile("n.prototxt", f'layer {{ name: "l" {body} }}\n'))
    return net_view(text).layers[0]


def form(body: str, phase: Phase = Phase.TEST):
    return normal_form(layer(body).message, phase, ("name",))


@pytest.mark.parametrize("a, b", [
    # fillers and engine are no part of the maths
    ('type: "Convolution" convolution_param { num_output: 2 weight_filler { type: "xavier" } }',
     'type: "Convolution" convolution_param { num_output: 2 }'),
    ('type: "ReLU" relu_param { engine: CUDNN }', 'type: "ReLU"'),
    # defaults, written or not, and Caffe's implicit defaults of repeated fields
    ('type: "Convolution" convolution_param { num_output: 2 stride: 1 pad: 0 group: 1 }',
     'type: "Convolution" convolution_param { num_output: 2 }'),
    # BatchNorm: use_global_stats as the phase makes it; moving_average_fraction trains only
    ('type: "BatchNorm" batch_norm_param { use_global_stats: true '
     'moving_average_fraction: 0.9 }', 'type: "BatchNorm"'),
])
def test_same_meaning_same_form(a, b):
    assert form(a) == form(b)


@pytest.mark.parametrize("a, b", [
    # has_*() fields: written at their default they still change what Caffe does
    ('type: "Concat" concat_param { concat_dim: 1 }', 'type: "Concat"'),
    ('type: "Convolution" convolution_param { num_output: 2 pad_h: 0 pad_w: 0 }',
     'type: "Convolution" convolution_param { num_output: 2 }'),
    ('type: "Convolution" convolution_param { num_output: 2 stride: 2 }',
     'type: "Convolution" convolution_param { num_output: 2 }'),
    ('type: "BatchNorm" batch_norm_param { use_global_stats: false }', 'type: "BatchNorm"'),
])
def test_different_meaning_different_form(a, b):
    assert form(a) != form(b)


def test_batchnorm_statistics_follow_the_phase():
    bn = 'type: "BatchNorm"'
    assert form(bn, Phase.TEST).batch_norm_param.use_global_stats is True
    assert form(bn, Phase.TRAIN).batch_norm_param.use_global_stats is False
    assert not form(bn).batch_norm_param.HasField("moving_average_fraction")


def test_verify_reuses_a_layer_that_spells_out_an_implicit_default():
    """verify's reuse key is the same normal form: `stride: 1` is no stride."""
    state = NetState(Phase.TEST)
    spelled = layer('type: "Convolution" bottom: "x" top: "y" '
                    'convolution_param { num_output: 2 kernel_size: 3 stride: 1 }')
    implicit = layer('type: "Convolution" bottom: "x" top: "z" '
                     'convolution_param { num_output: 2 kernel_size: 3 }')
    concat_dim = layer('type: "Concat" bottom: "x" top: "y" concat_param { concat_dim: 1 }')
    plain = layer('type: "Concat" bottom: "x" top: "y"')
    assert forward_key(spelled, state) == forward_key(implicit, state)
    assert forward_key(concat_dim, state) != forward_key(plain, state)
