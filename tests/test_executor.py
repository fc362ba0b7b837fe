"""The executor on small hand-written nets, the weights reader, and the comparisons.

Each net is a string fixture small enough to reason about by hand: the expected
values are written from Caffe's semantics (in-place shadowing, blob lifetimes, blob
count and shape checks, fillers), not from running the executor.
"""

from __future__ import annotations

import weakref

import numpy as np
import pytest
from google.protobuf import text_format

from bnlint.caffe import caffe_pb2
from bnlint.caffe.load import parse_text
from bnlint.caffe.net import NetState, net_view
from bnlint.caffe.phase import Phase
from bnlint.caffe.weights import LayerBlobs, read_weights, write_caffemodel
from bnlint.errors import ForwardError, WeightsError
from bnlint.forward.compare import allclose, golden_close, opencv_close
from bnlint.forward.executor import Network
from bnlint.source import SourceFile

F32 = np.float32


def network(text: str, weights=None, **kwargs) -> Network:
    source = SourceFile("<net>", text)
    parsed = parse_text(source)
    assert not parsed.problems, parsed.problems
    return Network(net_view(parsed), kwargs.pop("state", None), weights, source=source,
                   **kwargs)


def ramp(*shape: int) -> np.ndarray:
    return (np.arange(np.prod(shape), dtype=F32).reshape(shape) - 3) / F32(4)


# --- in-place tops and blob names --------------------------------------------------------

