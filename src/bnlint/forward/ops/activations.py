"""Element-wise ops: ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Power, Exp, Log,
Threshold, Clip, Swish, Dropout.

Formulas are written the way Caffe's CPU forward writes them, because the form decides
the edge cases: ReLU is max(x, 0) + slope * min(x, 0), so -inf gives NaN even with
slope 0; Clip is max(min, min(x, max)), so NaN gives `min`. exp, log and pow go
through `via_double` to get glibc's correctly rounded float results; Sigmoid and the
log of BNLL are double in Caffe itself (double literals) and are rounded once here too.
Parameters are cast to float32 once so nothing upcasts.
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe.phase import Phase
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

_ZERO = np.float32(0)
_ONE = np.float32(1)


def _caffe_relu(x: np.ndarray, slope: np.ndarray | np.float32) -> np.ndarray:
    """max(x, 0) + slope * min(x, 0), literally: keeps Caffe's NaN for -inf * 0."""
    negative = np.minimum(x, _ZERO)
    with np.errstate(invalid="ignore"):
        negative *= slope
    y = np.maximum(x, _ZERO, out=result_like(x))
    y += negative
    return y


def _pow_scalar(base: np.float32, exponent: np.float32) -> np.float32:
    """powf(base, exponent), correctly rounded (see via_double)."""
    return np.float32(np.float64(base) ** np.float64(exponent))


def _sigmoid_as_caffe(x: np.ndarray) -> np.ndarray:
    """0.5 * tanh(0.5 * x) + 0.5 in double, rounded once (Caffe's SigmoidLayer)."""
    t = np.multiply(x, 0.5, dtype=np.float64)
    np.tanh(t, out=t)
    t *= 0.5
    t += 0.5
    return t.astype(np.float32)


@register_op("ReLU")
class ReLU(FreshTops, Op):
    """max(x, 0) + negative_slope * min(x, 0)."""

    def setup(self, layer) -> None:
        self.slope = np.float32(layer.relu_param.negative_slope)

    def _forward(self, bottoms):
        x = bottoms[0]
        if self.slope != 0:
            return [_caffe_relu(x, self.slope)]
        if not np.isfinite(x.min(initial=np.inf)):   # -inf or NaN: Caffe's literal form
            return [_caffe_relu(x, self.slope)]
        return [np.maximum(x, _ZERO, out=result_like(x))]


@register_op("PReLU")
class PReLU(FreshTops, Op):
    """max(x, 0) + slope[c] * min(x, 0), c = axis 1; one shared slope with channel_shared."""

    def setup(self, layer) -> None:
        self.channel_shared = bool(layer.prelu_param.channel_shared)
        if len(self.blobs) != 1:
            raise layer_error(self, f"PReLU has 1 blob (the slopes), got {len(self.blobs)}")
        self.slopes = np.asarray(self.blobs[0], dtype=np.float32).reshape(-1)

    def _forward(self, bottoms):
        x = bottoms[0]
        if x.ndim < 2:
            raise ForwardError(f"PReLU needs a bottom with at least 2 axes, got {list(x.shape)}")
        channels = x.shape[1]
        wanted = 1 if self.channel_shared else channels
        if self.slopes.size != wanted:
            raise ForwardError(f"slope blob has {self.slopes.size} values, expected {wanted} "
                               f"(channel_shared {str(self.channel_shared).lower()}, "
                               f"{channels} channels)")
        if self.channel_shared:
            return [_caffe_relu(x, self.slopes[0])]
        slope = self.slopes.reshape((channels,) + (1,) * (x.ndim - 2))
        with unbuffered_rows(row_length(slope, x.shape)):
            return [_caffe_relu(x, slope)]


@register_op("ELU")
class ELU(FreshTops, Op):
    """max(x, 0) + alpha * (exp(min(x, 0)) - 1)."""

    def setup(self, layer) -> None:
        self.alpha = np.float32(layer.elu_param.alpha)

    def _forward(self, bottoms):
        x = bottoms[0]
        negative = via_double(np.exp, np.minimum(x, _ZERO))
        negative -= _ONE
        negative *= self.alpha
        y = np.maximum(x, _ZERO)
        y += negative
        return [y]


@register_op("Sigmoid")
class Sigmoid(FreshTops, Op):
    """0.5 * tanh(0.5 * x) + 0.5, Caffe's form since 2017 (evaluated in double)."""

    def _forward(self, bottoms):
        return [_sigmoid_as_caffe(bottoms[0])]


@register_op("TanH")
class TanH(FreshTops, Op):
    """tanh(x), correctly rounded. Caffe calls glibc's tanhf, which is up to 2 ulps off
    the true value, so about half the results differ from Caffe's by 1-2 ulps."""

    def _forward(self, bottoms):
        return [via_double(np.tanh, bottoms[0])]


@register_op("AbsVal")
class AbsVal(FreshTops, Op):
    def _forward(self, bottoms):
        return [np.abs(bottoms[0])]


@register_op("BNLL")
class BNLL(FreshTops, Op):
    """log(1 + exp(x)), as x + log(1 + exp(-x)) for x > 0 so large x cannot overflow.

    Caffe writes `log(1. + exp(...))` in double, not log1p: for very negative x the
    1 + tiny rounding is part of its answer, so it is kept.
    """

    def _forward(self, bottoms):
        x = bottoms[0]
        positive = x > 0
        y = via_double(np.exp, np.where(positive, -x, x)).astype(np.float64)  # expf
        y += 1.0
        np.log(y, out=y)
        y += np.where(positive, x, _ZERO)
        return [y.astype(np.float32)]


