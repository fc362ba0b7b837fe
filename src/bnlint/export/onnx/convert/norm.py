"""BatchNorm (BVLC, NVIDIA Caffe, the forks' BN), Scale, Bias, LRN, MVN and Softmax.

BatchNorm becomes BatchNormalization with the statistics Caffe actually uses: the stored
sums divided by the scale factor blobs[2] (0 when that factor is 0, Caffe's guard),
eps as Caffe reads it (NVIDIA Caffe: at least 1e-5, statistics as stored, scale and
bias inside). A BatchNorm that normalises with the batch's statistics at TEST is
refused: it is a training-time layer left in the net (`bnlint check` BN001). LRN
ACROSS_CHANNELS is ONNX's LRN (bias = k); WITHIN_CHANNEL is Caffe's composite:
x * (1 + alpha * mean of x^2 over an n x n window, padding counted)^-beta.
"""

from __future__ import annotations

import numpy as np

from bnlint.export.onnx.registry import register_converter
from bnlint.caffe.layers.base import canonical_axis

F32 = np.float32


def _batch_normalization(nodes, mean, var, eps, gamma=None, beta=None) -> None:
    shape = nodes.bottom_shapes[0]
    channels = shape[1] if len(shape) >= 2 else 1
    if len(shape) < 2:
        raise nodes.refuse("a BatchNorm on a 1-axis blob")
    ones = np.ones(channels, F32)
    gamma = ones if gamma is None else np.asarray(gamma, F32).reshape(-1)
    beta = np.zeros(channels, F32) if beta is None else np.asarray(beta, F32).reshape(-1)
    inputs = [nodes.bottoms[0], nodes.const(gamma, "scale"), nodes.const(beta, "bias"),
              nodes.const(np.asarray(mean, F32).reshape(-1), "mean"),
              nodes.const(np.asarray(var, F32).reshape(-1), "var")]
    nodes.node("BatchNormalization", inputs, nodes.tops[0], epsilon=float(eps))


@register_converter("BatchNorm")
def batch_norm(nodes) -> None:
    op = nodes.op
    if not op.use_global_stats:
        raise nodes.refuse("it normalises with the batch's own statistics at TEST "
                           "(use_global_stats: false); set use_global_stats: true (bnlint "
                           "check BN001, bnlint to-deploy) to export the trained statistics")
    flat = [b.reshape(-1) for b in nodes.blobs]
    gamma = op.gamma if op.scale_bias else None
    beta = op.beta if op.scale_bias else None
    if op.nvcaffe:
        _batch_normalization(nodes, flat[0], flat[1], op.eps, gamma, beta)
        return
    factor = flat[2][0]
    inverse = F32(0) if factor == 0 else F32(1) / factor
    _batch_normalization(nodes, inverse * flat[0], inverse * flat[1], op.eps, gamma, beta)


@register_converter("BN")
def fork_bn(nodes) -> None:
    op = nodes.op
    if op.batch_stats:
        raise nodes.refuse(f"this BN ({op.variant} fork) normalises with the batch's own "
                           f"statistics at TEST")
    if len(nodes.tops) > 1:
        raise nodes.refuse("the BN's extra mean and variance tops")
    if op.axis != 1:
        raise nodes.refuse(f"channels on axis {op.axis}")
    scale, shift = op.params[0], op.params[1]
    if op.variant == "segnet":
        ndim = len(nodes.bottom_shapes[0])
        scaled = nodes.node("Mul", [nodes.bottoms[0], nodes.channel_operand(scale, ndim, "scale")])
        nodes.node("Add", [scaled, nodes.channel_operand(shift, ndim, "shift")], nodes.tops[0])
        return
    _batch_normalization(nodes, op.params[2], op.params[3], op.eps, scale, shift)


