"""Convolution and Deconvolution, as BVLC Caffe computes them (float32).

Convolution is im2col + one matrix product per group, like base_conv_layer.cpp, with
the im2col copied from a strided view (no Python loop over pixels). Special cases
that matter for speed: a 1x1 kernel without padding is a plain matrix product on the
(sub-sampled) input; a convolution whose groups have one input channel each
(depthwise) is one stacked product per block of channels, each channel's weights
times its own columns; and with unit strides the columns can be copied from the
flattened padded image (`_FlatImage`), in long contiguous runs. Images of a batch are
done one at a time, as Caffe does, so the column buffer stays the size of one image's.
The sums over kernel taps are BLAS's, so they round as Caffe's gemm may, not bit for bit.

Deconvolution is Caffe's backward-data pass: one product per group to columns, then
col2im, which adds the kernel taps in Caffe's order (kernel row, kernel column).

Output sizes come from `bnlint.caffe.shapes`, so the forward and the linter agree.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from bnlint.caffe import shapes
from bnlint.caffe.layers import convolution
from bnlint.errors import ForwardError
from bnlint.forward.ops.base import (
    FreshTops,
    _pad_into,
    caffe_blob,
    pad_spatial,
    scratch_buffer,
    unbuffered_rows,
)
from bnlint.forward.parallel import matmul
from bnlint.forward.registry import Op, register_op


#: Largest column buffer, in floats (16 MB): bigger im2col work is done in row chunks.
COL_BUFFER_FLOATS = 4 * 1024 * 1024

#: Largest share of extra product columns (the padded width over the output width, less
#: 1) for which im2col copies from a `_FlatImage`: its long copies save more than the
#: extra columns cost when the image is wide (56: 15% faster), not when narrow (7: 30%
#: slower).
FLAT_MAX_WASTE = 0.05

#: Floats in one depthwise column block (512 KB): small enough to stay in the L2 cache
#: between the copy and the product, large enough that few calls are made.
DEPTHWISE_BLOCK_FLOATS = 128 * 1024

#: Widest output row for which depthwise columns come from a `_FlatImage` (measured: 14
#: wide it is 1.2-1.4x faster than the strided copy, 28 wide 10% slower, since the crop
#: copy and the wasted columns then cost more than the strided copy's per-row overhead).
FLAT_MAX_WIDTH = 16

#: `_tap_products` is used when num_output < TAP_PRODUCTS_RATIO * channels (one group, unit
#: strides): it writes that many fewer values than im2col copies. Measured on DenseNet's
#: 3x3 convolutions (128 to 32 channels): 1.2-1.6x faster; at equal counts (ResNet) a wash.
TAP_PRODUCTS_RATIO = 1.0

def _zero_padded(x: np.ndarray, pad: Sequence[int]) -> np.ndarray:
    """pad_spatial with zeros, into the reused buffer."""
    return pad_spatial(x, pad, scratch=True)


def _window_view(padded: np.ndarray, kernel: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int], out_spatial: Sequence[int]) -> np.ndarray:
    """(N, C, *kernel, *out_spatial) read-only view: element [n, c, *k, *o] is the
    input tap k of output position o (im2col without the copy)."""
    n_stride, c_stride, *spatial_strides = padded.strides
    shape = padded.shape[:2] + tuple(kernel) + tuple(out_spatial)
    strides = ((n_stride, c_stride)
               + tuple(st * d for st, d in zip(spatial_strides, dilation))
               + tuple(st * s for st, s in zip(spatial_strides, stride)))
    return as_strided(padded, shape, strides, writeable=False)


def _as_batch(x: np.ndarray, channel_axis: int) -> np.ndarray:
    """Fold the axes before the channel axis into one batch axis (Caffe's num_)."""
    return x.reshape((shapes.count(x.shape, 0, channel_axis),) + x.shape[channel_axis:])


class _ConvBase(FreshTops, Op):
    """Reads bias_term and checks the blob count once; the weights are checked against
    the geometry of the first bottom shape seen, and kept per geometry."""

    bottoms = (1, None)

    def setup(self, layer) -> None:
        self.bias_term = bool(layer.convolution_param.bias_term)
        expected_blobs = 2 if self.bias_term else 1
        if len(self.blobs) != expected_blobs:
            raise ForwardError(
                f"layer '{self.name}' ({self.type}): has {len(self.blobs)} blobs, "
                f"expected {expected_blobs} (weights{' and bias' if self.bias_term else ''})")
        self._parameters: dict[tuple, tuple[np.ndarray, np.ndarray | None]] = {}
        self._geometries: dict[tuple[int, ...], convolution.ConvGeometry] = {}

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        outputs = []
        for x in bottoms:
            x = np.asarray(x, dtype=np.float32)
            geom = self._geometry(x.shape)
            weights, bias = self._weights_for(geom, x.shape[geom.channel_axis])
            batch = _as_batch(x, geom.channel_axis)
            out = self._convolve(batch, geom, weights)
            if bias is not None:
                with unbuffered_rows(shapes.count(out.shape[2:])):
                    out += bias.reshape((1, -1) + (1,) * (out.ndim - 2))
            outputs.append(out.reshape(x.shape[:geom.channel_axis] + out.shape[1:]))
        return outputs

    def _geometry(self, shape: tuple[int, ...]) -> convolution.ConvGeometry:
        """convolution.conv_geometry, worked out once per bottom shape (it reads the message)."""
        geom = self._geometries.get(shape)
        if geom is None:
            geom = self._geometries[shape] = convolution.conv_geometry(self.layer, shape)
        return geom

    def _weights_for(self, geom: convolution.ConvGeometry,
                     channels: int) -> tuple[np.ndarray, np.ndarray | None]:
        key = (geom, channels)
        if key not in self._parameters:
            weights = caffe_blob(self.blobs, 0, self._weight_shape(geom, channels), "weight")
            bias = (caffe_blob(self.blobs, 1, (geom.num_output,), "bias")
                    if self.bias_term else None)
            self._parameters[key] = (weights, bias)
        return self._parameters[key]

    @abstractmethod
    def _weight_shape(self, geom: convolution.ConvGeometry, channels: int) -> tuple[int, ...]:
        """The weight blob shape Caffe expects for this geometry."""

    @abstractmethod
    def _convolve(self, batch: np.ndarray, geom: convolution.ConvGeometry,
                  weights: np.ndarray) -> np.ndarray:
        """(num, C, *spatial) in, (num, num_output, *out_spatial) out, without bias."""


@register_op("Convolution")
class Convolution(_ConvBase):
    def _weight_shape(self, geom, channels):
        return (geom.num_output, channels // geom.group) + geom.kernel

    def setup(self, layer) -> None:
        super().setup(layer)
        self._tap_major: dict[int, np.ndarray] = {}

    def _convolve(self, batch, geom, weights):
        out_spatial = convolution.conv_spatial_output(geom, batch.shape[2:])
        num, channels = batch.shape[:2]
        out = np.empty((num, geom.num_output) + out_spatial, dtype=np.float32)
        if geom.group > 1 and channels == geom.group:
            _depthwise(batch, geom, weights, out)
        elif all(k == 1 for k in geom.kernel) and not any(geom.pad):
            _pointwise(batch, geom, weights, out)
        elif geom.group == 1 and all(s == 1 for s in geom.stride) \
                and geom.num_output < TAP_PRODUCTS_RATIO * channels:
            _tap_products(batch, geom, self._tap_weights(weights), out)
        else:
            _im2col_product(batch, geom, weights, out)
        return out

    def _tap_weights(self, weights: np.ndarray) -> np.ndarray:
        """(*kernel, num_output, channels) contiguous, made once per weight blob."""
        key = id(weights)                  # the blob is kept in self._parameters
        if key not in self._tap_major:
            self._tap_major[key] = np.ascontiguousarray(
                np.moveaxis(weights, (0, 1), (-2, -1)))
        return self._tap_major[key]


def _pointwise(batch: np.ndarray, geom: convolution.ConvGeometry, weights: np.ndarray,
               out: np.ndarray) -> None:
    """1x1 kernel, no padding: im2col is the (strided) input itself."""
    num, channels = batch.shape[:2]
    group, per_group_out = geom.group, geom.num_output // geom.group
    if any(s != 1 for s in geom.stride):
        strided = batch[(slice(None), slice(None))
                        + tuple(slice(None, None, s) for s in geom.stride)]
        batch = scratch_buffer("columns", strided.shape)
        np.copyto(batch, strided)
    cols = batch.reshape(num, group, channels // group, -1)
    matmul(weights.reshape(group, per_group_out, channels // group), cols,
              out=out.reshape(num, group, per_group_out, -1))


def _im2col_product(batch: np.ndarray, geom: convolution.ConvGeometry, weights: np.ndarray,
                    out: np.ndarray) -> None:
    """Per image: copy the windows into the column buffer, one product per group.

    Large images are done in chunks of output rows so the buffer stays bounded.
    """
    num, channels = batch.shape[:2]
    group, per_group_out = geom.group, geom.num_output // geom.group
    out_spatial = out.shape[2:]
    kernel_dim = channels // group * shapes.count(geom.kernel)
    weights = weights.reshape(group, per_group_out, kernel_dim)
    padded_trailing = shapes.count(tuple(size + 2 * p for size, p in
                                         zip(batch.shape[3:], geom.pad[1:])))
    if all(s == 1 for s in geom.stride) \
            and padded_trailing <= (1 + FLAT_MAX_WASTE) * shapes.count(out_spatial[1:]):
        _flat_im2col_product(batch, geom, weights, out)
        return
    row_size = shapes.count(out_spatial, 1)
    rows_per_chunk = max(1, COL_BUFFER_FLOATS // (group * kernel_dim * row_size))
    padded = _zero_padded(batch, geom.pad)
    windows = _window_view(padded, geom.kernel, geom.stride, geom.dilation, out_spatial)
    lead = (slice(None),) * (1 + len(geom.kernel))
    for n in range(num):
        out_n = out[n].reshape(group, per_group_out, -1)
        for first in range(0, out_spatial[0], rows_per_chunk):
            last = min(out_spatial[0], first + rows_per_chunk)
            source = windows[n][lead + (slice(first, last),)]
            cols = scratch_buffer("columns", source.shape)
            np.copyto(cols, source)
            matmul(weights, cols.reshape(group, kernel_dim, -1),
                      out=out_n[:, :, first * row_size:last * row_size])


def _flat_im2col_product(batch: np.ndarray, geom: convolution.ConvGeometry, weights: np.ndarray,
                         out: np.ndarray) -> None:
    """`_im2col_product` with unit strides, its columns copied from a `_FlatImage`."""
    num, channels = batch.shape[:2]
    group, per_group_out, kernel_dim = weights.shape
    out_spatial = out.shape[2:]
    image = _FlatImage(batch, geom, out_spatial)
    rows_per_chunk = max(1, COL_BUFFER_FLOATS // (group * kernel_dim * image.row_floats))
    for n in range(num):
        out_n = out[n].reshape((group, per_group_out) + out_spatial)
        for first in range(0, out_spatial[0], rows_per_chunk):
            last = min(out_spatial[0], first + rows_per_chunk)
            source = image.taps(n, 0, channels, first, last)
            cols = scratch_buffer("columns", source.shape)
            np.copyto(cols, source)
            product = scratch_buffer("product", (group, per_group_out, cols.shape[-1]))
            matmul(weights, cols.reshape(group, kernel_dim, -1), out=product)
            image.crop(product, out_n[:, :, first:last])


def _tap_products(batch: np.ndarray, geom: convolution.ConvGeometry, tap_weights: np.ndarray,
                  out: np.ndarray) -> None:
    """One group, unit strides, fewer outputs than inputs: sum over the kernel taps t of
    W_t @ (the input shifted by t), with no im2col copy.

    On a `_FlatImage` the input shifted by a tap is a strided view (channels a padded
    image apart, positions contiguous) that BLAS reads in place. The per-tap products
    go to one stacked buffer, added in tap order. im2col writes kernel-size x channels
    values per position, this kernel-size x num_output: less when num_output < channels.
    """
    num, channels = batch.shape[:2]
    kernel_shape, num_output = tap_weights.shape[:-2], tap_weights.shape[-2]
    taps = shapes.count(kernel_shape)
    out_spatial = out.shape[2:]
    image = _FlatImage(batch, geom, out_spatial)
    rows_per_chunk = max(1, COL_BUFFER_FLOATS // (taps * num_output * image.row_floats))
    crop = (Ellipsis,) + tuple(slice(o) for o in out_spatial[1:])
    for n in range(num):
        for first in range(0, out_spatial[0], rows_per_chunk):
            last = min(out_spatial[0], first + rows_per_chunk)
            shifted = image.channel_taps(n, first, last)
            products = scratch_buffer("columns", kernel_shape + (num_output, shifted.shape[-1]))
            matmul(tap_weights, shifted, out=products)
            grid = products.reshape((taps, num_output, last - first) + image.trailing)
            np.add.reduce(grid[crop], axis=0, out=out[n, :, first:last])


class _FlatImage:
    """A zero-padded batch with each channel's image flattened, for unit-stride windows.

    Output position (i, j) is computed at flat position i * padded_width + j, whose tap
    (ky, kx) is at flat position + ky * d * padded_width + kx * d: over a run of output
    rows, each tap of a channel is one contiguous stretch, so im2col copies long runs.
    The positions past the output width (as many as the padded width exceeds it) are
    computed too and dropped by `crop`; a zero tail keeps their reads in the buffer.
    N-D alike: every axis after the first is handled as the width is.
    """

    def __init__(self, batch: np.ndarray, geom: convolution.ConvGeometry,
                 out_spatial: tuple[int, ...]) -> None:
        num, channels = batch.shape[:2]
        spatial = batch.shape[2:]
        padded_shape = tuple(size + 2 * p for size, p in zip(spatial, geom.pad))
        # Flat distance between neighbours along each axis.
        steps = [shapes.count(padded_shape, axis + 1) for axis in range(len(spatial))]
        tail = sum((k - 1) * d * step for k, d, step in
                   zip(geom.kernel[1:], geom.dilation[1:], steps[1:]))
        size = shapes.count(padded_shape)
        self.flat = scratch_buffer("padded", (num, channels, size + tail))
        self.flat[:, :, size:] = 0.0
        _pad_into(batch, geom.pad, self.flat[:, :, :size].reshape((num, channels) + padded_shape))
        self.kernel = geom.kernel
        self.tap_strides = tuple(d * step * self.flat.itemsize
                                 for d, step in zip(geom.dilation, steps))
        self.row_floats = steps[0]
        self.trailing = padded_shape[1:]
        self.out_trailing = tuple(out_spatial[1:])

    def taps(self, n: int, first_channel: int, last_channel: int, first_row: int,
             last_row: int) -> np.ndarray:
        """(channels, *kernel, rows * row_floats) read-only view: the columns of the
        output rows [first_row, last_row) of image n, on the flat grid."""
        start = self.flat[n, first_channel:, first_row * self.row_floats:]
        return as_strided(start, (last_channel - first_channel,) + self.kernel
                          + ((last_row - first_row) * self.row_floats,),
                          (self.flat.strides[1],) + self.tap_strides + (self.flat.itemsize,),
                          writeable=False)

    def channel_taps(self, n: int, first_row: int, last_row: int) -> np.ndarray:
        """(*kernel, channels, rows * row_floats) read-only view: for each tap, image n
        shifted by it over the output rows [first_row, last_row)."""
        start = self.flat[n, :, first_row * self.row_floats:]
        return as_strided(start, self.kernel + (self.flat.shape[1],
                                                (last_row - first_row) * self.row_floats),
                          self.tap_strides + (self.flat.strides[1], self.flat.itemsize),
                          writeable=False)

    def crop(self, product: np.ndarray, out: np.ndarray) -> None:
        """Copy the real outputs of `product` (..., rows * row_floats) into `out` (..., rows,
        *out_trailing)."""
        grid = product.reshape(out.shape[:out.ndim - len(self.trailing)] + self.trailing)
        np.copyto(out, grid[(Ellipsis,) + tuple(slice(o) for o in self.out_trailing)])


def _depthwise(batch: np.ndarray, geom: convolution.ConvGeometry, weights: np.ndarray,
               out: np.ndarray) -> None:
    """One input channel per group: per block of channels, im2col and one stacked product.

    Channel c's outputs are its (multiplier, taps) weights times its (taps, positions)
    columns; np.matmul does a block of channels in one call, reading each column once
    where a sum of shifted views makes two passes per tap. Blocks are sized to stay in
    cache.
    """
    num, channels = batch.shape[:2]
    multiplier = geom.num_output // channels
    taps = shapes.count(geom.kernel)
    out_spatial = out.shape[2:]
    weights = weights.reshape(channels, multiplier, taps)
    if all(s == 1 for s in geom.stride) and out_spatial[-1] <= FLAT_MAX_WIDTH:
        _flat_depthwise(batch, geom, weights, out)
        return
    padded = _zero_padded(batch, geom.pad)
    windows = _window_view(padded, geom.kernel, geom.stride, geom.dilation, out_spatial)
    positions = shapes.count(out_spatial)
    block = max(1, DEPTHWISE_BLOCK_FLOATS // (taps * positions))
    for n in range(num):
        out_n = out[n].reshape(channels, multiplier, positions)
        for first in range(0, channels, block):
            last = min(channels, first + block)
            cols = scratch_buffer("columns", (last - first,) + windows.shape[2:])
            np.copyto(cols, windows[n, first:last])
            matmul(weights[first:last], cols.reshape(last - first, taps, positions),
                      out=out_n[first:last])


def _flat_depthwise(batch: np.ndarray, geom: convolution.ConvGeometry, weights: np.ndarray,
                    out: np.ndarray) -> None:
    """`_depthwise` with unit strides and narrow images, its columns copied from a
    `_FlatImage`: a strided copy of a narrow image goes a few values at a time."""
    num, channels = batch.shape[:2]
    multiplier, taps = weights.shape[1:]
    out_spatial = out.shape[2:]
    image = _FlatImage(batch, geom, out_spatial)
    positions = out_spatial[0] * image.row_floats
    block = max(1, DEPTHWISE_BLOCK_FLOATS // (taps * positions))
    for n in range(num):
        out_n = out[n].reshape((channels, multiplier) + out_spatial)
        for first in range(0, channels, block):
            last = min(channels, first + block)
            source = image.taps(n, first, last, 0, out_spatial[0])
            cols = scratch_buffer("columns", source.shape)
            np.copyto(cols, source)
            product = scratch_buffer("product", (last - first, multiplier, positions))
            matmul(weights[first:last], cols.reshape(last - first, taps, positions),
                      out=product)
            image.crop(product, out_n[first:last])


@register_op("Deconvolution")
class Deconvolution(_ConvBase):
    def _weight_shape(self, geom, channels):
        return (channels, geom.num_output // geom.group) + geom.kernel

    def _convolve(self, batch, geom, weights):
        num, channels = batch.shape[:2]
        in_spatial = batch.shape[2:]
        out_spatial = convolution.deconv_spatial_output(geom, in_spatial)
        group, num_output = geom.group, geom.num_output
        kernel = geom.kernel
        kernel_dim = num_output // group * shapes.count(kernel)
        # Per group: columns = W_g^T @ x_g (Caffe's backward_cpu_gemm).
        weights_t = weights.reshape(group, channels // group, kernel_dim).transpose(0, 2, 1)
        full = tuple(s * (size - 1) + e for s, size, e in
                     zip(geom.stride, in_spatial, geom.extent))
        out = np.empty((num, num_output) + out_spatial, dtype=np.float32)
        crop = (slice(None),) + tuple(slice(p, p + size) for p, size in
                                      zip(geom.pad, out_spatial))
        for n in range(num):
            cols = np.matmul(weights_t, batch[n].reshape(group, channels // group, -1))
            cols = cols.reshape((num_output,) + kernel + in_spatial)
            image = np.zeros((num_output,) + full, dtype=np.float32)
            for tap in np.ndindex(*kernel):
                target = (slice(None),) + tuple(
                    slice(k * d, k * d + s * (size - 1) + 1, s)
                    for k, d, s, size in zip(tap, geom.dilation, geom.stride, in_spatial))
                image[target] += cols[(slice(None),) + tap]
            out[n] = image[crop]
        return out


@register_op("ConvolutionDepthwise")
class ConvolutionDepthwise(Convolution):
    """conv_dw_layer.cpp: each channel convolved with its own k_h x k_w filter (weights
    (C, 1, k_h, k_w)), the bias added after; the top keeps the bottom's channels
    whatever num_output says (`convolution.depthwise_geometry`). That is a grouped
    convolution with group = num_output = C, computed by Convolution's code."""

    def _geometry(self, shape):
        geom = self._geometries.get(shape)
        if geom is None:
            geom = self._geometries[shape] = convolution.depthwise_geometry(self.layer,
                                                                             shape)
        return geom
