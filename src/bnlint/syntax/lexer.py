"""Tokens of the protobuf text format, each carrying the trivia in front of it.

Token boundaries follow protobuf's own tokenizer (identifiers may hold `+` and `-`,
a number is anything from a digit, sign or `.digit` up to a delimiter), so that
what it accepts we accept. Whitespace and `#` comments are never dropped: they are
the `prefix` of the next token, which is what makes `render(parse(s)) == s`.
"""

from __future__ import annotations

import re

from bnlint.errors import ParseError
from bnlint.source import SourceFile

IDENT = "ident"
NUMBER = "number"
STRING = "string"
SYMBOL = "symbol"
EOF = "eof"

# One match per token: (trivia, token). Trivia is whitespace (Python's \s, as
# protobuf's tokenizer) and `#` comments to the end of the line. The last token
# alternative, any single character, makes every match succeed, so the regex never
# backtracks into the trivia; a character no token starts with is reported later.
_TOKEN = re.compile(
    r"""(\s*(?:\#[^\n]*\s*)*)
        ( [a-zA-Z_][0-9a-zA-Z_+-]*                 # identifier (protobuf allows + and -)
        | [{}:]                                    # the frequent symbols, tried early
        | (?:[0-9+-]|\.[0-9])[0-9a-zA-Z_.+-]*      # number, validated when read
        | "[^"\n\\]*(?:\\.[^"\n\\]*)*"            # string on one line (unrolled loop)
        | '[^'\n\\]*(?:\\.[^'\n\\]*)*'
        | [<>\[\],;]
        | .
        | \Z
        )""",
    re.VERBOSE | re.DOTALL,
)
_KIND_OF_FIRST_CHAR = {
    **dict.fromkeys("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_", "ident"),
    **dict.fromkeys("0123456789+-.", "number"),
    **dict.fromkeys("\"'", "string"),
    **dict.fromkeys("{}<>[]:,;", "symbol"),
}
BAD = "bad"


class Token:
    """One token: its kind, its text, where the text starts, and the trivia before it."""

    __slots__ = ("kind", "text", "offset", "prefix")

    def __init__(self, kind: str, text: str, offset: int, prefix: str) -> None:
        self.kind = kind
        self.text = text
        self.offset = offset
        self.prefix = prefix

    @property
    def end(self) -> int:
        return self.offset + len(self.text)

    def __repr__(self) -> str:
        return f"Token({self.kind}, {self.text!r}, @{self.offset})"


def tokenize(source: SourceFile) -> list[Token]:
    """All tokens of the text, the last one EOF (its prefix is the trailing trivia)."""
    text = source.text
    pos = 0
    bom = ""
    if text.startswith("\ufeff"):
        bom, pos = "\ufeff", 1
    tokens: list[Token] = []
    append = tokens.append
    kind_of = _KIND_OF_FIRST_CHAR.get
    for trivia, tok in _TOKEN.findall(text, pos):
        start = pos + len(trivia)
        if not tok:
            append(Token(EOF, "", start, bom + trivia))
            return tokens
        kind = kind_of(tok[0], BAD)
        if kind is BAD or (kind == STRING and (len(tok) < 2 or tok[-1] != tok[0])):
            _raise_bad_char(source, start)
        append(Token(kind, tok, start, bom + trivia if bom else trivia))
        bom = ""
        pos = start + len(tok)
    raise AssertionError("tokenizer pattern always ends with an EOF match")


def _raise_bad_char(source: SourceFile, at: int) -> None:
    ch = source.text[at]
    if ch in "\"'":
        raise ParseError("unterminated string (a string must close on its own line)",
                         source=source, offset=at)
    shown = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"
    raise ParseError(f"unexpected character {shown}", source=source, offset=at)
