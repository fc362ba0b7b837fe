"""Caffe's load-time upgrades (bnlint.caffe.upgrade), checked two ways.

Real history: the corpus holds old and current versions of the same BVLC example nets
(V0, V1, net-level inputs). Upgrading the old file must give the current one, except
where people edited the file between versions; those spots are named where they occur.

Small hand-written nets: one test group per step, including the cases where Caffe drops
something silently or refuses the net.
"""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from hypothesis import given
from hypothesis import strategies as st

from bnlint.caffe.load import parse_text
from bnlint.caffe.schema import default_schema
from bnlint.caffe.upgrade import (
    INPUT_LAYER_NAME,
    STEP_BATCH_NORM,
    STEP_DATA,
    STEP_INPUT,
    STEP_SOLVER_TYPE,
    STEP_V0,
    STEP_V1,
    V0_LAYER_TYPES,
    V1_LAYER_TYPES,
    needs_batch_norm_upgrade,
    needs_data_upgrade,
    needs_input_upgrade,
    needs_upgrade,
    needs_v0_upgrade,
    needs_v1_upgrade,
    upgrade_net,
    upgrade_solver,
    upgrade_v1_layer,
    v1_layer_type,
)
from bnlint.errors import BnlintError
from bnlint.files import read_text
from bnlint.source import SourceFile
from conftest import CORPUS, needs_shared

SCHEMA = default_schema()
NetParameter = SCHEMA.message_class("NetParameter")
V1LayerParameter = SCHEMA.message_class("V1LayerParameter")
SolverParameter = SCHEMA.message_class("SolverParameter")


def net(text: str):
    """A NetParameter from prototxt text, through bnlint's own loader."""
    parsed = parse_text(SourceFile("<test>", text), kind="NetParameter")
    assert parsed.problems == []
    return parsed.message


def corpus_net(name: str):
    parsed = parse_text(read_text(str(CORPUS / "caffe" / name)))
    assert parsed.problems == []
    return parsed.message


def layer_named(message, name: str):
    (found,) = [layer for layer in message.layer if layer.name == name]
    return found


def as_text(message) -> str:
    return text_format.MessageToString(message)


# --- the corpus: old files against their current versions ------------------------------

SAME_NET_PAIRS = [
    # (old file, current file, steps the old file needs)
    ("bvlc_reference_caffenet__train_val@V1_pre-e6c80da.prototxt",
     "bvlc_reference_caffenet__train_val.prototxt", [STEP_V1]),
    ("bvlc_reference_caffenet__deploy@V1_pre-e6c80da.prototxt",
     "bvlc_reference_caffenet__deploy.prototxt", [STEP_V1, STEP_INPUT]),
    ("mnist__lenet@V1_pre-e6c80da.prototxt", "mnist__lenet.prototxt", [STEP_V1, STEP_INPUT]),
    ("mnist__lenet_train_test@V1_pre-e6c80da.prototxt", "mnist__lenet_train_test.prototxt",
     [STEP_V1]),
    ("bvlc_googlenet__deploy@input_dim_pre-2f5889c.prototxt", "bvlc_googlenet__deploy.prototxt",
     [STEP_INPUT]),
    ("bvlc_googlenet__deploy@input_shape_pre-2cc3844.prototxt", "bvlc_googlenet__deploy.prototxt",
     [STEP_INPUT]),
]

CURRENT_NETS = sorted({pair[1] for pair in SAME_NET_PAIRS})
OLD_NETS = [pair[0] for pair in SAME_NET_PAIRS] + [
    "imagenet__imagenet_deploy@V0_pre-1fbb5bb.prototxt",
    "imagenet__imagenet_train@V0_pre-1fbb5bb.prototxt",
]


def adopt_input_layer_name(upgraded, current) -> None:
    """Caffe names the Input layer it creates "input"; the maintainers, converting these
    files by hand, named it after its top ("data"). A name, not an upgrade difference."""
    assert upgraded.layer[0].name == INPUT_LAYER_NAME and upgraded.layer[0].type == "Input"
    assert current.layer[0].type == "Input"
    upgraded.layer[0].name = current.layer[0].name


