"""Pooling, bit-exact with BVLC Caffe's CPU loops (pooling_layer.cpp).

The output size (ceil rounding by default, the "last window starts in the padding"
correction, round_mode FLOOR or a ceil-mode fork's `ceil_mode: false`, global
pooling) comes from `pooling.pool_geometry`.
The maths loops over kernel taps, never over pixels: each tap is a strided view of a
padded copy of the input.

- MAX starts from -FLT_MAX and keeps a value only when it is strictly greater, so a
  NaN never wins and a window of -inf gives -FLT_MAX, as in Caffe; the padding never
  takes part (it is -inf). With a second top, the mask holds the flat index h*W+w of
  the first maximum in scan order, -1 if none.
- AVE adds the taps in Caffe's order (kernel row, then column; zeros for the padding
  change nothing) and divides by Caffe's window size: the window clipped to the padded
  extent, `min(start + k, size + pad) - start`, computed before the start is clipped
  to 0. So the result matches Caffe to the bit.
- A window past the end of the input (no padding, ceil rounding, stride > kernel;
  `PoolGeometry.has_empty_windows`) gives -FLT_MAX for MAX and 0 / (size - start),
  i.e. NaN or -0.0, for AVE, as in Caffe; no warning is raised for it here.
- STOCHASTIC: Caffe's CPU code aborts (NOT_IMPLEMENTED); its GPU code at TEST gives
  the probability-weighted average sum(x*x) / (FLT_MIN + sum(x)), reproduced here. In
  TRAIN it samples at random, which a reference forward cannot reproduce.
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe import shapes
from bnlint.caffe.layers import pooling
from bnlint.caffe.phase import Phase
from bnlint.errors import ForwardError
from bnlint.forward.ops.base import FreshTops, pad_spatial
from bnlint.forward.registry import Op, register_op

FLT_MAX = np.finfo(np.float32).max
FLT_MIN = np.finfo(np.float32).tiny


def ave_pool_divisor(size: int, kernel: int, stride: int, pad: int, pooled: int) -> np.ndarray:
    """Caffe's AVE pool_size along one axis, per output position (int64)."""
    start = np.arange(pooled, dtype=np.int64) * stride - pad
    return np.minimum(start + kernel, size + pad) - start


@register_op("Pooling")
class Pooling(FreshTops, Op):
    bottoms = (1, 1)

    def setup(self, layer) -> None:
        self.method = shapes.enum_name(layer.pooling_param, "pool")
        self.with_mask = self.method == "MAX" and len(layer.top) > 1
        if self.method == "STOCHASTIC" and self.phase != Phase.TEST:
            raise ForwardError(f"layer '{self.name}' (Pooling): STOCHASTIC pooling samples "
                               "at random in TRAIN; bnlint runs it only in TEST")

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        x = np.asarray(bottoms[0], dtype=np.float32)
        geom = pooling.pool_geometry(self.layer, x.shape)
        if self.method == "MAX":
            top, mask = _max_pool(x, geom, self.with_mask)
            return [top, mask] if self.with_mask else [top]
        if self.method == "AVE":
            return [_ave_pool(x, geom)]
        return [_stochastic_pool_test(x, geom)]


@register_op("SPP")
class SPP(FreshTops, Op):
    """Spatial pyramid pooling (spp_layer.cpp): level l pools 2^l x 2^l bins with the
    kernel, stride and padding of `layers.pooling.spp_levels`, through the same pooling
    code as Pooling; one level is that pooling's (N, C, h, w) top, several are each
    flattened to (N, C*h*w) and concatenated in level order."""

    def setup(self, layer) -> None:
        method = shapes.enum_name(layer.spp_param, "pool")
        if method == "STOCHASTIC" and self.phase != Phase.TEST:
            raise ForwardError(f"layer '{self.name}' (SPP): STOCHASTIC pooling samples at "
                               "random in TRAIN; bnlint runs it only in TEST")

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        x = np.asarray(bottoms[0], dtype=np.float32)
        levels = pooling.spp_levels(self.layer, x.shape)
        pooled = [pool(x, geom) for geom in levels]
        if len(pooled) == 1:
            return pooled
        return [np.concatenate([p.reshape(x.shape[0], -1) for p in pooled], axis=1)]


def pool(x: np.ndarray, geom: pooling.PoolGeometry) -> np.ndarray:
    """One pooling top (no mask) of a 4-axis float32 input by `geom`."""
    if geom.method == "MAX":
        return _max_pool(x, geom, False)[0]
    if geom.method == "AVE":
        return _ave_pool(x, geom)
    return _stochastic_pool_test(x, geom)


def _covers_whole_input(x: np.ndarray, geom: pooling.PoolGeometry) -> bool:
    """One window over the whole image, no padding: a plain reduction."""
    return (geom.output == (1, 1) and geom.pad == (0, 0)
            and geom.kernel[0] >= x.shape[2] and geom.kernel[1] >= x.shape[3])