IN_PLACE = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 2 dim: 2 } } }
layer { name: "double" type: "Power" bottom: "data" top: "y" power_param { scale: 2 } }
layer { name: "early" type: "Power" bottom: "y" top: "early" power_param { shift: 10 } }
layer { name: "negate" type: "Power" bottom: "y" top: "y" power_param { scale: -1 } }
layer { name: "late" type: "Power" bottom: "y" top: "late" power_param { shift: 1 } }
"""


def test_in_place_top_shadows_the_earlier_blob_in_file_order():
    x = ramp(1, 2, 2, 2)
    out = network(IN_PLACE).run({"data": x}, keep="all")
    np.testing.assert_array_equal(out["early"], 2 * x + 10)     # read before the rewrite
    np.testing.assert_array_equal(out["late"], -2 * x + 1)      # read after it
    np.testing.assert_array_equal(out["y"], -2 * x)             # the last value written


def test_outputs_are_the_blobs_no_later_layer_consumes():
    net = network(IN_PLACE)
    assert net.output_names == ["early", "late"]
    out = net.run({"data": ramp(1, 2, 2, 2)})
    assert list(out) == ["early", "late"]


def test_keep_all_returns_every_top_and_keep_names_only_those():
    net = network(IN_PLACE)
    x = ramp(1, 2, 2, 2)
    assert list(net.run({"data": x}, keep="all")) == ["data", "y", "early", "late"]
    assert set(net.run({"data": x}, keep={"y", "data"})) == {"y", "data"}
    with pytest.raises(ForwardError, match="no blob named 'nope'"):
        net.run({"data": x}, keep={"nope"})


CHAIN = "\n".join(
    ['layer { name: "data" type: "Input" top: "b0" '
     'input_param { shape { dim: 1 dim: 4 dim: 8 dim: 8 } } }']
    + [f'layer {{ name: "p{i}" type: "Power" bottom: "b{i - 1}" top: "b{i}" '
       f'power_param {{ shift: 1 }} }}' for i in range(1, 21)])


def test_blobs_are_freed_after_their_last_consumer():
    net = network(CHAIN)
    seen: list[weakref.ref] = []
    most_alive = 0

    def on_layer(layer, tops):
        nonlocal most_alive
        seen.extend(weakref.ref(t) for t in tops)
        most_alive = max(most_alive, sum(r() is not None for r in seen))

    x = np.zeros((1, 4, 8, 8), F32)
    out = net.run({"b0": x}, keep="outputs", on_layer=on_layer)
    assert list(out) == ["b20"]
    np.testing.assert_array_equal(out["b20"], x + 20)
    # While layer i's hook runs: its top, its bottom (dropped right after) and the input.
    assert most_alive <= 3
    assert sum(r() is not None for r in seen) <= 2        # the input and the output


def test_on_layer_sees_every_layer_in_order():
    names = []
    network(CHAIN).run({"b0": np.zeros((1, 4, 8, 8), F32)},
                       on_layer=lambda layer, tops: names.append(layer.name))
    assert names == ["data"] + [f"p{i}" for i in range(1, 21)]


# --- inputs ------------------------------------------------------------------------------

NET_LEVEL_INPUT = """
input: "data"
input_shape { dim: 1 dim: 3 dim: 2 dim: 2 }
layer { name: "relu" type: "ReLU" bottom: "data" top: "relu" }
"""


def test_net_level_inputs_and_input_errors():
    net = network(NET_LEVEL_INPUT)
    assert net.input_shapes() == {"data": (1, 3, 2, 2)}
    x = ramp(1, 3, 2, 2)
    np.testing.assert_array_equal(net.run({"data": x})["relu"], np.maximum(x, 0))
    with pytest.raises(ForwardError, match="missing input 'data'"):
        net.run({})
    with pytest.raises(ForwardError, match="unknown input 'other'"):
        net.run({"data": x, "other": x})
    with pytest.raises(ForwardError, match=r"shape \[2, 3, 2, 2\].*--input-shape"):
        net.run({"data": ramp(2, 3, 2, 2)})


def test_input_shapes_override_the_declared_ones():
    net = network(NET_LEVEL_INPUT, input_shapes={"data": (2, 3, 5, 5)})
    assert net.run({"data": ramp(2, 3, 5, 5)})["relu"].shape == (2, 3, 5, 5)


def test_input_without_any_shape_asks_for_one():
    with pytest.raises(ForwardError, match="--input-shape data="):
        network('input: "data"\nlayer { name: "r" type: "ReLU" bottom: "data" top: "r" }')


TRAIN_NET = """
layer { name: "data" type: "Data" top: "data" top: "label"
  data_param { source: "train_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "constant" value: 1 } } }
"""


def test_data_layer_needs_input_shapes():
    with pytest.raises(ForwardError, match=r"layer 'data' \(Data\).*--input-shape data="):
        network(TRAIN_NET, state=NetState(Phase.TRAIN))
    net = network(TRAIN_NET, state=NetState(Phase.TRAIN), input_shapes={"data": (4, 3)})
    assert net.input_names == ["data"]            # 'label' is consumed by nothing here
    out = net.run({"data": np.ones((4, 3), F32)})
    np.testing.assert_array_equal(out["ip"], np.full((4, 2), 3, F32))


def test_unsupported_layer_type_names_the_layer_and_type():
    text = NET_LEVEL_INPUT + 'layer { name: "mystery" type: "FancyFork" bottom: "relu" top: "f" }\n'
    with pytest.raises(ForwardError, match="layer 'mystery': type 'FancyFork' is not supported"):
        network(text)


def test_errors_point_at_the_layer_in_the_file():
    text = NET_LEVEL_INPUT + 'layer { name: "mystery" type: "FancyFork" bottom: "relu" top: "f" }\n'
    with pytest.raises(ForwardError) as info:
        network(text)
    assert info.value.location() == "<net>:5:1"


def test_unknown_bottom_is_refused_as_caffe_does():
    with pytest.raises(ForwardError, match="unknown bottom blob 'nothing'"):
        network(NET_LEVEL_INPUT + 'layer { name: "r2" type: "ReLU" bottom: "nothing" top: "r2" }')


# --- weights: counts, shapes, fillers ------------------------------------------------------

BN_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 2 dim: 2 } } }
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" }
"""


def test_five_batch_norm_blobs_are_refused_with_both_counts():
    blobs = [np.zeros(3, F32), np.ones(3, F32), np.ones(1, F32), np.ones(3, F32), np.ones(3, F32)]
    with pytest.raises(WeightsError, match=r"layer 'bn' \(BatchNorm\).*5 vs 3 BatchNorm blobs"):
        network(BN_NET, {"bn": blobs})


def test_batch_norm_uses_stored_statistics_and_zero_ones_without_weights():
    x = ramp(2, 3, 2, 2)
    mean, var = np.array([1, 2, 3], F32), np.array([4, 5, 6], F32)
    stored = {"bn": [mean * 999.982, var * 999.982, np.array([999.982], F32)]}
    out = network(BN_NET, stored).run({"data": x})["data"]
    channel = (1, 3, 1, 1)
    expected = (x - mean.reshape(channel)) / np.sqrt(var + F32(1e-5)).reshape(channel)
    assert golden_close(out, expected).ok
    # No weights: Caffe's three zero blobs, scale factor 0, so x / sqrt(eps).
    net = network(BN_NET)
    assert net.filled == ["bn"]
    np.testing.assert_allclose(net.run({"data": x})["data"], x / np.sqrt(F32(1e-5)), rtol=1e-6)


IP_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 bias_term: false } }
"""


def test_weight_shape_mismatch_names_layer_blob_and_shapes():
    with pytest.raises(WeightsError,
                       match=r"layer 'ip' \(InnerProduct\), blob 0: shape mismatch, "
                             r"\[3, 2\] in the weights vs \[2, 3\]"):
        network(IP_NET, {"ip": [np.zeros((3, 2), F32)]})


def test_legacy_four_d_blobs_fit_as_caffe_shape_equals_says():
    w = ramp(2, 3)
    x = ramp(2, 3)
    legacy = LayerBlobs([w.reshape(1, 1, 2, 3)], legacy=[True])
    np.testing.assert_allclose(network(IP_NET, {"ip": legacy}).run({"data": x})["ip"], x @ w.T,
                               rtol=1e-6)
    # The same dims written as a BlobShape must match exactly (Caffe refuses them).
    modern = LayerBlobs([w.reshape(1, 1, 2, 3)], legacy=[False])
    with pytest.raises(WeightsError, match="shape mismatch"):
        network(IP_NET, {"ip": modern})


def test_legacy_blob_read_from_a_caffemodel(tmp_path):
    net = caffe_pb2.NetParameter()
    layer = net.layers.add()                           # a V1 entry, as old model zoos have
    layer.name, layer.type = "ip", caffe_pb2.V1LayerParameter.INNER_PRODUCT
    blob = layer.blobs.add()
    blob.num, blob.channels, blob.height, blob.width = 1, 1, 2, 3
    blob.data.extend(range(6))
    path = tmp_path / "legacy.caffemodel"
    path.write_bytes(net.SerializeToString())
    weights = read_weights(str(path))
    assert weights["ip"].legacy == (True,) and weights["ip"].layer_type == "InnerProduct"
    assert weights["ip"][0].shape == (1, 1, 2, 3)
    out = network(IP_NET, weights).run({"data": np.eye(2, 3, dtype=F32)})["ip"]
    np.testing.assert_array_equal(out, [[0, 3], [1, 4]])


FILLER_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 5 dim: 5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 3
    weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "constant" value: 0.5 } } }
"""