@needs_shared
@pytest.mark.parametrize("old_name, current_name, steps", SAME_NET_PAIRS,
                         ids=[pair[0].split("@")[1].split("_pre")[0] + ":" + pair[0].split("@")[0]
                              for pair in SAME_NET_PAIRS])
def test_old_file_upgrades_to_its_current_version(old_name, current_name, steps):
    result = upgrade_net(corpus_net(old_name))
    current = corpus_net(current_name)
    assert result.steps == steps
    if STEP_INPUT in steps:
        adopt_input_layer_name(result.net, current)
    assert as_text(result.net) == as_text(current)


@needs_shared
def test_v0_deploy_upgrades_to_caffenet_deploy():
    """The V0 ImageNet deploy net became bvlc_reference_caffenet/deploy.prototxt. The
    V0 file still carried training settings (blobs_lr, weight_decay, fillers) that people
    later deleted from the deploy file by hand, so those are compared as upgraded from
    the V0 fields, and then dropped from the comparison with the current file."""
    result = upgrade_net(corpus_net("imagenet__imagenet_deploy@V0_pre-1fbb5bb.prototxt"))
    current = corpus_net("bvlc_reference_caffenet__deploy.prototxt")
    assert result.steps == [STEP_V0, STEP_V1, STEP_INPUT]
    upgraded = result.net

    conv2 = layer_named(upgraded, "conv2")
    assert [(p.lr_mult, p.decay_mult) for p in conv2.param] == [(1, 1), (2, 0)]
    assert conv2.convolution_param.weight_filler.type == "gaussian"
    assert conv2.convolution_param.bias_filler.value == 1
    assert list(conv2.convolution_param.pad) == [2]   # a V0 `pad`, not a padding layer
    pool1 = layer_named(upgraded, "pool1")
    assert pool1.pooling_param.kernel_size == 3 and pool1.pooling_param.stride == 2

    for layer in upgraded.layer:
        layer.ClearField("param")
        for param_name in ("convolution_param", "inner_product_param"):
            if layer.HasField(param_name):
                getattr(layer, param_name).ClearField("weight_filler")
                getattr(layer, param_name).ClearField("bias_filler")
    adopt_input_layer_name(upgraded, current)
    assert as_text(upgraded) == as_text(current)


@needs_shared
def test_v0_train_upgrades_to_caffenet_train_phase():
    """The V0 ImageNet train net is the TRAIN half of bvlc_reference_caffenet/train_val.

    Human edits since then, left out of the comparison: the TEST-phase data and Accuracy
    layers were added (so the current file is read in its TRAIN view, include rules
    removed), the data source moved from LevelDB to LMDB with new paths, the mean file
    moved, and the loss got a named top. Everything the upgrade decides is compared:
    layer names, types, blobs, params, fillers, and where the V0 data fields went.
    """
    upgraded = upgrade_net(corpus_net("imagenet__imagenet_train@V0_pre-1fbb5bb.prototxt")).net
    current = corpus_net("bvlc_reference_caffenet__train_val.prototxt")
    train_view = [layer for layer in current.layer
                  if not any(rule.phase == 1 for rule in layer.include)]
    for layer in train_view:
        layer.ClearField("include")

    data = upgraded.layer[0]
    assert data.type == "Data"
    assert data.transform_param.mirror and data.transform_param.crop_size == 227
    assert data.transform_param.mean_file.endswith("imagenet_mean.binaryproto")
    assert data.data_param.batch_size == 256
    assert not data.data_param.HasField("mean_file")   # V0 fields go to transform_param directly

    for layers in (upgraded.layer, train_view):
        data = layers[0]
        data.data_param.ClearField("source")
        data.data_param.ClearField("backend")
        data.transform_param.ClearField("mean_file")
        layers[-1].ClearField("top")                    # the loss's "loss" top came later
    assert [as_text(layer) for layer in upgraded.layer] == [as_text(layer) for layer in train_view]


