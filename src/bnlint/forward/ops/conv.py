"""Convolution and Deconvolution, as BVLC Caffe computes them (float32).

Convolution is im2col + one matrix product per group, like base_conv_layer.cpp, with
the im2col built from a strided view (no Python loop over pixels). Special cases
that matter for speed: a 1x1 kernel without padding is a plain matrix product on the
(sub-sampled) input, and a convolution whose groups have one input channel each
(depthwise) is a sum of kernel-tap-shifted views. Images of a batch are done one at a
time, as Caffe does, so the column buffer stays the size of one image's.

Deconvolution is Caffe's backward-data pass: one product per group to columns, then
col2im, which adds the kernel taps in Caffe's order (kernel row, kernel column).

Output sizes come from `bnlint.caffe.shapes`, so the forward and the linter agree.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from bnlint.caffe import shapes
from bnlint.errors import ForwardError
from bnlint.forward.registry import Op, register_op


def caffe_blob(blobs: Sequence[np.ndarray], index: int, expected: tuple[int, ...],
               what: str) -> np.ndarray:
    """Parameter blob `index` as float32 of shape `expected`.

    Accepts the legacy 4-D form Caffe itself accepts when it loads weights
    (Blob::ShapeEquals): `expected` padded on the left with 1s to four axes.
    """
    if index >= len(blobs):
        raise ForwardError(f"missing {what} blob (blob {index}); expected shape {expected}")
    blob = np.asarray(blobs[index], dtype=np.float32)
    legacy = (1,) * (4 - len(expected)) + tuple(expected)
    if blob.shape != tuple(expected) and not (blob.ndim == 4 and blob.shape == legacy):
        raise ForwardError(f"{what} blob has shape {blob.shape}, expected {expected}")
    return blob.reshape(expected)


def pad_spatial(x: np.ndarray, pad: Sequence[int], fill: float = 0.0,
                total: Sequence[int] | None = None) -> np.ndarray:
    """(N, C, *spatial) with `pad` before each spatial axis, filled to `total` after.

    `total` defaults to symmetric padding. Returns `x` itself when nothing is added.
    """
    spatial = x.shape[2:]
    if total is None:
        total = tuple(size + 2 * p for size, p in zip(spatial, pad))
    if not any(pad) and tuple(total) == tuple(spatial):
        return x
    out = np.full(x.shape[:2] + tuple(total), fill, dtype=x.dtype)
    inner = tuple(slice(p, p + size) for p, size in zip(pad, spatial))
    out[(slice(None), slice(None)) + inner] = x
    return out


#: Largest column buffer, in floats (16 MB): bigger im2col work is done in row chunks.
COL_BUFFER_FLOATS = 4 * 1024 * 1024

_scratch = threading.local()


def _scratch_buffer(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 work buffer reused across calls (one per name and thread).

    Reusing it saves the page faults of a fresh multi-megabyte allocation per layer,
    which otherwise cost about a third of a small convolution.
    """
    size = 1
    for dim in shape:
        size *= dim
    buffer = getattr(_scratch, name, None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, dtype=np.float32)
        setattr(_scratch, name, buffer)
    return buffer[:size].reshape(shape)


def _zero_padded(x: np.ndarray, pad: Sequence[int]) -> np.ndarray:
    """pad_spatial with zeros, into a reused buffer: only the border is cleared."""
    if not any(pad):
        return x
    spatial = x.shape[2:]
    out = _scratch_buffer("padded", x.shape[:2] + tuple(s + 2 * p for s, p in zip(spatial, pad)))
    for axis, (p, size) in enumerate(zip(pad, spatial), start=2):
        if p:
            before = [slice(None)] * out.ndim
            after = [slice(None)] * out.ndim
            before[axis] = slice(0, p)
            after[axis] = slice(p + size, None)
            out[tuple(before)] = 0.0
            out[tuple(after)] = 0.0
    inner = tuple(slice(p, p + size) for p, size in zip(pad, spatial))
    out[(slice(None), slice(None)) + inner] = x
    return out


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