def test_missing_weights_come_from_fillers_reproducibly():
    x = ramp(1, 2, 5, 5)
    first = network(FILLER_NET, seed=7)
    again = network(FILLER_NET, seed=7)
    other = network(FILLER_NET, seed=8)
    assert first.filled == ["conv"]
    np.testing.assert_array_equal(first.blobs["conv"][0], again.blobs["conv"][0])
    assert not np.array_equal(first.blobs["conv"][0], other.blobs["conv"][0])
    np.testing.assert_array_equal(first.blobs["conv"][1], np.full(3, 0.5, F32))
    np.testing.assert_array_equal(first.run({"data": x})["conv"], again.run({"data": x})["conv"])


def test_stored_weights_win_over_fillers_and_unused_ones_are_listed():
    w = np.ones((3, 2, 3, 3), F32)
    net = network(FILLER_NET, {"conv": [w, np.zeros(3, F32)], "gone": [w], "relu_split": []})
    assert net.filled == [] and net.unused_weights == ["gone"]
    out = net.run({"data": np.ones((1, 2, 5, 5), F32)})["conv"]
    np.testing.assert_array_equal(out, np.full((1, 3, 3, 3), 18, F32))


# --- reading and writing .caffemodel files ----------------------------------------------------

def _write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_write_then_read_a_caffemodel_round_trips(tmp_path):
    view = net_view(parse_text(SourceFile("<net>", FILLER_NET)))
    arrays = {"conv": [ramp(3, 2, 3, 3), np.arange(3, dtype=F32)]}
    path = str(tmp_path / "out.caffemodel")
    write_caffemodel(path, view, arrays)
    weights = read_weights(path)
    assert list(weights) == ["conv"] and weights["conv"].layer_type == "Convolution"
    for got, want in zip(weights["conv"], arrays["conv"]):
        np.testing.assert_array_equal(got, want)
    assert weights["conv"].legacy == (False, False)


