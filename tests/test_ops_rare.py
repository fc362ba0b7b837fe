"""The rarer BVLC layers (SPP, Im2col, Parameter, BatchReindex, DummyData, RNN, LSTM,
LSTMUnit) against real Caffe's outputs (../shared/golden/bvlc_rare_layers), layer by
layer on Caffe's own bottoms, and what the goldens do not cover (the static input of
RNN/LSTM) against loop references written from rnn_layer.cpp and lstm_layer.cpp.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import GOLDEN, needs_shared
from bnlint.caffe.load import parse_text
from bnlint.caffe.net import net_view
from bnlint.caffe.phase import Phase
from bnlint.caffe.weights import read_weights
from bnlint.errors import ForwardError
from bnlint.forward import ops as _ops  # noqa: F401
from bnlint.forward.compare import golden_close
from bnlint.forward.executor import Network
from bnlint.forward.registry import op_for
from bnlint.source import SourceFile

F32 = np.float32
RARE = GOLDEN / "bvlc_rare_layers"


def _view(text: str):
    parsed = parse_text(SourceFile("<net>", text))
    assert not parsed.problems, parsed.problems
    return net_view(parsed)


def _golden_layers() -> list[tuple[str, str]]:
    if not RARE.is_dir():
        return []
    out = []
    for folder in sorted(p.name for p in RARE.iterdir() if p.is_dir()):
        text = (RARE / folder / "net.prototxt").read_text()
        for lv in _view(text).layers:
            if lv.type not in ("Input", "DummyData", "Eltwise"):
                out.append((folder, lv.name))
    return out


@needs_shared
@pytest.mark.parametrize("folder,layer_name", _golden_layers())
def test_layer_reproduces_bvlc_caffe(folder: str, layer_name: str):
    view = _view((RARE / folder / "net.prototxt").read_text())
    weights = read_weights(str(RARE / folder / "weights.caffemodel"))
    with np.load(RARE / folder / "blobs.npz", allow_pickle=False) as archive:
        blobs = {name: archive[name] for name in archive.files}
    layer = next(lv for lv in view.layers if lv.name == layer_name)
    op = op_for(layer.message, weights.get(layer.name, []), Phase.TEST)
    tops = op.run([blobs[name] for name in layer.bottoms])
    assert len(tops) == len(layer.tops)
    for name, top in zip(layer.tops, tops):
        assert top.dtype == F32 and top.shape == blobs[name].shape, name
        result = golden_close(top, blobs[name])
        assert result.ok, f"{name}: {result.describe()}"


@needs_shared
def test_dummy_data_tops_come_from_its_fillers_unless_given():
    text = (RARE / "rare_ops" / "net.prototxt").read_text()
    with np.load(RARE / "rare_ops" / "blobs.npz", allow_pickle=False) as archive:
        dummy_a, dummy_b = archive["dummy_a"], archive["dummy_b"]
    view = _view(text)
    dummy = [lv for lv in view.layers if lv.type == "DummyData"]
    net = Network(type(view)(view.message, dummy, [], view.name, view.tree))
    assert net.input_names == [] and net.default_input_names == ["dummy_a", "dummy_b"]
    out = net.run({}, keep="all")
    np.testing.assert_array_equal(out["dummy_a"], dummy_a)
    np.testing.assert_array_equal(out["dummy_b"], dummy_b)
    given = np.full((2, 3), 7, F32)
    np.testing.assert_array_equal(net.run({"dummy_a": given}, keep="all")["dummy_a"], given)


def test_dummy_data_without_filler_is_zeros_and_random_fillers_are_seeded():
    text = """
layer { name: "d" type: "DummyData" top: "z" top: "g"
  dummy_data_param { num: 2 channels: 3 height: 1 width: 1
                     data_filler { type: "constant" } data_filler { type: "gaussian" std: 2 } } }
