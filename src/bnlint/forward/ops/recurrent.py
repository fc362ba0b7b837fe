"""BVLC's recurrent layers: RNN, LSTM (nets unrolled in time) and LSTMUnit.

Caffe builds an inner net per layer (rnn_layer.cpp, lstm_layer.cpp) and runs it; the
ops here compute what that net computes, step by step in float32:

- x_t's transform for every step at once: W x + b (an InnerProduct on axis 2);
- per step t: h_conted = cont_t * h_{t-1} (Scale on axis 0: a stream whose cont is 0
  starts a new sequence), W_hh h_conted, the Eltwise SUM with x_t's transform (and the
  static input's, W_static x_static, when there is a third bottom);
- RNN: h_t = tanh(sum), o_t = tanh(W_ho h_t + b_o); the top is o.
- LSTM: LSTMUnit(c_{t-1}, sum, cont_t) gives c_t and h_t; the top is h.

Initial state: with expose_hidden the bottoms h_0 (and c_0), and the final states are
extra tops. Without it Caffe starts from the state its previous forward left (zeros in a
freshly built net); this forward is always that first forward, so h_0 = c_0 = 0 (a
stream whose cont is 0 at t = 0 does not depend on it).
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from bnlint.caffe.layers import recurrent
from bnlint.caffe.layers.recurrent import RecurrentGeometry
from bnlint.caffe.shapes import count
from bnlint.errors import ForwardError
from bnlint.forward.ops.base import FreshTops
from bnlint.forward.registry import Op, register_op

F32 = np.float32


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """lstm_unit_layer.cpp's sigmoid: 1 / (1 + exp(-x))."""
    with np.errstate(over="ignore"):
        return F32(1) / (F32(1) + np.exp(-x))


def _tanh(x: np.ndarray) -> np.ndarray:
    """lstm_unit_layer.cpp's tanh: 2 * sigmoid(2x) - 1."""
    return F32(2) * _sigmoid(F32(2) * x) - F32(1)


def lstm_unit(c_prev: np.ndarray, gates: np.ndarray, cont: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """One LSTMUnit step on (N, H) states and (N, 4H) gate inputs (i, f, o, g blocks):
    c = f * c_prev + i * g with f = 0 where cont is 0 and cont * sigmoid otherwise;
    h = o * tanh(c)."""
    hidden = c_prev.shape[-1]
    i = _sigmoid(gates[:, :hidden])
    forget = _sigmoid(gates[:, hidden:2 * hidden]) * cont[:, None]
    forget[cont == 0] = 0
    o = _sigmoid(gates[:, 2 * hidden:3 * hidden])
    g = _tanh(gates[:, 3 * hidden:])
    c = forget * c_prev + i * g
    return c, o * _tanh(c)


@register_op("LSTMUnit")
class LSTMUnit(FreshTops, Op):
    """lstm_unit_layer.cpp: bottoms c_prev (1, N, H), gates (1, N, 4H), cont (1, N);
    tops c and h."""

    bottoms = (3, 3)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        c_prev, gates, cont = (np.asarray(b, dtype=F32) for b in bottoms)
        shape = recurrent.lstm_unit_top_shapes([c_prev.shape, gates.shape, cont.shape])[0]
        c, h = lstm_unit(c_prev[0], gates[0], cont[0])
        return [c.reshape(shape), h.reshape(shape)]


class _Recurrent(FreshTops, Op):
    """Shared by RNN and LSTM: bottoms x, cont, [x_static], [h_0, (c_0)]."""

    bottoms = (2, 5)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        bottoms = [np.asarray(b, dtype=F32) for b in bottoms]
        geom = recurrent.recurrent_geometry(self.layer, [b.shape for b in bottoms])
        params = self._params(geom)
        steps, streams = geom.steps, geom.streams
        x = bottoms[0].reshape(steps * streams, geom.input_size)
        x_transform = _inner_product(x, params.pop(0), params.pop(0))
        x_transform = x_transform.reshape(steps, streams, -1)
        static = None
        if geom.static_size is not None:
            static = _inner_product(bottoms[2].reshape(streams, -1), params.pop(0), None)
        exposed = bottoms[len(bottoms) - (geom.recurrent_blobs if geom.expose_hidden else 0):]
        states = ([b.reshape(streams, geom.num_output) for b in exposed] if exposed else
                  [np.zeros((streams, geom.num_output), F32)] * geom.recurrent_blobs)
        return self._unroll(geom, bottoms[1], x_transform, static, states, params)

    def _params(self, geom: RecurrentGeometry) -> list[np.ndarray]:
        expected = geom.param_shapes()
        if len(self.blobs) != len(expected):
            raise ForwardError(f"has {len(self.blobs)} blobs, these bottoms need "
                               f"{len(expected)}: {', '.join(str(list(s)) for s in expected)}")
        out = []
        for index, (blob, shape) in enumerate(zip(self.blobs, expected)):
            blob = np.asarray(blob, dtype=F32)
            if blob.size != count(shape):
                raise ForwardError(f"blob {index} has shape {list(blob.shape)}, expected "
                                   f"{list(shape)}")
            out.append(blob.reshape(shape))
        return out

    @abstractmethod
    def _unroll(self, geom: RecurrentGeometry, cont: np.ndarray, x_transform: np.ndarray,
                static: np.ndarray | None, states: list[np.ndarray],
                params: list[np.ndarray]) -> list[np.ndarray]:
        """The time loop from the initial states; returns the tops."""


def _inner_product(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """InnerProduct's gemm (weights (out, in)) and its bias row."""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y


def _gate_sum(hidden_transform: np.ndarray, x_t: np.ndarray,
              static: np.ndarray | None) -> np.ndarray:
    """The Eltwise SUM of the step's terms, in the unrolled net's bottom order."""
    total = hidden_transform + x_t
    if static is not None:
        total += static
    return total


@register_op("RNN")
class RNN(_Recurrent):
    """h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static]),
    o_t = tanh(W_ho h_t + b_o); tops o (T, N, H) [and h_T]."""

    def _unroll(self, geom, cont, x_transform, static, states, params):
        w_hh, w_ho, b_o = params
        h = states[0]
        outputs = np.empty((geom.steps, geom.streams, geom.num_output), F32)
        for t in range(geom.steps):
            h_conted = h * cont[t][:, None]
            h = np.tanh(_gate_sum(_inner_product(h_conted, w_hh, None), x_transform[t],
                                  static))
            outputs[t] = np.tanh(_inner_product(h, w_ho, b_o))
        tops = [outputs]
        if geom.expose_hidden:
            tops.append(h.reshape(1, geom.streams, geom.num_output))
        return tops


@register_op("LSTM")
class LSTM(_Recurrent):
    """gates_t = W_hc (cont_t h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static], then
    LSTMUnit(c_{t-1}, gates_t, cont_t) -> c_t, h_t; tops h (T, N, H) [and h_T, c_T]."""

    def _unroll(self, geom, cont, x_transform, static, states, params):
        (w_hc,) = params
        h, c = states
        outputs = np.empty((geom.steps, geom.streams, geom.num_output), F32)
        for t in range(geom.steps):
            h_conted = h * cont[t][:, None]
            gates = _gate_sum(_inner_product(h_conted, w_hc, None), x_transform[t], static)
            c, h = lstm_unit(c, gates, cont[t])
            outputs[t] = h
        tops = [outputs]
        if geom.expose_hidden:
            state = (1, geom.streams, geom.num_output)
            tops += [h.reshape(state), c.reshape(state)]
        return tops
