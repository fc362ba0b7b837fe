"""The lossless parser: exact round trips, protobuf's text-format grammar, error positions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnlint.errors import ParseError
from bnlint.syntax import ListValue, Message, Scalar, parse, render
from bnlint.syntax.nodes import walk_fields
from conftest import corpus_files, corpus_id, needs_shared


@needs_shared
@pytest.mark.parametrize("path", corpus_files(), ids=corpus_id)
def test_corpus_round_trip_is_byte_exact(path):
    raw = path.read_bytes()
    doc = parse(raw.decode("utf-8"), str(path))
    assert render(doc).encode("utf-8") == raw


@pytest.mark.parametrize("text", [
    "a: 1",
    "a {b: 1; c: [1, 2] } d <x: \"a\" 'b'>",
    "a: { b: 1 }",
    "a: < b: 1 >,",
    "x: [{a: 1}, {a: 2}], y: 3",
    "x: [{a: [{b: 1}]}]; z {}",
    "a: - 5",
    "\ufeffa: 1\r\n# comment\r\n",
    "a: 1\tb: 2",
    "a: [ ]",
    "",
    "# only a comment",
    "a: -inf b: nan c: 1e-5 d: 0x1F e: 1.0f f: .5 g: -0.25",
    "s: \"tab\\there\" 'single \\'quoted\\'' \"\\x41\\101\"",
    "a: 1;b: 2,c: 3",
    "a:1 b:2",
    "a [{b: 1}] c 5 d \"s\"",
])
def test_grammar_round_trips(text):
    assert render(parse(text)) == text


def test_tree_shape():
    doc = parse("layer { name: 'a' top: 'x' top: 'y' param { lr_mult: 0 } }\nname: 'n'")
    layer, name = doc.fields
    assert layer.name == "layer" and isinstance(layer.value, Message)
    assert [f.name for f in layer.value.fields] == ["name", "top", "top", "param"]
    assert layer.value.get("top").value.text == "'y'"
    assert len(layer.value.get_all("top")) == 2
    assert isinstance(name.value, Scalar)
    assert [f.name for f, _ in walk_fields(doc)] == ["layer", "name", "top", "top", "param",
                                                     "lr_mult", "name"]


def test_list_of_scalars_and_messages():
    doc = parse("dim: [1, 3, 224, 224] shape: [{dim: 1}, {dim: 2}]")
    dims, shapes = doc.fields
    assert isinstance(dims.value, ListValue)
    assert [i.text for i in dims.value.items] == ["1", "3", "224", "224"]
    assert all(isinstance(i, Message) for i in shapes.value.items)


def test_offsets_point_at_tokens():
    text = "layer {\n  name: \"conv1\"\n}\n"
    doc = parse(text)
    name = doc.fields[0].value.fields[0]
    assert text[name.start:name.end] == 'name: "conv1"'
    assert text[name.value.start:name.value.end] == '"conv1"'


@pytest.mark.parametrize("text, line, col, words", [
    ("a", 1, 2, "expected ':' or '{'"),
    ("a:", 1, 3, "expected a value"),
    ("layer {\n  name: 'x'\n", 1, 7, "never closed"),
    ("}", 1, 1, "no open message"),
    ("a: [1,]", 1, 7, "after ','"),
    ("a: [1 2]", 1, 7, "expected ',' or ']'"),
    ("a { b }", 1, 7, "expected ':' or '{'"),
    ("a b", 1, 3, "expected ':' or '{'"),
    ("a: \"x\n\"", 1, 4, "unterminated string"),
    ("layer {\n  name: @\n}", 2, 9, "unexpected character"),
    ("a: 1\x00", 1, 5, "U+0000"),
    ("a: {b: 1}}", 1, 10, "no open message"),
    ("\n\n  5: 3", 3, 3, "expected a field name"),
])
def test_errors_point_at_the_offending_token(text, line, col, words):
    with pytest.raises(ParseError) as info:
        parse(text, "net.prototxt")
    err = info.value
    assert err.source.line_col(err.offset) == (line, col)
    assert words in err.message
    assert str(err).startswith(f"net.prototxt:{line}:{col}: ")


def test_deep_nesting_needs_no_recursion():
    depth = 20_000
    text = "a {" * depth + "}" * depth
    assert render(parse(text)) == text


# --- generated texts -------------------------------------------------------------------

_ident = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)
_number = st.sampled_from(["0", "1", "-1", "42", "1e-5", "-inf", "nan", "0x1F", "1.0f", ".5",
                           "3.25", "-0.001", "1E+3", "inf"])
_string = st.builds(lambda q, body: q + body + q, st.sampled_from(["'", '"']),
                    st.sampled_from(["", "abc", "a b", "\\n", "\\\\", "\\x41", "\\101",
                                     "caf\u00e9", "#not a comment"]))
_scalar = st.one_of(_ident, _number, _string,
                    st.builds(lambda a, b: a + " " + b, _string, _string))
_trivia = st.lists(st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "# note\n", "#\n", "\n\n"]),
                   max_size=3).map("".join)


def _field(children):
    scalar_field = st.builds(lambda n, t1, t2, v, sep: f"{n}{t1}:{t2}{v}{sep}",
                             _ident, _trivia, _trivia, _scalar,
                             st.sampled_from(["", "", ",", ";"]))
    list_field = st.builds(lambda n, vs, sep: f"{n}: [{', '.join(vs)}]{sep}",
                           _ident, st.lists(_scalar, max_size=3),
                           st.sampled_from(["", ";"]))
    msg_field = st.builds(lambda n, colon, br, body, t: f"{n}{colon}{br[0]}{body}{t}{br[1]}",
                          _ident, st.sampled_from(["", ":", " : "]),
                          st.sampled_from(["{}", "<>"]), children, _trivia)
    return st.one_of(scalar_field, list_field, msg_field)


_body = st.recursive(st.just(""), lambda children: st.lists(
    st.builds(lambda t, f: t + f + " ", _trivia, _field(children)), max_size=4).map("".join),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.builds(lambda bom, body, tail: bom + body + tail,
                 st.sampled_from(["", "\ufeff"]), _body, _trivia))
def test_generated_texts_round_trip(text):
    assert render(parse(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:{}<>[];,#'\"\\ \n\t-.0159xe")), max_size=40))
def test_any_text_parses_exactly_or_fails_with_parse_error(text):
    try:
        doc = parse(text)
    except ParseError as err:
        assert 0 <= err.offset <= len(text)
    else:
        assert render(doc) == text