@needs_shared
@pytest.mark.parametrize("name", CURRENT_NETS)
def test_current_corpus_net_is_left_alone(name):
    original = corpus_net(name)
    result = upgrade_net(original)
    assert not needs_upgrade(original)
    assert result.notes == [] and result.steps == [] and not result.changed
    assert result.net == original


@needs_shared
@pytest.mark.parametrize("name", OLD_NETS)
def test_upgrading_twice_changes_nothing_more(name):
    once = upgrade_net(corpus_net(name)).net
    assert not needs_upgrade(once)
    twice = upgrade_net(once)
    assert twice.steps == [] and twice.notes == [] and twice.net == once


@needs_shared
def test_caffes_own_bn_example_gets_decay_mult_written():
    """cifar10_full_sigmoid_train_test_bn has `param { lr_mult: 0 }` three times: Caffe
    still runs the BatchNorm upgrade on it, which adds decay_mult 0 (no effect on
    training, since the learning rate is already 0)."""
    original = corpus_net("cifar10__cifar10_full_sigmoid_train_test_bn.prototxt")
    result = upgrade_net(original)
    assert result.steps == [STEP_BATCH_NORM]
    assert len(result.notes) == 3
    for layer in result.net.layer:
        if layer.type == "BatchNorm":
            written = [(p.HasField("decay_mult"), p.decay_mult) for p in layer.param]
            assert written == [(True, 0)] * 3


# --- V0 -> V1 ------------------------------------------------------------------------

V0_WITH_PADDING = """
name: "padded"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 32 input_dim: 32
layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
layers { layer { name: "conv1" type: "conv" num_output: 8 kernelsize: 5 stride: 1
                 blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 }
         bottom: "pad1" top: "conv1" }
layers { layer { name: "conv1b" type: "conv" num_output: 4 kernelsize: 5 }
         bottom: "pad1" top: "conv1b" }
layers { layer { name: "pad2" type: "padding" pad: 1 } bottom: "conv1" top: "pad2" }
layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 3 stride: 2 }
         bottom: "pad2" top: "pool1" }
"""


def test_v0_padding_layers_fold_into_their_consumers():
    original = net(V0_WITH_PADDING)
    assert needs_v0_upgrade(original) and needs_v1_upgrade(original)
    result = upgrade_net(original)
    upgraded = result.net
    assert [layer.name for layer in upgraded.layer] == ["input", "conv1", "conv1b", "pool1"]
    conv1, conv1b, pool1 = upgraded.layer[1:]
    assert list(conv1.bottom) == ["data"] and list(conv1.convolution_param.pad) == [2]
    assert list(conv1b.bottom) == ["data"] and list(conv1b.convolution_param.pad) == [2]
    assert list(pool1.bottom) == ["conv1"] and pool1.pooling_param.pad == 1
    assert pool1.pooling_param.pool == SCHEMA.enum_descriptor(
        "PoolingParameter.PoolMethod").values_by_name["AVE"].number
    assert any("'pad1' folded into conv layer 'conv1b'" in note for note in result.notes)
    assert any("'pad2' folded into pool layer 'pool1' (pad 1)" in note for note in result.notes)


