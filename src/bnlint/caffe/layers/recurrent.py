"""Recurrent layers: RNN, LSTM (nets unrolled in time, rnn_layer.cpp and lstm_layer.cpp)
and LSTMUnit, one LSTM step."""

from __future__ import annotations

from dataclasses import dataclass

from bnlint.caffe.layers.base import LayerShapes, Shape, count, expect_bottoms
from bnlint.caffe.layers.table import RECURRENT, ROLE_PARAMETRIC, declare, mac_rule, shape_rule
from bnlint.errors import ShapeError

declare("Recurrent", RECURRENT, param="recurrent_param", roles=[ROLE_PARAMETRIC],
        doc="the base of RNN and LSTM (abstract in BVLC)")
declare("RNN", RECURRENT, param="recurrent_param", roles=[ROLE_PARAMETRIC],
        doc="a plain recurrent layer over time")
declare("LSTM", RECURRENT, param="recurrent_param", roles=[ROLE_PARAMETRIC],
        doc="long short-term memory over time")
declare("LSTMUnit", RECURRENT, doc="one LSTM step")


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


@shape_rule("RNN", "LSTM")
def _recurrent(layer, bottoms: list[Shape]) -> LayerShapes:
    geom = recurrent_geometry(layer, bottoms)
    return LayerShapes(tops=geom.top_shapes(), params=geom.param_shapes())


@mac_rule("RNN", "LSTM")
def _recurrent_macs(layer, bottoms: list[Shape], shapes: LayerShapes) -> int:
    return recurrent_geometry(layer, bottoms).macs()


@shape_rule("LSTMUnit")
def _lstm_unit(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 3)
    return LayerShapes(tops=lstm_unit_top_shapes(bottoms))
