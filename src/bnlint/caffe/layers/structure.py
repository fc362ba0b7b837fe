"""Layers that move values without computing new ones: concatenation, slicing,
reshaping, cropping, permuting, resizing, and the selection layers."""

from __future__ import annotations

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    ANY_NUMBER,
    LayerShapes,
    Shape,
    canonical_axis,
    count,
    expect_bottoms,
    fork_field,
    fork_has,
    fork_list,
    fork_param,
    legacy_dim,
    declared_tops,
)
from bnlint.caffe.layers.table import (
    ROLE_SELECTION,
    STRUCTURE,
    declare,
    shape_rule,
)
from bnlint.errors import ShapeError

declare("Concat", STRUCTURE, param="concat_param", doc="join blobs along an axis")
declare("Slice", STRUCTURE, param="slice_param", doc="cut a blob along an axis")
declare("Split", STRUCTURE, doc="one blob to several consumers")
declare("Silence", STRUCTURE, doc="consumes blobs, outputs nothing")
declare("Flatten", STRUCTURE, param="flatten_param", doc="merge axes")
declare("Reshape", STRUCTURE, param="reshape_param", doc="change the shape, keep the values")
declare("Crop", STRUCTURE, param="crop_param", doc="cut to a reference blob's shape")
declare("Tile", STRUCTURE, param="tile_param", doc="repeat along an axis")
declare("ArgMax", STRUCTURE, param="argmax_param", roles=[ROLE_SELECTION],
        doc="indices (and values) of the top k")
declare("Reduction", STRUCTURE, param="reduction_param", doc="sum or mean over trailing axes")
declare("BatchReindex", STRUCTURE, doc="gather items of the batch")
declare("Filter", STRUCTURE, doc="keep the items whose selector is non-zero")
declare("Permute", STRUCTURE, dialect=forks.SSD, param="permute_param",
        doc="reorder the axes (SSD)")
declare("ShuffleChannel", STRUCTURE, dialect=forks.SHUFFLE, param="shuffle_channel_param",
        doc="interleave channel groups (ShuffleNet)")
declare("Interp", STRUCTURE, dialect=forks.INTERP, param="interp_param",
        doc="bilinear resize (PSPNet/DeepLab)")


# ---------------------------------------------------------------- structural


def concat_axis(layer, shape: Shape) -> int:
    """The Concat axis: the deprecated concat_dim if set, else the canonical axis."""
    param = layer.concat_param
    if param.HasField("concat_dim"):
        if param.HasField("axis"):
            raise ShapeError("give either axis or concat_dim, not both")
        if param.concat_dim >= len(shape):
            raise ShapeError(f"concat_dim {param.concat_dim} is out of range for "
                             f"shape {shape}")
        return int(param.concat_dim)
    return canonical_axis(param.axis, shape)


@shape_rule("Concat")
def _concat(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1, ANY_NUMBER)
    first = bottoms[0]
    axis = concat_axis(layer, first)
    total = first[axis]
    for i, shape in enumerate(bottoms[1:], start=1):
        same_rank = len(shape) == len(first)
        if not same_rank or any(a != b for j, (a, b) in enumerate(zip(shape, first))
                                if j != axis):
            raise ShapeError(f"Concat on axis {axis}: bottom {i} has shape {shape}, "
                             f"bottom 0 has {first}; all axes but {axis} must match")
        total += shape[axis]
    return LayerShapes(tops=[first[:axis] + (total,) + first[axis + 1:]])


def slice_axis(layer, shape: Shape) -> int:
    param = layer.slice_param
    if param.HasField("slice_dim"):
        if param.HasField("axis"):
            raise ShapeError("give either axis or slice_dim, not both")
        if param.slice_dim >= len(shape):
            raise ShapeError(f"slice_dim {param.slice_dim} is out of range for shape {shape}")
        return int(param.slice_dim)
    return canonical_axis(param.axis, shape)


