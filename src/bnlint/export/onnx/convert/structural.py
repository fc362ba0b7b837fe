"""Layers that move or select data: Split, Concat, Slice, Flatten, Reshape, Crop, Tile,
ArgMax, Reduction.

Reshape targets copy the leading (batch) dimensions with ONNX's 0, exactly as Caffe's
0 copies a bottom dimension, so the graph runs at any batch size. ArgMax breaks ties
toward the larger index, as Caffe's sort of (value, index) pairs does: TopK of the
reversed axis (ONNX's TopK prefers the lower index), mapped back.
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe import shapes
from bnlint.caffe.layers import structure
from bnlint.export.onnx.registry import register_converter

INT64_MIN = np.iinfo(np.int64).min


@register_converter("Split")
def split(nodes) -> None:
    for top in nodes.tops:
        nodes.node("Identity", [nodes.bottoms[0]], top)


@register_converter("Concat")
def concat(nodes) -> None:
    if len(nodes.bottoms) == 1:
        nodes.node("Identity", nodes.bottoms, nodes.tops[0])
        return
    axis = structure.concat_axis(nodes.layer, nodes.bottom_shapes[0])
    nodes.node("Concat", nodes.bottoms, nodes.tops[0], axis=axis)


@register_converter("Slice")
def slice_(nodes) -> None:
    shape = nodes.bottom_shapes[0]
    sizes = structure.slice_sizes(nodes.layer, shape)
    if len(sizes) == 1:
        nodes.node("Identity", nodes.bottoms, nodes.tops[0])
        return
    axis = structure.slice_axis(nodes.layer, shape)
    nodes.node("Split", [nodes.bottoms[0], nodes.ints(sizes, "split")], list(nodes.tops),
               axis=axis)


def _reshape_to(nodes, lead: int, middle: list[int], trailing) -> None:
    target = nodes.ints([0] * lead + list(middle) + [int(d) for d in trailing])
    nodes.node("Reshape", [nodes.bottoms[0], target], nodes.tops[0])


@register_converter("Flatten")
def flatten(nodes) -> None:
    shape = nodes.bottom_shapes[0]
    param = nodes.layer.flatten_param
    start = shapes.canonical_axis(param.axis, shape)
    end = shapes.canonical_axis(param.end_axis, shape)
    _reshape_to(nodes, start, [-1], shape[end + 1:])


@register_converter("Reshape")
def reshape(nodes) -> None:
    shape = nodes.bottom_shapes[0]
    param = nodes.layer.reshape_param
    start = param.axis if param.axis >= 0 else len(shape) + param.axis + 1
    end = len(shape) if param.num_axes == -1 else start + param.num_axes
    _reshape_to(nodes, start, [int(d) for d in param.shape.dim], shape[end:])


@register_converter("Crop")
def crop(nodes) -> None:
    shape, reference = nodes.bottom_shapes
    offsets = structure.crop_offsets(nodes.layer, shape, reference)
    start = shapes.canonical_axis(nodes.layer.crop_param.axis, shape)
    if start == 0:
        raise nodes.refuse("a Crop of the batch axis (axis 0)")
    axes = list(range(start, len(shape)))
    begin = [offsets[a] for a in axes]
    stop = [offsets[a] + reference[a] for a in axes]
    nodes.node("Slice", [nodes.bottoms[0], nodes.ints(begin, "starts"), nodes.ints(stop, "ends"),
                         nodes.ints(axes, "axes")], nodes.tops[0])


@register_converter("Tile")
def tile(nodes) -> None:
    shape = nodes.bottom_shapes[0]
    param = nodes.layer.tile_param
    axis = shapes.canonical_axis(param.axis, shape)
    repeats = [1] * len(shape)
    repeats[axis] = int(param.tiles)
    nodes.node("Tile", [nodes.bottoms[0], nodes.ints(repeats, "repeats")], nodes.tops[0])


@register_converter("ArgMax")
def argmax(nodes) -> None:
    op = nodes.op
    shape = nodes.bottom_shapes[0]
    top = nodes.top_shapes[0]
    x = nodes.bottoms[0]
    if op.has_axis:
        axis = shapes.canonical_axis(nodes.layer.argmax_param.axis, shape)
        size = shape[axis]
    else:
        axis = 1
        size = shapes.count(shape, 1)
        x = nodes.node("Reshape", [x, nodes.ints([0, -1])])
    reversed_ = nodes.node("Slice", [x, nodes.ints([-1], "starts"), nodes.ints([INT64_MIN], "ends"),
                                     nodes.ints([axis], "axes"), nodes.ints([-1], "steps")])
    values, index = nodes.node("TopK", [reversed_, nodes.ints([op.top_k], "k")], outputs=2,
                               axis=axis, largest=1, sorted=1)
    back = nodes.node("Sub", [nodes.ints([size - 1], "last"), index])
    as_float = nodes.node("Cast", [back], to=1)
    if op.has_axis:
        nodes.node("Identity", [values if op.out_max_val else as_float], nodes.tops[0])
        return
    parts = [as_float] + ([values] if op.out_max_val else [])
    stacked = nodes.node("Concat", [nodes.node("Unsqueeze", [p, nodes.ints([1], "axis")])
                                    for p in parts], axis=1)
    target = nodes.shape_with_batch(x, top[1:])
    nodes.node("Reshape", [stacked, target], nodes.tops[0])


@register_converter("Reduction")
def reduction(nodes) -> None:
    op = nodes.op
    shape = nodes.bottom_shapes[0]
    axis = shapes.canonical_axis(nodes.layer.reduction_param.axis, shape)
    axes = list(range(axis, len(shape)))
    kind = {"SUM": "ReduceSum", "MEAN": "ReduceSum", "ASUM": "ReduceL1",
            "SUMSQ": "ReduceSumSquare"}[op.operation]
    factor = op.coeff
    if op.operation == "MEAN":
        factor = np.float32(factor / np.float32(shapes.count(shape, axis)))
    if factor == 1:
        nodes.reduce(kind, nodes.bottoms[0], axes, False, nodes.tops[0])
        return
    total = nodes.reduce(kind, nodes.bottoms[0], axes, False)
    nodes.node("Mul", [total, nodes.scalar(factor, "coeff")], nodes.tops[0])


@register_converter("Parameter")
def parameter(nodes) -> None:
    shape = nodes.top_shapes[0]
    nodes.node("Identity", [nodes.const(nodes.blobs[0].reshape(shape), "value")], nodes.tops[0])


@register_converter("BatchReindex")
def batch_reindex(nodes) -> None:
    index = nodes.node("Cast", [nodes.bottoms[1]], to=7)              # INT64, truncating
    nodes.node("Gather", [nodes.bottoms[0], index], nodes.tops[0], axis=0)


@register_converter("Im2col")
def im2col(nodes) -> None:
    """A grouped convolution with one-hot kernels: output channel c*K + k is input
    channel c at kernel tap k (products by 1 and sums of zeros: exact)."""
    from bnlint.caffe.layers.convolution import im2col_geometry

    shape = nodes.bottom_shapes[0]
    geom = im2col_geometry(nodes.layer, shape)
    if geom.channel_axis != 1:
        raise nodes.refuse(f"channels on axis {geom.channel_axis}")
    channels = shape[1]
    taps = int(np.prod(geom.kernel))
    one_hot = np.eye(taps, dtype=np.float32).reshape((taps, 1) + tuple(geom.kernel))
    weights = np.tile(one_hot, (channels,) + (1,) * (one_hot.ndim - 1))
    nodes.node("Conv", [nodes.bottoms[0], nodes.const(weights, "one_hot")], nodes.tops[0],
               kernel_shape=list(geom.kernel), strides=list(geom.stride),
               pads=list(geom.pad) * 2, dilations=list(geom.dilation), group=channels)


@register_converter("RNN", "LSTM", "LSTMUnit")
def recurrent(nodes) -> None:
    raise nodes.refuse("Caffe's recurrent layers (gates in i, f, o, g order, the `cont` "
                       "input that resets the state mid-batch, time-major blobs) are not "
                       "exported by bnlint yet", unfaithful=False)
