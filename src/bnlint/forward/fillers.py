"""Caffe's fillers (include/caffe/filler.hpp) and the blobs a layer creates without weights.

When a .caffemodel lacks a layer's blobs, Caffe's LayerSetUp fills them from the
prototxt's fillers, so the forward depends on them. The distributions and their
parameters follow Caffe; the random numbers cannot (Caffe's generator is its own),
so only constant and bilinear fills reproduce Caffe's values exactly.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from bnlint.caffe.layers.base import fork_param
from bnlint.caffe.layers.batchnorm import bn_variant, nvcaffe_batch_norm, nvcaffe_scale_bias
from bnlint.errors import BnlintError

Shape = Sequence[int]



class LazyRng:
    """`np.random.default_rng(seed)`, made on first use: importing numpy.random costs
    15-35 ms of a run's start-up, and a run whose weights and inputs are all given draws
    nothing. The stream is the same as an eagerly made generator's."""

    def __init__(self, seed) -> None:
        self._seed = seed
        self._rng = None

    def __getattr__(self, name: str):
        if self._rng is None:
            self._rng = np.random.default_rng(self._seed)
        return getattr(self._rng, name)

def _legacy_num_channels(shape: tuple[int, ...], filler: str) -> tuple[int, int]:
    """Caffe's Blob::num() and channels(): axes 0 and 1, 1 when absent; >4 axes abort."""
    if len(shape) > 4:
        raise BnlintError(f"the {filler} filler uses Caffe's 4-axis accessors; a blob of shape "
                          f"{list(shape)} has more than 4 axes")
    num = shape[0] if len(shape) > 0 else 1
    channels = shape[1] if len(shape) > 1 else 1
    return num, channels


def _fan(filler_msg, shape: tuple[int, ...], count: int) -> np.float32:
    """n of xavier/msra: fan_in = count / num, fan_out = count / channels, or their mean."""
    num, channels = _legacy_num_channels(shape, filler_msg.type)
    fan_in = count // num
    fan_out = count // channels
    norms = type(filler_msg)
    if filler_msg.variance_norm == norms.AVERAGE:
        return np.float32(fan_in + fan_out) / np.float32(2)
    if filler_msg.variance_norm == norms.FAN_OUT:
        return np.float32(fan_out)
    return np.float32(fan_in)


def _uniform(rng: np.random.Generator, low: np.float32, high: np.float32,
             shape: tuple[int, ...]) -> np.ndarray:
    if not low <= high:
        raise BnlintError(f"uniform filler needs min <= max, got min {low} and max {high}")
    values = rng.random(shape, dtype=np.float32)
    values *= high - low
    values += low
    return values


def _gaussian(rng: np.random.Generator, mean: np.float32, std: np.float32,
              shape: tuple[int, ...]) -> np.ndarray:
    if not std > 0:
        raise BnlintError(f"gaussian filler needs std > 0 (Caffe checks sigma > 0), got {std}")
    values = rng.standard_normal(shape, dtype=np.float32)
    values *= std
    values += mean
    return values


def _bilinear(shape: tuple[int, ...]) -> np.ndarray:
    """Caffe's upsampling kernel: (1 - |x/f - c|) * (1 - |y/f - c|), f = ceil(K/2).

    The same K x K kernel in every (out, in) slice; float32 arithmetic as in filler.hpp.
    """
    if len(shape) != 4:
        raise BnlintError(f"bilinear filler needs a 4-axis blob, got shape {list(shape)}")
    height, width = shape[2], shape[3]
    if height != width:
        raise BnlintError(f"bilinear filler needs a square kernel, got {height}x{width}")
    f = math.ceil(width / 2.0)
    c = np.float32((2 * f - 1 - f % 2) / (2.0 * f))
    f32 = np.float32(f)
    coords = np.arange(width, dtype=np.float32)
    profile = np.float32(1) - np.abs(coords / f32 - c)
    kernel = profile[:, None] * profile[None, :]
    return np.broadcast_to(kernel, shape).astype(np.float32)


def fill(filler_msg, shape: Shape, rng: np.random.Generator) -> np.ndarray:
    """A float32 array of `shape` filled as Caffe's filler `filler_msg` (a FillerParameter)."""
    shape = tuple(int(d) for d in shape)
    count = math.prod(shape)
    kind = filler_msg.type
    if kind not in _FILLERS:
        raise BnlintError(f"unknown filler type '{kind}' (Caffe knows: {', '.join(_FILLERS)})")
    if count == 0:
        raise BnlintError(f"cannot fill an empty blob of shape {list(shape)}")
    if kind != "gaussian" and filler_msg.sparse != -1:
        raise BnlintError(f"sparsity (sparse: {filler_msg.sparse}) is only supported by the "
                          f"gaussian filler, not '{kind}'")
    return _FILLERS[kind](filler_msg, shape, count, rng)