def slice_sizes(layer, shape: Shape) -> list[int]:
    """Sizes of the Slice tops along the slice axis.

    Slice points must rise strictly and stay inside the axis; Caffe does not check
    the last one, and a point at or past the axis size gives an empty or negative
    last top, which is refused here.
    """
    axis = slice_axis(layer, shape)
    size = shape[axis]
    num_tops = declared_tops(layer)
    points = [int(p) for p in layer.slice_param.slice_point]
    if points:
        if len(points) != num_tops - 1:
            raise ShapeError(f"{len(points)} slice points need {len(points) + 1} tops, "
                             f"the layer has {num_tops}")
        if num_tops > size:
            raise ShapeError(f"{num_tops} tops cannot slice an axis of size {size}")
        previous = 0
        sizes = []
        for point in points:
            if point <= previous or point >= size:
                raise ShapeError(f"slice points {points} must rise strictly inside "
                                 f"(0, {size}) on axis {axis} of shape {shape}")
            sizes.append(point - previous)
            previous = point
        sizes.append(size - previous)
        return sizes
    if size % num_tops:
        raise ShapeError(f"{num_tops} tops do not evenly divide axis {axis} of size {size}")
    return [size // num_tops] * num_tops


@shape_rule("Slice")
def _slice(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    axis = slice_axis(layer, shape)
    return LayerShapes(tops=[shape[:axis] + (size,) + shape[axis + 1:]
                             for size in slice_sizes(layer, shape)])


@shape_rule("Split")
def _split(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    return LayerShapes(tops=[bottoms[0]] * declared_tops(layer))


@shape_rule("Silence")
def _silence(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1, ANY_NUMBER)
    return LayerShapes(tops=[])


@shape_rule("Flatten")
def _flatten(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    start = canonical_axis(layer.flatten_param.axis, shape)
    end = canonical_axis(layer.flatten_param.end_axis, shape)
    if end < start:
        raise ShapeError(f"Flatten end_axis {end} comes before axis {start}")
    return LayerShapes(tops=[shape[:start] + (count(shape, start, end + 1),)
                             + shape[end + 1:]])


def reshape_top_shape(layer, shape: Shape) -> Shape:
    """ReshapeLayer::Reshape: 0 copies the bottom dim, one -1 is inferred."""
    param = layer.reshape_param
    dims = [int(d) for d in param.shape.dim]
    num_axes_in = len(shape)
    start = param.axis if param.axis >= 0 else num_axes_in + param.axis + 1
    if not 0 <= start <= num_axes_in:
        raise ShapeError(f"Reshape axis {param.axis} is out of range for shape {shape}")
    if param.num_axes < -1:
        raise ShapeError(f"Reshape num_axes must be -1 or more, got {param.num_axes}")
    end = num_axes_in if param.num_axes == -1 else start + param.num_axes
    if end > num_axes_in:
        raise ShapeError(f"Reshape axis {start} + num_axes {param.num_axes} goes past "
                         f"the {num_axes_in} axes of shape {shape}")
    if dims.count(-1) > 1:
        raise ShapeError(f"Reshape shape {tuple(dims)} has more than one -1")
    if any(d < -1 for d in dims):
        raise ShapeError(f"Reshape shape {tuple(dims)} has a dimension below -1")
    new = list(dims)
    for i, dim in enumerate(dims):
        if dim == 0:
            if start + i >= num_axes_in:
                raise ShapeError(f"Reshape dim {i} is 0 but the bottom {shape} has no "
                                 f"axis {start + i} to copy")
            new[i] = shape[start + i]
    if -1 in dims:
        known = count(shape, 0, start) * count(shape, end) * count(
            [d for d in new if d != -1])
        total = count(shape)
        if known == 0 or total % known:
            raise ShapeError(f"Reshape cannot infer the -1 of {tuple(dims)}: the bottom "
                             f"count {total} is not divisible by {known}")
        new[dims.index(-1)] = total // known
    top = shape[:start] + tuple(new) + shape[end:]
    if count(top) != count(shape):
        raise ShapeError(f"Reshape to {top} changes the element count: {count(shape)} "
                         f"in, {count(top)} out (bottom {shape})")
    return top


@shape_rule("Reshape")
def _reshape(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    return LayerShapes(tops=[reshape_top_shape(layer, bottoms[0])])


def crop_offsets(layer, shape: Shape, reference: Shape) -> list[int]:
    """Per-axis offsets of Crop (crop_layer.cpp), checking that the crop fits."""
    param = layer.crop_param
    start = canonical_axis(param.axis, shape)
    offsets_given = [int(o) for o in param.offset]
    if len(offsets_given) > 1 and start + len(offsets_given) != len(shape):
        raise ShapeError(f"Crop gives {len(offsets_given)} offsets; it needs one, or one "
                         f"per axis from {start} ({len(shape) - start})")
    if len(reference) < len(shape):
        raise ShapeError(f"Crop reference {reference} has fewer axes than the data {shape}")
    offsets = []
    for i, size in enumerate(shape):
        offset = 0
        if i >= start:
            if len(offsets_given) == 1:
                offset = offsets_given[0]
            elif offsets_given:
                offset = offsets_given[i - start]
            if size - offset < reference[i]:
                raise ShapeError(f"Crop on axis {i}: size {reference[i]} at offset {offset} "
                                 f"does not fit in {size} (data {shape}, reference "
                                 f"{reference})")
        offsets.append(offset)
    return offsets


@shape_rule("Crop")
def _crop(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 2)
    shape, reference = bottoms
    start = canonical_axis(layer.crop_param.axis, shape)
    crop_offsets(layer, shape, reference)
    return LayerShapes(tops=[shape[:start] + reference[start:len(shape)]])


@shape_rule("Tile")
def _tile(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    param = layer.tile_param
    shape = bottoms[0]
    axis = canonical_axis(param.axis, shape)
    if not param.HasField("tiles") or param.tiles <= 0:
        raise ShapeError("tile_param.tiles must be given and positive")
    return LayerShapes(tops=[shape[:axis] + (shape[axis] * param.tiles,) + shape[axis + 1:]])


@shape_rule("ArgMax")
def _argmax(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    param = layer.argmax_param
    shape = bottoms[0]
    if not shape:       # Caffe's bottom[0]->count(1) fails on a 0-axis blob
        raise ShapeError("needs a bottom with at least 1 axis, got a 0-axis blob")
    top_k = int(param.top_k)
    if top_k < 1:
        raise ShapeError("argmax_param.top_k must be at least 1")
    if param.HasField("axis"):
        axis = canonical_axis(param.axis, shape)
        if top_k > shape[axis]:
            raise ShapeError(f"top_k {top_k} is larger than axis {axis} of shape {shape}")
        return LayerShapes(tops=[shape[:axis] + (top_k,) + shape[axis + 1:]])
    if top_k > count(shape, 1):
        raise ShapeError(f"top_k {top_k} is larger than the {count(shape, 1)} values "
                         f"per item of shape {shape}")
    # (num, 1 or 2, top_k), padded with 1s to the bottom's number of axes.
    top = [1] * max(len(shape), 3)
    top[0] = shape[0]
    top[1] = 2 if param.out_max_val else 1
    top[2] = top_k
    return LayerShapes(tops=[tuple(top)])


@shape_rule("Reduction")
def _reduction(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    axis = canonical_axis(layer.reduction_param.axis, shape)
    return LayerShapes(tops=[shape[:axis]])

# ---------------------------------------------------------------- SSD


def permute_order(layer, num_axes: int) -> list[int]:
    """PermuteLayer::LayerSetUp: the given order, then the missing axes in order."""
    given = [int(o) for o in fork_list(fork_param(layer, "permute_param"), "order")]
    for axis in given:
        if not 0 <= axis < num_axes:
            raise ShapeError(f"permute order {axis} must be less than the bottom's "
                             f"{num_axes} axes")
    if len(set(given)) != len(given):
        raise ShapeError(f"permute order {given} has duplicate axes")
    return given + [axis for axis in range(num_axes) if axis not in given]


@shape_rule("Permute")
def _permute(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    return LayerShapes(tops=[tuple(shape[axis] for axis in permute_order(layer, len(shape)))])


# ---------------------------------------------------------------- ShuffleNet, ReLU6


def shuffle_groups(layer, shape: Shape) -> int:
    group = int(fork_field(fork_param(layer, "shuffle_channel_param"), "group", 1))
    if group <= 0:
        raise ShapeError(f"shuffle group must be greater than 0, got {group}")
    if len(shape) < 2 or shape[1] % group:
        raise ShapeError(f"shuffle group {group} must divide the channels of {shape}")
    return group


@shape_rule("ShuffleChannel")
def _shuffle_channel(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    shuffle_groups(layer, bottoms[0])
    return LayerShapes(tops=[bottoms[0]])


# ---------------------------------------------------------------- Interp


def interp_size(layer, bottoms: list[Shape]) -> tuple[int, int, int, int]:
    """(pad_beg, pad_end, height_out, width_out) of InterpLayer::Reshape.

    The size comes from the second bottom (PSPNet's variant), else, in DeepLab's order:
    shrink_factor alone, zoom_factor alone, height and width, shrink then zoom. Only
    non-positive padding (cropping) is supported, as in Caffe.
    """
    param = fork_param(layer, "interp_param")
    pad_beg = int(fork_field(param, "pad_beg", 0))
    pad_end = int(fork_field(param, "pad_end", 0))
    if pad_beg > 0 or pad_end > 0:
        raise ShapeError(f"Interp supports only non-positive padding (cropping), got "
                         f"pad_beg {pad_beg}, pad_end {pad_end}")
    shape = bottoms[0]
    height_eff = shape[2] + pad_beg + pad_end
    width_eff = shape[3] + pad_beg + pad_end
    shrink, zoom = fork_has(param, "shrink_factor"), fork_has(param, "zoom_factor")
    shrink_factor = int(fork_field(param, "shrink_factor", 1))
    zoom_factor = int(fork_field(param, "zoom_factor", 1))
    if (shrink and shrink_factor < 1) or (zoom and zoom_factor < 1):
        raise ShapeError("Interp shrink_factor and zoom_factor must be positive")
    if len(bottoms) == 2:
        out = (legacy_dim(bottoms[1], 2), legacy_dim(bottoms[1], 3))
    elif shrink and not zoom:
        out = ((height_eff - 1) // shrink_factor + 1, (width_eff - 1) // shrink_factor + 1)
    elif zoom and not shrink:
        out = (height_eff + (height_eff - 1) * (zoom_factor - 1),
               width_eff + (width_eff - 1) * (zoom_factor - 1))
    elif fork_has(param, "height") and fork_has(param, "width"):
        out = (int(fork_field(param, "height", 0)), int(fork_field(param, "width", 0)))
    elif shrink and zoom:
        shrunk = ((height_eff - 1) // shrink_factor + 1, (width_eff - 1) // shrink_factor + 1)
        out = tuple(size + (size - 1) * (zoom_factor - 1) for size in shrunk)
    else:
        raise ShapeError("Interp needs its output size: zoom_factor, shrink_factor, "
                         "height and width, or a second bottom")
    if height_eff <= 0 or width_eff <= 0:
        raise ShapeError(f"Interp padding {pad_beg}/{pad_end} leaves nothing of the input "
                         f"{shape}")
    if out[0] <= 0 or out[1] <= 0:
        raise ShapeError(f"Interp output size {out} must be positive")
    return pad_beg, pad_end, int(out[0]), int(out[1])


@shape_rule("Interp")
def _interp(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1, 2)
    shape = bottoms[0]
    if len(shape) != 4:
        raise ShapeError(f"Interp needs a 4-axis bottom (num, channels, height, width), "
                         f"got {shape}")
    _, _, height, width = interp_size(layer, bottoms)
    return LayerShapes(tops=[shape[:2] + (height, width)])



# ---------------------------------------------------------------- BatchReindex


def batch_reindex_top_shape(bottoms: list[Shape]) -> Shape:
    """batch_reindex_layer.cpp: bottom[1] is a 1-axis list of indices into bottom[0]'s
    first axis; the top takes its length as first axis."""
    data, indices = bottoms
    if len(indices) != 1:
        raise ShapeError(f"the indices bottom must have 1 axis, got shape {indices}")
    if len(data) < 1:
        raise ShapeError("the data bottom needs at least 1 axis")
    return (indices[0],) + tuple(data[1:])


@shape_rule("BatchReindex")
def _batch_reindex(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 2)
    return LayerShapes(tops=[batch_reindex_top_shape(bottoms)])