def _padded(x: np.ndarray, geom: pooling.PoolGeometry, fill: float) -> np.ndarray:
    """The input padded by `pad` in front and by `fill` up to the last window's end, in
    the reused padding buffer (every caller reads it before returning)."""
    total = tuple(max(p + size, (out - 1) * s + k) for p, size, out, s, k in
                  zip(geom.pad, x.shape[2:], geom.output, geom.stride, geom.kernel))
    return pad_spatial(x, geom.pad, fill, total, scratch=True)


def _taps(padded: np.ndarray, geom: pooling.PoolGeometry):
    """(i, j, view) for every kernel tap in Caffe's scan order (row, then column)."""
    (out_h, out_w), (stride_h, stride_w) = geom.output, geom.stride
    for i in range(geom.kernel[0]):
        rows = slice(i, i + (out_h - 1) * stride_h + 1, stride_h)
        for j in range(geom.kernel[1]):
            cols = slice(j, j + (out_w - 1) * stride_w + 1, stride_w)
            yield i, j, padded[:, :, rows, cols]


def _spatial_rows(x: np.ndarray) -> np.ndarray:
    """(H*W, N*C) contiguous: reducing axis 0 adds row after row, Caffe's order."""
    num, channels = x.shape[:2]
    return np.ascontiguousarray(x.reshape(num * channels, -1).T)


def _max_pool(x: np.ndarray, geom: pooling.PoolGeometry,
              with_mask: bool) -> tuple[np.ndarray, np.ndarray | None]:
    num, channels, height, width = x.shape
    out_shape = (num, channels) + geom.output
    if _covers_whole_input(x, geom) and not with_mask:
        top = np.fmax.reduce(_spatial_rows(x), axis=0)
        return np.fmax(top, -FLT_MAX).reshape(out_shape), None
    padded = _padded(x, geom, -np.inf)
    if not with_mask:
        return _separable_max(padded, geom), None
    top = np.full(out_shape, -FLT_MAX, dtype=np.float32)
    mask = np.full(out_shape, -1.0, dtype=np.float32)
    rows = np.arange(geom.output[0])[:, None] * geom.stride[0] - geom.pad[0]
    cols = np.arange(geom.output[1])[None, :] * geom.stride[1] - geom.pad[1]
    for i, j, view in _taps(padded, geom):
        better = view > top
        np.copyto(top, view, where=better)
        np.copyto(mask, ((rows + i) * width + (cols + j)).astype(np.float32), where=better)
    return top, mask


def _separable_max(padded: np.ndarray, geom: pooling.PoolGeometry) -> np.ndarray:
    """MAX pooling as the max over kernel rows of the max over kernel columns.

    A window's max is the same taken in any order (fmax skips NaN, so the order decides
    nothing but which of +0 and -0 is kept on a tie), and this takes kh + kw - 2 passes
    over views instead of kh * kw. Floored at -FLT_MAX last, as Caffe starts from it.
    """
    (kernel_h, kernel_w), (stride_h, stride_w) = geom.kernel, geom.stride
    out_h, out_w = geom.output
    rows = padded[:, :, :(out_h - 1) * stride_h + kernel_h]
    columns = [rows[..., j:j + (out_w - 1) * stride_w + 1:stride_w] for j in range(kernel_w)]
    row_max = np.array(columns[0]) if kernel_w == 1 else np.fmax(columns[0], columns[1])
    for view in columns[2:]:
        np.fmax(row_max, view, out=row_max)
    top = np.fmax(row_max[:, :, :(out_h - 1) * stride_h + 1:stride_h], -FLT_MAX)
    for i in range(1, kernel_h):
        np.fmax(top, row_max[:, :, i:i + (out_h - 1) * stride_h + 1:stride_h], out=top)
    return top


def _ave_pool(x: np.ndarray, geom: pooling.PoolGeometry) -> np.ndarray:
    num, channels, height, width = x.shape
    out_shape = (num, channels) + geom.output
    if _covers_whole_input(x, geom):
        total = np.add.reduce(_spatial_rows(x), axis=0)
        return (total / np.float32(height * width)).reshape(out_shape)
    padded = _padded(x, geom, 0.0)
    acc = np.zeros(out_shape, dtype=np.float32)
    for _, _, view in _taps(padded, geom):
        acc += view
    divisor_h = ave_pool_divisor(height, geom.kernel[0], geom.stride[0], geom.pad[0],
                                 geom.output[0])
    divisor_w = ave_pool_divisor(width, geom.kernel[1], geom.stride[1], geom.pad[1],
                                 geom.output[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        acc /= np.outer(divisor_h, divisor_w).astype(np.float32)
    return acc


def _stochastic_pool_test(x: np.ndarray, geom: pooling.PoolGeometry) -> np.ndarray:
    out_shape = x.shape[:2] + geom.output
    padded = _padded(x, geom, 0.0)
    weight_sum = np.full(out_shape, FLT_MIN, dtype=np.float32)
    weighted = np.zeros(out_shape, dtype=np.float32)
    for _, _, view in _taps(padded, geom):
        weight_sum += view
        weighted += view * view
    with np.errstate(divide="ignore", invalid="ignore"):
        return weighted / weight_sum