@pytest.mark.parametrize("data, message", [
    (b"", "empty file"),
    (b"\x0a\x05ab", "truncated or corrupt"),
    (b"\xff\xff\xff\xff\x00\x01", "truncated or corrupt"),
])
def test_unreadable_weights_files(tmp_path, data, message):
    path = _write(tmp_path, "bad.caffemodel", data)
    with pytest.raises(WeightsError, match=message) as info:
        read_weights(path)
    assert info.value.path == path


def test_truncated_caffemodel(tmp_path):
    arrays = {"conv": [ramp(3, 2, 3, 3), np.arange(3, dtype=F32)]}
    full = str(tmp_path / "full.caffemodel")
    write_caffemodel(full, None, arrays)
    data = (tmp_path / "full.caffemodel").read_bytes()
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_weights(_write(tmp_path, "cut.caffemodel", data[:len(data) // 2]))


def test_a_prototxt_is_not_weights(tmp_path):
    path = _write(tmp_path, "deploy.prototxt", FILLER_NET.encode())
    with pytest.raises(WeightsError, match="text net definition .* without weights"):
        read_weights(path)


def test_a_text_net_with_blobs_is_read(tmp_path):
    text = ('layer { name: "ip" type: "InnerProduct" '
            'blobs { shape { dim: 1 dim: 2 } data: 1 data: 2 } }')
    weights = read_weights(_write(tmp_path, "w.prototxt", text.encode()))
    np.testing.assert_array_equal(weights["ip"][0], [[1, 2]])


def test_non_net_protobuf_is_not_weights(tmp_path):
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([1, 2])
    blob.data.extend([1, 2])
    with pytest.raises(WeightsError, match="holds no layers"):
        read_weights(_write(tmp_path, "mean.binaryproto", blob.SerializeToString()))


def _net_with_blob(blob_text: str) -> bytes:
    net = text_format.Parse(f'layer {{ name: "conv" type: "Convolution" blobs {{ {blob_text} }} }}',
                            caffe_pb2.NetParameter())
    return net.SerializeToString()


def test_blob_values_must_fill_the_declared_shape(tmp_path):
    path = _write(tmp_path, "w.caffemodel",
                  _net_with_blob("shape { dim: 2 dim: 2 } data: 1 data: 2 data: 3"))
    with pytest.raises(WeightsError,
                       match=r"layer 'conv', blob 0: 3 values do not fill .*\[2, 2\]"):
        read_weights(path)
    stripped = _write(tmp_path, "s.caffemodel", _net_with_blob("shape { dim: 2 dim: 2 }"))
    with pytest.raises(WeightsError, match="no values for shape .*stripped"):
        read_weights(stripped)


def test_nan_and_inf_are_refused_with_layer_and_blob(tmp_path):
    path = _write(tmp_path, "w.caffemodel",
                  _net_with_blob("shape { dim: 3 } data: 1 data: nan data: inf"))
    with pytest.raises(WeightsError, match=r"layer 'conv', blob 0: 2 of 3 values are NaN or "
                                           r"infinite .*index \[1\]"):
        read_weights(path)


def test_double_data_is_rounded_to_float32(tmp_path):
    path = _write(tmp_path, "w.caffemodel",
                  _net_with_blob("shape { dim: 2 } double_data: 0.1 double_data: 2"))
    values = read_weights(path)["conv"][0]
    assert values.dtype == F32
    np.testing.assert_array_equal(values, np.array([0.1, 2], F32))


# --- comparisons -------------------------------------------------------------------------

def test_golden_tolerance_scales_with_the_reference():
    ref = np.array([1000.0, 0.0], F32)
    assert golden_close(ref + F32(0.005), ref).ok            # within 1e-4 and 1e-5 of 1000
    assert not golden_close(ref + F32(0.5), ref).ok
    assert not opencv_close(ref + F32(0.005), ref).ok        # OpenCV's bounds are absolute


def test_comparisons_handle_shapes_and_non_finite_values():
    assert not golden_close(np.zeros(2), np.zeros(3)).ok
    nan = np.array([np.nan, 1.0])
    assert golden_close(nan, nan).ok
    assert not golden_close(np.array([np.nan, 1.0]), np.array([0.0, 1.0])).ok
    result = allclose(np.array([1.0001]), np.array([1.0]))
    assert result.ok and result.max_rel == pytest.approx(1e-4, rel=1e-3)
    assert not allclose(np.array([1.001]), np.array([1.0])).ok