"""
    first = Network(_view(text), seed=5).run({}, keep="all")
    again = Network(_view(text), seed=5).run({}, keep="all")
    other = Network(_view(text), seed=6).run({}, keep="all")
    np.testing.assert_array_equal(first["z"], np.zeros((2, 3, 1, 1), F32))
    np.testing.assert_array_equal(first["g"], again["g"])
    assert not np.array_equal(first["g"], other["g"])
    no_filler = Network(_view(text.replace(
        'data_filler { type: "constant" } data_filler { type: "gaussian" std: 2 }', ""))
    ).run({}, keep="all")
    np.testing.assert_array_equal(no_filler["g"], np.zeros((2, 3, 1, 1), F32))


def _layer(text: str):
    return _view(text).layers[0].message


def test_spp_refuses_a_pad_as_large_as_the_kernel_as_caffe_checks():
    layer = _layer('layer { name: "spp" type: "SPP" bottom: "x" top: "y" '
                   'spp_param { pyramid_height: 2 } }')
    op = op_for(layer, [], Phase.TEST)
    with pytest.raises(ForwardError, match=r"layer 'spp' \(SPP\).*level 1.*pad"):
        op.run([np.zeros((1, 1, 1, 4), F32)])


def test_batch_reindex_truncates_indices_and_refuses_out_of_range():
    layer = _layer('layer { name: "r" type: "BatchReindex" bottom: "x" bottom: "i" top: "y" }')
    op = op_for(layer, [], Phase.TEST)
    x = np.arange(6, dtype=F32).reshape(3, 2)
    out = op.run([x, np.array([2.7, 0.2, 1.0], F32)])[0]
    np.testing.assert_array_equal(out, x[[2, 0, 1]])
    with pytest.raises(ForwardError, match=r"layer 'r' \(BatchReindex\): index 3 "):
        op.run([x, np.array([3.0], F32)])
    with pytest.raises(ForwardError, match="index -1 "):
        op.run([x, np.array([-1.0], F32)])


def test_recurrent_bottoms_are_checked_as_caffe_does():
    layer = _layer('layer { name: "l" type: "LSTM" bottom: "x" bottom: "c" top: "h" '
                   'recurrent_param { num_output: 2 } }')
    op = op_for(layer, [np.zeros((8, 3), F32), np.zeros(8, F32), np.zeros((8, 2), F32)],
                Phase.TEST)
    with pytest.raises(ForwardError, match=r"cont must have shape \(T, N\)"):
        op.run([np.zeros((2, 3, 3), F32), np.zeros((3, 2), F32)])


# --- loop references for the static input (x_static), which the goldens do not cover -----

def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _lstm_reference(x, cont, static, w_xc, b_c, w_static, w_hc):
    """lstm_layer.cpp's unrolled net and lstm_unit_layer.cpp's loop, one scalar at a time
    (float64): gate_t = W_hc (cont_t h) + W_xc x_t + b_c + W_static x_static."""
    steps, streams = cont.shape
    hidden = w_hc.shape[1]
    h = np.zeros((streams, hidden))
    c = np.zeros((streams, hidden))
    out = np.zeros((steps, streams, hidden))
    for t in range(steps):
        new_h, new_c = np.zeros_like(h), np.zeros_like(c)
        for n in range(streams):
            gate = [sum(w_hc[j, k] * cont[t, n] * h[n, k] for k in range(hidden))
                    + sum(w_xc[j, k] * x[t, n, k] for k in range(x.shape[2])) + b_c[j]
                    + sum(w_static[j, k] * static[n, k] for k in range(static.shape[1]))
                    for j in range(4 * hidden)]
            for d in range(hidden):
                i = _sigmoid(gate[d])
                f = 0.0 if cont[t, n] == 0 else cont[t, n] * _sigmoid(gate[hidden + d])
                o = _sigmoid(gate[2 * hidden + d])
                g = math.tanh(gate[3 * hidden + d])
                new_c[n, d] = f * c[n, d] + i * g
                new_h[n, d] = o * math.tanh(new_c[n, d])
        h, c = new_h, new_c
        out[t] = h
    return out


def _rnn_reference(x, cont, static, w_xh, b_h, w_static, w_hh, w_ho, b_o):
    """rnn_layer.cpp's unrolled net, one scalar at a time (float64)."""
    steps, streams = cont.shape
    hidden = w_hh.shape[0]
    h = np.zeros((streams, hidden))
    out = np.zeros((steps, streams, w_ho.shape[0]))
    for t in range(steps):
        new_h = np.zeros_like(h)
        for n in range(streams):
            for j in range(hidden):
                new_h[n, j] = math.tanh(
                    sum(w_hh[j, k] * cont[t, n] * h[n, k] for k in range(hidden))
                    + sum(w_xh[j, k] * x[t, n, k] for k in range(x.shape[2])) + b_h[j]
                    + sum(w_static[j, k] * static[n, k] for k in range(static.shape[1])))
            for j in range(w_ho.shape[0]):
                out[t, n, j] = math.tanh(sum(w_ho[j, k] * new_h[n, k] for k in range(hidden))
                                         + b_o[j])
        h = new_h
    return out


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_static_input_matches_a_loop_reference(kind: str):
    rng = np.random.default_rng(3)
    steps, streams, features, static_size, hidden = 4, 3, 5, 2, 3
    x = rng.uniform(-1, 1, (steps, streams, features)).astype(F32)
    cont = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1]], F32)
    static = rng.uniform(-1, 1, (streams, static_size)).astype(F32)
    gates = 4 * hidden if kind == "LSTM" else hidden
    shapes = ([(gates, features), (gates,), (gates, static_size), (gates, hidden)]
              if kind == "LSTM" else
              [(hidden, features), (hidden,), (hidden, static_size), (hidden, hidden),
               (hidden, hidden), (hidden,)])
    blobs = [rng.normal(0, 0.7, s).astype(F32) for s in shapes]
    layer = _layer(f'layer {{ name: "r" type: "{kind}" bottom: "x" bottom: "cont" '
                   f'bottom: "s" top: "y" recurrent_param {{ num_output: {hidden} }} }}')
    got = op_for(layer, blobs, Phase.TEST).run([x, cont, static])[0]
    wide = [b.astype(np.float64) for b in blobs]
    reference = (_lstm_reference if kind == "LSTM" else _rnn_reference)(
        x.astype(np.float64), cont, static.astype(np.float64), *wide)
    np.testing.assert_allclose(got, reference, rtol=0, atol=2e-6)
    with pytest.raises(ForwardError, match="x_static must have N = 3"):
        op_for(layer, blobs, Phase.TEST).run([x, cont, static[:2]])
