"""Layers of no other family: Dropout, Parameter, Python."""

from __future__ import annotations

from bnlint.caffe.layers.base import LayerShapes, Shape, expect_bottoms, same_shape
from bnlint.caffe.layers.table import (
    OTHER,
    ROLE_DATA,
    ROLE_IN_PLACE,
    ROLE_PARAMETRIC,
    declare,
    shape_rule,
)
from bnlint.errors import ShapeError

declare("Dropout", OTHER, param="dropout_param", roles=[ROLE_IN_PLACE],
        doc="zeroes values at random in TRAIN; the identity in TEST")
declare("Parameter", OTHER, param="parameter_param", roles=[ROLE_PARAMETRIC],
        doc="outputs a learned blob")
# A Python layer without bottoms is a net's reader (py-faster-rcnn's input layer).
declare("Python", OTHER, param="python_param", roles=[ROLE_DATA],
        doc="user code, never run by bnlint")
shape_rule("Dropout")(same_shape)


def parameter_shape(layer) -> Shape:
    """parameter_layer.hpp: one blob of parameter_param.shape, which is also the top."""
    dims = tuple(int(d) for d in layer.parameter_param.shape.dim)
    if any(d < 0 for d in dims):
        raise ShapeError(f"parameter_param.shape has a negative dimension: {dims}")
    return dims


@shape_rule("Parameter")
def _parameter(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 0)
    shape = parameter_shape(layer)
    return LayerShapes(tops=[shape], params=[shape])
