"""Tree -> message conversion equals protobuf's own text parser, and says what is wrong."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from bnlint.caffe.load import NET, SOLVER, parse_text
from bnlint.caffe.messages import INVALID_VALUE, UNKNOWN_FIELD, to_message
from bnlint.caffe.schema import default_schema
from bnlint.source import SourceFile
from bnlint.syntax import parse
from conftest import corpus_files, corpus_id, needs_shared


def _reference(text: str, kind: str, schema=None):
    msg = (schema or default_schema()).message_class(kind)()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError:
        return None
    return msg


@needs_shared
@pytest.mark.parametrize("path", corpus_files(), ids=corpus_id)
def test_corpus_conversion_equals_text_format(path):
    text = path.read_text(encoding="utf-8")
    doc = parse_text(SourceFile(str(path), text))
    ref = _reference(text, doc.kind, doc.dialect.schema())  # a fork net: its fork's schema
    if ref is None:
        # protobuf refuses the file: we must have found at least one problem
        assert doc.problems, "protobuf's parser refuses this file but bnlint saw no problem"
        return
    assert not doc.problems
    assert doc.message == ref


@needs_shared
def test_solver_files_are_detected():
    solvers = [p for p in corpus_files() if "solver" in p.name]
    assert solvers
    for p in solvers:
        assert parse_text(SourceFile(str(p), p.read_text())).kind == SOLVER, p


@pytest.mark.parametrize("text", [
    'name: "n" layer { name: "a" type: "Convolution" convolution_param { kernel_size: [3, 3] '
    'num_output: 0x10 pad: 010 } }',
    'layer: { name: "a" type: "ReLU" relu_param < negative_slope: -.5 > }',
    'layer { name: "a" type: "BatchNorm" batch_norm_param { eps: 1e-3 use_global_stats: t } }',
    'layer { name: "a" type: "Pooling" pooling_param { pool: 1 round_mode: FLOOR } }',
    'layer { name: "s" "tr" type: "Python" python_param { param_str: "a\\nb\\x41\\101" } }',
    'layer { name: "a" type: "Power" power_param { power: inf scale: -inf shift: 1.5f } }',
    'layer [{ name: "a" }, { name: "b" }]',
    'input_shape { dim: [1, 3, 224, 224] }',
])
def test_conversion_equals_text_format(text):
    ref = _reference(text, NET)
    assert ref is not None
    msg = default_schema().message_class(NET)()
    assert to_message(parse(text), msg) == []
    assert msg == ref


@pytest.mark.parametrize("text, kind, path, words", [
    ('layer { nmae: "x" }', UNKNOWN_FIELD, "layer.nmae", "did you mean 'name'"),
    ('layer { pooling_param { ceil_mode: true } }', UNKNOWN_FIELD, "layer.pooling_param.ceil_mode",
     "PoolingParameter"),
    ('layer { pooling_param { pool: MAXIMUM } }', INVALID_VALUE, "layer.pooling_param.pool",
     "did you mean MAX"),
    ('layer { pooling_param { pool: 7 } }', INVALID_VALUE, "layer.pooling_param.pool",
     "not a value"),
    ('layer { convolution_param { num_output: -1 } }', INVALID_VALUE,
     "layer.convolution_param.num_output", "out of range"),
    ('layer { name: x }', INVALID_VALUE, "layer.name", "quoted string"),
    ('layer { bottom: 3 }', INVALID_VALUE, "layer.bottom", "quoted string"),
    ('layer { relu_param { negative_slope: "0.1" } }', INVALID_VALUE,
     "layer.relu_param.negative_slope", "found a string"),
    ('layer { relu_param: 3 }', INVALID_VALUE, "layer.relu_param", "expected '{'"),
    ('layer { name: { } }', INVALID_VALUE, "layer.name", "not a message"),
    ('layer { name: "a" name: "b" }', INVALID_VALUE, "layer.name", "set twice"),
    ('name: ["a", "b"]', INVALID_VALUE, "name", "not repeated"),
    ('name "a"', INVALID_VALUE, "name", "expected ':'"),
    ('layer { bottom ["a"] }', INVALID_VALUE, "layer.bottom", "expected ':'"),
    ('layer { batch_norm_param { use_global_stats: yes } }', INVALID_VALUE,
     "layer.batch_norm_param.use_global_stats", "true or false"),
])
def test_problems_have_kind_path_and_position(text, kind, path, words):
    msg = default_schema().message_class(NET)()
    problems = to_message(parse(text), msg)
    assert len(problems) == 1
    p = problems[0]
    assert (p.kind, p.path) == (kind, p.path if path is None else path)
    assert words in p.message
    assert 0 <= p.start < p.end <= len(text)
    # the span is the offending name (unknown field) or value (invalid value)
    assert text[p.start:p.end].strip()


def test_problems_do_not_stop_conversion():
    text = 'name: "n" layer { name: "a" fork_param { x: 1 } type: "ReLU" } layer { name: "b" }'
    msg = default_schema().message_class(NET)()
    problems = to_message(parse(text), msg)
    assert [p.field for p in problems] == ["fork_param"]
    assert [layer.name for layer in msg.layer] == ["a", "b"]
    assert msg.layer[0].type == "ReLU"