def _scale_then_shift(x: np.ndarray, scale: np.float32, shift: np.float32) -> np.ndarray:
    """scale * x then + shift, each step only when not neutral (Caffe's scal/add_scalar).

    Returns `x` itself when both are neutral, a new array otherwise.
    """
    y = np.multiply(x, scale) if scale != 1 else x
    if shift != 0:
        y = np.add(y, shift) if y is x else np.add(y, shift, out=y)
    return y


@register_op("Power")
class Power(FreshTops, Op):
    """(shift + scale * x)^power, step by step as Caffe (each step skipped when neutral).

    When power * scale == 0 Caffe ignores the input and fills 1 (power 0) or
    shift^power, even where x is NaN or inf.
    """

    def setup(self, layer) -> None:
        param = layer.power_param
        self.power = np.float32(param.power)
        self.scale = np.float32(param.scale)
        self.shift = np.float32(param.shift)

    def _forward(self, bottoms):
        x = bottoms[0]
        if self.power * self.scale == 0:
            value = _ONE if self.power == 0 else _pow_scalar(self.shift, self.power)
            return [np.full(x.shape, value, dtype=np.float32)]
        y = _scale_then_shift(x, self.scale, self.shift)
        if self.power != 1:
            y = via_double(np.power, y, np.float64(self.power))
        return [y]


def _log_base(op: Op, base: np.float32) -> np.float32:
    """ln(base), 1 for Caffe's base -1 (= e); base must be positive otherwise."""
    if base == -1:
        return _ONE
    if not base > 0:
        raise layer_error(op, f"base must be strictly positive or -1 (for e), got {base}")
    log_base = np.float32(np.log(np.float64(base)))
    if not np.isfinite(log_base):
        raise layer_error(op, f"log(base) = log({base}) is not finite")
    return log_base


@register_op("Exp")
class Exp(FreshTops, Op):
    """base^(shift + scale * x) = exp(ln(base) * scale * x) * base^shift, as Caffe splits it."""

    def setup(self, layer) -> None:
        param = layer.exp_param
        base = np.float32(param.base)
        scale = np.float32(param.scale)
        shift = np.float32(param.shift)
        self.inner_scale = _log_base(self, base) * scale
        if shift == 0:
            self.outer_scale = _ONE
        elif base == -1:
            self.outer_scale = np.float32(np.exp(np.float64(shift)))
        else:
            self.outer_scale = _pow_scalar(base, shift)

    def _forward(self, bottoms):
        x = bottoms[0]
        y = via_double(np.exp, x if self.inner_scale == 1 else np.multiply(x, self.inner_scale))
        if self.outer_scale != 1:
            y *= self.outer_scale
        return [y]


@register_op("Log")
class Log(FreshTops, Op):
    """log_base(shift + scale * x) = ln(shift + scale * x) / ln(base), as Caffe orders it."""

    def setup(self, layer) -> None:
        param = layer.log_param
        log_base = _log_base(self, np.float32(param.base))
        if log_base == 0:
            raise layer_error(self, f"base {param.base:g} has log(base) = 0, so 1 / log(base) "
                                    f"is not finite")
        self.base_scale = _ONE / log_base
        self.scale = np.float32(param.scale)
        self.shift = np.float32(param.shift)

    def _forward(self, bottoms):
        x = bottoms[0]
        y = _scale_then_shift(x, self.scale, self.shift)
        y = via_double(np.log, y)
        if self.base_scale != 1:
            y *= self.base_scale
        return [y]


@register_op("Threshold")
class Threshold(FreshTops, Op):
    """1 where x > threshold, else 0 (NaN gives 0)."""

    def setup(self, layer) -> None:
        self.threshold = np.float32(layer.threshold_param.threshold)

    def _forward(self, bottoms):
        return [np.greater(bottoms[0], self.threshold).astype(np.float32)]


@register_op("Clip")
class Clip(FreshTops, Op):
    """max(min, min(x, max)) with std::min/std::max semantics: NaN becomes `min`."""

    def setup(self, layer) -> None:
        param = layer.clip_param
        self.low = np.float32(param.min)
        self.high = np.float32(param.max)

    def _forward(self, bottoms):
        y = np.minimum(bottoms[0], self.high)
        np.fmax(y, self.low, out=y)
        return [y]


@register_op("Swish")
class Swish(FreshTops, Op):
    """x * sigmoid(beta * x); beta * x is rounded to float32 first, as Caffe scales in place."""

    def setup(self, layer) -> None:
        self.beta = np.float32(layer.swish_param.beta)

    def _forward(self, bottoms):
        x = bottoms[0]
        gate = _sigmoid_as_caffe(np.multiply(x, self.beta))
        np.multiply(x, gate, out=gate)
        return [gate]


@register_op("Dropout")
class Dropout(FreshTops, Op):
    """Identity at TEST (the bottom itself is returned, no copy).

    At TRAIN Caffe multiplies by a fresh Bernoulli mask times 1/(1 - ratio) on every
    pass, from its own random generator: no run can be reproduced, so bnlint refuses.
    """

    def setup(self, layer) -> None:
        self.ratio = float(layer.dropout_param.dropout_ratio)

    def _forward(self, bottoms):
        if self.phase == Phase.TRAIN:
            raise ForwardError(f"Dropout (ratio {self.ratio:g}) in the TRAIN phase is random in "
                               f"Caffe, so no forward result is reproducible; run the TEST phase")
        return [bottoms[0]]
