"""`bnlint upgrade` (bnlint.transform.upgrade): Caffe's upgrade, written into the text.

Two promises, checked on small nets (exact text) and on the whole corpus: the result
equals, as a NetParameter, what `bnlint.caffe.upgrade.upgrade_net` makes of the input,
and every byte the upgrade has no reason to touch, comments included, stays.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bnlint.caffe.load import parse_text
from bnlint.caffe.upgrade import INPUT_LAYER_NAME, upgrade_net, upgrade_solver
from bnlint.errors import BnlintError
from bnlint.files import read_text
from bnlint.source import SourceFile
from bnlint.transform.upgrade import upgrade_text
from conftest import CORPUS, GOLDEN, needs_shared


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """The command as the lead registers it in bnlint.cli.COMMANDS."""
    from bnlint import cli

    monkeypatch.setitem(cli.COMMANDS, "upgrade",
                        cli.COMMANDS.get("upgrade", ("bnlint.cli.upgrade", "Upgrade.")))


def up(text: str, **kwargs) -> str:
    return upgrade_text(parse_text(SourceFile("<test>", text)), **kwargs).text


def message(text: str):
    return parse_text(SourceFile("<test>", text)).message


# --- V1 -> V2 ----------------------------------------------------------------------------

V1_CONV = '''\
name: "v1"
# the first layer
layers {
  name: "conv1"
  type: CONVOLUTION  # an enum in V1
  bottom: "data"
  top: "conv1"
  blobs_lr: 1    # weights
  blobs_lr: 2.0  # bias
  weight_decay: 1
  weight_decay: 0
  param: "conv1_w"
  convolution_param {
    num_output: 8
    kernel_size: 3
  }
}
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
'''


def test_v1_layers_become_layer_in_place():
    assert up(V1_CONV) == '''\
name: "v1"
# the first layer
layer {
  name: "conv1"
  type: "Convolution"  # an enum in V1
  bottom: "data"
  top: "conv1"
  param {  # weights
    name: "conv1_w"
    lr_mult: 1
    decay_mult: 1
  }
  param {  # bias
    lr_mult: 2.0
    decay_mult: 0
  }
  convolution_param {
    num_output: 8
    kernel_size: 3
  }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
'''


def test_v1_comments_of_removed_entries_go_onto_their_param_block():
    text = ('layers {\n  name: "c"\n  type: CONVOLUTION\n  # learning rates\n  blobs_lr: 1\n'
            '  # the bias learns faster\n  blobs_lr: 2  # twice\n}\n')
    assert up(text) == ('layer {\n  name: "c"\n  type: "Convolution"\n  # learning rates\n'
                        '  param {\n    lr_mult: 1\n  }\n'
                        '  param {  # the bias learns faster; twice\n    lr_mult: 2\n  }\n}\n')


def test_v1_param_specs_single_line_style_and_share_mode():
    text = ('layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "y" '
            'param: "w" param: "b" blob_share_mode: PERMISSIVE blobs_lr: 1 blobs_lr: 2 '
            'inner_product_param { num_output: 2 } }\n')
    assert up(text) == (
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
        'param { name: "w" share_mode: PERMISSIVE lr_mult: 1 } param { name: "b" lr_mult: 2 } '
        'inner_product_param { num_output: 2 } }\n')


def test_v1_data_fields_move_to_transform_param():
    text = '''\
layers {
  name: "data"
  type: DATA
  top: "data"
  data_param {
    source: "train_lmdb"
    scale: 0.00390625  # 1/256
    mirror: true
    batch_size: 64
  }
  include: { phase: TRAIN }
}
layers {
  name: "data"
  type: DATA
  top: "data"
  data_param {
    source: "test_lmdb"
    batch_size: 100
  }
  include: { phase: TEST }
}
'''
    assert up(text) == '''\
layer {
  name: "data"
  type: "Data"
  top: "data"
  transform_param {
    scale: 0.00390625
    mirror: true
  }
  data_param {
    source: "train_lmdb"
    batch_size: 64
  }
  include: { phase: TRAIN }
}
layer {
  name: "data"
  type: "Data"
  top: "data"
  transform_param {
  }
  data_param {
    source: "test_lmdb"
    batch_size: 100
  }
  include: { phase: TEST }
}
'''


def test_v1_data_field_overrides_transform_param():
    text = ('layers { name: "d" type: IMAGE_DATA top: "d" transform_param { crop_size: 10 } '
            'image_data_param { source: "s" crop_size: 20 mirror: true } }\n')
    assert up(text) == ('layer { name: "d" type: "ImageData" top: "d" '
                        'transform_param { crop_size: 20 mirror: true } '
                        'image_data_param { source: "s" } }\n')


def test_mixed_layer_and_layers_is_refused_as_caffe_does():
    text = 'layer { name: "a" type: "ReLU" }\nlayers { name: "b" type: RELU }\n'
    with pytest.raises(BnlintError, match="both 'layer' and 'layers'"):
        up(text)


# --- net-level inputs ----------------------------------------------------------------------

def test_input_dim_becomes_an_input_layer_with_the_comments_kept():
    text = '''\
name: "n"
# the image
input: "data"
# N, C, H, W
input_dim: 10
input_dim: 3
input_dim: 227
input_dim: 227  # square crops
layer {
  name: "conv"
  type: "Convolution"
  bottom: "data"
  top: "conv"
}
'''
    assert up(text) == '''\
name: "n"
# the image
# N, C, H, W
# square crops
layer {
  name: "input"
  type: "Input"
  top: "data"
  input_param { shape { dim: 10 dim: 3 dim: 227 dim: 227 } }
}
layer {
  name: "conv"
  type: "Convolution"
  bottom: "data"
  top: "conv"
}
'''


def test_several_inputs_with_input_shape():
    text = ('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
            'input: "im_info"\ninput_shape { dim: 1 dim: 3 }\n'
            'layer {\n  name: "c"\n  type: "Concat"\n  bottom: "data"\n  top: "c"\n}\n')
    assert up(text) == (
        'layer {\n  name: "input"\n  type: "Input"\n  top: "data"\n  top: "im_info"\n'
        '  input_param {\n    shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
        '    shape { dim: 1 dim: 3 }\n  }\n}\n'
        'layer {\n  name: "c"\n  type: "Concat"\n  bottom: "data"\n  top: "c"\n}\n')


def test_inputs_after_other_fields_go_before_the_first_layer():
    text = ('input: "data"\nname: "late"\ninput_dim: 1\ninput_dim: 2\ninput_dim: 3\n'
            'input_dim: 4\n\n# first layer\nlayer { name: "r" type: "ReLU" bottom: "data" '
            'top: "data" }\n')
    assert up(text) == (
        'name: "late"\n\nlayer { name: "input" type: "Input" top: "data" '
        'input_param { shape { dim: 1 dim: 2 dim: 3 dim: 4 } } }\n'
        '# first layer\nlayer { name: "r" type: "ReLU" bottom: "data" top: "data" }\n')


def test_input_without_a_shape_is_only_removed():
    text = 'name: "n"\ninput: "data"\nlayer { name: "r" type: "ReLU" }\n'
    assert up(text) == 'name: "n"\nlayer { name: "r" type: "ReLU" }\n'


def test_net_inputs_can_be_left_alone():
    text = 'input: "data"\ninput_dim: 1\ninput_dim: 1\ninput_dim: 1\ninput_dim: 1\n' \
           'layers { name: "r" type: RELU bottom: "data" top: "data" }\n'
    assert up(text, net_inputs=False) == (
        'input: "data"\ninput_dim: 1\ninput_dim: 1\ninput_dim: 1\ninput_dim: 1\n'
        'layer { name: "r" type: "ReLU" bottom: "data" top: "data" }\n')


# --- BatchNorm, V0, solvers ---------------------------------------------------------------

def test_batch_norm_three_params_get_lr_mult_and_decay_mult_zero():
    text = '''\
layer {
  name: "bn"
  type: "BatchNorm"
  bottom: "x"
  top: "x"
  param {
    lr_mult: 1
  }
  param { lr_mult: 0.0 decay_mult: 1 }
  param { name: "shared" }
}
'''
    assert up(text) == '''\
layer {
  name: "bn"
  type: "BatchNorm"
  bottom: "x"
  top: "x"
  param {
    lr_mult: 0
    decay_mult: 0
  }
  param { lr_mult: 0.0 decay_mult: 0 }
  param { name: "shared" lr_mult: 0 decay_mult: 0 }
}
'''


def test_batch_norm_with_two_params_is_left_alone():
    text = 'layer { type: "BatchNorm" param { lr_mult: 0 } param { lr_mult: 0 } }\n'
    assert up(text) == text


def test_v0_net_is_reprinted_with_a_note():
    text = ('name: "v0"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\n'
            'input_dim: 8\n# a comment that cannot survive\nlayers {\n  layer {\n'
            '    name: "relu"\n    type: "relu"\n  }\n  bottom: "data"\n  top: "data"\n}\n')
    result = upgrade_text(parse_text(SourceFile("<t>", text)))
    assert "# a comment" not in result.text
    assert any("re-printed" in note for note in result.notes)
    assert parse_text(SourceFile("<t>", result.text)).message == upgrade_net(message(text)).net


def test_solver_type_becomes_type():
    text = '# solver\nbase_lr: 0.01\nsolver_type: ADAM  # adaptive\nmax_iter: 10\n'
    tf = parse_text(SourceFile("<t>", text))
    assert tf.kind == "SolverParameter"
    result = upgrade_text(tf)
    assert result.text == '# solver\nbase_lr: 0.01\ntype: "Adam"  # adaptive\nmax_iter: 10\n'
    assert parse_text(SourceFile("<t>", result.text)).message == \
        upgrade_solver(tf.message).message


def test_current_net_is_unchanged():
    text = 'name: "n"\nlayer { name: "r" type: "ReLU" }  # fine\n'
    result = upgrade_text(parse_text(SourceFile("<t>", text)))
    assert result.text == text and result.steps == []


# --- the corpus ----------------------------------------------------------------------------

def _corpus_and_golden() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(CORPUS.rglob("*.prototxt")) + sorted(GOLDEN.rglob("*.prototxt"))


def _comments(text: str) -> list[str]:
    """Every comment's text: in a token's prefix, `#` always starts one."""
    from bnlint.syntax.nodes import iter_tokens

    found = []
    for token in iter_tokens(parse_text(SourceFile("<c>", text)).tree):
        for line in token.prefix.split("\n"):
            if "#" in line:
                found.append(line[line.index("#"):].lstrip("#").strip())
    return [c for c in found if c]


@needs_shared
@pytest.mark.parametrize("path", _corpus_and_golden(),
                         ids=lambda p: str(p.relative_to(CORPUS.parent)))
def test_every_corpus_file_upgrades_to_what_caffe_makes_of_it(path):
    text_file = parse_text(read_text(str(path)))
    if text_file.kind == "SolverParameter":
        expected = upgrade_solver(text_file.message).message
    else:
        try:
            expected = upgrade_net(text_file.message).message
        except BnlintError:
            with pytest.raises(BnlintError):
                upgrade_text(text_file)
            return
    result = upgrade_text(text_file)
    out = parse_text(SourceFile(str(path), result.text), kind=text_file.kind,
                     dialect=text_file.dialect)
    assert out.message == expected
    assert upgrade_text(out).text == result.text
    if "v0-to-v1" not in result.steps:
        # every comment survives (those of removed input fields move above the Input
        # layer, those of blobs_lr & co onto their param block)
        kept = "\n".join(_comments(result.text))
        assert [c for c in _comments(text_file.source.text) if c not in kept] == []


OLD_AND_CURRENT = [
    ("bvlc_reference_caffenet__train_val@V1_pre-e6c80da", "bvlc_reference_caffenet__train_val"),
    ("bvlc_reference_caffenet__deploy@V1_pre-e6c80da", "bvlc_reference_caffenet__deploy"),
    ("mnist__lenet@V1_pre-e6c80da", "mnist__lenet"),
    ("mnist__lenet_train_test@V1_pre-e6c80da", "mnist__lenet_train_test"),
    ("bvlc_googlenet__deploy@input_dim_pre-2f5889c", "bvlc_googlenet__deploy"),
    ("bvlc_googlenet__deploy@input_shape_pre-2cc3844", "bvlc_googlenet__deploy"),
]


@needs_shared
@pytest.mark.parametrize("old, current", OLD_AND_CURRENT, ids=[p[0] for p in OLD_AND_CURRENT])
def test_old_corpus_file_upgrades_to_its_current_version(old, current):
    """The maintainers' own upgrades of these files; they named the Input layer after
    its top ("data") where Caffe says "input": that name is the only difference."""
    old_file = parse_text(read_text(str(CORPUS / "caffe" / f"{old}.prototxt")))
    now = parse_text(read_text(str(CORPUS / "caffe" / f"{current}.prototxt"))).message
    upgraded = parse_text(SourceFile(old, upgrade_text(old_file).text)).message
    if upgraded.layer[0].name == INPUT_LAYER_NAME:
        upgraded.layer[0].name = now.layer[0].name
    assert upgraded == now


# --- the command -----------------------------------------------------------------------------

def test_cli_writes_stdout_and_notes_to_stderr(run_cli, tmp_path):
    path = tmp_path / "v1.prototxt"
    path.write_text(V1_CONV)
    code, out, err = run_cli("upgrade", str(path))
    assert code == 0
    assert out == up(V1_CONV)
    assert "note: V1 'layers' → 'layer'" in err
    assert path.read_text() == V1_CONV


def test_cli_output_file_and_in_place(run_cli, tmp_path):
    path = tmp_path / "v1.prototxt"
    path.write_text(V1_CONV)
    target = tmp_path / "v2.prototxt"
    assert run_cli("upgrade", str(path), "-o", str(target))[0] == 0
    assert target.read_text() == up(V1_CONV)
    code, _, err = run_cli("upgrade", str(path), "-o", str(path))
    assert code == 2 and "overwrite the input" in err
    assert run_cli("upgrade", str(path), "--in-place")[0] == 0
    assert path.read_text() == up(V1_CONV)
    code, _, err = run_cli("upgrade", str(path), "--in-place")
    assert code == 0 and "nothing to upgrade" in err


def test_cli_bad_input(run_cli, tmp_path):
    code, _, err = run_cli("upgrade", str(tmp_path / "missing.prototxt"))
    assert code == 2 and "no such file" in err
    broken = tmp_path / "broken.prototxt"
    broken.write_text("layer {\n")
    code, _, err = run_cli("upgrade", str(broken))
    assert code == 2 and "never closed" in err
    path = tmp_path / "a.prototxt"
    path.write_text(V1_CONV)
    code, _, err = run_cli("upgrade", str(path), "-o", str(tmp_path / "b"), "--in-place")
    assert code == 2 and "not both" in err
