"""Regression tests for what a red-team run of bad inputs found (crashes, lost data,
leaked internals), one test per failure; each failed before its fix.

The generic contract (exit 0-2, no traceback, input unchanged, no temporary file
left) is `test_fuzz.run_all_commands`; the tests here add what each case must say.
"""

from __future__ import annotations

import itertools

import pytest

from test_fuzz import active_rows, invoke, registered, run_all_commands

from bnlint.caffe import shapes
from bnlint.caffe.schema import default_schema
from bnlint.errors import ShapeError

INPUT_2x3 = ('layer { name: "d" type: "Input" top: "data" input_param { shape { dim: 2 '
             'dim: 3 dim: 2 dim: 2 } } }\n')


def write(work, text: str, name: str = "net.prototxt"):
    path = work / name
    path.write_text(text)
    return path


# --- crashes --------------------------------------------------------------------------------

def test_verify_of_a_clip_with_min_zero(tmp_path):
    """ReLU6 written as Clip: a required field at its default was dropped before
    serialising the layer (EncodeError)."""
    net = write(tmp_path, INPUT_2x3 + 'layer { name: "c" type: "Clip" bottom: "data" '
                'top: "c" clip_param { min: 0 max: 6 } }\n')
    code, out, err = invoke(["verify", str(net), str(net)])
    assert code == 0, err
    assert "equivalent" in out


def test_a_missing_required_field_is_a_schema_error(tmp_path, work_weights):
    """Clip without `min`: Caffe refuses the file; protobuf refused to serialise it."""
    text = INPUT_2x3 + 'layer { name: "c" type: "Clip" bottom: "data" top: "c" ' \
                       'clip_param { max: 6 } }\n'
    net = write(tmp_path, text)
    code, out, _ = invoke(["check", "--format", "concise", str(net)])
    assert code == 1 and "E003" in out and "'min'" in out
    code, _, err = invoke(["convert", str(net), "-o", str(tmp_path / "n.caffemodel")])
    assert code == 2 and "net.prototxt:2:" in err and "'min'" in err
    run_all_commands(text.encode(), *work_weights)


ON_A_0_AXIS_BLOB = {
    "BatchNorm": "", "ArgMax": "", "Sigmoid": "", "ELU": "", "Swish": "",
    "Clip": "clip_param { min: -1 max: 1 }", "TanH": "", "Power": "", "ReLU": "",
}


def zero_axis_net(layer_type: str) -> str:
    return ('layer { name: "d" type: "Input" top: "data" input_param { shape { } } }\n'
            f'layer {{ name: "x" type: "{layer_type}" bottom: "data" top: "x" '
            f'{ON_A_0_AXIS_BLOB[layer_type]} }}\n')


@pytest.mark.parametrize("layer_type", sorted(ON_A_0_AXIS_BLOB))
def test_layers_on_a_0_axis_blob(work_weights, layer_type):
    """`Input` with `shape {}`: BatchNorm and ArgMax shape inference indexed axis 1 or
    0 (IndexError in check, info, forward, verify), element-wise ops got NumPy
    scalars instead of arrays (TypeError in forward)."""
    run_all_commands(zero_axis_net(layer_type).encode(), *work_weights)


@pytest.mark.parametrize("layer_type", ["Sigmoid", "ELU", "Swish", "Clip"])
def test_element_wise_forward_on_a_0_axis_blob(tmp_path, layer_type):
    import numpy as np

    net = write(tmp_path, zero_axis_net(layer_type))
    code, _, err = invoke(["forward", str(net), "-o", str(tmp_path / "out.npz")])
    assert code == 0, err
    with np.load(tmp_path / "out.npz") as saved:
        assert saved["x"].shape == ()


@pytest.mark.parametrize("layer_type", ["BatchNorm", "ArgMax"])
def test_axis_reading_layers_refuse_a_0_axis_blob(tmp_path, layer_type):
    net = write(tmp_path, zero_axis_net(layer_type))
    code, _, err = invoke(["forward", str(net)])
    assert code == 2 and f"layer 'x' ({layer_type})" in err and "0-axis" in err


def test_every_shape_rule_raises_only_shape_errors():
    """Each shape rule with its default parameters, 0 to 3 bottoms of 0 to 4 axes and
    0 to 2 tops: a ShapeError or a result, never another exception."""
    layer_class = default_schema().message_class("LayerParameter")
    failures = []
    for layer_type, shape, bottoms, tops in itertools.product(
            sorted(shapes.RULES), [(), (1,), (0,), (2, 3), (1, 2, 3), (1, 2, 3, 4),
                                   (0, 0, 0, 0)], range(4), range(3)):
        layer = layer_class(name="l", type=layer_type)
        layer.top.extend(f"t{i}" for i in range(tops))
        try:
            shapes.infer(layer, [shape] * bottoms)
        except ShapeError:
            pass
        except Exception as err:  # noqa: BLE001  (what the test is looking for)
            failures.append((layer_type, shape, bottoms, tops, repr(err)))
    assert failures == []


@pytest.mark.parametrize("dims, words", [
    ("dim: 1 dim: -2 dim: 3 dim: 3", ["layer 'd', blob 'data'", "negative"]),
    ("dim: 1 dim: 0 dim: 3 dim: 3", ["layer 'c' (Convolution), blob 0", "empty blob"]),
])
def test_verify_refuses_what_forward_refuses(tmp_path, dims, words):
    net = write(tmp_path, f'layer {{ name: "d" type: "Input" top: "data" input_param {{ '
                          f'shape {{ {dims} }} }} }}\nlayer {{ name: "c" type: "Convolution" '
                          f'bottom: "data" top: "c" convolution_param {{ num_output: 2 '
                          f'kernel_size: 1 }} }}\n')
    for argv in (["forward", str(net)], ["verify", str(net), str(net)]):
        code, _, err = invoke(argv)
        assert code == 2, err
        for word in words:
            assert word in err, (argv, err)


def test_a_caffemodel_layer_name_that_is_not_utf8(tmp_path):
    """One bit flip in a layer name: protobuf hands over bytes, which crashed the
    unused-weights note of `forward`."""
    import numpy as np

    from bnlint.caffe.weights import caffemodel_bytes

    net = write(tmp_path, INPUT_2x3 + 'layer { name: "conv" type: "Convolution" '
                'bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 1 '
                'bias_term: false } }\n')
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(caffemodel_bytes(None, {"conv": [np.ones((2, 3, 1, 1), np.float32)]})
                        .replace(b"conv", b"co\xffv"))
    for command in ("forward", "info", "check", "verify", "fold"):
        if command not in registered():
            continue
        argv = [command, str(net), "--weights", str(weights)]
        if command == "verify":
            argv.insert(2, str(net))
        if command == "fold":
            argv += ["-o", str(tmp_path / "folded.prototxt")]
        code, out, err = invoke(argv)
        assert code in (0, 1), (argv, err)
        if command == "forward":
            assert "co\\xffv" in err, err


@pytest.fixture(scope="module")
def work_weights(tmp_path_factory):
    """(folder, weights file) for `run_all_commands`."""
    from test_fuzz import good_caffemodel

    work = tmp_path_factory.mktemp("red_team")
    weights = work / "weights.caffemodel"
    weights.write_bytes(good_caffemodel())
    return work, weights


def test_the_command_table_covers_every_command():
    """The generic runs above go through every registered command."""
    assert {name for name, _ in active_rows()} == registered() - {"rules"}