def _fill_constant(msg, shape, count, rng):
    return np.full(shape, np.float32(msg.value), dtype=np.float32)


def _fill_uniform(msg, shape, count, rng):
    return _uniform(rng, np.float32(msg.min), np.float32(msg.max), shape)


def _fill_gaussian(msg, shape, count, rng):
    values = _gaussian(rng, np.float32(msg.mean), np.float32(msg.std), shape)
    sparse = int(msg.sparse)
    if sparse < -1:
        raise BnlintError(f"gaussian filler needs sparse >= -1, got {sparse}")
    if sparse >= 0:
        # Caffe keeps each weight with probability sparse / shape[0] ("num_outputs").
        if not shape:
            raise BnlintError("a sparse gaussian filler needs a blob with at least 1 axis")
        keep = np.float32(sparse) / np.float32(shape[0])
        if keep > 1:
            raise BnlintError(f"sparse {sparse} exceeds the blob's first dimension {shape[0]}: "
                              f"the keep probability {keep:g} is above 1")
        values *= rng.random(shape, dtype=np.float32) < keep
    return values


def _fill_positive_unitball(msg, shape, count, rng):
    num, _ = _legacy_num_channels(shape, "positive_unitball")
    values = rng.random(shape, dtype=np.float32)
    rows = values.reshape(num, -1)
    rows /= rows.sum(axis=1, keepdims=True)
    return values


def _fill_xavier(msg, shape, count, rng):
    limit = np.sqrt(np.float32(3) / _fan(msg, shape, count))
    return _uniform(rng, -limit, limit, shape)


def _fill_msra(msg, shape, count, rng):
    std = np.sqrt(np.float32(2) / _fan(msg, shape, count))
    return _gaussian(rng, np.float32(0), std, shape)


def _fill_bilinear(msg, shape, count, rng):
    return _bilinear(shape)


_FILLERS = {
    "constant": _fill_constant,
    "uniform": _fill_uniform,
    "gaussian": _fill_gaussian,
    "positive_unitball": _fill_positive_unitball,
    "xavier": _fill_xavier,
    "msra": _fill_msra,
    "bilinear": _fill_bilinear,
}


def _weight_and_bias(param) -> list:
    return [param.weight_filler] + ([param.bias_filler] if param.bias_term else [])


def _scale_fillers(layer) -> list:
    param = layer.scale_param
    bias = [param.bias_filler] if param.bias_term else []
    if len(layer.bottom) > 1:                 # the scale is bottom[1]: only a bias blob
        return bias
    return [param.filler if param.HasField("filler") else 1.0] + bias


def _batch_norm_fillers(layer) -> list:
    """BVLC: three zero blobs. NVIDIA Caffe: mean and variance 0, variance correction 1,
    and with scale_bias the scale (scale_filler, else constant 1) and bias (bias_filler,
    else constant 0), as its batch_norm_layer.cpp LayerSetUp fills them."""
    if not nvcaffe_batch_norm(layer):
        return [0.0, 0.0, 0.0]
    fillers = [0.0, 0.0, 1.0]
    if nvcaffe_scale_bias(layer):
        param = layer.batch_norm_param
        fillers.append(param.scale_filler if param.HasField("scale_filler") else 1.0)
        fillers.append(param.bias_filler if param.HasField("bias_filler") else 0.0)
    return fillers


def _bn_fillers(layer) -> list | None:
    """SegNet's "BN" (caffe-segnet bn_layer.cpp LayerSetUp): scale from scale_filler,
    shift from shift_filler, an absent one the default filler (constant 0). Other
    forks' "BN" (None): not known here."""
    try:
        if bn_variant(layer) != "segnet":
            return None
    except BnlintError:
        return None
    param = fork_param(layer, "bn_param")
    return [param.scale_filler, param.shift_filler]


def _prelu_fillers(layer) -> list:
    param = layer.prelu_param
    return [param.filler if param.HasField("filler") else 0.25]


# Per layer type, what initialises each blob in blob order (from each LayerSetUp): a
# FillerParameter, or a number for the constants Caffe substitutes when none is given.
def _recurrent_fillers(layer) -> list:
    """The unrolled net's InnerProducts (rnn_layer.cpp, lstm_layer.cpp): weight_filler for
    every matrix, bias_filler for the biases, in the blob order of `recurrent_geometry`
    (RNN W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o; LSTM W_xc, b_c, [W_xc_static], W_hc);
    a static input is a third bottom beyond the exposed states."""
    param = layer.recurrent_param
    weight, bias = param.weight_filler, param.bias_filler
    exposed = (2 if layer.type == "LSTM" else 1) if param.expose_hidden else 0
    static = [weight] if len(layer.bottom) == 3 + exposed else []
    if layer.type == "LSTM":
        return [weight, bias] + static + [weight]
    return [weight, bias] + static + [weight, weight, bias]