def test_v0_fields_land_in_the_right_param():
    upgraded = upgrade_net(net("""
        layers { layer { name: "d" type: "data" source: "db" batchsize: 16 meanfile: "m"
                         cropsize: 9 mirror: true scale: 0.5 rand_skip: 3 } top: "x" }
        layers { layer { name: "c" type: "conv" num_output: 2 kernelsize: 3 group: 2
                         biasterm: false weight_filler { type: "xavier" } }
                 bottom: "x" top: "c" }
        layers { layer { name: "n" type: "lrn" local_size: 3 alpha: 2 beta: 0.5 k: 2 }
                 bottom: "c" top: "n" }
        layers { layer { name: "cat" type: "concat" concat_dim: 1 } bottom: "n" top: "cat" }
    """)).net
    data, conv, lrn, concat = upgraded.layer
    assert (data.type, data.data_param.source, data.data_param.batch_size,
            data.data_param.rand_skip) == ("Data", "db", 16, 3)
    assert (data.transform_param.mean_file, data.transform_param.crop_size,
            data.transform_param.mirror, data.transform_param.scale) == ("m", 9, True, 0.5)
    assert conv.type == "Convolution" and list(conv.convolution_param.kernel_size) == [3]
    assert conv.convolution_param.group == 2 and not conv.convolution_param.bias_term
    assert conv.convolution_param.weight_filler.type == "xavier"
    assert (lrn.lrn_param.local_size, lrn.lrn_param.alpha, lrn.lrn_param.k) == (3, 2, 2)
    assert concat.type == "Concat" and concat.concat_param.HasField("concat_dim")


def test_v0_field_foreign_to_the_type_is_dropped_with_a_note():
    result = upgrade_net(net("""
        input: "x" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2
        layers { layer { name: "r" type: "relu" num_output: 3 new_num: 2 } bottom: "x" top: "x" }
    """))
    relu = result.net.layer[1]
    assert relu.type == "ReLU" and not relu.HasField("convolution_param")
    assert any("'r': num_output does not apply to type 'relu'" in note for note in result.notes)
    assert any("'r': Caffe never reads new_num" in note for note in result.notes)


def test_v0_type_table_maps_into_the_v1_table():
    v1_names = set(SCHEMA.enum_descriptor("V1LayerParameter.LayerType").values_by_name)
    assert set(V0_LAYER_TYPES.values()) <= v1_names
    assert "padding" not in V0_LAYER_TYPES


@pytest.mark.parametrize("text, message", [
    ('layers { layer { name: "a" type: "warp" } top: "x" }', "unknown V0 layer type 'warp'"),
    ('layers { layer { name: "a" type: "relu" } bottom: "nope" top: "x" }',
     "bottom 'nope' is neither a net input nor a top"),
    ('input: "x" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1 '
     'layers { layer { name: "p" type: "padding" pad: 1 } bottom: "x" top: "p" } '
     'layers { layer { name: "r" type: "relu" } bottom: "p" top: "r" }',
     "padding layer 'p' feeds layer 'r' of type 'relu'"),
    ('input: "x" input: "y" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1 '
     'input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1 '
     'layers { layer { name: "p" type: "padding" pad: 1 } bottom: "x" top: "p" } '
     'layers { layer { name: "c" type: "conv" } bottom: "p" bottom: "y" top: "c" }',
     "has 2 bottoms"),
])
def test_v0_nets_caffe_refuses(text, message):
    with pytest.raises(BnlintError, match=message):
        upgrade_net(net(text))


def test_v0_upgrade_keeps_only_what_caffe_keeps():
    """UpgradeV0Net builds a fresh net: a V1-style entry keeps only bottom/top, and
    net-level fields beyond name/input/input_dim/force_backward are lost."""
    result = upgrade_net(net("""
        name: "mixed" debug_info: true
        input: "x" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2
        layers { layer { name: "r" type: "relu" } bottom: "x" top: "r" }
        layers { name: "v1" type: SIGMOID bottom: "r" top: "s" }
    """))
    upgraded = result.net
    assert upgraded.name == "mixed" and not upgraded.debug_info
    sigmoid = upgraded.layer[2]
    assert (sigmoid.name, sigmoid.type, list(sigmoid.bottom)) == ("", "", ["r"])
    assert any("dropped net-level debug_info" in note for note in result.notes)
    assert any("keeps only its bottom and top, dropping name, type" in note
               for note in result.notes)


# --- data transformation ----------------------------------------------------------------

