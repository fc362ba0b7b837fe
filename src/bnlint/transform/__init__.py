"""Rewrites of a net's text: small passes that plan edits over the lossless syntax tree.

A pass never re-prints the net: it computes `Edit`s against one parse and applies
them together, so every byte it has no reason to touch (comments, blank lines,
number spellings, fork fields bnlint's schema does not know) stays as written. New
text (an Input layer, a `param` block) is written in the file's own style: its
indentation unit and newline, one-line or multi-line blocks like its neighbours.

Each pass checks its own output before returning it, as black does
(`check_stability_and_equivalence`): the text parses, a second run changes nothing,
and the meaning is the intended one. A failed check is a bug in bnlint, raised as
`UnsafeRewriteError` (an internal error, exit 3), never written to disk.

This module holds the helpers the passes share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from bnlint.syntax.edits import Edit, Locator, indentation_of, remove_field
from bnlint.syntax.nodes import Document, Field, Message


class UnsafeRewriteError(RuntimeError):
    """A rewrite's output failed its safety check; nothing was written."""


@dataclass(frozen=True)
class Style:
    """How the file writes blocks: the indentation step and the newline."""

    unit: str = "  "
    newline: str = "\n"


def detect_style(doc: Document, text: str) -> Style:
    """The indentation step of the first nested field that sits on its own line."""
    newline = "\r\n" if "\r\n" in text else "\n"
    from collections import deque

    stack = deque((f, indentation_of(f) or "") for f in doc.fields)
    while stack:
        field, outer = stack.popleft()    # pop(0) made 50,000 one-line layers quadratic
        if not isinstance(field.value, Message):
            continue
        for inner in field.value.fields:
            indent = indentation_of(inner)
            if indent is not None and indent.startswith(outer) and len(indent) > len(outer):
                return Style(indent[len(outer):], newline)
        stack.extend((f, indentation_of(f) or outer) for f in field.value.fields)
    return Style("  ", newline)


def quote(value: str) -> str:
    """A protobuf text-format string literal (C escapes for what needs them)."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def block(name: str, body: list[str], style: Style, indent: str | None,
          multiline: bool) -> str:
    """`name { body }`: one line, or one field per line indented one step below `indent`.

    Body items that are blocks themselves must have been built with the inner
    indentation (`indent + style.unit`).
    """
    if not multiline or indent is None:
        return f"{name} {{ {' '.join(body)} }}" if body else f"{name} {{ }}"
    inner = indent + style.unit
    lines = [f"{name} {{"] + [inner + item for item in body] + [indent + "}"]
    return style.newline.join(lines)


def is_multiline(message: Message) -> bool:
    """Whether a block closes on its own line (the file writes it one field per line)."""
    return message.close is not None and "\n" in message.close.prefix


def dims_text(dims: Iterable[int]) -> str:
    return "shape { " + " ".join(f"dim: {int(d)}" for d in dims) + " }"


def input_layer_body(name: str, tops: list[str], shapes: list[tuple[int, ...]],
                     style: Style, indent: str | None, multiline: bool) -> list[str]:
    """The fields of an Input layer: name, type, tops, one `shape` per top."""
    body = [f"name: {quote(name)}", 'type: "Input"'] + [f"top: {quote(t)}" for t in tops]
    shape_items = [dims_text(s) for s in shapes]
    if len(shape_items) == 1 or not multiline or indent is None:
        body.append("input_param { " + " ".join(shape_items) + " }")
    else:
        body.append(block("input_param", shape_items, style, indent + style.unit, True))
    return body


def replace_field(loc: Locator, text: str, field: Field, new_text: str, style: Style) -> Edit:
    """Replace a whole field by new text, its own comment lines going with it.

    On its own line the new text takes the field's indentation; sharing a line,
    it takes the field's place on that line.
    """
    removal = remove_field(loc, field)
    own_line = ((removal.start == 0 or text[removal.start - 1] == "\n")
                and (removal.end == len(text) or text[removal.end - 1] == "\n"))
    if not own_line:
        return Edit(field.start, loc.last_token(field).end, new_text)
    indent = indentation_of(field) or ""
    ending = style.newline if text[removal.end - 1:removal.end] == "\n" else ""
    return Edit(removal.start, removal.end, indent + new_text + ending)


def collapse_blank_lines(text: str, edits: list[Edit]) -> list[Edit]:
    """Deleting whole lines between two blank lines would leave two blank lines; take
    the second along, so removed layers leave no growing gaps."""
    starts = sorted(e.start for e in edits)
    out = []
    for e in edits:
        if e.text or not _at_line_start(text, e.start) or not _at_line_start(text, e.end):
            out.append(e)
            continue
        before_blank = e.start == 0 or _blank_line_before(text, e.start)
        after_end = _blank_line_end(text, e.end)
        if before_blank and after_end is not None and \
                not any(e.end < s < after_end or s == e.end for s in starts if s != e.start):
            e = Edit(e.start, after_end, "")
        out.append(e)
    return out


def _at_line_start(text: str, pos: int) -> bool:
    return pos == 0 or pos == len(text) or text[pos - 1] == "\n"


def _blank_line_before(text: str, pos: int) -> bool:
    """The line ending just before `pos` holds only whitespace."""
    if pos < 1 or text[pos - 1] != "\n":
        return False
    start = text.rfind("\n", 0, pos - 1) + 1
    return text[start:pos - 1].strip() == ""


def _blank_line_end(text: str, pos: int) -> int | None:
    """If the line starting at `pos` is blank, the offset just after it."""
    nl = text.find("\n", pos)
    if nl == -1 or text[pos:nl].strip():
        return None
    return nl + 1
