"""`bnlint to-deploy` (bnlint.transform.deploy) and the input shapes it needs
(bnlint.caffe.inputs).

Fixture pairs (black-style): fixtures/deploy/NAME.prototxt goes in, with its options
on the first line (`# to-deploy: ARGS`), and NAME.deploy.prototxt is the exact text
that must come out. The corpus pairs check the result against the deploy nets people
wrote by hand: equal as Caffe runs them, or every difference named with its reason.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bnlint.caffe.inputs import (find_inputs, infer_input_shapes, is_label_top,
                                 parse_shape_option)
from bnlint.caffe.load import parse_text
from bnlint.caffe.net import NetState, net_view
from bnlint.caffe.netfile import reparse
from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError
from bnlint.files import read_text
from bnlint.source import SourceFile
from bnlint.transform import UnsafeRewriteError
from bnlint.transform.deploy import (INPUT_KEY, LAYER_FIELD, LAYER_ORDER, ONLY_DEPLOY,
                                     DeployOptions, Difference, compare_deploy,
                                     layers_missing_weights, reference_input_shapes, to_deploy)
from conftest import CORPUS, FIXTURES, needs_shared

DEPLOY_FIXTURES = FIXTURES / "deploy"


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """The command as the lead registers it in bnlint.cli.COMMANDS."""
    from bnlint import cli

    monkeypatch.setitem(cli.COMMANDS, "to-deploy",
                        cli.COMMANDS.get("to-deploy", ("bnlint.cli.to_deploy", "Deploy.")))


def net(text: str):
    return parse_text(SourceFile("<test>", text))


def deploy(text: str, **options) -> str:
    return to_deploy(net(text), DeployOptions(**options)).text


# --- fixture pairs ---------------------------------------------------------------------------

def _cases() -> list[Path]:
    return sorted(p for p in DEPLOY_FIXTURES.glob("*.prototxt")
                  if not p.name.endswith(".deploy.prototxt"))


def _args(path: Path) -> list[str]:
    first = path.read_bytes().decode().splitlines()[0]
    assert first.startswith("# to-deploy:"), f"{path.name}: first line must give the options"
    return shlex.split(first[len("# to-deploy:"):])


@pytest.mark.parametrize("path", _cases(), ids=lambda p: p.stem)
def test_fixture_gives_exactly_the_expected_deploy_net(path, run_cli):
    expected = path.with_name(path.stem + ".deploy.prototxt").read_bytes().decode()
    code, out, err = run_cli("to-deploy", str(path), *_args(path))
    assert code == 0, err
    assert out == expected
    # the deploy net of a deploy net is itself
    code, again, err = run_cli("to-deploy", str(path.with_name(path.stem + ".deploy.prototxt")),
                               *_args(path))
    assert code == 0, err
    assert again == expected


def test_already_deploy_fixture_is_its_own_output():
    src = DEPLOY_FIXTURES / "already_deploy.prototxt"
    assert src.read_text() == (DEPLOY_FIXTURES / "already_deploy.deploy.prototxt").read_text()


# --- input shapes ----------------------------------------------------------------------------

def _view(text: str):
    return net_view(net(text))


DATA = '''layer {{ name: "d" type: "{type}" top: "data" top: "label" {params} }}
layer {{ name: "c" type: "Convolution" bottom: "data" top: "c"
         convolution_param {{ num_output: 1 kernel_size: 1 }} }}
'''


@pytest.mark.parametrize("layer_type, params, shape", [
    ("Data", 'transform_param { crop_size: 227 mean_value: 104 mean_value: 117 '
             'mean_value: 123 }', (1, 3, 227, 227)),
    ("ImageData", 'image_data_param { new_height: 32 new_width: 48 }', (1, 3, 32, 48)),
    ("ImageData", 'image_data_param { new_height: 32 new_width: 48 is_color: false }',
     (1, 1, 32, 48)),
    ("ImageData", 'transform_param { crop_size: 20 } image_data_param { new_height: 32 '
                  'new_width: 48 }', (1, 3, 20, 20)),
    ("WindowData", 'transform_param { crop_size: 227 }', (1, 3, 227, 227)),
    ("AnnotatedData", 'transform_param { resize_param { height: 300 width: 300 } }',
     (1, 3, 300, 300)),
    ("AnnotatedData", 'transform_param { force_gray: true resize_param { height: 30 '
                      'width: 40 } }', (1, 1, 30, 40)),
    ("MemoryData", 'memory_data_param { batch_size: 4 channels: 2 height: 5 width: 6 }',
     (4, 2, 5, 6)),
    ("DummyData", 'dummy_data_param { shape { dim: 2 dim: 3 } }', (2, 3)),
    ("DummyData", 'dummy_data_param { num: 2 channels: 3 height: 4 width: 5 }', (2, 3, 4, 5)),
])
def test_input_shape_inferred_or_declared(layer_type, params, shape):
    view = _view(DATA.format(type=layer_type, params=params))
    assert infer_input_shapes(view, NetState()) == {"data": shape}


def test_batch_replaces_the_first_dimension():
    view = _view(DATA.format(type="MemoryData", params='memory_data_param { batch_size: 4 '
                                                       'channels: 2 height: 5 width: 6 }'))
    assert infer_input_shapes(view, NetState(), batch=1) == {"data": (1, 2, 5, 6)}
    view = _view(DATA.format(type="ImageData", params='image_data_param { new_height: 3 '
                                                      'new_width: 3 }'))
    assert infer_input_shapes(view, NetState(), batch=8) == {"data": (8, 3, 3, 3)}


def test_override_wins_and_names_an_input():
    view = _view(DATA.format(type="Data", params=""))
    assert infer_input_shapes(view, NetState(), {"data": (2, 1, 28, 28)}) == \
        {"data": (2, 1, 28, 28)}
    # naming the second top makes it an input instead of a label
    assert infer_input_shapes(view, NetState(), {"data": (1,), "label": (1, 4)}) == \
        {"data": (1,), "label": (1, 4)}
    with pytest.raises(BnlintError, match="'lable', which is not an input"):
        infer_input_shapes(view, NetState(), {"lable": (1,)})


def test_missing_shape_asks_for_input_shape():
    view = _view(DATA.format(type="Data", params='transform_param { scale: 0.0039 '
                                                 'mean_file: "m.binaryproto" }'))
    with pytest.raises(BnlintError) as err:
        infer_input_shapes(view, NetState())
    assert "--input-shape data=N,C,H,W" in err.value.message
    assert "mean_file" in err.value.message
    assert [b.shape for b in find_inputs(view, NetState())] == [None]


def test_labels_and_net_level_inputs():
    view = _view('input: "img"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 4\ninput_dim: 4\n'
                 'layer { name: "dd" type: "DummyData" top: "a" top: "b_label" '
                 'dummy_data_param { shape { dim: 1 dim: 2 } } }\n'
                 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 5 } } }\n')
    assert infer_input_shapes(view, NetState()) == {"img": (1, 3, 4, 4), "a": (1, 2),
                                                    "x": (5,)}
    dummy = view.layers[0]
    assert not is_label_top(dummy, 0) and is_label_top(dummy, 1)
    assert not is_label_top(dummy, 1, {"b_label": (1,)})


def test_only_the_layers_of_the_state_count():
    text = ('layer { name: "d" type: "Input" top: "data" include { phase: TRAIN } '
            'input_param { shape { dim: 64 dim: 3 } } }\n'
            'layer { name: "d" type: "Input" top: "data" include { phase: TEST } '
            'input_param { shape { dim: 10 dim: 3 } } }\n')
    assert infer_input_shapes(_view(text), NetState(Phase.TRAIN)) == {"data": (64, 3)}
    assert infer_input_shapes(_view(text), NetState(Phase.TEST)) == {"data": (10, 3)}


@pytest.mark.parametrize("text, expected", [
    ("data=1,3,224,224", ("data", (1, 3, 224, 224))),
    ("im_info=1,3", ("im_info", (1, 3))),
    ("data:1x3x8x8", ("data", (1, 3, 8, 8))),
    ("a/b=2", ("a/b", (2,))),
])
def test_parse_shape_option(text, expected):
    assert parse_shape_option(text) == expected


@pytest.mark.parametrize("text", ["data", "=1,2", "data=", "data=1,x", "data=-1,3"])
def test_parse_shape_option_rejects(text):
    with pytest.raises(BnlintError, match="--input-shape"):
        parse_shape_option(text)


# --- the pass, on small nets ---------------------------------------------------------------

TRAIN = '''\
name: "t"
layer {
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  transform_param { crop_size: 8 mean_value: 1 mean_value: 2 mean_value: 3 }
  data_param { source: "s" batch_size: 4 }
}
layer {
  name: "fc"
  type: "InnerProduct"
  bottom: "data"
  top: "fc"
  param { lr_mult: 1 }
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } }
}
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "fc"
  bottom: "label"
  top: "loss"
  softmax_param { axis: 1 }
}
'''


def test_softmax_keeps_the_losss_softmax_param():
    out = deploy(TRAIN)
    assert out.endswith('layer {\n  name: "prob"\n  type: "Softmax"\n  bottom: "fc"\n'
                        '  top: "prob"\n  softmax_param { axis: 1 }\n}\n')


def test_no_softmax_leaves_the_logits():
    out = deploy(TRAIN, softmax=False)
    assert "Softmax" not in out and out.rstrip().endswith("}")
    assert '  name: "fc"' in out


def test_prob_name_taken_gives_a_blob_named_softmax():
    text = TRAIN.replace('name: "fc"', 'name: "prob"')
    out = deploy(text)
    assert 'name: "fc_prob"' in out and 'top: "fc_prob"' in out


def test_existing_softmax_on_the_prediction_is_kept_instead_of_a_new_one():
    text = TRAIN + ('layer {\n  name: "scores"\n  type: "Softmax"\n  bottom: "fc"\n'
                    '  top: "scores"\n}\n')
    out = deploy(text)
    assert 'name: "prob"' not in out and 'name: "scores"' in out


def test_inputs_only_used_by_removed_layers_are_dropped():
    text = TRAIN.replace('top: "label"', 'top: "label"\n  top: "weights"').replace(
        'type: "Data"', 'type: "DummyData"').replace(
        'transform_param { crop_size: 8 mean_value: 1 mean_value: 2 mean_value: 3 }',
        'dummy_data_param { shape { dim: 1 dim: 3 } }')
    out = deploy(text)
    assert 'top: "weights"' not in out and "dim: 1 dim: 3" in out


def test_the_train_view_is_used_for_a_train_only_net():
    text = TRAIN.replace('  data_param', '  include { phase: TRAIN }\n  data_param')
    result = to_deploy(net(text))
    assert result.state.phase == Phase.TRAIN
    assert any("only name TRAIN" in n for n in result.notes)
    with pytest.raises(BnlintError, match="not valid under TEST: unknown bottom blob 'data'"):
        to_deploy(net(text), DeployOptions(phase=Phase.TEST))


def test_solver_and_layer_lists_are_refused():
    with pytest.raises(BnlintError, match="not a solver"):
        to_deploy(net('base_lr: 0.1\nmax_iter: 10\nnet: "n.prototxt"\n'))
    with pytest.raises(BnlintError, match="layer: \\[ ... \\]"):
        to_deploy(net('layer [ { name: "a" type: "ReLU" } ]\n'))


def test_missing_shape_is_bad_input():
    with pytest.raises(BnlintError, match="--input-shape data="):
        to_deploy(net(TRAIN.replace("crop_size: 8 ", "")))
    result = to_deploy(net(TRAIN.replace("crop_size: 8 ", "")),
                       DeployOptions(fallback_shapes={"data": (10, 3, 5, 5)}))
    assert result.input_shapes == {"data": (10, 3, 5, 5)}
    result = to_deploy(net(TRAIN), DeployOptions(fallback_shapes={"data": (10, 3, 5, 5)}))
    assert result.input_shapes == {"data": (1, 3, 8, 8)}   # inferred beats the fallback
    assert "dim: 1 dim: 3 dim: 8 dim: 8" in result.text    # and is what is written


def test_override_of_a_declared_input_is_noted_not_used():
    text = 'input: "x"\ninput_dim: 1\ninput_dim: 2\ninput_dim: 3\ninput_dim: 4\n'
    result = to_deploy(net(text), DeployOptions(input_shapes={"x": (9, 9)}))
    assert result.text == text
    assert any("not used" in n for n in result.notes)
    with pytest.raises(BnlintError, match="'y', which is not an input"):
        to_deploy(net(text), DeployOptions(input_shapes={"y": (9,)}))


def test_safe_mode_refuses_output_that_does_not_parse(monkeypatch):
    from bnlint.syntax.edits import Edit
    from bnlint.transform import deploy as deploy_module

    real = deploy_module.collapse_blank_lines

    def broken(text, edits):
        return real(text, edits) + [Edit(len(text), len(text), "}\n")]

    monkeypatch.setattr(deploy_module, "collapse_blank_lines", broken)
    with pytest.raises(UnsafeRewriteError, match="does not parse"):
        to_deploy(net(TRAIN))


def test_safe_mode_refuses_an_unstable_result(monkeypatch):
    from bnlint.syntax.edits import Edit
    from bnlint.transform import deploy as deploy_module

    real = deploy_module.collapse_blank_lines

    def growing(text, edits):
        return real(text, edits) + [Edit(0, 0, "# again\n")]

    monkeypatch.setattr(deploy_module, "collapse_blank_lines", growing)
    with pytest.raises(UnsafeRewriteError, match="not stable"):
        to_deploy(net(TRAIN))


# --- --check ------------------------------------------------------------------------------

HAND_DEPLOY = '''\
name: "written by hand"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer {
  name: "fc"  # the classifier
  type: "InnerProduct"
  bottom: "data"
  top: "fc"
  param { lr_mult: 1 decay_mult: 1 }
  inner_product_param { num_output: 2 bias_term: true weight_filler { type: "gaussian" } }
}
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
'''


def test_check_ignores_form_and_finds_meaning():
    generated = net(deploy(TRAIN))
    assert compare_deploy(generated, net(HAND_DEPLOY)) == []
    changed = HAND_DEPLOY.replace("num_output: 2", "num_output: 3").replace(
        'layer { name: "prob"', 'layer { name: "extra" type: "ReLU" bottom: "fc" top: "fc" }\n'
                                'layer { name: "prob"')
    assert compare_deploy(generated, net(changed)) == [
        Difference(ONLY_DEPLOY, "extra", "ReLU"),
        Difference(LAYER_FIELD, "fc", "InnerProduct", "inner_product_param.num_output", "2", "3"),
    ]
    shaped = HAND_DEPLOY.replace("dim: 8 dim: 8", "dim: 9 dim: 9")
    assert compare_deploy(generated, net(shaped)) == [
        Difference(LAYER_FIELD, INPUT_KEY, "Input", "input_param.shape[0].dim", "[1, 3, 8, 8]",
                   "[1, 3, 9, 9]")]


def test_check_batch_norm_defaults_and_order():
    a = net('input: "x"\ninput_dim: 1\ninput_dim: 1\ninput_dim: 1\ninput_dim: 1\n'
            'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" '
            'batch_norm_param { use_global_stats: true eps: 1e-5 } }\n'
            'layer { name: "r" type: "ReLU" bottom: "x" top: "x" }\n')
    b = net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 '
            'dim: 1 dim: 1 } } }\n'
            'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" '
            'batch_norm_param { moving_average_fraction: 0.9 } }\n'
            'layer { name: "r" type: "ReLU" bottom: "x" top: "x" }\n')
    assert compare_deploy(a, b) == []
    swapped = net(b.source.text.replace('name: "bn"', 'name: "TMP"').replace(
        'name: "r"', 'name: "bn"').replace('name: "TMP"', 'name: "r"'))
    assert Difference(LAYER_ORDER, generated="bn", deploy="r") in compare_deploy(a, swapped)
    wrong = net(b.source.text.replace("moving_average_fraction: 0.9",
                                      "use_global_stats: false eps: 0.001"))
    assert compare_deploy(a, wrong) == [
        Difference(LAYER_FIELD, "bn", "BatchNorm", "batch_norm_param.eps", None, "0.001"),
        Difference(LAYER_FIELD, "bn", "BatchNorm", "batch_norm_param.use_global_stats",
                   "true", "false")]
    assert str(compare_deploy(a, wrong)[0]) == \
        "layer 'bn' (BatchNorm): batch_norm_param.eps: generated unset, deploy 0.001"


def test_cli_check(run_cli, tmp_path):
    train = tmp_path / "train.prototxt"
    train.write_text(TRAIN)
    hand = tmp_path / "deploy.prototxt"
    hand.write_text(HAND_DEPLOY)
    code, out, err = run_cli("to-deploy", str(train), "--check", str(hand))
    assert code == 0 and "matches" in out and "note:" in err
    hand.write_text(HAND_DEPLOY.replace("num_output: 2", "num_output: 3"))
    code, out, _ = run_cli("to-deploy", str(train), "--check", str(hand))
    assert code == 1
    assert "1 difference(s)" in out
    assert "layer 'fc' (InnerProduct): inner_product_param.num_output: generated 2, deploy 3" \
        in out


def test_cli_check_takes_batch_and_unknown_shapes_from_the_deploy_file(run_cli, tmp_path):
    train = tmp_path / "train.prototxt"
    train.write_text(TRAIN.replace("crop_size: 8 ", ""))
    hand = tmp_path / "deploy.prototxt"
    hand.write_text(HAND_DEPLOY.replace("dim: 1 dim: 3", "dim: 10 dim: 3"))
    code, out, err = run_cli("to-deploy", str(train), "--check", str(hand))
    assert code == 0, out + err
    assert "(the deploy file)" in err


# --- the command ----------------------------------------------------------------------------

def test_cli_output_and_errors(run_cli, tmp_path):
    train = tmp_path / "train.prototxt"
    train.write_text(TRAIN)
    target = tmp_path / "deploy.prototxt"
    code, out, err = run_cli("to-deploy", str(train), "-o", str(target))
    assert code == 0 and out == "" and "note: SoftmaxWithLoss 'loss' → Softmax 'prob'" in err
    assert target.read_text() == deploy(TRAIN)
    code, _, err = run_cli("to-deploy", str(train), "-o", str(train))
    assert code == 2 and "overwrite the input" in err
    assert train.read_text() == TRAIN
    code, _, err = run_cli("to-deploy", str(train), "--input-shape", "data")
    assert code == 2 and "NAME=N,C,H,W" in err
    code, _, err = run_cli("to-deploy", str(tmp_path / "nope.prototxt"))
    assert code == 2 and "no such file" in err
    train.write_text(TRAIN.replace("crop_size: 8 ", ""))
    code, _, err = run_cli("to-deploy", str(train))
    assert code == 2 and "--input-shape data=N,C,H,W" in err
    code, out, _ = run_cli("to-deploy", str(train), "--input-shape", "data=2,3,4,4",
                           "--phase", "test", "--batch", "5")
    assert code == 0 and "dim: 5 dim: 3 dim: 4 dim: 4" in out   # --batch beats --input-shape


def _caffemodel(path: Path, blobs: dict[str, int]) -> None:
    from bnlint.caffe.schema import default_schema

    model = default_schema().message_class("NetParameter")()
    for name, count in blobs.items():
        layer = model.layer.add()
        layer.name = name
        for _ in range(count):
            layer.blobs.add().data.extend([0.0])
    path.write_bytes(model.SerializeToString())


def test_weights_warns_about_layers_without_blobs(run_cli, tmp_path):
    text = TRAIN.replace('layer {\n  name: "loss"', 'layer {\n  name: "scale"\n  type: "Scale"\n'
                         '  bottom: "fc"\n  top: "fc"\n}\nlayer {\n  name: "loss"')
    train = tmp_path / "train.prototxt"
    train.write_text(text)
    weights = tmp_path / "w.caffemodel"
    _caffemodel(weights, {"fc": 2, "data": 0})
    code, out, err = run_cli("to-deploy", str(train), "--weights", str(weights))
    assert code == 0 and out
    assert "1 layer(s) have parameters but no blobs" in err
    assert "'scale' (Scale)" in err and "'fc'" not in err.split("no blobs")[1]
    _caffemodel(weights, {"fc": 2, "scale": 1})
    code, _, err = run_cli("to-deploy", str(train), "--weights", str(weights))
    assert code == 0 and "warning" not in err
    weights.write_bytes(b"\x00\x01garbage")
    code, _, err = run_cli("to-deploy", str(train), "--weights", str(weights))
    assert code == 2


def test_layers_missing_weights_of_unknown_types_by_type():
    deploy_net = net('input: "x"\ninput_dim: 1\ninput_dim: 2\ninput_dim: 3\ninput_dim: 3\n'
                     'layer { name: "dw" type: "DepthwiseConvolution" bottom: "x" top: "y" }\n'
                     'layer { name: "r" type: "ReLU" bottom: "y" top: "y" }\n')
    assert [lv.name for lv in layers_missing_weights(deploy_net, {})] == ["dw"]


# --- the corpus -----------------------------------------------------------------------------

@dataclass
class Pair:
    train: str
    deploy: str
    shapes: dict = field(default_factory=dict)
    # (regex over a difference line, the reason); every line must match one, and each
    # pattern at least one line
    differences: list = field(default_factory=list)
    error: str | None = None
    # error codes `check` rightly gives the generated net and not the train net
    new_errors: frozenset = frozenset()

    @property
    def id(self) -> str:
        return self.train.split("/")[-1]


BN_FOLDED = [
    (r"\((BatchNorm|Scale)\): only in the generated net",
     "the hand-made deploy folded BatchNorm+Scale into the convolutions (merge_bn.py)"),
    (r"\(Convolution\): convolution_param\.bias_term: generated false, deploy unset",
     "folding gave each convolution a bias"),
]
SSD_HEAD = [(r"'(mbox_conf_reshape|mbox_conf_softmax|mbox_conf_flatten|detection_out)' "
             r"\(\w+\): only in the deploy net",
             "a train net has no detection head: SSD's deploy copies it from the test net")]
SSD_THRESHOLDS = [(r"'detection_out' \(DetectionOutput\): detection_output_param\."
                   r"(confidence_threshold|keep_top_k|nms_param\.top_k)",
                   "the deploy tunes DetectionOutput for display (0.25 confidence, fewer "
                   "boxes); the test net keeps everything for mAP")]
# The generated deploy net of a SegNet train net keeps BN in bn_mode LEARN (only
# compute_bn_statistics.py, with the weights, can switch it): BN021 says it normalises
# with batch statistics, as it does.
SEGNET_BN_LEARN = frozenset({"BN021"})
SEGNET = [
    (r"<Input> \(Input\): only in the generated net|'data' \(DenseImageData\): only in the "
     r"deploy net",
     "SegNet's inference net keeps reading images with DenseImageData instead of an Input"),
    (r"\(BN\): bn_param\.bn_mode: generated unset, deploy INFERENCE",
     "the SegNet fork's BN switches to stored statistics with bn_mode: INFERENCE, a fork "
     "field to-deploy leaves as written (and notes)"),
]
FASTER_RCNN = [
    (r"'(rpn_cls_prob_reshape|proposal|roi_pool)' \(\w+\): only in the deploy net",
     "py-faster-rcnn's test net wires the proposals straight into RoI pooling; in the train "
     "net they go through ProposalTargetLayer, which reads gt_boxes (a label), so the RoI "
     "head cannot survive: rewiring it is model-specific"),
    (r"\(\w+\): only in the deploy net", "the RoI head (after roi_pool) for the same reason"),
]

PAIRS = [
    Pair("caffe/mnist__lenet_train_test", "caffe/mnist__lenet"),
    Pair("caffe/mnist__lenet_train_test@V1_pre-e6c80da", "caffe/mnist__lenet@V1_pre-e6c80da"),
    Pair("caffe/bvlc_alexnet__train_val", "caffe/bvlc_alexnet__deploy"),
    Pair("caffe/bvlc_googlenet__train_val", "caffe/bvlc_googlenet__deploy"),
    Pair("caffe/bvlc_reference_caffenet__train_val", "caffe/bvlc_reference_caffenet__deploy"),
    Pair("caffe/bvlc_reference_caffenet__train_val@V1_pre-e6c80da",
         "caffe/bvlc_reference_caffenet__deploy@V1_pre-e6c80da"),
    Pair("caffe/imagenet__imagenet_train@V0_pre-1fbb5bb",
         "caffe/imagenet__imagenet_deploy@V0_pre-1fbb5bb"),
    Pair("caffe/finetune_flickr_style__train_val", "caffe/finetune_flickr_style__deploy"),
    Pair("caffe/cifar10__cifar10_quick_train_test", "caffe/cifar10__cifar10_quick"),
    Pair("caffe/cifar10__cifar10_full_train_test", "caffe/cifar10__cifar10_full"),
    Pair("caffe/siamese__mnist_siamese_train_test", "caffe/siamese__mnist_siamese",
         {"pair_data": (10000, 2, 28, 28)}, [
             (r"'(slice_pair|\w+_p)' \(\w+\): only in the generated net",
              "the hand-made deploy is one tower fed single images (feature extraction); the "
              "train net's deploy keeps the pair input, its Slice and both towers"),
             (r"<Input> \(Input\): (top|input_param\.shape\[0\]\.dim): generated",
              "hence its input is 'data' with 1 channel, not 'pair_data' with 2"),
         ]),
    Pair("SqueezeNet/SqueezeNet_v1.0__train_val", "SqueezeNet/SqueezeNet_v1.0__deploy"),
    Pair("SqueezeNet/SqueezeNet_v1.1__train_val", "SqueezeNet/SqueezeNet_v1.1__deploy"),
    Pair("MobileNet-SSD/MobileNetSSD_test@7e29b6c_2017-06-08",
         "MobileNet-SSD/MobileNetSSD_deploy@7e29b6c_2017-06-08",
         error="not valid under TEST: unknown bottom blob 'data'"),   # see the test's doc
    Pair("MobileNet-SSD/MobileNetSSD_train@7e29b6c_2017-06-08",
         "MobileNet-SSD/MobileNetSSD_deploy@7e29b6c_2017-06-08", {}, BN_FOLDED + SSD_HEAD),
    Pair("MobileNet-SSD/template__MobileNetSSD_test_template",
         "MobileNet-SSD/template__MobileNetSSD_deploy_template", {}, SSD_THRESHOLDS),
    Pair("MobileNet-SSD/template__MobileNetSSD_train_template",
         "MobileNet-SSD/template__MobileNetSSD_deploy_template", {}, SSD_HEAD),
    Pair("MobileNet-SSD/voc__MobileNetSSD_test", "MobileNet-SSD/voc__MobileNetSSD_deploy", {},
         BN_FOLDED + SSD_THRESHOLDS),
    Pair("MobileNet-SSD/voc__MobileNetSSD_train", "MobileNet-SSD/voc__MobileNetSSD_deploy", {},
         BN_FOLDED + SSD_HEAD),
    Pair("MobileNet-SSD/train", "MobileNet-SSD/deploy", {}, SSD_HEAD),
    Pair("SegNet-Tutorial/Models__segnet_train", "SegNet-Tutorial/Models__segnet_inference",
         {"data": (1, 3, 360, 480)}, SEGNET, new_errors=SEGNET_BN_LEARN),
    Pair("SegNet-Tutorial/Models__segnet_basic_train",
         "SegNet-Tutorial/Models__segnet_basic_inference", {"data": (1, 3, 360, 480)}, SEGNET,
         new_errors=SEGNET_BN_LEARN),
    Pair("SegNet-Tutorial/Models__bayesian_segnet_basic_train",
         "SegNet-Tutorial/Models__bayesian_segnet_basic_inference", {"data": (1, 3, 360, 480)},
         SEGNET + [(r"\(Dropout\): dropout_param\.sample_weights_test: generated unset, "
                    r"deploy true",
                    "Bayesian SegNet samples dropout at test time (Monte Carlo), a fork "
                    "setting the inference net adds by hand")], new_errors=SEGNET_BN_LEARN),
    Pair("caffe-model/det__faster_rcnn__models__pascal_voc__mobilenet__faster_voc_mobilenet-dw",
         "caffe-model/det__faster_rcnn__models__pascal_voc__mobilenet__deploy_faster_voc_"
         "mobilenet-dw", {"im_info": (1, 3)}, FASTER_RCNN),
    Pair("caffe-model/det__faster_rcnn__models__pascal_voc__resnet18__faster_voc_resnet18-priv-"
         "merge", "caffe-model/det__faster_rcnn__models__pascal_voc__resnet18__deploy_faster_"
                  "voc_resnet18-priv-merge", {"im_info": (1, 3)}, FASTER_RCNN),
]


def _load(name: str, dialect=None):
    source = read_text(str(CORPUS / f"{name}.prototxt"))
    return parse_text(source, dialect=dialect) if dialect is not None else parse_text(source)


def _error_codes(source: SourceFile) -> set[str]:
    from bnlint.lint.config import LintConfig
    from bnlint.lint.diagnostics import Severity
    from bnlint.lint.runner import lint_source

    return {d.code for d in lint_source(source, LintConfig()).diagnostics
            if d.severity >= Severity.ERROR}


@needs_shared
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.id)
def test_corpus_pair(pair):
    """The generated deploy net against the hand-written one, as `--check` compares them.

    MobileNetSSD_test@7e29b6c is the one test net Caffe itself refuses in TEST: its
    AnnotatedData layer says `phase: TRAIN` (copied from the train net), so conv1's
    bottom 'data' does not exist; to-deploy says so instead of guessing.
    """
    train = _load(pair.train)
    reference = _load(pair.deploy, dialect=train.dialect)
    fallback = reference_input_shapes(reference)
    batches = {shape[0] for shape in fallback.values() if shape}
    options = DeployOptions(input_shapes=dict(pair.shapes), fallback_shapes=fallback,
                            batch=batches.pop() if len(batches) == 1 else None)
    if pair.error:
        with pytest.raises(BnlintError, match=re.escape(pair.error)):
            to_deploy(train, options)
        return
    result = to_deploy(train, options)
    generated = reparse(train, result.text)
    differences = compare_deploy(generated, reference, result.state)
    lines = [str(d) for d in differences]       # the patterns are --check's printed lines
    unexplained = [line for line in lines
                   if not any(re.search(p, line) for p, _ in pair.differences)]
    assert unexplained == []
    unused = [p for p, _ in pair.differences if not any(re.search(p, d) for d in lines)]
    assert unused == []
    # the result is a net bnlint check accepts, with no error the train net lacks
    assert _error_codes(SourceFile(train.path, result.text)) <= \
        _error_codes(train.source) | pair.new_errors


TRAIN_TEST_PAIRS = [
    ("DenseNetCaffe/train_densenet", "DenseNetCaffe/test_densenet", {"Data1": (1, 3, 32, 32)}),
    ("caffe/hdf5_classification__nonlinear_auto_train",
     "caffe/hdf5_classification__nonlinear_auto_test", {"data": (1, 4)}),
]


@needs_shared
@pytest.mark.parametrize("train_name, test_name, shapes", TRAIN_TEST_PAIRS,
                         ids=[p[0].split("/")[-1] for p in TRAIN_TEST_PAIRS])
def test_corpus_train_and_test_nets_give_one_deploy_net(train_name, test_name, shapes):
    """A train net and its separate test net (data layer and loss included, no deploy file
    in the repository): their deploy nets must be the same net."""
    train, test = _load(train_name), _load(test_name)
    options = DeployOptions(input_shapes=shapes)
    a, b = to_deploy(train, options), to_deploy(test, options)
    assert compare_deploy(reparse(train, a.text), reparse(test, b.text)) == []


def _train_and_test_nets() -> list[str]:
    if not CORPUS.is_dir():
        return []
    rows = (CORPUS / "MANIFEST.tsv").read_text().splitlines()[1:]
    return [r.split("\t")[0] for r in rows
            if r.split("\t")[5].split("(")[0] in ("train", "test")
            and r.split("\t")[0].endswith(".prototxt")]


@needs_shared
@pytest.mark.parametrize("name", _train_and_test_nets())
def test_every_corpus_train_net_deploys_or_says_why(name):
    """Any corpus train/test net: a deploy net that passes the safe mode, or a BnlintError
    (a shape the prototxt does not give is asked for, and then given)."""
    train = parse_text(read_text(str(CORPUS / name)))
    shapes: dict = {}
    for _ in range(3):
        try:
            result = to_deploy(train, DeployOptions(input_shapes=shapes))
        except BnlintError as err:
            missing = re.findall(r"'([^']+)' \(layer '[^']*', \w+\): ", err.message)
            if "cannot infer the input shape" not in err.message or not missing:
                assert "not valid under" in err.message
                return
            shapes.update({m: (1, 3, 32, 32) for m in missing})
            continue
        out = reparse(train, result.text)
        assert not any(lv.type in ("SoftmaxWithLoss", "Accuracy") for lv in net_view(out).layers)
        return
    pytest.fail("shapes asked for again after they were given")


def test_check_treats_caffes_implicit_conv_defaults_as_equal():
    """An empty `stride`/`pad`/`dilation` is 1/0/1 in Caffe: writing it changes nothing."""
    def net(conv: str) -> object:
        text = ('layer { name: "in" type: "Input" top: "d" input_param { shape { dim: 1 '
                'dim: 1 dim: 4 dim: 4 } } }\n'
                f'layer {{ name: "c" type: "Convolution" bottom: "d" top: "c" '
                f'convolution_param {{ num_output: 1 kernel_size: 3 {conv} }} }}\n')
        return parse_text(SourceFile("n.prototxt", text))

    assert compare_deploy(net("stride: 1 pad: 0 dilation: 1"), net("")) == []
    assert compare_deploy(net("stride: 2"), net("")) != []


def test_check_never_overwrites_the_deploy_it_checks(run_cli, tmp_path):
    train = FIXTURES / "examples" / "tiny_resnet_train_val.prototxt"
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text((FIXTURES / "examples" / "tiny_resnet_deploy_by_hand.prototxt").read_text())
    before = deploy.read_bytes()
    code, _, err = run_cli("to-deploy", str(train), "--check", str(deploy), "-o", str(deploy))
    assert code == 2 and "overwrite the input" in err
    assert deploy.read_bytes() == before
