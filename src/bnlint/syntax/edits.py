"""Text edits computed from the syntax tree, keeping comments where a person expects.

An edit is a replacement of a character span of the original text. Edits are
planned against one parse and applied together, so every byte they do not touch
stays as it was. The rules for comments (tomlkit's lessons): the comment lines
directly above a field and the comment on its own line belong to it, so removing
the field takes them along; a comment separated by a blank line does not; an
inserted field copies the indentation of its neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from bnlint.syntax.lexer import Token
from bnlint.syntax.nodes import Document, Field, Message, Scalar, iter_tokens


@dataclass(frozen=True, order=True)
class Edit:
    """Replace text[start:end] with `text`; ordered by position so edits apply in one pass."""

    start: int
    end: int
    text: str

    def overlaps(self, other: "Edit") -> bool:
        if self.start == self.end == other.start == other.end:
            return False  # two insertions at one point: both apply, in order
        return self.start < other.end and other.start < self.end


def apply_edits(text: str, edits: Iterable[Edit]) -> str:
    """Apply non-overlapping edits (raises ValueError on overlap)."""
    ordered = sorted(edits, key=lambda e: (e.start, e.end))
    out: list[str] = []
    pos = 0
    for e in ordered:
        if e.start < pos:
            raise ValueError(f"overlapping edits at offset {e.start}")
        out.append(text[pos:e.start])
        out.append(e.text)
        pos = e.end
    out.append(text[pos:])
    return "".join(out)


def select_compatible(edit_groups: Iterable[list[Edit]]) -> tuple[list[Edit], int]:
    """Greedily keep whole groups (one fix each) that overlap nothing kept before.

    Returns the kept edits and how many groups were deferred to a next round.
    """
    kept: list[Edit] = []
    deferred = 0
    for group in edit_groups:
        if any(e.overlaps(k) for e in group for k in kept):
            deferred += 1
            continue
        kept.extend(group)
    return kept, deferred


class Locator:
    """Finds the token after any node, so edits can see the trivia that follows it."""

    def __init__(self, doc: Document) -> None:
        self.tokens: list[Token] = list(iter_tokens(doc))
        self._index = {id(t): i for i, t in enumerate(self.tokens)}

    def next_token(self, tok: Token) -> Token | None:
        i = self._index[id(tok)] + 1
        return self.tokens[i] if i < len(self.tokens) else None

    def last_token(self, node) -> Token:
        if isinstance(node, Field):
            if node.separator is not None:
                return node.separator
            return self.last_token(node.value)
        if isinstance(node, Scalar):
            return node.tokens[-1]
        if node.close is not None:
            return node.close
        return node.open


def _line_start_of_own_block(prefix: str, at_file_start: bool = False) -> int | None:
    """Offset in `prefix` where the field's own lines start (None: not on its own line).

    Own lines: the comment lines directly above the field, up to a blank line.
    """
    first_nl = -1 if at_file_start else prefix.find("\n")
    if first_nl == -1 and not at_file_start:
        return None
    lines = prefix[first_nl + 1:].split("\n")
    # lines[-1] is the indentation before the field itself
    start = len(prefix)
    start -= len(lines[-1])
    for line in reversed(lines[:-1]):
        stripped = line.strip().lstrip("\ufeff")
        if not stripped.startswith("#"):
            break
        start -= len(line) + 1
    return start


def indentation_of(field: Field) -> str | None:
    """The whitespace before a field on its line; None when something precedes it there.

    The first field of a file is on its own line too (its prefix starts the file).
    """
    prefix = field.name_token.prefix
    nl = prefix.rfind("\n")
    if nl == -1:
        if field.start == len(prefix) and not prefix.lstrip("\ufeff").strip():
            return prefix.lstrip("\ufeff")
        return None
    return prefix[nl + 1:]


def remove_field(loc: Locator, field: Field) -> Edit:
    """Remove a field with its own comment lines and its same-line comment."""
    return _remove_run(loc, field, field)


def remove_fields(loc: Locator, fields: Iterable[Field]) -> list[Edit]:
    """Remove several fields at once (any order, any parents).

    Fields that follow each other on one line are removed as one run: removed one
    by one, the second's leading blank would overlap the first's trailing one, and
    a line left with nothing on it would stay behind as blank indentation.
    """
    ordered = sorted(fields, key=lambda f: f.start)
    edits: list[Edit] = []
    i = 0
    while i < len(ordered):
        first = last = ordered[i]
        i += 1
        while i < len(ordered):
            nxt = ordered[i]
            follows = loc.next_token(loc.last_token(last)) is nxt.name_token
            if not follows or "\n" in nxt.name_token.prefix:
                break
            last = nxt
            i += 1
        edits.append(_remove_run(loc, first, last))
    return edits


def _remove_run(loc: Locator, field: Field, last: Field) -> Edit:
    """Remove `field` through `last` (siblings on one line), as `remove_field` does."""
    prefix = field.name_token.prefix
    prefix_start = field.start - len(prefix)
    end_tok = loc.last_token(last)
    after = loc.next_token(end_tok)
    after_prefix = after.prefix if after is not None else ""
    own = _line_start_of_own_block(prefix, at_file_start=prefix_start == 0)
    nl_after = after_prefix.find("\n")
    if own is not None and (nl_after != -1 or after is None or after.kind == "eof"):
        start = prefix_start + own
        if prefix_start == 0 and prefix.startswith("\ufeff"):
            start = max(start, 1)  # the byte-order mark belongs to the file
        if nl_after != -1:
            end = end_tok.end + nl_after + 1
        else:
            end = end_tok.end + len(after_prefix)
        return Edit(start, end, "")
    if own is not None:
        # something follows on the same line: drop the field and the blanks after it
        spaces = len(after_prefix) - len(after_prefix.lstrip(" \t"))
        return Edit(field.start, end_tok.end + spaces, "")
    # the field shares its line with what is before it
    if prefix.strip():
        # a comment sits between: keep it, drop only the field
        return Edit(field.start, end_tok.end, "")
    return Edit(prefix_start, end_tok.end, "")


def replace_value(field: Field, new_text: str) -> Edit:
    value = field.value
    return Edit(value.start, value.end, new_text)


def insert_after(loc: Locator, field: Field, text: str) -> Edit:
    """A new field (its text, e.g. `bias_term: true`) right after `field`."""
    end_tok = loc.last_token(field)
    indent = indentation_of(field)
    after = loc.next_token(end_tok)
    after_prefix = after.prefix if after is not None else ""
    if indent is None:
        return Edit(end_tok.end, end_tok.end, " " + text)
    nl = after_prefix.find("\n")
    if nl == -1:
        return Edit(end_tok.end, end_tok.end, "\n" + indent + text)
    at = end_tok.end + nl
    # keep a same-line comment with the field it follows; the newline style of the file
    newline = "\r\n" if after_prefix[max(0, nl - 1):nl + 1] == "\r\n" else "\n"
    if newline == "\r\n":
        at -= 1
    return Edit(at, at, newline + indent + text)


def insert_before(field: Field, text: str) -> Edit:
    indent = indentation_of(field)
    if indent is None:
        return Edit(field.start, field.start, text + " ")
    newline = "\r\n" if field.name_token.prefix.endswith("\r\n" + indent) else "\n"
    return Edit(field.start, field.start, text + newline + indent)


def insert_into(loc: Locator, message: Message, text: str, *, first: bool = False) -> Edit:
    """A new field inside a message: after its last field (or before its first)."""
    if message.fields:
        if first:
            return insert_before(message.fields[0], text)
        return insert_after(loc, message.fields[-1], text)
    close = message.close
    inner = close.prefix
    if "\n" not in inner:
        return Edit(message.open.end, close.offset, " " + text + " ")
    close_indent = inner[inner.rfind("\n") + 1:]
    return Edit(close.offset - len(close_indent), close.offset - len(close_indent),
                close_indent + "  " + text + "\n")
