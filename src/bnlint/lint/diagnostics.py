"""Diagnostics are values: a code, a span, a severity, an optional fix.

Tests assert codes and positions, not wording; formatters turn offsets into
line:column once, through the file's SourceFile.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

from bnlint.source import SourceFile
from bnlint.syntax.edits import Edit


class Severity(IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2

    @classmethod
    def parse(cls, text: str) -> "Severity":
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (error, warning or info)") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Fix:
    """Edits of the original text that resolve one diagnostic.

    `safe` fixes keep what Caffe computes; unsafe ones change behaviour on purpose
    (e.g. switching BatchNorm to global statistics) and need --unsafe-fixes.
    """

    description: str
    edits: tuple[Edit, ...]
    safe: bool = True


@dataclass(frozen=True)
class Diagnostic:
    """One finding: a rule's code and message at a span of a source file."""

    code: str
    name: str
    severity: Severity
    message: str
    source: SourceFile
    start: int
    end: int
    phases: tuple[str, ...] = ()
    fix: Fix | None = None
    layer: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def path(self) -> str:
        return self.source.path

    def start_line_col(self) -> tuple[int, int]:
        return self.source.line_col(self.start)

    def end_line_col(self) -> tuple[int, int]:
        return self.source.line_col(max(self.start, self.end))

    def with_phases(self, phases: tuple[str, ...]) -> "Diagnostic":
        return replace(self, phases=phases)

    def sort_key(self) -> tuple:
        return (self.path, self.start, self.code, self.message)