def _fork_filler(layer, param_name: str, field: str, default: float):
    """A fork's filler field, or the constant its LayerSetUp substitutes when unset."""
    param = fork_param(layer, param_name)
    if param is not None and field in param.DESCRIPTOR.fields_by_name and param.HasField(field):
        return getattr(param, field)
    return default


_LAYER_FILLERS = {
    "Convolution": lambda layer: _weight_and_bias(layer.convolution_param),
    # conv_dw_layer.cpp: weight_filler, and bias_filler with bias_term.
    "ConvolutionDepthwise": lambda layer: _weight_and_bias(layer.convolution_param),
    "RNN": _recurrent_fillers,
    "LSTM": _recurrent_fillers,
    # parameter_layer.hpp fills nothing: the blob keeps the zeros Caffe allocates.
    "Parameter": lambda layer: [0.0],
    # eltwise_affine_layer.cpp: slope 1.0001 and bias 0.0001 unless fillers are given.
    "EltwiseAffine": lambda layer: [
        _fork_filler(layer, "eltwise_affine_param", "slope_filler", 1.0001),
        _fork_filler(layer, "eltwise_affine_param", "bias_filler", 0.0001)],
    # SSD's normalize_layer.cpp: scale_filler, else constant 1.
    "Normalize": lambda layer: [_fork_filler(layer, "norm_param", "scale_filler", 1.0)],
    "Deconvolution": lambda layer: _weight_and_bias(layer.convolution_param),
    "InnerProduct": lambda layer: _weight_and_bias(layer.inner_product_param),
    "Embed": lambda layer: _weight_and_bias(layer.embed_param),
    "Scale": _scale_fillers,
    "Bias": lambda layer: [] if len(layer.bottom) > 1 else [layer.bias_param.filler],
    "PReLU": _prelu_fillers,
    "BatchNorm": _batch_norm_fillers,
    "BN": _bn_fillers,
}


def dummy_data_tops(layer_msg, top_shapes: Sequence[Shape],
                    rng: np.random.Generator) -> list[np.ndarray]:
    """The tops a DummyData layer makes (dummy_data_layer.cpp): no data_filler means
    constant 0, one is used for every top, else one per top. Constant fillers give
    Caffe's values; a random filler is drawn once here, from `rng`, where Caffe draws
    again on every forward."""
    fillers = list(layer_msg.dummy_data_param.data_filler)
    if len(fillers) not in (0, 1, len(top_shapes)):
        raise BnlintError(f"layer '{layer_msg.name}' (DummyData): {len(fillers)} data_filler "
                          f"for {len(top_shapes)} tops; give none, one, or one per top")
    tops = []
    for index, shape in enumerate(top_shapes):
        if not fillers:
            tops.append(np.zeros(tuple(shape), dtype=np.float32))
            continue
        filler = fillers[0 if len(fillers) == 1 else index]
        try:
            tops.append(fill(filler, shape, rng))
        except BnlintError as err:
            raise BnlintError(f"layer '{layer_msg.name}' (DummyData), top {index}: "
                              f"{err.message}") from err
    return tops


def blobs_from_fillers(layer_msg, param_shapes: Sequence[Shape],
                       rng: np.random.Generator) -> list[np.ndarray]:
    """The blobs Caffe's LayerSetUp creates for `layer_msg` when no weights are stored.

    `param_shapes` are the blob shapes the layer implies (from shape inference), in
    Caffe's blob order; the fillers come from the layer's parameters with Caffe's
    defaults (a missing weight/bias filler is constant 0; Scale's scale constant 1;
    PReLU's slope constant 0.25; BVLC BatchNorm's three blobs zeros, NVCaffe's as
    `_batch_norm_fillers` says).
    """
    if not param_shapes:
        return []
    rule = _LAYER_FILLERS.get(layer_msg.type)
    fillers = rule(layer_msg) if rule is not None else None
    if fillers is None:
        raise BnlintError(f"layer '{layer_msg.name}': bnlint does not know how Caffe initialises "
                          f"the blobs of a '{layer_msg.type}' layer; supply its weights")
    if len(fillers) != len(param_shapes):
        raise BnlintError(f"layer '{layer_msg.name}' ({layer_msg.type}): Caffe creates "
                          f"{len(fillers)} blobs here, but {len(param_shapes)} shapes were given")
    blobs = []
    for index, (filler, shape) in enumerate(zip(fillers, param_shapes)):
        try:
            if isinstance(filler, float):
                blobs.append(np.full(tuple(shape), np.float32(filler), dtype=np.float32))
            else:
                blobs.append(fill(filler, shape, rng))
        except BnlintError as err:
            raise BnlintError(f"layer '{layer_msg.name}' ({layer_msg.type}), blob {index}: "
                              f"{err.message}") from err
    return blobs
