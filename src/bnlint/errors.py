"""The one error type bnlint raises for bad input, and its exit-code contract.

Errors carry a byte offset rather than a line and column: the position is turned
into `line:col` once, when it is shown (see `bnlint.source`).
"""

from __future__ import annotations

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class BnlintError(Exception):
    """Bad input or usage: shown to the user as `path:line:col: message`, exit 2."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None,
                 source: "SourceFile | None" = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path if path is not None else (source.path if source is not None else None)
        self.offset = offset
        self.source = source

    def location(self) -> str:
        if self.source is not None and self.offset is not None:
            line, col = self.source.line_col(self.offset)
            return f"{self.path}:{line}:{col}"
        return self.path or ""

    def __str__(self) -> str:
        where = self.location()
        return f"{where}: {self.message}" if where else self.message


class ParseError(BnlintError):
    """Text that is not valid protobuf text format."""


class SchemaError(BnlintError):
    """Text that parses but does not fit the Caffe schema (unknown field, bad value)."""


class WeightsError(BnlintError):
    """A .caffemodel that is unreadable or does not fit the net."""


class ForwardError(BnlintError):
    """A net that cannot be run: unsupported layer, shape mismatch at run time."""


class ShapeError(BnlintError):
    """Shapes that cannot work (Concat mismatch, Crop too large, ...)."""


from bnlint.source import SourceFile  # noqa: E402  (type reference only; no cycle at import)
