"""A hand-written, iterative parser for the protobuf text format.

One loop threads an index through the token list with an explicit stack of open
messages and lists, so depth is bounded by `MAX_DEPTH`, not by Python's recursion
limit. It accepts what protobuf's parsers accept: an optional `:` before a message,
`{}` or `<>`, `,` or `;` after a field, `[a, b]` lists (of scalars or messages),
adjacent strings, and `- 5` as C++ protobuf (which Caffe uses) reads it. A
missing `:` before a number or string is kept in the tree, for the schema check to
report with the field's type (the parser does not know whether a field is a scalar).
"""

from __future__ import annotations

import gc

from bnlint.errors import ParseError
from bnlint.source import SourceFile
from bnlint.syntax.lexer import EOF, IDENT, NUMBER, STRING, SYMBOL, Token, tokenize
from bnlint.syntax.nodes import Document, Field, ListValue, Message, Scalar

MAX_DEPTH = 100_000
_CLOSER = {"{": "}", "<": ">"}
_SEPARATORS = (",", ";")


def parse(text: str, path: str = "<text>") -> Document:
    """Parse text into a lossless Document; raise ParseError at the offending token."""
    return parse_source(SourceFile(path, text))


def parse_source(source: SourceFile) -> Document:
    # The tree is acyclic: pausing the cycle collector saves its repeated scans of the
    # tens of thousands of young tokens and nodes a big net allocates.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_tokens(source, tokenize(source))
    finally:
        if enabled:
            gc.enable()


def _describe(tok: Token) -> str:
    return "end of file" if tok.kind == EOF else repr(tok.text)


def _parse_tokens(source: SourceFile, toks: list[Token]) -> Document:
    def error(message: str, tok: Token) -> ParseError:
        return ParseError(message, source=source, offset=tok.offset)

    top: list[Field] = []
    fields = top
    # Each frame: (node being filled, the field owning it or None in a list, closer).
    stack: list[tuple[object, Field | None, str]] = []
    i = 0
    while True:
        tok = toks[i]
        kind = tok.kind
        if kind == IDENT and fields is not None:
            i += 1
            field = Field(tok, None)
            fields.append(field)
            nxt = toks[i]
            text = nxt.text
            if text == ":" and nxt.kind == SYMBOL:
                field.colon = nxt
                i += 1
                nxt = toks[i]
                text = nxt.text
            if nxt.kind == SYMBOL and text in _CLOSER:
                if len(stack) >= MAX_DEPTH:
                    raise error(f"nesting deeper than {MAX_DEPTH} levels", nxt)
                i += 1
                msg = Message(nxt, [])
                field.value = msg
                stack.append((msg, field, _CLOSER[text]))
                fields = msg.fields
                continue
            if text == "[" and nxt.kind == SYMBOL:
                # `name [...]` without ':' is valid for messages; for scalars the schema
                # check reports the missing ':' (the parser does not know the type)
                i += 1
                field.value = ListValue(nxt, [], [])
                stack.append((field.value, field, "]"))
                fields = None
                continue
            if field.colon is None and nxt.kind not in (NUMBER, STRING):
                raise error(f"expected ':' or '{{' after field name '{field.name}', "
                            f"found {_describe(nxt)}", nxt)
            field.value, i = _scalar(toks, i, error)
            sep = toks[i]
            if sep.text in _SEPARATORS and sep.kind == SYMBOL:
                field.separator = sep
                i += 1
            continue

        if fields is None:  # inside [ ... ]
            lst, owner, _ = stack[-1]
            if kind == SYMBOL and tok.text == "]":
                if lst.items and len(lst.commas) == len(lst.items):
                    raise error("expected a value after ',' in list", tok)
                i += 1
                lst.close = tok
                stack.pop()
                i = _separator(owner, toks, i)
                fields = stack[-1][0].fields if stack else top
                continue
            if lst.items and len(lst.commas) < len(lst.items):
                if not (kind == SYMBOL and tok.text == ","):
                    raise error(f"expected ',' or ']' in list, found {_describe(tok)}", tok)
                lst.commas.append(tok)
                i += 1
                continue
            if kind == SYMBOL and tok.text in _CLOSER:
                if len(stack) >= MAX_DEPTH:
                    raise error(f"nesting deeper than {MAX_DEPTH} levels", tok)
                i += 1
                msg = Message(tok, [])
                lst.items.append(msg)
                stack.append((msg, None, _CLOSER[tok.text]))
                fields = msg.fields
                continue
            if kind == SYMBOL and tok.text == ",":
                raise error("expected a value, found ','", tok)
            item, i = _scalar(toks, i, error)
            lst.items.append(item)
            continue

        if kind == SYMBOL and stack and tok.text == stack[-1][2]:
            i += 1
            node, owner, _ = stack.pop()
            node.close = tok
            if owner is not None:
                i = _separator(owner, toks, i)
                fields = stack[-1][0].fields if stack else top
            else:
                fields = None  # back inside the list that held this message
            continue
        if kind == EOF:
            if stack:
                node, _, closer = stack[-1]
                raise error(f"'{node.open.text}' is never closed (expected '{closer}' "
                            f"before end of file)", node.open)
            return Document(top, tok)
        if kind == SYMBOL and tok.text in "}>]":
            raise error(f"unexpected {tok.text!r}: no open message to close", tok)
        raise error(f"expected a field name, found {_describe(tok)}", tok)


def _scalar(toks: list[Token], i: int, error) -> tuple[Scalar, int]:
    tok = toks[i]
    kind = tok.kind
    if kind == STRING:
        j = i + 1
        while toks[j].kind == STRING:
            j += 1
        return Scalar(toks[i:j]), j
    if kind == NUMBER or kind == IDENT:
        if tok.text == "-" and toks[i + 1].kind in (NUMBER, IDENT):
            return Scalar([tok, toks[i + 1]]), i + 2
        return Scalar([tok]), i + 1
    raise error(f"expected a value, found {_describe(tok)}", tok)


def _separator(field: Field, toks: list[Token], i: int) -> int:
    tok = toks[i]
    if tok.kind == SYMBOL and tok.text in _SEPARATORS:
        field.separator = tok
        return i + 1
    return i
