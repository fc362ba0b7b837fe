"""Normalisation and affine ops: BatchNorm, Scale, Bias, LRN, MVN, Softmax.

Each follows BVLC Caffe's CPU forward operation by operation in float32, so the
roundings happen where Caffe's happen (e.g. BatchNorm divides by sqrt(var + eps)
rather than multiplying by its reciprocal). Reductions cannot follow the BLAS
summation order; they differ from Caffe by a few ulps at most.

It also holds what the element-wise ops share: `via_double`, and the hand-over by which
the executor lets an op write its result into a bottom nothing reads afterwards
(`overwriting`, `may_overwrite`), as Caffe's in-place layers do: no fresh array per
layer, and the data stays where the cache already has it (5-7% of a whole forward).
"""

from __future__ import annotations


import numpy as np

from bnlint.caffe.layers.base import canonical_axis
from bnlint.caffe.layers.batchnorm import (
    batch_norm_blob_count,
    effective_eps,
    inverse_scale_factor,
    nvcaffe_batch_norm,
    uses_global_stats,
)
from bnlint.errors import ForwardError
from bnlint.forward.ops.base import (
    FreshTops,
    layer_error,
    result_like,
    row_length,
    unbuffered_rows,
    via_double,
)
from bnlint.forward.registry import Op, register_op


def broadcast_operand(operand: np.ndarray, bottom_shape: tuple[int, ...], axis: int,
                      what: str) -> np.ndarray:
    """View `operand` so it broadcasts over `bottom_shape` the way Scale and Bias apply it.

    The operand covers bottom axes [axis, axis + operand.ndim); its own shape, not the
    layer's num_axes, decides how many (as in Caffe's Reshape). A scalar (0 axes)
    ignores the axis.
    """
    ndim = len(bottom_shape)
    start = 0 if operand.ndim == 0 else canonical_axis(axis, bottom_shape)
    stop = start + operand.ndim
    if stop > ndim:
        raise ForwardError(f"{what} of shape {list(operand.shape)} extends past the bottom's "
                           f"shape {list(bottom_shape)} when applied from axis {start}")
    if tuple(bottom_shape[start:stop]) != operand.shape:
        raise ForwardError(f"{what} of shape {list(operand.shape)} does not match the bottom's "
                           f"axes {start}..{stop - 1} {list(bottom_shape[start:stop])}")
    return operand.reshape(operand.shape + (1,) * (ndim - stop))


