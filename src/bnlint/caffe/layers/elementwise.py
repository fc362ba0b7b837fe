"""Element-wise layers over several blobs or learned operands: Eltwise, Scale, Bias."""

from __future__ import annotations

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    ANY_NUMBER,
    LayerShapes,
    Shape,
    canonical_axis,
    enum_name,
    expect_bottoms,
)
from bnlint.caffe.layers.table import (
    ELEMENTWISE,
    ROLE_IN_PLACE,
    ROLE_PARAMETRIC,
    declare,
    shape_rule,
)
from bnlint.errors import ShapeError

declare("Eltwise", ELEMENTWISE, param="eltwise_param", doc="sum, product or max of blobs")
declare("EltwiseAffine", ELEMENTWISE, dialect=forks.ELTWISE_AFFINE,
        doc="a learned per-channel affine map (a fork's Scale with bias)")
declare("Axpy", ELEMENTWISE, dialect=forks.AXPY, doc="a * x + y, a per channel (SENet)")
declare("Scale", ELEMENTWISE, param="scale_param", roles=[ROLE_PARAMETRIC, ROLE_IN_PLACE],
        doc="multiply by a learned or given blob, broadcast")
declare("Bias", ELEMENTWISE, param="bias_param", roles=[ROLE_PARAMETRIC, ROLE_IN_PLACE],
        doc="add a learned or given blob, broadcast")


def _broadcast_blob_shape(shape: Shape, axis: int, num_axes: int, what: str) -> Shape:
    """shape[axis : axis+num_axes] (num_axes -1: to the end) as Scale/Bias read it."""
    start = canonical_axis(axis, shape)
    if num_axes < -1:
        raise ShapeError(f"{what} num_axes must be -1 or more, got {num_axes}")
    if num_axes >= 0 and start + num_axes > len(shape):
        raise ShapeError(f"{what} blob would extend past the bottom shape {shape} "
                         f"(axis {start}, num_axes {num_axes})")
    return shape[start:] if num_axes == -1 else shape[start:start + num_axes]


def _check_broadcast_bottom(shape: Shape, operand: Shape, axis: int, what: str) -> None:
    start = 0 if len(operand) == 0 else canonical_axis(axis, shape)
    if shape[start:start + len(operand)] != operand or start + len(operand) > len(shape):
        raise ShapeError(f"{what} bottom 1 has shape {operand}, which does not match "
                         f"bottom 0 {shape} from axis {start}")


@shape_rule("Scale")
def _scale(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1, 2)
    param = layer.scale_param
    shape = bottoms[0]
    if len(bottoms) == 2:
        _check_broadcast_bottom(shape, bottoms[1], param.axis, "Scale")
        params = [bottoms[1]] if param.bias_term else []
    else:
        scale = _broadcast_blob_shape(shape, param.axis, param.num_axes, "scale")
        params = [scale, scale] if param.bias_term else [scale]
    return LayerShapes(tops=[shape], params=params)


@shape_rule("Bias")
def _bias(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1, 2)
    param = layer.bias_param
    shape = bottoms[0]
    if len(bottoms) == 2:
        _check_broadcast_bottom(shape, bottoms[1], param.axis, "Bias")
        return LayerShapes(tops=[shape])
    bias = _broadcast_blob_shape(shape, param.axis, param.num_axes, "bias")
    return LayerShapes(tops=[shape], params=[bias])

@shape_rule("Eltwise")
def _eltwise(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 2, ANY_NUMBER)
    param = layer.eltwise_param
    for i, shape in enumerate(bottoms[1:], start=1):
        if shape != bottoms[0]:
            raise ShapeError(f"Eltwise bottoms must all have the same shape: bottom {i} "
                             f"'{layer.bottom[i] if i < len(layer.bottom) else i}' is "
                             f"{shape}, bottom 0 is {bottoms[0]}")
    if len(param.coeff):
        if enum_name(param, "operation") != "SUM":
            raise ShapeError("Eltwise takes coefficients only for SUM")
        if len(param.coeff) != len(bottoms):
            raise ShapeError(f"Eltwise has {len(param.coeff)} coefficients for "
                             f"{len(bottoms)} bottoms")
    return LayerShapes(tops=[bottoms[0]])


