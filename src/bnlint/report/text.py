"""The human format: each finding with its source line and the span underlined.

Modelled on ruff's full output. Lines are built as (text, style) pieces: written as
they are when the output gets no colour (a pipe, a file, pre-commit, --no-color),
which is most runs and then costs no rich import (~11 ms of a hook's start-up), and
turned into rich `Text` objects, never markup, on a colour terminal, so `[brackets]`
in messages print as they are; `highlight` and `emoji` are off for the same reason.
Colour follows rich's rules (a terminal, FORCE_COLOR, TTY_COMPATIBLE), so the plain
and the rich way print the same characters. Control characters from the linted
file are shown as U+FFFD so a prototxt cannot drive the terminal.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence, TextIO

from bnlint.lint.diagnostics import Diagnostic, Fix, Severity
from bnlint.plain import colourless
from bnlint.report.groups import Finding, findings
from bnlint.report.registry import ReportOptions, count_by_code, register_format
from bnlint.syntax.edits import Edit, apply_edits

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

    from bnlint.errors import BnlintError
    from bnlint.lint.runner import FileResult

STYLES = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "bold cyan"}
GUTTER = "blue"
TAB_SIZE = 4
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


class Line:
    """One line of the report: pieces of text, each with an optional rich style, and a
    style for the whole line."""

    __slots__ = ("pieces", "style")

    def __init__(self, *pieces: str | tuple[str, str], style: str = "") -> None:
        self.pieces = [(p, "") if isinstance(p, str) else p for p in pieces]
        self.style = style

    def append(self, text: str, style: str = "") -> None:
        self.pieces.append((text, style))

    @property
    def plain(self) -> str:
        return "".join(text for text, _ in self.pieces)

    def to_rich(self) -> Text:
        from rich.text import Text

        return Text.assemble(*self.pieces, style=self.style)


def printable(text: str) -> str:
    return _CONTROL.sub("\ufffd", text.expandtabs(TAB_SIZE))


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 or word == "info" else f"{n} {word}s"


@register_format("text")
class TextFormat:
    def write(self, results: list[FileResult], out: TextIO, options: ReportOptions,
              errors: Sequence[BnlintError] = ()) -> None:
        entries = findings(results, options.show_all)
        if colourless(out, options.color) and not (options.statistics and entries):
            lines = ([line for f in entries for line in finding(f, options.show_fixes)]
                     if not options.statistics else [])
            if not options.quiet:
                lines.append(summary(results, len(entries), options.fixed))
            out.write("".join(line.plain + "\n" for line in lines))
            return
        from rich.console import Console

        # an explicit --color wins over NO_COLOR and TERM=dumb; the styles used here
        # are all in the 16 standard colours
        no_color = None if options.color is None else not options.color
        console = Console(file=out, force_terminal=options.color, no_color=no_color,
                          color_system="standard" if options.color else "auto",
                          highlight=False, emoji=False, markup=False, tab_size=TAB_SIZE)
        if not console.is_terminal:
            console.width = 120  # a pipe has no width: keep COLUMNS from wrapping the table
        if options.statistics:
            if entries:
                console.print(statistics_table(results))
        else:
            for f in entries:
                for line in finding(f, options.show_fixes):
                    console.print(line.to_rich(), soft_wrap=True)
        if not options.quiet:
            console.print(summary(results, len(entries), options.fixed).to_rich(),
                          soft_wrap=True)


def finding(f: Finding | Diagnostic, show_fixes: bool) -> list[Line]:
    """The header, the source line with the span underlined, the other sites of a
    repeated finding, and the fix marker."""
    if isinstance(f, Diagnostic):
        f = Finding((f,))
    d = f.first
    line, col = d.start_line_col()
    end_line, end_col = d.end_line_col()
    source_line = d.source.line_text(line)
    stop = end_col - 1 if end_line == line else len(source_line)
    source_line, shift = _window(source_line, col - 1, stop)
    before = _cells(printable(source_line[:col - 1 - shift]))
    through = _cells(printable(source_line[:max(col - 1, stop) - shift]))
    width = len(str(line))
    style = STYLES[d.severity]

    header = Line((printable(d.path), "bold"), f":{line}:{col}: ", (d.code, style),
                           f" [{d.severity}] ", printable(" ".join(d.message.splitlines())))
    if d.phases:
        header.append(f" ({', '.join(d.phases)})", style="dim")
    bar = Line(" " * width + " |", style=GUTTER)
    lines = [header, bar,
             Line((f"{line} | ", GUTTER), printable(source_line)),
             Line((" " * width + " | ", GUTTER), " " * before,
                  ("^" * max(1, through - before), style))]
    if f.grouped:
        lines.append(Line((" " * width + " = ", GUTTER),
                                   (f"{f.count} sites in this file: this one "
                                    f"{printable(f.others_text())}", "dim")))
    if d.fix is not None:
        kind = "fix available" if d.fix.safe else "unsafe fix available (--unsafe-fixes)"
        fixed = sum(s.fix is not None and s.fix.safe == d.fix.safe for s in f.sites)
        if f.grouped:
            kind += f" for {fixed} of {f.count} sites"
        lines.append(Line((" " * width + " = ", GUTTER),
                                   (f"{kind}: {printable(d.fix.description)}", "green")))
        if show_fixes:
            lines.extend(_fix_diff(d, d.fix, width))
    lines.append(Line())
    return lines


# A minified net is one long line: show a window of it around the finding, so the
# report stays proportionate to the file (findings x line length otherwise).
MAX_SHOWN = 160
CONTEXT = 60


def _window(source_line: str, start: int, stop: int) -> tuple[str, int]:
    """The part of a long line around [start, stop), and how many characters were cut
    from its front (an ellipsis stands for each cut end)."""
    if len(source_line) <= MAX_SHOWN:
        return source_line, 0
    lo = max(0, start - CONTEXT)
    hi = min(len(source_line), max(stop, start + 1) + CONTEXT, lo + MAX_SHOWN)
    shown = source_line[lo:hi]
    if hi < len(source_line):
        shown += "\u2026"
    if lo > 0:
        return "\u2026" + shown, lo - 1
    return shown, 0


def _fix_diff(d: Diagnostic, fix: Fix, width: int) -> list[Line]:
    """The whole lines the fix touches, before (-) and after (+)."""
    if not fix.edits:
        return []
    if max(e.end for e in fix.edits) - min(e.start for e in fix.edits) > MAX_SHOWN or any(
            len(line) > MAX_SHOWN for line in _lines(d.source.line_text(d.start_line_col()[0]))):
        return [Line(" " * width + "   (the fix's lines are too long to show; see --diff)",
                     style="dim")]
    text = d.source.text
    first = min(e.start for e in fix.edits)
    last = max(e.end for e in fix.edits)
    start = text.rfind("\n", 0, first) + 1
    end = text.find("\n", last)
    end = len(text) if end == -1 else end
    old = text[start:end]
    new = apply_edits(old, [Edit(e.start - start, e.end - start, e.text) for e in fix.edits])
    pad = " " * width + "   "
    return ([Line(f"{pad}- {printable(s)}", style="red") for s in _lines(old)]
            + [Line(f"{pad}+ {printable(s)}", style="green") for s in _lines(new)])


def _lines(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n")]


def _cells(text: str) -> int:
    if text.isascii():
        return len(text)            # rich.cells loads its Unicode tables: ~15 ms
    from rich.cells import cell_len

    return cell_len(text)


def statistics_table(results: list[FileResult]) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE, show_edge=False)
    table.add_column("Count", justify="right")
    table.add_column("Code")
    table.add_column("Name")
    table.add_column("Fixable", justify="right")
    for c in count_by_code(results):
        table.add_row(str(c.count), c.code, c.name, str(c.fixable) if c.fixable else "")
    return table


def summary(results: list[FileResult], entries: int | None = None,
            fixed: int | None = None) -> Line:
    """Counts of every site; `entries`, when fewer, says the repeated ones were shown once;
    after --fix, how many were fixed and how many remain (as ruff)."""
    diagnostics = [d for r in results for d in r.diagnostics]
    if fixed:
        return Line(f"Found {plural(fixed + len(diagnostics), 'finding')} ({fixed} fixed, "
                    f"{len(diagnostics)} remaining).", style="bold")
    if not diagnostics:
        return Line(f"No findings in {plural(len(results), 'file')}.", style="bold green")
    by_severity = {s: sum(d.severity == s for d in diagnostics) for s in Severity}
    safe = sum(d.fix is not None and d.fix.safe for d in diagnostics)
    unsafe = sum(d.fix is not None and not d.fix.safe for d in diagnostics)
    text = (f"Found {plural(len(diagnostics), 'finding')} "
            f"({plural(by_severity[Severity.ERROR], 'error')}, "
            f"{plural(by_severity[Severity.WARNING], 'warning')}, "
            f"{plural(by_severity[Severity.INFO], 'info')})")
    if safe:
        text += f"; {safe} fixable with --fix"
        if unsafe:
            text += f" ({unsafe} more with --unsafe-fixes)"
    elif unsafe:
        text += f"; {unsafe} fixable with --unsafe-fixes"
    text += "."
    if entries is not None and entries < len(diagnostics):
        text += (f" Repeated findings are shown once per file "
                 f"({entries} {'entry' if entries == 1 else 'entries'}); "
                 f"--show-all lists every site.")
    return Line(text, style="bold")
