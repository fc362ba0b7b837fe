"""Layers that move or select data: Input, Concat, Slice, Split, Flatten, Reshape,
Crop, Tile, ArgMax, Reduction, Silence, Im2col, BatchReindex, and Parameter (its blob
as its top).

Top shapes come from `bnlint.caffe.shapes`. Tops may share memory with bottoms
(Split, Flatten and Reshape return the bottom or a view of it, as Caffe shares the
data); no op here writes into its bottoms.

Input's op returns no tops: the executor feeds the net's inputs and binds them to the
Input layer's top names itself (`shapes.infer` gives the shapes they must have).
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe import shapes
from bnlint.caffe.layers import convolution, other, structure
from bnlint.caffe.layers import structure
from bnlint.errors import ForwardError
from bnlint.forward.ops.base import pad_spatial
from bnlint.forward.registry import Op, register_op

INT_MAX = np.iinfo(np.int32).max


@register_op("Input")
class Input(Op):
    """A source of blobs the executor fills; running it produces nothing."""

    bottoms = (0, 0)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        return []


@register_op("Silence")
class Silence(Op):
    """Consumes its bottoms so Caffe does not report them as outputs; no tops."""

    bottoms = (1, None)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        return []


@register_op("Split")
class Split(Op):
    """The same blob under several names (Caffe shares the data)."""

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        return [bottoms[0]] * max(1, len(self.layer.top))


@register_op("Concat")
class Concat(Op):
    bottoms = (1, None)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        shapes.infer(self.layer, [b.shape for b in bottoms])   # checks the shapes
        if len(bottoms) == 1:
            return [bottoms[0]]
        return [np.concatenate(bottoms, axis=structure.concat_axis(self.layer, bottoms[0].shape))]


@register_op("Slice")
class Slice(Op):
    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        x = bottoms[0]
        axis = structure.slice_axis(self.layer, x.shape)
        sizes = structure.slice_sizes(self.layer, x.shape)
        if len(sizes) == 1:
            return [x]
        bounds = np.cumsum(sizes)[:-1]
        return [np.ascontiguousarray(part) for part in np.split(x, bounds, axis=axis)]


@register_op("Flatten")
class Flatten(Op):
    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        top = shapes.infer(self.layer, [bottoms[0].shape]).tops[0]
        return [bottoms[0].reshape(top)]


@register_op("Reshape")
class Reshape(Op):
    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        return [bottoms[0].reshape(structure.reshape_top_shape(self.layer, bottoms[0].shape))]


@register_op("Crop")
class Crop(Op):
    """bottom[0] cut to bottom[1]'s size on the axes from `axis`, at `offset`."""

    bottoms = (2, 2)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        x, reference = bottoms
        top = shapes.infer(self.layer, [x.shape, reference.shape]).tops[0]
        offsets = structure.crop_offsets(self.layer, x.shape, reference.shape)
        window = tuple(slice(o, o + size) for o, size in zip(offsets, top))
        return [np.ascontiguousarray(x[window])]


@register_op("Tile")
class Tile(Op):
    """Repeats the block from `axis` on, `tiles` times, inside each outer index."""

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        x = bottoms[0]
        top = shapes.infer(self.layer, [x.shape]).tops[0]
        axis = shapes.canonical_axis(self.layer.tile_param.axis, x.shape)
        outer = x.reshape(shapes.count(x.shape, 0, axis), 1, -1)
        tiled = np.broadcast_to(outer, (outer.shape[0], self.layer.tile_param.tiles,
                                        outer.shape[2]))
        return [np.ascontiguousarray(tiled).reshape(top)]


@register_op("ArgMax")
class ArgMax(Op):
    """Indices (or values) of the top_k largest entries, as float32.

    Caffe sorts (value, index) pairs with std::greater, so among equal values the
    larger index comes first. Without `axis` each item is flattened and the top is
    (num, 1, top_k) -- (num, 2, top_k) with out_max_val: indices, then values --
    padded with 1s to the bottom's number of axes.
    """

    def setup(self, layer) -> None:
        param = layer.argmax_param
        self.top_k = int(param.top_k)
        self.out_max_val = bool(param.out_max_val)
        self.has_axis = param.HasField("axis")

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        x = np.asarray(bottoms[0], dtype=np.float32)
        top = shapes.infer(self.layer, [x.shape]).tops[0]
        if self.has_axis:
            axis = shapes.canonical_axis(self.layer.argmax_param.axis, x.shape)
            rows = np.moveaxis(x, axis, -1)
        else:
            axis = None
            rows = x.reshape(x.shape[0], -1)
        index = _top_k_indices(rows, self.top_k)
        if not self.has_axis:
            values = np.take_along_axis(rows, index, axis=-1)
            parts = [index.astype(np.float32)]
            if self.out_max_val:
                parts.append(values)
            return [np.stack(parts, axis=1).reshape(top)]
        picked = (np.take_along_axis(rows, index, axis=-1) if self.out_max_val
                  else index.astype(np.float32))
        return [np.ascontiguousarray(np.moveaxis(picked, -1, axis))]