def test_v1_data_fields_move_to_transform_param():
    original = net("""
        layers { name: "d" type: DATA top: "x"
                 data_param { source: "db" scale: 0.25 mean_file: "m" crop_size: 7 mirror: true }
                 transform_param { scale: 9 mean_value: 104 } }
        layers { name: "w" type: WINDOW_DATA top: "y" window_data_param { mirror: true } }
    """)
    assert needs_data_upgrade(original)
    result = upgrade_net(original)
    assert result.steps == [STEP_DATA, STEP_V1]
    data, window = result.net.layer
    assert as_text(data.data_param) == 'source: "db"\n'
    assert (data.transform_param.scale, data.transform_param.mean_file,
            data.transform_param.crop_size, data.transform_param.mirror) == (0.25, "m", 7, True)
    assert list(data.transform_param.mean_value) == [104]   # not a legacy field: untouched
    assert window.transform_param.mirror and not window.window_data_param.HasField("mirror")
    assert ("data layer 'd': data_param scale, mean_file, crop_size, mirror → transform_param"
            in result.notes)


def test_current_data_layer_legacy_fields_are_not_moved():
    """Caffe only upgrades V1 `layers`; data_param.mean_file in a current layer stays put."""
    original = net('layer { name: "d" type: "Data" top: "x" data_param { mean_file: "m" } }')
    assert not needs_data_upgrade(original)
    result = upgrade_net(original)
    assert result.steps == [] and result.net == original


def test_data_upgrade_touches_only_data_layer_types():
    original = net("""
        layers { name: "d" type: DATA top: "x" data_param { mirror: true } }
        layers { name: "h" type: HDF5_DATA top: "y" }
    """)
    hdf5 = upgrade_net(original).net.layer[1]
    assert not hdf5.HasField("transform_param")


# --- V1 -> V2 ------------------------------------------------------------------------

def test_v1_blobs_lr_and_friends_become_param_blocks():
    v1 = net("""
        layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "y"
                 blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
                 param: "shared_w" blob_share_mode: PERMISSIVE loss_weight: 0.5
                 include { phase: TRAIN stage: "s" }
                 inner_product_param { num_output: 10 } }
    """).layers[0]
    layer = upgrade_v1_layer(v1)
    expected = """
        name: "ip" type: "InnerProduct" bottom: "x" top: "y"
        param { name: "shared_w" share_mode: PERMISSIVE lr_mult: 1 decay_mult: 1 }
        param { lr_mult: 2 decay_mult: 0 }
        loss_weight: 0.5
        include { phase: TRAIN stage: "s" }
        inner_product_param { num_output: 10 }
    """
    assert layer == text_format.Parse(expected, SCHEMA.message_class("LayerParameter")())


def test_v1_lr_only_leaves_decay_mult_unset():
    """As in lenet: blobs_lr without weight_decay gives param { lr_mult } only."""
    v1 = net('layers { name: "c" type: CONVOLUTION blobs_lr: 1 blobs_lr: 2 }').layers[0]
    specs = upgrade_v1_layer(v1).param
    assert [(p.lr_mult, p.HasField("decay_mult")) for p in specs] == [(1, False), (2, False)]


@given(lr=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), max_size=4),
       decay=st.lists(st.sampled_from([0.0, 1.0]), max_size=4),
       names=st.lists(st.sampled_from(["a", "b", ""]), max_size=4))
def test_v1_param_blocks_line_up_by_position(lr, decay, names):
    v1 = V1LayerParameter(name="l", blobs_lr=lr, weight_decay=decay, param=names)
    specs = upgrade_v1_layer(v1).param
    assert len(specs) == max(len(lr), len(decay), len(names))
    for i, spec in enumerate(specs):
        assert spec.HasField("lr_mult") == (i < len(lr))
        assert spec.HasField("decay_mult") == (i < len(decay))
        assert spec.HasField("name") == (i < len(names))
        if i < len(lr):
            assert spec.lr_mult == lr[i]