def _operand_shape(operand_shape, bottom_shape, axis: int) -> tuple[int, ...]:
    """The operand's shape padded with trailing 1s (Caffe's broadcast from `axis`)."""
    ndim = len(bottom_shape)
    if len(operand_shape) == 0:
        return ()
    start = canonical_axis(axis, bottom_shape)
    return tuple(operand_shape) + (1,) * (ndim - start - len(operand_shape))


@register_converter("Scale", "Bias")
def scale_or_bias(nodes) -> None:
    shape = nodes.bottom_shapes[0]
    axis = nodes.op.axis
    x = nodes.bottoms[0]
    is_scale = nodes.type == "Scale"
    if len(nodes.bottoms) > 1:
        operand_shape = nodes.bottom_shapes[1]
        operand = nodes.node("Reshape", [nodes.bottoms[1], nodes.ints(
            [0] * len(operand_shape) + [1] * (len(_operand_shape(operand_shape, shape, axis))
                                              - len(operand_shape)))])
    else:
        blob = nodes.blobs[0]
        operand = nodes.const(blob.reshape(_operand_shape(blob.shape, shape, axis)),
                              "scale" if is_scale else "bias")
    if not is_scale:
        nodes.node("Add", [x, operand], nodes.tops[0])
        return
    if not nodes.op.bias_term:
        nodes.node("Mul", [x, operand], nodes.tops[0])
        return
    bias = nodes.blobs[-1]
    scaled = nodes.node("Mul", [x, operand])
    nodes.node("Add", [scaled, nodes.const(bias.reshape(_operand_shape(bias.shape, shape, axis)),
                                           "bias")], nodes.tops[0])


@register_converter("LRN")
def lrn(nodes) -> None:
    op = nodes.op
    x = nodes.bottoms[0]
    if len(nodes.bottom_shapes[0]) != 4:
        raise nodes.refuse("LRN on a blob without 4 axes")
    if not op.within_channel:
        nodes.node("LRN", [x], nodes.tops[0], alpha=float(op.alpha), beta=float(-op.neg_beta),
                   bias=float(op.k), size=op.size)
        return
    if op.alpha * op.neg_beta == 0:
        nodes.node("Identity", [x], nodes.tops[0])
        return
    pad = (op.size - 1) // 2
    square = nodes.node("Mul", [x, x])
    mean = nodes.node("AveragePool", [square], kernel_shape=[op.size, op.size],
                      pads=[pad] * 4, strides=[1, 1], count_include_pad=1)
    scaled = nodes.node("Mul", [mean, nodes.scalar(op.alpha, "alpha")])
    base = nodes.node("Add", [scaled, nodes.scalar(1, "one")])
    factor = nodes.node("Pow", [base, nodes.scalar(op.neg_beta, "neg_beta")])
    nodes.node("Mul", [x, factor], nodes.tops[0])


@register_converter("MVN")
def mvn(nodes) -> None:
    op = nodes.op
    shape = nodes.bottom_shapes[0]
    x = nodes.bottoms[0]
    first = 1 if op.across_channels or len(shape) == 1 else 2
    axes = list(range(first, len(shape)))
    if not axes:                       # one value per group: x - x = 0, as Caffe
        centred = nodes.node("Sub", [x, x])
    else:
        centred = nodes.node("Sub", [x, nodes.reduce("ReduceMean", x, axes, True)])
    if not op.normalize_variance:
        nodes.node("Identity", [centred], nodes.tops[0])
        return
    square = nodes.node("Mul", [centred, centred])
    var = nodes.reduce("ReduceMean", square, axes, True) if axes else square
    std = nodes.node("Add", [nodes.node("Sqrt", [var]), nodes.scalar(op.eps, "eps")])
    nodes.node("Div", [centred, std], nodes.tops[0])


@register_converter("Softmax")
def softmax(nodes) -> None:
    axis = canonical_axis(nodes.op.axis, nodes.bottom_shapes[0])
    nodes.node("Softmax", [nodes.bottoms[0]], nodes.tops[0], axis=axis)
