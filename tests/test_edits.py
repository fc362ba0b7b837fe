"""Text edits (bnlint.syntax.edits): removing fields that share a line, and the
indentation of the first field of a file. Exact text after each edit."""

from __future__ import annotations

from bnlint.syntax import parse
from bnlint.syntax.edits import (Locator, apply_edits, indentation_of, insert_after,
                                 remove_field, remove_fields)


def _remove(text: str, pick) -> str:
    doc = parse(text)
    loc = Locator(doc)
    return apply_edits(text, remove_fields(loc, pick(doc)))


def test_remove_fields_on_one_line_takes_the_whole_line():
    text = ('p {\n'
            '  weight_filler { type: "x" } bias_filler { type: "c" }\n'
            '  k: 1\n'
            '}\n')
    out = _remove(text, lambda d: d.fields[0].value.fields[:2])
    assert out == 'p {\n  k: 1\n}\n'


def test_removing_them_one_by_one_would_overlap():
    text = 'p {\n  a: 1 b: 2\n  k: 1\n}\n'
    doc = parse(text)
    loc = Locator(doc)
    a, b = doc.fields[0].value.fields[:2]
    one, two = remove_field(loc, a), remove_field(loc, b)
    assert one.overlaps(two)


def test_remove_fields_keeps_a_neighbour_on_the_line():
    text = 'p { keep: 1 a: 2 b: 3 }\n'
    out = _remove(text, lambda d: d.fields[0].value.fields[1:])
    assert out == 'p { keep: 1 }\n'
    text = 'p { a: 2 b: 3 keep: 1 }\n'
    out = _remove(text, lambda d: d.fields[0].value.fields[:2])
    assert out == 'p { keep: 1 }\n'


def test_remove_fields_on_separate_lines_and_their_comments():
    text = ('p {\n'
            '  # about a\n'
            '  a: 1\n'
            '  keep: 2\n'
            '  b: 3  # about b\n'
            '}\n')
    out = _remove(text, lambda d: [f for f in d.fields[0].value.fields if f.name != "keep"])
    assert out == 'p {\n  keep: 2\n}\n'


def test_remove_fields_in_any_order_and_parents():
    text = 'x { a: 1 }\ny { b: 2 c: 3 }\nz: 4\n'
    doc = parse(text)
    loc = Locator(doc)
    fields = [doc.fields[1].value.fields[1], doc.fields[0].value.fields[0],
              doc.fields[1].value.fields[0]]
    assert apply_edits(text, remove_fields(loc, fields)) == 'x { }\ny { }\nz: 4\n'


def test_first_field_of_a_file_is_on_its_own_line():
    doc = parse('name: "n"\nlayer { }\n')
    assert indentation_of(doc.fields[0]) == ""
    assert indentation_of(parse('  name: "n"\n').fields[0]) == "  "
    assert indentation_of(parse('\ufeffname: "n"\n').fields[0]) == ""
    assert indentation_of(parse('a: 1 b: 2\n').fields[1]) is None


def test_insert_after_the_first_field_of_a_file_gets_its_own_line():
    text = 'input: "data"\nlayer { }\n'
    doc = parse(text)
    edit = insert_after(Locator(doc), doc.fields[0], 'input_dim: 1')
    assert apply_edits(text, [edit]) == 'input: "data"\ninput_dim: 1\nlayer { }\n'