def test_v1_type_table_covers_the_schema_enum():
    enum = SCHEMA.enum_descriptor("V1LayerParameter.LayerType")
    assert set(V1_LAYER_TYPES) == set(enum.values_by_name)
    assert v1_layer_type(V1LayerParameter(type=enum.values_by_name["SOFTMAX_LOSS"].number)) \
        == "SoftmaxWithLoss"


def test_every_v1_param_message_is_carried_over():
    v1 = V1LayerParameter(name="all")
    for fd in V1LayerParameter.DESCRIPTOR.fields:
        if fd.name.endswith("_param"):
            getattr(v1, fd.name).SetInParent()
    notes: list[str] = []
    layer = upgrade_v1_layer(v1, notes)
    assert notes == []
    assert all(layer.HasField(fd.name) for fd in V1LayerParameter.DESCRIPTOR.fields
               if fd.name.endswith("_param"))


def test_v1_net_with_layer_entries_is_refused():
    mixed = net("""
        layers { name: "a" type: RELU bottom: "x" top: "x" }
        layer { name: "b" type: "ReLU" bottom: "x" top: "x" }
    """)
    with pytest.raises(BnlintError, match="inconsistent NetParameter"):
        upgrade_net(mixed)


# --- net inputs ----------------------------------------------------------------------

def test_input_dims_become_an_input_layer_at_the_front():
    original = net("""
        input: "image" input: "mask"
        input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
        input_dim: 1 input_dim: 1 input_dim: 8 input_dim: 8
        layer { name: "mul" type: "Eltwise" bottom: "image" bottom: "mask" top: "out" }
    """)
    assert needs_input_upgrade(original)
    result = upgrade_net(original)
    upgraded = result.net
    assert [layer.name for layer in upgraded.layer] == [INPUT_LAYER_NAME, "mul"]
    assert list(upgraded.layer[0].top) == ["image", "mask"]
    assert [list(shape.dim) for shape in upgraded.layer[0].input_param.shape] \
        == [[1, 3, 8, 8], [1, 1, 8, 8]]
    assert not (upgraded.input or upgraded.input_dim or upgraded.input_shape)
    assert result.notes == ["net-level input fields → Input layer 'input' at the front "
                            "(tops 'image', 'mask'; shapes from input_dim)"]


def test_input_shape_wins_over_input_dim():
    result = upgrade_net(net("""
        input: "x" input_shape { dim: 2 dim: 5 } input_dim: 9 input_dim: 9 input_dim: 9 input_dim: 9
    """))
    assert [list(s.dim) for s in result.net.layer[0].input_param.shape] == [[2, 5]]
    assert any("input_dim ignored" in note for note in result.notes)


def test_input_without_shape_is_only_removed():
    result = upgrade_net(net('input: "x" layer { name: "r" type: "ReLU" bottom: "x" top: "y" }'))
    assert [layer.name for layer in result.net.layer] == ["r"] and not result.net.input
    assert any("has no input_shape or input_dim" in note for note in result.notes)


@pytest.mark.parametrize("text", [
    'input: "a" input: "b" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1',
    'input: "a" input: "b" input_shape { dim: 1 }',
])
def test_too_few_input_shapes_are_refused(text):
    with pytest.raises(BnlintError, match="net has 2 inputs"):
        upgrade_net(net(text))


# --- BatchNorm -----------------------------------------------------------------------

def batch_norm_net(*params: str):
    blocks = " ".join(f"param {{ {p} }}" for p in params)
    return net(f'layer {{ name: "bn1" type: "BatchNorm" bottom: "x" top: "x" {blocks} }}')


def test_three_param_batch_norm_gets_zero_rates_keeping_names():
    original = batch_norm_net('name: "m" lr_mult: 1', 'name: "v" lr_mult: 1 decay_mult: 3',
                              "lr_mult: 0")
    assert needs_batch_norm_upgrade(original)
    result = upgrade_net(original)
    params = result.net.layer[0].param
    assert [(p.name, p.lr_mult, p.decay_mult) for p in params] \
        == [("m", 0, 0), ("v", 0, 0), ("", 0, 0)]
    assert all(p.HasField("lr_mult") and p.HasField("decay_mult") for p in params)
    assert result.steps == [STEP_BATCH_NORM]
    assert result.notes == ["BatchNorm 'bn1': 3 param blocks → lr_mult 0, decay_mult 0 "
                            "(the file's lr_mult 1, 1, 0 is overridden)"]


