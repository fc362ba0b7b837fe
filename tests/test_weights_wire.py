"""The wire-format weights reader gives exactly what protobuf's messages give."""

from __future__ import annotations

import numpy as np
import pytest

from bnlint.caffe import weights as W
from bnlint.caffe.schema import default_schema
from bnlint.errors import WeightsError
from bnlint.files import read_bytes

from conftest import GOLDEN, needs_shared


def through_messages(path: str) -> W.Weights:
    net = W._parse_binary_net(read_bytes(path), path, default_schema())
    return W.weights_from_net(net, path)


def took_wire_path(path: str) -> bool:
    return W._read_wire(read_bytes(path, mutable=True), path, default_schema()) is not None


def assert_same(a: W.Weights, b: W.Weights) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].legacy == b[name].legacy
        assert a[name].layer_type == b[name].layer_type
        assert len(a[name]) == len(b[name])
        for x, y in zip(a[name], b[name]):
            assert x.shape == y.shape and x.dtype == y.dtype == np.float32
            assert np.array_equal(x, y)
            assert x.flags.writeable and x.flags.aligned


def net_with(blob_fillers) -> bytes:
    """A NetParameter whose layers' blobs are filled by each callable (blob message)."""
    net = default_schema().message_class("NetParameter")()
    net.name = "n"
    for i, fill in enumerate(blob_fillers):
        layer = net.layer.add()
        layer.name = f"l{i}"
        layer.type = "Convolution"
        layer.convolution_param.num_output = 3
        fill(layer.blobs.add())
    return net.SerializeToString()


def shaped(dims, values):
    def fill(blob):
        blob.shape.dim.extend(dims)
        blob.data.extend(values)
    return fill


def legacy(values):
    def fill(blob):
        blob.num, blob.channels, blob.height, blob.width = 1, 1, 2, len(values) // 2
        blob.data.extend(values)
    return fill


def doubles(values):
    def fill(blob):
        blob.shape.dim.append(len(values))
        blob.double_data.extend(values)
        blob.data.extend([0.0] * len(values))
    return fill


@pytest.mark.parametrize("fillers", [
    # names of different lengths shift the packed floats to every alignment
    [shaped([2, 3], [float(i) for i in range(6)]) for _ in range(5)],
    [legacy([1.5, -2.0, 3.25, 4.0]), shaped([], [7.0]), doubles([0.1, 1e-40, 2.5])],
    [shaped([4, 1000], list(np.linspace(-1, 1, 4000)))],
    [shaped([0], [])],
])
def test_wire_reader_equals_messages(tmp_path, fillers):
    path = tmp_path / "w.caffemodel"
    path.write_bytes(net_with(fillers))
    assert took_wire_path(str(path))
    assert_same(W.read_weights(str(path)), through_messages(str(path)))


def test_unaligned_big_blob_is_an_aligned_view(tmp_path):
    for prefix in range(4):          # the name's length moves the data by one byte each time
        net = default_schema().message_class("NetParameter")()
        layer = net.layer.add()
        layer.name = "x" * (prefix + 1)
        shaped([64, 300], list(np.arange(19200, dtype=np.float32)))(layer.blobs.add())
        path = tmp_path / f"w{prefix}.caffemodel"
        path.write_bytes(net.SerializeToString())
        blob = W.read_weights(str(path))[layer.name][0]
        owner = blob
        while isinstance(owner, np.ndarray):
            owner = owner.base
        assert isinstance(owner, memoryview) and blob.flags.aligned  # a view, not a copy
        assert np.array_equal(blob.reshape(-1), np.arange(19200, dtype=np.float32))


def test_errors_are_the_same(tmp_path):
    path = tmp_path / "w.caffemodel"
    path.write_bytes(net_with([shaped([2, 3], [1.0] * 5)]))
    with pytest.raises(WeightsError, match="5 values do not fill"):
        W.read_weights(str(path))
    path.write_bytes(net_with([shaped([2], [1.0, float("nan")])]))
    with pytest.raises(WeightsError, match="NaN"):
        W.read_weights(str(path))
    path.write_bytes(net_with([shaped([2], [1.0, 2.0])])[:-3])      # truncated
    assert not took_wire_path(str(path))
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        W.read_weights(str(path))


def test_legacy_v1_layers_use_protobuf(tmp_path):
    net = default_schema().message_class("NetParameter")()
    v1 = net.layers.add()
    v1.name = "ip"
    v1.type = v1.INNER_PRODUCT
    shaped([2], [1.0, 2.0])(v1.blobs.add())
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(net.SerializeToString())
    assert not took_wire_path(str(path))
    weights = W.read_weights(str(path))
    assert weights["ip"].layer_type == "InnerProduct"
    assert weights["ip"][0].tolist() == [1.0, 2.0]


@needs_shared
def test_golden_caffemodels_read_the_same():
    paths = sorted(GOLDEN.rglob("*.caffemodel"))
    assert paths
    for path in paths:
        assert took_wire_path(str(path)), path
        assert_same(W.read_weights(str(path)), through_messages(str(path)))


def test_huge_finite_values_are_accepted_and_infinities_refused(tmp_path):
    path = tmp_path / "w.caffemodel"
    path.write_bytes(net_with([shaped([3], [3e38, 3e38, -1.0])]))      # the sum overflows
    np.testing.assert_array_equal(W.read_weights(str(path))["l0"][0],
                                  np.float32([3e38, 3e38, -1.0]))
    path.write_bytes(net_with([shaped([3], [1.0, float("inf"), float("-inf")])]))
    with pytest.raises(WeightsError, match="2 of 3 values are NaN or infinite"):
        W.read_weights(str(path))
