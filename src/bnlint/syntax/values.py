"""What a scalar's text means under protobuf's text-format rules.

Mirrors protobuf's own readers (C-style octal and hex integers, `inf`/`nan`/`1.0f`
floats, `t`/`f`/`1`/`0` booleans, C escapes in strings), so that a value we accept
is the value protobuf would store. Each reader raises ValueError with a short reason.
"""

from __future__ import annotations

import re

from bnlint.syntax.lexer import STRING
from bnlint.syntax.nodes import Scalar

_OCTAL_INT = re.compile(r"(-?)0([0-7]+)$")
_DEC_INT = re.compile(r"-?(0|[1-9][0-9]*)$")
_HEX_INT = re.compile(r"-?0[xX][0-9a-fA-F]+$")
_OCTAL_FLOAT = re.compile(r"-?0[0-9]+$")
_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[fF]?$")
_INF = re.compile(r"-?inf(?:inity)?f?$", re.IGNORECASE)
_NAN = re.compile(r"-?nanf?$", re.IGNORECASE)
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})|"
                     r"U([0-9a-fA-F]{8})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f",
                   "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


def is_string(scalar: Scalar) -> bool:
    return scalar.tokens[-1].kind == STRING


def parse_int(text: str) -> int:
    m = _OCTAL_INT.match(text)
    if m:
        return int(m.group(1) + m.group(2), 8)
    if _DEC_INT.match(text):
        try:
            return int(text, 10)
        except ValueError:      # Python's limit on digits (4300): no field takes such a number
            raise ValueError(f"a {len(text.lstrip('-'))}-digit integer is out of the range "
                             f"of every integer field") from None
    if _HEX_INT.match(text):
        neg = text.startswith("-")
        value = int(text.lstrip("-"), 16)
        return -value if neg else value
    raise ValueError(f"expected an integer, found {text!r}")


def parse_float(text: str) -> float:
    if _OCTAL_FLOAT.match(text) and text.lstrip("-") != "0":
        raise ValueError(f"invalid octal float {text!r}")
    if _FLOAT.match(text):
        return float(text.rstrip("fF"))
    if _INF.match(text):
        return float("-inf") if text.startswith("-") else float("inf")
    if _NAN.match(text):
        return float("nan")
    if _HEX_INT.match(text):
        return float(parse_int(text))
    raise ValueError(f"expected a number, found {text!r}")


def parse_bool(text: str) -> bool:
    if text in ("true", "True", "t", "1"):
        return True
    if text in ("false", "False", "f", "0"):
        return False
    raise ValueError(f"expected true or false, found {text!r}")


def unescape(quoted: str) -> bytes:
    """The bytes of one quoted string token, C escapes resolved."""
    body = quoted[1:-1]
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(body):
        out += body[pos:m.start()].encode("utf-8")
        octal, hexa, u4, u8, simple = m.groups()
        if octal is not None:
            out.append(int(octal, 8) & 0xFF)
        elif hexa is not None:
            out.append(int(hexa, 16))
        elif u4 is not None or u8 is not None:
            out += chr(int(u4 or u8, 16)).encode("utf-8")
        elif simple in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[simple].encode("utf-8")
        else:
            raise ValueError(f"invalid escape '\\{simple}' in string")
        pos = m.end()
    out += body[pos:].encode("utf-8")
    return bytes(out)


def string_bytes(scalar: Scalar) -> bytes:
    """Adjacent string tokens concatenate, as in C."""
    return b"".join(unescape(t.text) for t in scalar.tokens)


def string_value(scalar: Scalar) -> str:
    tokens = scalar.tokens
    if len(tokens) == 1 and "\\" not in tokens[0].text:
        return tokens[0].text[1:-1]         # no escapes: the text is the value
    return string_bytes(scalar).decode("utf-8")