@pytest.mark.parametrize("params", [
    ("lr_mult: 1",),
    ("lr_mult: 1", "lr_mult: 1 decay_mult: 1"),
    ("lr_mult: 0", "lr_mult: 0", "lr_mult: 0", "lr_mult: 0"),
])
def test_batch_norm_without_exactly_three_params_is_left_alone(params):
    original = batch_norm_net(*params)
    assert not needs_batch_norm_upgrade(original)
    result = upgrade_net(original)
    assert result.net == original and result.notes == [] and result.steps == []


def test_batch_norm_already_zeroed_needs_upgrade_but_changes_nothing():
    original = batch_norm_net(*["lr_mult: 0 decay_mult: 0"] * 3)
    assert needs_batch_norm_upgrade(original)   # Caffe keys on the count only
    result = upgrade_net(original)
    assert result.net == original and result.notes == [] and result.steps == []


# --- the whole pass ------------------------------------------------------------------

def test_current_net_is_unchanged_and_unnoted():
    original = net("""
        name: "current"
        layer { name: "data" type: "Input" top: "data"
                input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                param { lr_mult: 1 } param { lr_mult: 2 }
                convolution_param { num_output: 4 kernel_size: 3 } }
        layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
        layer { name: "scale" type: "Scale" bottom: "conv" top: "conv"
                scale_param { bias_term: true } }
    """)
    result = upgrade_net(original)
    assert not needs_upgrade(original)
    assert result.net == original and result.notes == [] and result.steps == []


def test_input_message_is_not_modified():
    original = net(V0_WITH_PADDING)
    before = original.SerializeToString(deterministic=True)
    result = upgrade_net(original)
    assert original.SerializeToString(deterministic=True) == before
    assert result.net is not original


def test_steps_run_in_caffes_order():
    result = upgrade_net(net("""
        input: "x" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
        layers { layer { name: "d" type: "images" source: "list.txt" } top: "y" }
        layers { name: "w" type: IMAGE_DATA top: "z" image_data_param { crop_size: 2 } }
    """))
    assert result.steps == [STEP_V0, STEP_V1, STEP_INPUT]
    # The V1 entry lost its image_data_param in the V0 step, so no data step ran.
    assert not result.net.layer[2].HasField("image_data_param")

    result = upgrade_net(net("""
        input: "x" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
        layers { name: "w" type: IMAGE_DATA top: "z" image_data_param { crop_size: 2 } }
        layers { name: "bn" type: NONE bottom: "x" top: "x" }
    """))
    assert result.steps == [STEP_DATA, STEP_V1, STEP_INPUT]
    assert [layer.type for layer in result.net.layer] == ["Input", "ImageData", ""]


# --- solvers -------------------------------------------------------------------------

def test_solver_type_enum_becomes_the_type_string():
    solver = text_format.Parse('base_lr: 0.1 solver_type: ADAM', SolverParameter())
    result = upgrade_solver(solver)
    assert result.message.type == "Adam" and not result.message.HasField("solver_type")
    assert result.steps == [STEP_SOLVER_TYPE]
    assert result.notes == ['solver_type: ADAM → type: "Adam"']
    assert solver.HasField("solver_type")


def test_solver_with_both_type_fields_is_refused():
    solver = text_format.Parse('solver_type: SGD type: "Adam"', SolverParameter())
    with pytest.raises(BnlintError, match="both the old solver_type"):
        upgrade_solver(solver)


def test_current_solver_is_left_alone():
    solver = text_format.Parse('type: "Nesterov" base_lr: 0.01', SolverParameter())
    result = upgrade_solver(solver)
    assert result.message == solver and result.notes == [] and not result.changed
