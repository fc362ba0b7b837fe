"""Element-wise layers over several blobs or learned operands: Eltwise, Scale, Bias, and the
forks' Axpy (SENet) and EltwiseAffine (caffenet-benchmark)."""

from __future__ import annotations

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    ANY_NUMBER,
    LayerShapes,
    Shape,
    canonical_axis,
    count,
    enum_name,
    expect_bottoms,
    fork_field,
    fork_param,
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
        param="eltwise_affine_param", roles=[ROLE_PARAMETRIC, ROLE_IN_PLACE],
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




# ---------------------------------------------------------------- fork layers


def axpy_top_shape(bottoms: list[Shape]) -> Shape:
    """axpy_layer.cpp (SENet's fork): bottoms a (N, C[, 1, 1]), x and y of one shape
    (N, C, ...); the top is shaped like x."""
    scale, x, y = bottoms
    if len(scale) < 2 or len(x) < 2 or scale[:2] != x[:2]:
        raise ShapeError(f"the scale bottom {scale} must share N and C with x {x}")
    if len(scale) == 4 and scale[2:] != (1, 1):
        raise ShapeError(f"a 4-axis scale bottom must be (N, C, 1, 1), got {scale}")
    if count(scale) != x[0] * x[1]:
        raise ShapeError(f"the scale bottom {scale} must hold one value per (n, c) of x")
    if x != y:
        raise ShapeError(f"x {x} and y {y} must have the same shape")
    return x


def eltwise_affine_channel_shared(layer) -> bool:
    return bool(fork_field(fork_param(layer, "eltwise_affine_param"), "channel_shared", False))


def eltwise_affine_param_shapes(layer, bottom_shape: Shape) -> list[Shape]:
    """eltwise_affine_layer.cpp (ducha-aiki's caffenet-benchmark fork): slope and bias,
    one per channel (axis 1), or 0-axis scalars with channel_shared."""
    if len(bottom_shape) < 2:
        raise ShapeError(f"EltwiseAffine needs at least 2 axes, got shape {bottom_shape}")
    shape: Shape = () if eltwise_affine_channel_shared(layer) else (bottom_shape[1],)
    return [shape, shape]


@shape_rule("Axpy")
def _axpy(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 3)
    return LayerShapes(tops=[axpy_top_shape(bottoms)])


@shape_rule("EltwiseAffine")
def _eltwise_affine(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    return LayerShapes(tops=[bottoms[0]], params=eltwise_affine_param_shapes(layer, bottoms[0]))
