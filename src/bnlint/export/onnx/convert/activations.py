"""Element-wise layers: one ONNX operator each, or Caffe's formula written out.

Power, Exp and Log keep Caffe's order of steps (each skipped when neutral); Power with
power * scale == 0 is the constant Caffe fills in, whatever the input.
Dropout is Identity (TEST), never ONNX's Dropout, whose ratio moved to an input.
"""

from __future__ import annotations

import numpy as np

from bnlint.export.onnx.registry import register_converter

F32 = np.float32


def _unary(op_type: str, **attrs):
    def convert(nodes) -> None:
        nodes.node(op_type, [nodes.bottoms[0]], nodes.tops[0], **attrs)
    return convert


register_converter("Sigmoid")(_unary("Sigmoid"))
register_converter("TanH")(_unary("Tanh"))
register_converter("AbsVal")(_unary("Abs"))
register_converter("BNLL")(_unary("Softplus"))


@register_converter("Dropout")
def dropout(nodes) -> None:
    if nodes.op.phase != nodes.op.phase.TEST:
        raise nodes.refuse("Dropout in the TRAIN phase is random")
    nodes.node("Identity", [nodes.bottoms[0]], nodes.tops[0])


@register_converter("ReLU")
def relu(nodes) -> None:
    slope = nodes.op.slope
    if slope == 0:
        nodes.node("Relu", [nodes.bottoms[0]], nodes.tops[0])
    else:
        nodes.node("LeakyRelu", [nodes.bottoms[0]], nodes.tops[0], alpha=float(slope))


@register_converter("PReLU")
def prelu(nodes) -> None:
    ndim = len(nodes.bottom_shapes[0])
    slopes = nodes.op.slopes
    slope = (nodes.const(slopes.reshape(1), "slope") if nodes.op.channel_shared
             else nodes.channel_operand(slopes, ndim, "slope"))
    nodes.node("PRelu", [nodes.bottoms[0], slope], nodes.tops[0])


@register_converter("ELU")
def elu(nodes) -> None:
    nodes.node("Elu", [nodes.bottoms[0]], nodes.tops[0], alpha=float(nodes.op.alpha))


def _scale_then_shift(nodes, x: str, scale, shift) -> str:
    if scale != 1:
        x = nodes.node("Mul", [x, nodes.scalar(scale, "scale")])
    if shift != 0:
        x = nodes.node("Add", [x, nodes.scalar(shift, "shift")])
    return x


def _finish(nodes, value: str) -> None:
    """Write `value` to the layer's top (an Identity only when no node made it)."""
    if value != nodes.tops[0]:
        nodes.node("Identity", [value], nodes.tops[0])


@register_converter("Power")
def power(nodes) -> None:
    op = nodes.op
    x = nodes.bottoms[0]
    if op.power * op.scale == 0:
        value = F32(1) if op.power == 0 else F32(np.float64(op.shift) ** np.float64(op.power))
        shape = nodes.node("Shape", [x])
        from onnx import numpy_helper
        nodes.node("ConstantOfShape", [shape], nodes.tops[0],
                   value=numpy_helper.from_array(np.array([value], F32)))
        return
    y = _scale_then_shift(nodes, x, op.scale, op.shift)
    if op.power != 1:
        y = nodes.node("Pow", [y, nodes.scalar(op.power, "power")], nodes.tops[0])
    _finish(nodes, y)


@register_converter("Exp")
def exp(nodes) -> None:
    op = nodes.op
    x = nodes.bottoms[0]
    if op.inner_scale != 1:
        x = nodes.node("Mul", [x, nodes.scalar(op.inner_scale, "inner_scale")])
    if op.outer_scale == 1:
        nodes.node("Exp", [x], nodes.tops[0])
        return
    y = nodes.node("Exp", [x])
    nodes.node("Mul", [y, nodes.scalar(op.outer_scale, "outer_scale")], nodes.tops[0])


@register_converter("Log")
def log(nodes) -> None:
    op = nodes.op
    y = _scale_then_shift(nodes, nodes.bottoms[0], op.scale, op.shift)
    if op.base_scale == 1:
        nodes.node("Log", [y], nodes.tops[0])
        return
    y = nodes.node("Log", [y])
    nodes.node("Mul", [y, nodes.scalar(op.base_scale, "base_scale")], nodes.tops[0])


@register_converter("Threshold")
def threshold(nodes) -> None:
    above = nodes.node("Greater", [nodes.bottoms[0], nodes.scalar(nodes.op.threshold,
                                                                  "threshold")])
    nodes.node("Cast", [above], nodes.tops[0], to=1)                  # FLOAT


@register_converter("Clip")
def clip(nodes) -> None:
    nodes.node("Clip", [nodes.bottoms[0], nodes.scalar(nodes.op.low, "min"),
                        nodes.scalar(nodes.op.high, "max")], nodes.tops[0])


@register_converter("Swish")
def swish(nodes) -> None:
    x = nodes.bottoms[0]
    scaled = x if nodes.op.beta == 1 else nodes.node("Mul", [x, nodes.scalar(nodes.op.beta,
                                                                               "beta")])
    gate = nodes.node("Sigmoid", [scaled])
    nodes.node("Mul", [x, gate], nodes.tops[0])
