"""Words that carry a code: a reason or a hint shown as text, asserted by its code."""

from __future__ import annotations

from typing import ClassVar, Mapping


class CodedText(str):
    """A str (the words, free to improve) with `.code`, one of the subclass's CODES."""

    CODES: ClassVar[Mapping[str, str]] = {}
    code: str

    def __new__(cls, code: str, text: str) -> "CodedText":
        if code not in cls.CODES:
            raise ValueError(f"unknown {cls.__name__.lower()} code {code!r}")
        coded = super().__new__(cls, text)
        coded.code = code
        return coded
