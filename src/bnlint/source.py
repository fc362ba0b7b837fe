"""A source file's text and the offset -> line:col mapping, computed only when shown."""

from __future__ import annotations

import bisect


class SourceFile:
    __slots__ = ("path", "text", "_line_starts")

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self._line_starts: list[int] | None = None

    def _starts(self) -> list[int]:
        if self._line_starts is None:
            starts = [0]
            find = self.text.find
            pos = find("\n")
            while pos != -1:
                starts.append(pos + 1)
                pos = find("\n", pos + 1)
            self._line_starts = starts
        return self._line_starts

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based line and column (in characters) of a character offset."""
        starts = self._starts()
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(starts, offset) - 1
        col = offset - starts[line] + 1
        if line == 0 and offset > 0 and self.text.startswith("\ufeff"):
            col -= 1  # a byte-order mark is not a column editors show
        return line + 1, col

    def line_text(self, line: int) -> str:
        starts = self._starts()
        start = starts[line - 1]
        end = starts[line] - 1 if line < len(starts) else len(self.text)
        return self.text[start:end].rstrip("\r")
