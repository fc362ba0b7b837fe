"""Other forks' deploy-time layers: SegNet's Upsample (with the pooling mask, or the
YOLO ports' nearest-neighbour form), ShuffleChannel, ReLU6 and Interp.

Upsample with a mask is MaxUnpool: Caffe's mask holds h*W + w within each (n, c) plane
of the top, ONNX's indices are flat over the whole NCHW tensor, so each plane's offset
is added (computed from the run-time batch). Both scatter in order, the last write of
a repeated index winning. Interp is Resize with aligned corners (bilinear, or nearest
with Caffe's floor(x + 0.5)), after Caffe's crop by the negative pads.
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe.layers import pooling, structure
from bnlint.export.onnx.registry import register_converter


def _plane_offsets(nodes, x: str, channels: int, plane: int) -> str:
    """(N, C, 1, 1) int64: (n * C + c) * plane, N taken from x at run time."""
    batch = nodes.node("Gather", [nodes.node("Shape", [x]),
                                  nodes.const(np.int64(0), "batch_axis", np.int64)], axis=0)
    count = nodes.node("Mul", [batch, nodes.const(np.int64(channels), "channels", np.int64)])
    positions = nodes.node("Range", [nodes.const(np.int64(0), "zero", np.int64), count,
                                     nodes.const(np.int64(1), "one", np.int64)])
    grid = nodes.node("Reshape", [positions, nodes.ints([-1, channels, 1, 1], "grid")])
    return nodes.node("Mul", [grid, nodes.ints([plane], "plane")])


@register_converter("Upsample")
def upsample(nodes) -> None:
    shape = nodes.bottom_shapes[0]
    x = nodes.bottoms[0]
    if len(nodes.bottoms) == 1:
        height, width = pooling.upsample_size(nodes.layer, shape, False)
        scale = height // shape[2]
        scales = nodes.const(np.array([1, 1, scale, scale], np.float32), "scales")
        nodes.node("Resize", [x, "", scales], nodes.tops[0], mode="nearest",
                   coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        return
    height, width = pooling.upsample_size(nodes.layer, shape, True)
    channels = shape[1]
    mask = nodes.node("Cast", [nodes.bottoms[1]], to=7)               # INT64 (truncates)
    index = nodes.node("Add", [mask, _plane_offsets(nodes, x, channels, height * width)])
    size = nodes.shape_with_batch(x, [channels, height, width])
    nodes.node("MaxUnpool", [x, index, size], nodes.tops[0], kernel_shape=[1, 1])


@register_converter("ShuffleChannel")
def shuffle_channel(nodes) -> None:
    shape = nodes.bottom_shapes[0]
    group = structure.shuffle_groups(nodes.layer, shape)
    channels = shape[1]
    grouped = nodes.node("Reshape", [nodes.bottoms[0],
                                     nodes.ints([0, group, channels // group, -1], "grouped")])
    swapped = nodes.node("Transpose", [grouped], perm=[0, 2, 1, 3])
    nodes.node("Reshape", [swapped, nodes.ints([0] + list(shape[1:]), "shape")], nodes.tops[0])


@register_converter("ReLU6")
def relu6(nodes) -> None:
    x = nodes.bottoms[0]
    slope = nodes.op.negative_slope
    if slope == 0:
        nodes.node("Clip", [x, nodes.scalar(0, "min"), nodes.scalar(6, "max")], nodes.tops[0])
        return
    clipped = nodes.node("Clip", [x, nodes.scalar(0, "min"), nodes.scalar(6, "max")])
    negative = nodes.node("Min", [x, nodes.scalar(0, "zero")])
    leak = nodes.node("Mul", [negative, nodes.scalar(slope, "negative_slope")])
    nodes.node("Add", [clipped, leak], nodes.tops[0])


@register_converter("Interp")
def interp(nodes) -> None:
    shape = nodes.bottom_shapes[0]
    pad_beg, pad_end, height, width = structure.interp_size(nodes.layer, nodes.bottom_shapes)
    x = nodes.bottoms[0]
    if pad_beg or pad_end:
        ends = [shape[2] + pad_end, shape[3] + pad_end]
        x = nodes.node("Slice", [x, nodes.ints([-pad_beg, -pad_beg], "starts"),
                                 nodes.ints(ends, "ends"), nodes.ints([2, 3], "axes")])
    cropped = (shape[2] + pad_beg + pad_end, shape[3] + pad_beg + pad_end)
    if cropped == (height, width):
        nodes.node("Identity", [x], nodes.tops[0])
        return
    if height == 1 or width == 1:
        raise nodes.refuse("an output of one row or column (Caffe samples the first source "
                           "row; ONNX's aligned corners divide by zero there)")
    size = nodes.shape_with_batch(x, [height, width], lead=2)
    attrs = ({"mode": "nearest", "nearest_mode": "round_prefer_ceil"} if nodes.op.nearest
             else {"mode": "linear"})
    nodes.node("Resize", [x, "", "", size], nodes.tops[0],
               coordinate_transformation_mode="align_corners", **attrs)


@register_converter("Axpy")
def axpy(nodes) -> None:
    """SENet's fork: a[n, c] * x + y, a of shape (N, C) or (N, C, 1, 1)."""
    scale, x, y = nodes.bottoms
    ndim = len(nodes.bottom_shapes[1])
    a = nodes.node("Reshape", [scale, nodes.ints([0, 0] + [1] * (ndim - 2), "channels")])
    scaled = nodes.node("Mul", [a, x])
    nodes.node("Add", [scaled, y], nodes.tops[0])
