"""Activations: one-bottom layers computed value by value (and Softmax)."""

from __future__ import annotations

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    LayerShapes,
    Shape,
    canonical_axis,
    expect_bottoms,
    same_shape,
)
from bnlint.caffe.layers.table import (
    ACTIVATION,
    ROLE_IN_PLACE,
    ROLE_PARAMETRIC,
    declare,
    shape_rule,
)
from bnlint.errors import ShapeError

declare("ReLU", ACTIVATION, param="relu_param", roles=[ROLE_IN_PLACE],
        doc="max(x, 0), or leaky")
declare("ELU", ACTIVATION, param="elu_param", roles=[ROLE_IN_PLACE], doc="exponential linear")
declare("Sigmoid", ACTIVATION, param="sigmoid_param", roles=[ROLE_IN_PLACE], doc="logistic")
declare("TanH", ACTIVATION, param="tanh_param", roles=[ROLE_IN_PLACE], doc="tanh")
declare("AbsVal", ACTIVATION, doc="|x|")
declare("BNLL", ACTIVATION, doc="log(1 + exp(x))")
declare("Power", ACTIVATION, param="power_param", doc="(shift + scale x) ^ power")
declare("Exp", ACTIVATION, param="exp_param", roles=[ROLE_IN_PLACE],
        doc="base ^ (shift + scale x)")
declare("Log", ACTIVATION, param="log_param", doc="log_base(shift + scale x)")
declare("Threshold", ACTIVATION, param="threshold_param", roles=[ROLE_IN_PLACE],
        doc="x > threshold")
declare("Clip", ACTIVATION, param="clip_param", doc="x clipped to [min, max]")
declare("Swish", ACTIVATION, param="swish_param", doc="x sigmoid(beta x)")
declare("PReLU", ACTIVATION, param="prelu_param", roles=[ROLE_PARAMETRIC, ROLE_IN_PLACE],
        doc="ReLU with learned negative slopes")
declare("ReLU6", ACTIVATION, dialect=forks.RELU6, param="relu6_param", roles=[ROLE_IN_PLACE],
        doc="min(max(x, 0), 6)")
declare("Softmax", ACTIVATION, param="softmax_param", doc="softmax along an axis")
shape_rule("ReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log",
           "Threshold", "Clip", "Swish")(same_shape)


@shape_rule("Softmax")
def _softmax(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    canonical_axis(layer.softmax_param.axis, bottoms[0])
    return LayerShapes(tops=[bottoms[0]])


@shape_rule("PReLU")
def _prelu(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    if len(shape) < 2:
        raise ShapeError(f"PReLU needs a bottom with at least 2 axes, got shape {shape}")
    # prelu_layer.cpp: a channel-shared slope is a 0-axis blob, not shape (1,).
    slope = () if layer.prelu_param.channel_shared else (shape[1],)
    return LayerShapes(tops=[shape], params=[slope])

@shape_rule("ReLU6")
def _relu6(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    return LayerShapes(tops=[bottoms[0]])


