"""Output without rich, where rich would print no style anyway.

Most runs print to a pipe, a file or a hook's log, where rich adds no colour and its
import and layout cost 15-25 ms of a process that lasts 60-250 ms. These helpers give
the same characters as rich for the simple cases bnlint prints (and say None where
they cannot: non-ASCII text, markup-like brackets, emoji codes, lines that rich
would wrap), and
the callers then use rich as before. tests/test_plain.py holds them to rich's output.
"""

from __future__ import annotations

import os
import re
from typing import Sequence, TextIO

PIPE_WIDTH = 160        # what bnlint.cli.options.stdout_console gives rich on a pipe


def colourless(out: TextIO, color: bool | None) -> bool:
    """Whether rich would print to `out` without any style: rich's own test (an
    explicit choice, then TTY_COMPATIBLE, FORCE_COLOR, a terminal)."""
    if color is not None:
        return not color
    tty_compatible = os.environ.get("TTY_COMPATIBLE", "")
    if tty_compatible in ("0", "1"):
        return tty_compatible == "0"
    force_color = os.environ.get("FORCE_COLOR")
    if force_color is not None:
        return force_color == ""
    try:
        return not out.isatty()
    except (AttributeError, ValueError):
        return True


def pipe_width(out: TextIO, color: bool | None) -> int | None:
    """The width rich would lay out for on `out` when that is the fixed pipe width and
    the output is plain UTF-8 text; None when rich must decide."""
    if not colourless(out, color) or os.environ.get("COLUMNS"):
        return None
    if not (getattr(out, "encoding", None) or "utf-8").lower().startswith("utf"):
        return None                     # rich then draws tables in ASCII
    return PIPE_WIDTH


# rich's emoji codes (`:fire:`, `:smile-text:`): its consoles replace them unless told not to
_EMOJI_LIKE = re.compile(r":\S*?:")


def _simple(text: str) -> bool:
    return (text.isascii() and text.isprintable() and "[" not in text
            and not _EMOJI_LIKE.search(text))


def line(text: str, width: int, wrap: bool = True) -> str | None:
    """`console.print(text)` (markup on, highlight off) as plain text, or None."""
    if not _simple(text) or (wrap and len(text) > width):
        return None
    return text + "\n"


def heavy_head_table(header: Sequence[str], right: Sequence[bool],
                     rows: Sequence[Sequence[str]], width: int) -> str | None:
    """rich's default `Table()` (HEAVY_HEAD box, padding 1) of these cells, columns
    right-aligned where `right` says so, header included; None when a cell is not
    plain ASCII without spaces (rich trims and wraps at them) or the table is wider than `width` (rich would fold or shrink it)."""
    cells = [list(header), *map(list, rows)]
    if not rows or not all(_simple(c) and " " not in c for row in cells for c in row):
        return None
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    if sum(widths) + 3 * len(widths) + 1 > width:
        return None

    def rule(left: str, fill: str, cross: str, end: str) -> str:
        return left + cross.join(fill * (w + 2) for w in widths) + end + "\n"

    def row(cols: Sequence[str], bar: str) -> str:
        return bar + bar.join(f" {c.rjust(w) if r else c.ljust(w)} "
                              for c, w, r in zip(cols, widths, right)) + bar + "\n"

    return (rule("┏", "━", "┳", "┓") + row(header, "┃") + rule("┡", "━", "╇", "┩")
            + "".join(row(r, "│") for r in rows) + rule("└", "─", "┴", "┘"))