class _ConvBase(Op):
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

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        outputs = []
        for x in bottoms:
            x = np.asarray(x, dtype=np.float32)
            geom = shapes.conv_geometry(self.layer, x.shape)
            weights, bias = self._weights_for(geom, x.shape[geom.channel_axis])
            batch = _as_batch(x, geom.channel_axis)
            out = self._convolve(batch, geom, weights)
            if bias is not None:
                out += bias.reshape((1, -1) + (1,) * (out.ndim - 2))
            outputs.append(out.reshape(x.shape[:geom.channel_axis] + out.shape[1:]))
        return outputs

    def _weights_for(self, geom: shapes.ConvGeometry,
                     channels: int) -> tuple[np.ndarray, np.ndarray | None]:
        key = (geom, channels)
        if key not in self._parameters:
            weights = caffe_blob(self.blobs, 0, self._weight_shape(geom, channels), "weight")
            bias = (caffe_blob(self.blobs, 1, (geom.num_output,), "bias")
                    if self.bias_term else None)
            self._parameters[key] = (weights, bias)
        return self._parameters[key]

    @abstractmethod
    def _weight_shape(self, geom: shapes.ConvGeometry, channels: int) -> tuple[int, ...]:
        """The weight blob shape Caffe expects for this geometry."""

    @abstractmethod
    def _convolve(self, batch: np.ndarray, geom: shapes.ConvGeometry,
                  weights: np.ndarray) -> np.ndarray:
        """(num, C, *spatial) in, (num, num_output, *out_spatial) out, without bias."""


@register_op("Convolution")
class Convolution(_ConvBase):
    def _weight_shape(self, geom, channels):
        return (geom.num_output, channels // geom.group) + geom.kernel

    def _convolve(self, batch, geom, weights):
        out_spatial = shapes.conv_spatial_output(geom, batch.shape[2:])
        num, channels = batch.shape[:2]
        out = np.empty((num, geom.num_output) + out_spatial, dtype=np.float32)
        if geom.group > 1 and channels == geom.group:
            _depthwise(batch, geom, weights, out)
        elif all(k == 1 for k in geom.kernel) and not any(geom.pad):
            _pointwise(batch, geom, weights, out)
        else:
            _im2col_product(batch, geom, weights, out)
        return out


def _pointwise(batch: np.ndarray, geom: shapes.ConvGeometry, weights: np.ndarray,
               out: np.ndarray) -> None:
    """1x1 kernel, no padding: im2col is the (strided) input itself."""
    num, channels = batch.shape[:2]
    group, per_group_out = geom.group, geom.num_output // geom.group
    if any(s != 1 for s in geom.stride):
        batch = batch[(slice(None), slice(None))
                      + tuple(slice(None, None, s) for s in geom.stride)]
    cols = np.ascontiguousarray(batch).reshape(num, group, channels // group, -1)
    np.matmul(weights.reshape(group, per_group_out, channels // group), cols,
              out=out.reshape(num, group, per_group_out, -1))


def _im2col_product(batch: np.ndarray, geom: shapes.ConvGeometry, weights: np.ndarray,
                    out: np.ndarray) -> None:
    """Per image: copy the windows into the column buffer, one product per group.

    Large images are done in chunks of output rows so the buffer stays bounded.
    """
    num, channels = batch.shape[:2]
    group, per_group_out = geom.group, geom.num_output // geom.group
    out_spatial = out.shape[2:]
    kernel_dim = channels // group * shapes.count(geom.kernel)
    weights = weights.reshape(group, per_group_out, kernel_dim)
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
            cols = _scratch_buffer("columns", source.shape)
            np.copyto(cols, source)
            np.matmul(weights, cols.reshape(group, kernel_dim, -1),
                      out=out_n[:, :, first * row_size:last * row_size])


def _depthwise(batch: np.ndarray, geom: shapes.ConvGeometry, weights: np.ndarray,
               out: np.ndarray) -> None:
    """One input channel per group: sum over kernel taps of weight * shifted view."""
    num, channels = batch.shape[:2]
    multiplier = geom.num_output // channels
    out_spatial = out.shape[2:]
    padded = _zero_padded(batch, geom.pad)
    windows = _window_view(padded, geom.kernel, geom.stride, geom.dilation, out_spatial)
    weights = weights.reshape((channels, multiplier) + geom.kernel)
    acc = out.reshape((num, channels, multiplier) + out_spatial)
    acc[...] = 0.0
    broadcast = (1, channels, multiplier) + (1,) * len(out_spatial)
    product = _scratch_buffer("product", acc.shape)
    for tap in np.ndindex(*geom.kernel):
        view = windows[(slice(None), slice(None)) + tap][:, :, None]
        np.multiply(view, weights[(slice(None), slice(None)) + tap].reshape(broadcast),
                    out=product)
        acc += product


@register_op("Deconvolution")
class Deconvolution(_ConvBase):
    def _weight_shape(self, geom, channels):
        return (channels, geom.num_output // geom.group) + geom.kernel

    def _convolve(self, batch, geom, weights):
        num, channels = batch.shape[:2]
        in_spatial = batch.shape[2:]
        out_spatial = shapes.deconv_spatial_output(geom, in_spatial)
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
