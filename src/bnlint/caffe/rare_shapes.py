"""Geometry of the rarer BVLC layers: SPP, Im2col, Parameter, BatchReindex and the
recurrent layers (RNN, LSTM, LSTMUnit).

Pure Python (no NumPy), like `shapes`: the shape rules and the forward ops both read
their sizes from here, so each size has one definition. Each helper follows the
layer's Caffe source (named per function) and raises `ShapeError` where Caffe's
CHECKs abort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bnlint.caffe import shapes
from bnlint.caffe.layers import convolution, pooling
from bnlint.caffe.layers.pooling import PoolGeometry
from bnlint.caffe.shapes import Shape, count
from bnlint.errors import ShapeError

# ---------------------------------------------------------------- SPP


def spp_levels(layer, bottom_shape: Shape) -> list[PoolGeometry]:
    """One pooling per pyramid level, as spp_layer.cpp's GetPoolingParam sets it up:
    2^level bins per axis, kernel ceil(size / bins), stride = kernel, and padding
    (kernel * bins - size + 1) / 2 on each side; the pooling layer then rounds its
    output as Caffe's PoolingLayer does (ceil, dropping a window that starts in the
    padding), and checks pad < kernel."""
    if len(bottom_shape) != 4:
        raise ShapeError(f"SPP needs a 4-axis bottom (num, channels, height, width), got "
                         f"shape {tuple(bottom_shape)}")
    param = layer.spp_param
    height, width = bottom_shape[2], bottom_shape[3]
    if height <= 0 or width <= 0:
        raise ShapeError("SPP input dimensions cannot be zero")
    pyramid_height = int(param.pyramid_height)
    if pyramid_height <= 0:
        raise ShapeError("spp_param.pyramid_height must be set and positive")
    method = shapes.enum_name(param, "pool")
    levels = []
    for level in range(pyramid_height):
        bins = 2 ** level
        kernel = (math.ceil(height / bins), math.ceil(width / bins))
        pad = ((kernel[0] * bins - height + 1) // 2, (kernel[1] * bins - width + 1) // 2)
        if (pad[0] or pad[1]) and method not in ("MAX", "AVE"):
            raise ShapeError(f"SPP level {level}: padding is implemented only for MAX and "
                             f"AVE pooling, not {method}")
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise ShapeError(f"SPP level {level} ({bins}x{bins} bins on {height}x{width}): "
                             f"the pooling pad {pad} is not smaller than the kernel {kernel}")
        output = tuple(pooling._pooled_size(size, k, k, p, True, axis)
                       for size, k, p, axis in zip((height, width), kernel, pad,
                                                   ("height", "width")))
        levels.append(PoolGeometry(method, kernel, kernel, pad, output, False,
                                   (height, width)))
    return levels


def spp_top_shape(layer, bottom_shape: Shape) -> Shape:
    """(N, C, 1, 1) for one level (the pooling's own top); else the levels' outputs
    flattened and concatenated: (N, C * sum of bins)."""
    levels = spp_levels(layer, bottom_shape)
    num, channels = bottom_shape[:2]
    if len(levels) == 1:
        return (num, channels) + levels[0].output
    return (num, channels * sum(count(geom.output) for geom in levels))


# ---------------------------------------------------------------- Im2col


@dataclass(frozen=True)
class Im2colGeometry:
    channel_axis: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]
    output: tuple[int, ...]

    @property
    def top_channels_per_input(self) -> int:
        return count(self.kernel)


def im2col_geometry(layer, bottom_shape: Shape) -> Im2colGeometry:
    """im2col_layer.cpp: the convolution geometry without num_output (kernel_h/w or
    kernel_size, stride, pad, dilation per spatial axis after `axis`)."""
    param = layer.convolution_param
    channel_axis = shapes.canonical_axis(param.axis, bottom_shape)
    num_spatial = len(bottom_shape) - channel_axis - 1
    if num_spatial < 1:
        raise ShapeError(f"Im2col needs at least one spatial axis after the channel axis "
                         f"{channel_axis}; bottom shape {tuple(bottom_shape)}")
    kernel = convolution._h_w_or_repeated(param, "kernel", num_spatial, None)
    stride = convolution._h_w_or_repeated(param, "stride", num_spatial, 1)
    pad = convolution._h_w_or_repeated(param, "pad", num_spatial, 0)
    dilation = convolution._per_axis(param.dilation, "dilation", num_spatial, 1)
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride) \
            or any(d <= 0 for d in dilation):
        raise ShapeError(f"kernel {kernel}, stride {stride} and dilation {dilation} must be "
                         f"positive")
    spatial = bottom_shape[channel_axis + 1:]
    output = []
    for size, k, s, p, d in zip(spatial, kernel, stride, pad, dilation):
        extent = d * (k - 1) + 1
        if size + 2 * p < extent:
            raise ShapeError(f"kernel extent {extent} is larger than the padded input "
                             f"{size} + 2*{p}")
        output.append((size + 2 * p - extent) // s + 1)
    return Im2colGeometry(channel_axis, kernel, stride, pad, dilation, tuple(output))


def im2col_top_shape(layer, bottom_shape: Shape) -> Shape:
    geom = im2col_geometry(layer, bottom_shape)
    channels = bottom_shape[geom.channel_axis]
    return (tuple(bottom_shape[:geom.channel_axis])
            + (channels * geom.top_channels_per_input,) + geom.output)


# ---------------------------------------------------------------- Parameter, BatchReindex


def parameter_shape(layer) -> Shape:
    """parameter_layer.hpp: one blob of parameter_param.shape, which is also the top."""
    dims = tuple(int(d) for d in layer.parameter_param.shape.dim)
    if any(d < 0 for d in dims):
        raise ShapeError(f"parameter_param.shape has a negative dimension: {dims}")
    return dims


def batch_reindex_top_shape(bottoms: list[Shape]) -> Shape:
    """batch_reindex_layer.cpp: bottom[1] is a 1-axis list of indices into bottom[0]'s
    first axis; the top takes its length as first axis."""
    data, indices = bottoms
    if len(indices) != 1:
        raise ShapeError(f"the indices bottom must have 1 axis, got shape {indices}")
    if len(data) < 1:
        raise ShapeError("the data bottom needs at least 1 axis")
    return (indices[0],) + tuple(data[1:])


# ---------------------------------------------------------------- recurrent


@dataclass(frozen=True)
class RecurrentGeometry:
    """recurrent_layer.cpp's view of the bottoms: T time steps of N streams."""

    kind: str                   # "RNN" or "LSTM"
    steps: int                  # T
    streams: int                # N
    input_size: int             # x's axes from 2 on, flattened
    num_output: int             # H
    static_size: int | None     # x_static's axes from 1 on, when given
    expose_hidden: bool

    @property
    def recurrent_blobs(self) -> int:
        """h (and c for an LSTM): bottoms and tops exposed with expose_hidden."""
        return 2 if self.kind == "LSTM" else 1

    @property
    def gates(self) -> int:
        return 4 * self.num_output if self.kind == "LSTM" else self.num_output

    def top_shapes(self) -> list[Shape]:
        state = (1, self.streams, self.num_output)
        exposed = [state] * self.recurrent_blobs if self.expose_hidden else []
        return [(self.steps, self.streams, self.num_output)] + exposed

    def param_shapes(self) -> list[Shape]:
        """Blob order of the unrolled net's parameters (rnn_layer.cpp, lstm_layer.cpp):
        RNN W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o; LSTM W_xc, b_c, [W_xc_static], W_hc."""
        hidden, gates = self.num_output, self.gates
        static = [(gates, self.static_size)] if self.static_size is not None else []
        if self.kind == "LSTM":
            return [(gates, self.input_size), (gates,)] + static + [(gates, hidden)]
        return ([(hidden, self.input_size), (hidden,)] + static
                + [(hidden, hidden), (hidden, hidden), (hidden,)])

    def macs(self) -> int:
        """The unrolled net's InnerProducts: x and h transforms per step (and the RNN's
        output transform), plus the static input's once."""
        hidden, gates = self.num_output, self.gates
        per_step = gates * (self.input_size + hidden)
        if self.kind == "RNN":
            per_step += hidden * hidden
        static = gates * self.static_size if self.static_size is not None else 0
        return self.steps * self.streams * per_step + self.streams * static


def recurrent_geometry(layer, bottoms: list[Shape]) -> RecurrentGeometry:
    """Check the bottoms as RecurrentLayer::LayerSetUp/Reshape do: x (T, N, ...),
    cont (T, N), then x_static (N, ...) if there is one more bottom than the exposed
    states need, then h_0 (and c_0) of shape (1, N, num_output) with expose_hidden."""
    param = layer.recurrent_param
    kind = layer.type
    num_output = int(param.num_output)
    if num_output <= 0:
        raise ShapeError("recurrent_param.num_output must be positive")
    expose = bool(param.expose_hidden)
    recurrent_blobs = 2 if kind == "LSTM" else 1
    exposed = recurrent_blobs if expose else 0
    if len(bottoms) not in (2 + exposed, 3 + exposed):
        names = "x, cont, [x_static]" + (", h_0, c_0" if kind == "LSTM" else ", h_0") * expose
        raise ShapeError(f"takes bottoms {names}; got {len(bottoms)}")
    x, cont = bottoms[0], bottoms[1]
    if len(x) < 2:
        raise ShapeError(f"x must have at least 2 axes (T, N, ...), got shape {x}")
    steps, streams = x[0], x[1]
    if len(cont) != 2 or cont != (steps, streams):
        raise ShapeError(f"cont must have shape (T, N) = {(steps, streams)}, got {cont}")
    static_size = None
    if len(bottoms) == 3 + exposed:
        static = bottoms[2]
        if len(static) < 1 or static[0] != streams:
            raise ShapeError(f"x_static must have N = {streams} as first axis, got shape "
                             f"{static}")
        static_size = count(static, 1)
    geom = RecurrentGeometry(kind, steps, streams, count(x, 2), num_output, static_size,
                             expose)
    state = (1, streams, num_output)
    for index in range(len(bottoms) - exposed, len(bottoms)):
        if bottoms[index] != state:
            raise ShapeError(f"bottom {index} (an initial state) must have shape {state}, "
                             f"got {bottoms[index]}")
    return geom


def lstm_unit_top_shapes(bottoms: list[Shape]) -> list[Shape]:
    """lstm_unit_layer.cpp Reshape: c_prev (1, N, H), gates (1, N, 4H), cont (1, N);
    both tops (c, h) are shaped like c_prev."""
    c_prev, gates, cont = bottoms
    if len(c_prev) != 3 or len(gates) != 3 or len(cont) != 2:
        raise ShapeError(f"LSTMUnit takes c_prev (1, N, H), gates (1, N, 4H) and cont "
                         f"(1, N); got {c_prev}, {gates}, {cont}")
    streams, hidden = c_prev[1], c_prev[2]
    for what, shape in (("c_prev", c_prev), ("gates", gates), ("cont", cont)):
        if shape[0] != 1 or shape[1] != streams:
            raise ShapeError(f"{what} must have shape (1, {streams}, ...), got {shape}")
    if gates[2] != 4 * hidden:
        raise ShapeError(f"gates must have 4 * {hidden} = {4 * hidden} values per stream, "
                         f"got {gates[2]}")
    return [c_prev, c_prev]