def _top_k_indices(rows: np.ndarray, top_k: int) -> np.ndarray:
    """Indices of the top_k (value, index) pairs in descending order on the last axis."""
    size = rows.shape[-1]
    reversed_rows = rows[..., ::-1]
    # A stable sort of the reversed row puts, among equal values, the larger original
    # index first: Caffe's std::greater on (value, index) pairs.
    order = np.argsort(-reversed_rows, axis=-1, kind="stable")[..., :top_k]
    return size - 1 - order


@register_op("Reduction")
class Reduction(Op):
    """SUM, ASUM, SUMSQ or MEAN over the axes from `axis` on, times `coeff`.

    Like Caffe, MEAN multiplies by the float32 `coeff / count` rather than dividing,
    and the scaling is skipped when that factor is exactly 1.
    """

    def setup(self, layer) -> None:
        param = layer.reduction_param
        self.operation = shapes.enum_name(param, "operation")
        if self.operation not in ("SUM", "ASUM", "SUMSQ", "MEAN"):
            raise ForwardError(f"layer '{self.name}' (Reduction): unknown operation "
                               f"{self.operation}")
        self.coeff = np.float32(param.coeff)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        x = np.asarray(bottoms[0], dtype=np.float32)
        top = shapes.infer(self.layer, [x.shape]).tops[0]
        rows = x.reshape(shapes.count(top), -1)
        if self.operation == "ASUM":
            out = np.abs(rows).sum(axis=1, dtype=np.float32)
        elif self.operation == "SUMSQ":
            out = np.einsum("ij,ij->i", rows, rows)
        else:
            out = rows.sum(axis=1, dtype=np.float32)
        factor = self.coeff
        if self.operation == "MEAN":
            factor = np.float32(factor / np.float32(rows.shape[1]))
        if factor != np.float32(1):
            out = out * factor
        return [out.astype(np.float32, copy=False).reshape(top)]


@register_op("Im2col")
class Im2col(Op):
    """The columns a convolution multiplies (im2col_layer.cpp): for each item before the
    channel axis, column channel c*K + k (k the kernel tap in row-major order) at output
    position o is the input channel c at o*stride - pad + k*dilation, 0 in the padding."""

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        from numpy.lib.stride_tricks import as_strided

        x = np.asarray(bottoms[0], dtype=np.float32)
        geom = convolution.im2col_geometry(self.layer, x.shape)
        top = convolution.im2col_top_shape(self.layer, x.shape)
        batch = x.reshape((shapes.count(x.shape, 0, geom.channel_axis),)
                          + x.shape[geom.channel_axis:])
        padded = np.ascontiguousarray(pad_spatial(batch, geom.pad))
        n_stride, c_stride, *spatial_strides = padded.strides
        windows = as_strided(
            padded, padded.shape[:2] + geom.kernel + geom.output,
            (n_stride, c_stride) + tuple(st * d for st, d in zip(spatial_strides, geom.dilation))
            + tuple(st * s for st, s in zip(spatial_strides, geom.stride)), writeable=False)
        return [np.ascontiguousarray(windows).reshape(top)]


@register_op("BatchReindex")
class BatchReindex(Op):
    """top[i] = bottom[0][int(bottom[1][i])] (batch_reindex_layer.cpp): the float indices
    are truncated as static_cast<int> does; one outside [0, N) is refused, as Caffe's
    check_batch_reindex aborts there."""

    bottoms = (2, 2)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        x, indices = bottoms
        structure.batch_reindex_top_shape([x.shape, indices.shape])
        if not np.all(np.isfinite(indices)) or np.any(np.abs(indices) > INT_MAX):
            raise ForwardError("the index bottom holds values that are not indices (NaN, "
                               "inf or out of int range)")
        index = np.trunc(indices).astype(np.int64)
        bad = (index < 0) | (index >= x.shape[0])
        if np.any(bad):
            raise ForwardError(f"index {int(index[bad][0])} is outside the data bottom's "
                               f"first axis (size {x.shape[0]})")
        return [np.ascontiguousarray(x[index])]


@register_op("Parameter")
class Parameter(Op):
    """Its one blob, of parameter_param.shape, is its top (parameter_layer.hpp)."""

    bottoms = (0, 0)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        shape = other.parameter_shape(self.layer)
        if len(self.blobs) != 1:
            raise ForwardError(f"needs 1 blob, got {len(self.blobs)}")
        blob = np.asarray(self.blobs[0], dtype=np.float32)
        if blob.size != shapes.count(shape):
            raise ForwardError(f"blob has shape {list(blob.shape)}, the layer declares "
                               f"{list(shape)}")
        return [blob.reshape(shape)]