def _channel_view(vector: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast along axis 1 of an ndim-axis blob."""
    return vector.reshape((-1,) + (1,) * (ndim - 2)) if ndim >= 2 else vector


@register_op("BatchNorm")
class BatchNorm(FreshTops, Op):
    """y = (x - mean) / sqrt(var + eps), channels on axis 1 (BVLC Caffe).

    Global statistics are the stored sums divided by the stored scale factor blobs[2]
    (0 when that factor is 0, as Caffe does: x / sqrt(eps)). Batch statistics (the
    default at TRAIN) are the mean and biased variance over every axis but 1; the
    moving averages are not updated, since a forward here has no side effects.

    A layer from NVIDIA Caffe's schema (`batch_norm_param.scale_bias` exists) follows
    NVCaffe's batch_norm_layer.cpp instead: the phase alone decides (TEST: stored
    statistics, whatever use_global_stats says; TRAIN: the batch's), the stored mean
    and variance are used as they are (blobs[2], the variance correction, is never
    applied), eps is at least 1e-5, the normaliser is powf(var + eps, -0.5) multiplied
    in, and with scale_bias (or a scale/bias filler) y = y * blobs[3] + blobs[4]. It
    has 5 blobs then, 3 otherwise, as NVCaffe's LayerSetUp creates them.
    """

    def setup(self, layer) -> None:
        self.nvcaffe = nvcaffe_batch_norm(layer)
        want = batch_norm_blob_count(layer)
        self.scale_bias = want == 5
        if len(self.blobs) != want:
            raise layer_error(self, self._count_message(want))
        self.eps = np.float32(effective_eps(layer))
        self.use_global_stats = uses_global_stats(layer, self.phase)
        flat = [np.asarray(b, dtype=np.float32).reshape(-1) for b in self.blobs]
        if self.scale_bias:
            self.gamma, self.beta = flat[3], flat[4]
            if not self.gamma.size == self.beta.size == flat[0].size:
                raise layer_error(self, f"the scale and bias blobs (blobs[3], blobs[4]) have "
                                        f"{self.gamma.size} and {self.beta.size} values for "
                                        f"{flat[0].size} channels")
        if self.use_global_stats:
            stored_mean, stored_var, factor = flat[:3]
            if stored_mean.size != stored_var.size:
                raise layer_error(self, f"mean blob has {stored_mean.size} values but variance "
                                        f"blob has {stored_var.size}")
            if self.nvcaffe:
                self.mean = stored_mean
                self._refuse_negative(stored_var + self.eps)
                self.inv_std = via_double(np.power, stored_var + self.eps, -0.5)
                return
            if factor.size < 1:
                raise layer_error(self, "the scale factor blob (blobs[2]) is empty")
            f = inverse_scale_factor(factor[0])
            self.mean = f * stored_mean
            self._refuse_negative(f * stored_var + self.eps)
            self.std = np.sqrt(f * stored_var + self.eps)

    def _refuse_negative(self, denominator: np.ndarray) -> None:
        """A negative variance + eps (corrupt statistics, a negative eps): Caffe's sqrt
        gives NaN for those channels; bnlint names them instead."""
        bad = np.flatnonzero(denominator < 0)
        if bad.size:
            first = int(bad[0])
            raise layer_error(self, f"variance + eps is negative in {bad.size} of "
                                    f"{denominator.size} channels (the first, channel "
                                    f"{first}: {float(denominator[first]):g}; eps "
                                    f"{float(self.eps):g}), so Caffe's sqrt gives NaN there: "
                                    f"corrupt statistics or a negative eps")

    def _count_message(self, want: int) -> str:
        if not self.nvcaffe:
            return (f"BatchNorm has 3 blobs (mean, variance, scale factor), got "
                    f"{len(self.blobs)}")
        if want == 5:
            return (f"NVIDIA Caffe's BatchNorm with scale_bias has 5 blobs (mean, variance, "
                    f"variance correction, scale, bias), got {len(self.blobs)}")
        return (f"NVIDIA Caffe's BatchNorm without scale_bias (or a scale/bias filler) has 3 "
                f"blobs (mean, variance, variance correction), got {len(self.blobs)}")

    def _forward(self, bottoms):
        x = bottoms[0]
        spatial = x.size // max(1, x.shape[0] * x.shape[1]) if x.ndim > 2 else 1
        with unbuffered_rows(spatial):
            return [self._normalise(x)]

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        if not self.use_global_stats:
            y = self._batch_stats(x)
        else:
            channels = x.shape[1] if x.ndim >= 2 else 1
            if self.mean.size != channels:
                raise ForwardError(f"the bottom has {channels} channels but the statistics "
                                   f"blobs have {self.mean.size}")
            y = np.subtract(x, _channel_view(self.mean, x.ndim), out=result_like(x))
            if self.nvcaffe:
                np.multiply(y, _channel_view(self.inv_std, x.ndim), out=y)
            else:
                np.divide(y, _channel_view(self.std, x.ndim), out=y)
        if self.scale_bias:
            channels = x.shape[1] if x.ndim >= 2 else 1
            if self.gamma.size != channels:
                raise ForwardError(f"the bottom has {channels} channels but the scale and "
                                   f"bias blobs have {self.gamma.size}")
            np.multiply(y, _channel_view(self.gamma, x.ndim), out=y)
            np.add(y, _channel_view(self.beta, x.ndim), out=y)
        return y

    def _batch_stats(self, x: np.ndarray) -> np.ndarray:
        y = np.subtract(x, self._channel_mean(x), out=result_like(x))
        var = self._channel_mean(np.square(y)) + self.eps
        if self.nvcaffe:
            np.multiply(y, via_double(np.power, var, -0.5), out=y)
        else:
            np.divide(y, np.sqrt(var), out=y)
        return y

    @staticmethod
    def _channel_mean(x: np.ndarray) -> np.ndarray:
        """Caffe's two gemvs: per (n, c) the spatial sum times 1/(N*spatial), then summed over n."""
        rows = x.reshape(x.shape[0], x.shape[1] if x.ndim >= 2 else 1, -1)
        inv_count = np.float32(1.0 / (rows.shape[0] * rows.shape[2]))
        per_image = rows.sum(axis=2, dtype=np.float32) * inv_count
        mean = per_image.sum(axis=0, dtype=np.float32)
        return _channel_view(mean, x.ndim)


class _Affine(Op):
    """Shared by Scale and Bias: which operand comes from a bottom and which from a blob."""

    bottoms = (1, 2)

    def _operand(self, bottoms, blob_index: int, what: str) -> np.ndarray:
        if len(bottoms) > 1:
            return bottoms[1]
        if blob_index >= len(self.blobs):
            raise ForwardError(f"one bottom needs the {what} as a blob, but the layer has "
                               f"{len(self.blobs)} blobs")
        return self.blobs[blob_index]


@register_op("Scale")
class Scale(FreshTops, _Affine):
    """y = x * scale (+ bias), the operands broadcast from `axis` over their own axes.

    One bottom: blobs are [scale] or [scale, bias]. Two bottoms: bottom[1] is the scale
    and the only blob is the bias (when bias_term). Caffe's built-in Bias layer uses the
    same axis, so the bias broadcasts by the same rule.
    """

    def setup(self, layer) -> None:
        param = layer.scale_param
        self.axis = int(param.axis)
        self.bias_term = bool(param.bias_term)

    def _forward(self, bottoms):
        x = bottoms[0]
        expected = int(self.bias_term) + (1 if len(bottoms) == 1 else 0)
        if len(self.blobs) != expected:
            raise ForwardError(f"expected {expected} blobs for {len(bottoms)} bottoms with "
                               f"bias_term {str(self.bias_term).lower()}, got {len(self.blobs)}")
        scale = broadcast_operand(self._operand(bottoms, 0, "scale"), x.shape, self.axis,
                                  "scale")
        bias = (broadcast_operand(self.blobs[-1], x.shape, self.axis, "bias")
                if self.bias_term else None)
        with unbuffered_rows(row_length(scale, x.shape)):
            y = np.multiply(x, scale, out=result_like(x))
            if bias is not None:
                np.add(y, bias, out=y)
        return [y]


@register_op("Bias")
class Bias(FreshTops, _Affine):
    """y = x + bias, bias from bottom[1] or the layer's one blob, broadcast from `axis`."""

    def setup(self, layer) -> None:
        self.axis = int(layer.bias_param.axis)

    def _forward(self, bottoms):
        x = bottoms[0]
        bias = broadcast_operand(self._operand(bottoms, 0, "bias"), x.shape, self.axis, "bias")
        with unbuffered_rows(row_length(bias, x.shape)):
            return [np.add(x, bias, out=result_like(x))]


@register_op("LRN")
class LRN(FreshTops, Op):
    """Local response normalisation on (N, C, H, W).

    ACROSS_CHANNELS: scale = k + alpha/n * (sum of x^2 over n channels centred on c, zero
    padded), built with Caffe's running sum (first window summed, then add the head and
    subtract the tail channel by channel) so it rounds like Caffe; y = x * scale^-beta.
    WITHIN_CHANNEL is Caffe's composite of square, AVE pooling (kernel n, pad (n-1)/2,
    stride 1) and Power: y = x * (1 + alpha * avg)^-beta, k unused. With stride 1 and
    that pad every window fits the padded input, so the divisor is always n*n.
    """

    def setup(self, layer) -> None:
        param = layer.lrn_param
        self.size = int(param.local_size)
        if self.size % 2 != 1:
            raise layer_error(self, f"LRN only supports odd values for local_size "
                                    f"(got {self.size}), as Caffe checks")
        self.alpha = np.float32(param.alpha)
        self.neg_beta = -np.float32(param.beta)
        self.k = np.float32(param.k)
        self.within_channel = param.norm_region == type(param).WITHIN_CHANNEL

    def _forward(self, bottoms):
        x = bottoms[0]
        if x.ndim != 4:
            raise ForwardError(f"LRN takes a 4-axis bottom (num, channels, height, width), "
                               f"got shape {list(x.shape)}")
        return [self._within(x) if self.within_channel else self._across(x)]

    def _across(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        pre_pad = (self.size - 1) // 2
        alpha_over_size = self.alpha / np.float32(self.size)
        padded = np.zeros((n, c + self.size - 1, h, w), dtype=np.float32)
        np.multiply(np.square(x), alpha_over_size, out=padded[:, pre_pad:pre_pad + c])
        scale = np.empty_like(x)
        running = np.full((n, h, w), self.k, dtype=np.float32)
        for j in range(self.size):
            running += padded[:, j]
        scale[:, 0] = running
        for ch in range(1, c):
            running += padded[:, ch + self.size - 1]
            running -= padded[:, ch - 1]
            scale[:, ch] = running
        scale = via_double(np.power, scale, np.float64(self.neg_beta))
        np.multiply(scale, x, out=scale)
        return scale

    def _within(self, x: np.ndarray) -> np.ndarray:
        if self.alpha * self.neg_beta == 0:
            # Caffe's Power layer outputs the constant 1 when power * scale == 0.
            return x * np.float32(1)
        n, c, h, w = x.shape
        pad = (self.size - 1) // 2
        padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=np.float32)
        np.square(x, out=padded[:, :, pad:pad + h, pad:pad + w])
        total = np.zeros_like(x)
        for dy in range(self.size):       # row-major, the order Caffe's pooling adds in
            for dx in range(self.size):
                total += padded[:, :, dy:dy + h, dx:dx + w]
        total /= np.float32(self.size * self.size)
        total *= self.alpha
        total += np.float32(1)
        total = via_double(np.power, total, np.float64(self.neg_beta))
        np.multiply(x, total, out=total)
        return total


@register_op("MVN")
class MVN(FreshTops, Op):
    """y = (x - mean) / (sqrt(var) + eps) per (n, c), or per n with across_channels.

    Current Caffe computes var = E((x - mean)^2) from the centred values (older
    releases used E(x^2) - E(x)^2) and adds eps to the standard deviation, not the
    variance. normalize_variance false only subtracts the mean.
    """

    def setup(self, layer) -> None:
        param = layer.mvn_param
        self.across_channels = bool(param.across_channels)
        self.normalize_variance = bool(param.normalize_variance)
        self.eps = np.float32(param.eps)

    def _forward(self, bottoms):
        x = bottoms[0]
        if x.ndim > 4 or x.ndim == 0:
            raise ForwardError(f"MVN uses Caffe's 4-axis accessors; got shape {list(x.shape)}")
        groups = x.shape[0] if self.across_channels or x.ndim == 1 else x.shape[0] * x.shape[1]
        rows = x.reshape(groups, -1)
        inv_dim = np.float32(1.0 / rows.shape[1])   # Caffe's gemv alpha: sum, then * (1/dim)
        y = np.subtract(rows, rows.sum(axis=1, dtype=np.float32, keepdims=True) * inv_dim)
        if self.normalize_variance:
            std = np.sqrt(np.square(y).sum(axis=1, dtype=np.float32, keepdims=True) * inv_dim)
            std += self.eps
            np.divide(y, std, out=y)
        return [y.reshape(x.shape)]


@register_op("Softmax")
class Softmax(FreshTops, Op):
    """exp(x - max) / sum(exp(x - max)) along `axis`, the max subtracted as Caffe does."""

    def setup(self, layer) -> None:
        self.axis = int(layer.softmax_param.axis)

    def _forward(self, bottoms):
        return [softmax(bottoms[0], self.axis)]


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """Caffe's SoftmaxLayer forward (also inside SoftmaxWithLoss and InfogainLoss)."""
    axis = canonical_axis(axis, x.shape)
    y = via_double(np.exp, np.subtract(x, x.max(axis=axis, keepdims=True)))
    y /= y.sum(axis=axis, keepdims=True, dtype=np.float32)
    return y
