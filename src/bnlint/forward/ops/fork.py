"""Other forks' deploy-time layers: SegNet/ENet's Upsample and BN, ShuffleNet's
ShuffleChannel, ReLU6, PSPNet/DeepLab's Interp, SENet's Axpy
and caffenet-benchmark's EltwiseAffine.

Each follows its fork's CPU code in float32 (sources named per class). Parameters are
read by field name (`bnlint.caffe.layers.base.fork_field`), since the same layer type arrives in
messages from different schemas.
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe.layers import base, batchnorm, elementwise, pooling, structure
from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError, ForwardError
from bnlint.forward.ops.base import FreshTops, layer_error
from bnlint.forward.registry import Op, register_op

F32 = np.float32
INT_MAX = np.iinfo(np.int32).max


@register_op("Upsample")
class Upsample(Op):
    """SegNet's unpooling (upsample_layer.cpp): a zero top, then for every input value
    `top[mask] = value` within its (n, c) plane, in scan order (a later duplicate index
    wins). The mask is a MAX pooling layer's second top (h*W + w of the pooled input);
    its floats are truncated to ints as static_cast<int> does. An index past the
    output plane aborts in Caffe and is an error here; so is a negative one (Caffe
    would write outside the blob).

    With one bottom (the YOLOv3 ports' Upsample) it is nearest-neighbour upsampling by
    `scale`: top[h, w] = bottom[h / scale, w / scale].
    """

    bottoms = (1, 2)

    def _forward(self, bottoms):
        x = bottoms[0]
        if x.ndim != 4:
            raise ForwardError(f"Upsample needs a 4-axis bottom, got shape {list(x.shape)}")
        with_mask = len(bottoms) == 2
        top = pooling.upsample_size(self.layer, x.shape, with_mask)
        if not with_mask:
            scale = top[0] // x.shape[2]
            return [np.ascontiguousarray(np.repeat(np.repeat(x, scale, axis=2), scale,
                                                   axis=3))]
        mask = bottoms[1]
        if mask.shape != x.shape:
            raise ForwardError(f"the mask bottom {list(mask.shape)} must have the data's "
                               f"shape {list(x.shape)}")
        return [unpool(x, mask, top)]


def unpool(x: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scatter each (n, c) plane of x to the flat positions in mask; the last write of a
    repeated position wins, as in Caffe's sequential loop."""
    num, channels = x.shape[:2]
    plane = size[0] * size[1]
    flat_mask = mask.reshape(num * channels, -1)
    if not np.all(np.isfinite(flat_mask)) or np.any(np.abs(flat_mask) > INT_MAX):
        raise ForwardError("the mask holds values that are not indices (NaN, inf or out "
                           "of int range)")
    index = np.trunc(flat_mask).astype(np.int64)
    if np.any(index >= plane):
        raise ForwardError(f"upsample top index {int(index.max())} out of range - check "
                           f"scale settings match input pooling layer's downsample setup "
                           f"(the top plane has {plane} values)")
    if np.any(index < 0):
        raise ForwardError(f"the mask holds a negative index ({int(index.min())}); Caffe "
                           f"would write outside the top")
    target = (index + np.arange(num * channels)[:, None] * plane).reshape(-1)
    values = x.reshape(-1)
    # Keep the last occurrence of each target: unique over the reversed order finds it.
    _, first_in_reversed = np.unique(target[::-1], return_index=True)
    last = target.size - 1 - first_in_reversed
    top = np.zeros(num * channels * plane, dtype=F32)
    top[target[last]] = values[last]
    return top.reshape(num, channels, size[0], size[1])


@register_op("BN")
class BN(Op):
    """The forks' "BN" layer (scale and shift inside), by variant (batchnorm.bn_variant):

    - SegNet/ENet (bn_layer.cpp of alexgkendall/caffe-segnet): bn_mode INFERENCE is
      y = x * scale + shift (the statistics were folded into scale and shift by
      SegNet's compute_bn_statistics.py); bn_mode LEARN (the default, also at TEST)
      normalises with the batch statistics, var = E(x^2) - E(x)^2, eps 1e-9 fixed.
    - yjxiong's (TSN, PSPNet's released models): at TEST or with frozen, the stored
      mean and variance (blobs 2, 3); y = (x - mean) * (var + eps)^-0.5 * scale + shift.
      In TRAIN, the batch mean and centred variance.
    - PSPNet's own (var_eps, moving_average): the stored statistics at TEST with
      moving_average, else the batch's; y = (x - mean) / sqrt(var + var_eps) * scale
      + shift, channels on `axis` (1 or 2).

    Batch statistics: per-(n, c) spatial sums times 1/(H*W), then summed over n times
    1/N, as Caffe's two gemvs; the running averages are not updated.
    """

    def setup(self, layer) -> None:
        try:
            self.variant = batchnorm.bn_variant(layer)
            self.axis = batchnorm.bn_channel_axis(layer, self.variant)
        except BnlintError as err:
            raise layer_error(self, err.message) from err
        param = base.fork_param(layer, "bn_param")
        want = 2 if self.variant == "segnet" else 4
        if len(self.blobs) != want:
            raise layer_error(self, f"this BN ({self.variant} fork) has {want} blobs, got "
                                    f"{len(self.blobs)}")
        self.params = [np.asarray(b, dtype=F32).reshape(-1) for b in self.blobs]
        if self.variant == "segnet":
            self.batch_stats = base.fork_enum(param, "bn_mode", "LEARN") != "INFERENCE"
            self.eps = F32(1e-9)
        elif self.variant == "pspnet":
            self.batch_stats = not (self.phase == Phase.TEST
                                    and bool(base.fork_field(param, "moving_average", False)))
            self.eps = F32(base.fork_field(param, "var_eps", 1e-9))
        else:
            self.batch_stats = not (self.phase == Phase.TEST
                                    or bool(base.fork_field(param, "frozen", False)))
            self.eps = F32(base.fork_field(param, "eps", 1e-5))

    def _forward(self, bottoms):
        x = bottoms[0]
        if x.ndim > 4 or x.ndim < 2:
            raise ForwardError(f"BN uses Caffe's 4-axis accessors; got shape {list(x.shape)}")
        legacy = [base.legacy_dim(x.shape, i) for i in range(4)]
        channels = legacy[self.axis]
        rows = x.reshape(int(np.prod(legacy[:self.axis])), channels, -1)
        for index, blob in enumerate(self.params):
            if blob.size != channels:
                raise ForwardError(f"blob {index} has {blob.size} values for {channels} "
                                   f"channels")
        scale, shift = (p[None, :, None] for p in self.params[:2])
        if self.variant == "segnet" and not self.batch_stats:
            y = rows * scale
            y += shift
            # INFERENCE leaves the optional mean and variance tops as allocated: zeros.
            zeros = np.zeros((1, channels, 1, 1), dtype=F32)
            return [y.reshape(x.shape)] + [zeros] * self._extra_tops()
        if self.batch_stats:
            mean = _batch_mean(rows)
            if self.variant == "segnet":
                var = _batch_mean(np.square(rows)) - np.square(mean)
            centred = rows - mean[None, :, None]
            if self.variant != "segnet":
                var = _batch_mean(np.square(centred))
        else:
            mean, var = self.params[2], self.params[3]
            centred = rows - mean[None, :, None]
        if self.variant == "tsn":
            inv_std = (np.float64(1) / np.sqrt((var + self.eps).astype(np.float64))).astype(F32)
            y = centred * inv_std[None, :, None]
        else:
            y = centred / np.sqrt(var + self.eps)[None, :, None]
        y *= scale
        y += shift
        extra = [mean.reshape(1, channels, 1, 1), var.reshape(1, channels, 1, 1)]
        return [y.reshape(x.shape)] + extra[:self._extra_tops()]

    def _extra_tops(self) -> int:
        """SegNet's BN may name the batch mean and variance as tops 1 and 2."""
        if self.variant != "segnet":
            return 0
        return min(2, max(0, len(self.layer.top) - 1))


def _batch_mean(rows: np.ndarray) -> np.ndarray:
    """Caffe's gemv pair: per (n, c) the sum times 1/spatial, then summed over n times 1/N."""
    per_item = rows.sum(axis=2, dtype=F32) * F32(1.0 / rows.shape[2])
    return per_item.sum(axis=0, dtype=F32) * F32(1.0 / rows.shape[0])


@register_op("ShuffleChannel")
class ShuffleChannel(Op):
    """ShuffleNet's channel shuffle (shuffle_channel_layer.cpp): with g groups of C/g
    channels, output channel j*g + i is input channel i*(C/g) + j."""

    def _forward(self, bottoms):
        x = bottoms[0]
        group = structure.shuffle_groups(self.layer, x.shape)
        num, channels = x.shape[:2]
        grouped = x.reshape(num, group, channels // group, -1)
        return [np.ascontiguousarray(grouped.transpose(0, 2, 1, 3)).reshape(x.shape)]


@register_op("ReLU6")
class ReLU6(Op):
    """min(max(x, 0), 6) + negative_slope * min(x, 0), as NVIDIA Caffe's relu6_layer.cpp
    (negative_slope from relu_param, default 0). NaN stays NaN; with slope 0, -inf
    gives 0 * -inf = NaN, as there."""

    def setup(self, layer) -> None:
        self.negative_slope = F32(base.fork_field(base.fork_param(layer, "relu_param"),
                                                "negative_slope", 0.0))

    def _forward(self, bottoms):
        x = bottoms[0]
        y = np.minimum(np.maximum(x, F32(0)), F32(6))
        with np.errstate(invalid="ignore"):
            y += self.negative_slope * np.minimum(x, F32(0))
        return [y]


@register_op("Interp")
class Interp(Op):
    """Bilinear resize with aligned corners (DeepLab/PSPNet's caffe_cpu_interp2).

    The input, cropped by -pad_beg at the top-left and -pad_end at the bottom-right,
    maps its corners onto the output's: the source row of output row h2 is
    float(rheight * h2), rheight = float(height_in - 1) / (height_out - 1) (0 for one
    output row); weights lambda = h1r - int(h1r), and
    y = h0 * (w0 * p00 + w1 * p01) + h1 * (w0 * p10 + w1 * p11) in float32. The same
    size is a plain copy. interp_type "nearest_neighbor" (a PSPNet variant) picks
    floor(h1r + 0.5) instead.
    """

    bottoms = (1, 2)

    def setup(self, layer) -> None:
        kind = base.fork_field(base.fork_param(layer, "interp_param"), "interp_type", "bilinear")
        if kind not in ("bilinear", "nearest_neighbor"):
            raise layer_error(self, f"interp_type must be bilinear or nearest_neighbor, "
                                    f"got {kind!r}")
        self.nearest = kind == "nearest_neighbor"

    def _forward(self, bottoms):
        x = bottoms[0]
        if x.ndim != 4:
            raise ForwardError(f"Interp needs a 4-axis bottom, got shape {list(x.shape)}")
        pad_beg, pad_end, height_out, width_out = structure.interp_size(
            self.layer, [b.shape for b in bottoms])
        crop = x[:, :, -pad_beg:x.shape[2] + pad_end, -pad_beg:x.shape[3] + pad_end]
        height_in, width_in = crop.shape[2], crop.shape[3]
        if (height_in, width_in) == (height_out, width_out):
            return [np.ascontiguousarray(crop)]
        rows, row_w = _source_positions(height_in, height_out, self.nearest)
        cols, col_w = _source_positions(width_in, width_out, self.nearest)
        if self.nearest:
            return [np.ascontiguousarray(crop[:, :, rows][:, :, :, cols])]
        row0, row1 = rows
        col0, col1 = cols
        h1, w1 = row_w[:, None], col_w[None, :]
        h0, w0 = F32(1) - h1, F32(1) - w1
        top_rows, bottom_rows = crop[:, :, row0], crop[:, :, row1]
        upper = w0 * top_rows[:, :, :, col0] + w1 * top_rows[:, :, :, col1]
        lower = w0 * bottom_rows[:, :, :, col0] + w1 * bottom_rows[:, :, :, col1]
        return [(h0 * upper + h1 * lower).astype(F32, copy=False)]


def _source_positions(size_in: int, size_out: int, nearest: bool):
    """Per output index along one axis: source indices and the far neighbour's weight.

    Bilinear: ((i0, i1), lambda) with i1 = i0 + 1 unless i0 is the last row. Nearest:
    (floor(r + 0.5), None), r the float32 source position.
    """
    ratio = F32(F32(size_in - 1) / F32(size_out - 1)) if size_out > 1 else F32(0)
    position = ratio * np.arange(size_out, dtype=F32)
    if nearest:
        return np.floor(position.astype(np.float64) + 0.5).astype(np.int64), None
    first = position.astype(np.int64)           # truncation, as the C++ int conversion
    second = first + (first < size_in - 1)
    weight = (position - first.astype(F32)).astype(F32)
    return (first, second), weight


@register_op("Axpy")
class Axpy(FreshTops, Op):
    """axpy_layer.cpp (SENet's fork): top = y, then per (n, c) caffe_axpy adds
    a[n, c] * x[n, c, ...]; i.e. a * x + y with a per-channel scale a."""

    bottoms = (3, 3)

    def _forward(self, bottoms):
        scale, x, y = bottoms
        elementwise.axpy_top_shape([scale.shape, x.shape, y.shape])
        a = scale.reshape(x.shape[:2] + (1,) * (x.ndim - 2))
        return [a * x + y]


@register_op("EltwiseAffine")
class EltwiseAffine(FreshTops, Op):
    """eltwise_affine_layer.cpp (ducha-aiki's caffenet-benchmark fork): top = x *
    slope[c] + bias[c] over channel axis 1, or one slope and bias for every value with
    channel_shared."""

    def _forward(self, bottoms):
        x = bottoms[0]
        expected = elementwise.eltwise_affine_param_shapes(self.layer, x.shape)
        if len(self.blobs) != 2:
            raise ForwardError(f"needs 2 blobs (slope and bias), got {len(self.blobs)}")
        slope, bias = (np.asarray(b, dtype=F32).reshape(
            expected[0] + (1,) * (x.ndim - 2) if expected[0] else ()) for b in self.blobs)
        return [x * slope + bias]
