"""Products split over bnlint's threads give what one np.matmul gives."""

from __future__ import annotations

import numpy as np
import pytest

from bnlint.forward import parallel


@pytest.fixture
def split(monkeypatch):
    monkeypatch.setattr(parallel, "_THREADS", 3)
    monkeypatch.setattr(parallel, "MIN_SPLIT_MACS", 0)


@pytest.mark.parametrize("a_shape,b_shape", [
    ((64, 27), (27, 500)),              # wide: split by columns
    ((300, 16), (16, 7)),               # tall: split by rows
    ((4, 8, 9), (4, 9, 50)),            # grouped
    ((2, 5, 6), (3, 2, 6, 40)),         # broadcast over a batch
    ((1, 1), (1, 2)),                   # fewer columns than threads
])
def test_split_product_equals_numpy(split, a_shape, b_shape):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    want = np.matmul(a, b)
    out = np.full(want.shape, np.nan, np.float32)
    parallel.matmul(a, b, out=out)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("BNLINT_THREADS", "4")
    assert parallel.threads() == 4
    monkeypatch.setenv("BNLINT_THREADS", "many")
    assert parallel.threads() == 1
    monkeypatch.delenv("BNLINT_THREADS")
    assert parallel.threads() == 1


def test_convolutions_split_give_the_same_tops(split):
    from bnlint.forward.executor import Network
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import net_view
    from bnlint.source import SourceFile

    text = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 dim: 9 dim: 9 } } }
    layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
      convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
    layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2"
      convolution_param { num_output: 8 kernel_size: 1 stride: 2 weight_filler { type: "xavier" } } }
    layer { name: "dw" type: "Convolution" bottom: "c2" top: "dw"
      convolution_param { num_output: 8 group: 8 kernel_size: 3 weight_filler { type: "xavier" } } }
    """
    x = np.random.default_rng(1).uniform(-1, 1, (2, 6, 9, 9)).astype(np.float32)
    view = net_view(parse_text(SourceFile("t.prototxt", text)))
    split_tops = Network(view, seed=3).run({"data": x}, keep="all")
    parallel._THREADS = 1
    whole_tops = Network(view, seed=3).run({"data": x}, keep="all")
    for name in ("c1", "c2", "dw"):
        np.testing.assert_allclose(split_tops[name], whole_tops[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset,expected", [
    ({}, {"OPENBLAS_NUM_THREADS": "1", "BNLINT_THREADS": "free"}),
    ({"BNLINT_THREADS": "3"}, {"OPENBLAS_NUM_THREADS": "1", "BNLINT_THREADS": "3"}),
    ({"OMP_NUM_THREADS": "2"}, {"OPENBLAS_NUM_THREADS": None, "BNLINT_THREADS": None}),
])
def test_the_command_sets_one_blas_thread_unless_the_user_chose(monkeypatch, preset, expected):
    import os

    from bnlint import __main__ as entry

    monkeypatch.setattr(entry, "_free_cores", lambda: 7)

    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                 "BNLINT_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in preset.items():
        monkeypatch.setenv(name, value)
    entry._thread_policy()
    for name, value in expected.items():
        assert os.environ.get(name) == ("7" if value == "free" else value)


def test_free_cores_is_between_one_and_the_cores():
    import os

    from bnlint.__main__ import _free_cores

    assert 1 <= _free_cores() <= len(os.sched_getaffinity(0))


def test_a_failing_piece_raises_instead_of_hanging(split):
    a = np.ones((40, 8), np.float32)
    b = np.ones((8, 60), np.float32)
    out = np.empty((40, 60), np.float64)            # matmul refuses this out (casting)
    with pytest.raises(Exception):
        np.matmul(a, b, out=out, casting="no")
    out = np.empty((40, 60), np.int8)
    with pytest.raises(TypeError):
        parallel.matmul(a, b, out=out)


def test_helper_threads_are_started_only_as_pieces_need_them(monkeypatch):
    """BNLINT_THREADS=20000 once started 19,999 threads (6 s, 420 MB) for products of a
    few dozen pieces."""
    monkeypatch.setattr(parallel, "_THREADS", 20000)
    monkeypatch.setattr(parallel, "_pool", None)
    monkeypatch.setattr(parallel, "MIN_SPLIT_MACS", 0)
    a = np.ones((64, 32), np.float32)
    b = np.ones((32, 40), np.float32)
    out = np.empty((64, 40), np.float32)
    parallel.matmul(a, b, out)
    np.testing.assert_array_equal(out, np.full((64, 40), 32, np.float32))
    assert 1 <= parallel._pool.started <= 2 * 20000
    assert parallel._pool.started < 64
