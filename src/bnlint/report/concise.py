"""`path:line:col: CODE [severity] [*] message`, one entry per line and nothing else.

For editors and grep: every line stands alone, so a message that spans lines is
joined into one. `[*]` marks an entry `--fix` repairs (as in ruff). A repeated
finding is one line at its first site, naming the other sites (see groups.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, TextIO

from bnlint.report.groups import findings
from bnlint.report.registry import ReportOptions, count_by_code, register_format

if TYPE_CHECKING:
    from bnlint.errors import BnlintError
    from bnlint.lint.runner import FileResult


@register_format("concise")
class ConciseFormat:
    def write(self, results: list[FileResult], out: TextIO, options: ReportOptions,
              errors: Sequence[BnlintError] = ()) -> None:
        if options.statistics:
            write_statistics(results, out)
            return
        for f in findings(results, options.show_all):
            d = f.first
            line, col = d.start_line_col()
            mark = "[*] " if f.fixable else ""
            message = " ".join(f.message().splitlines())
            out.write(f"{d.path}:{line}:{col}: {d.code} [{d.severity}] {mark}{message}\n")


def write_statistics(results: list[FileResult], out: TextIO) -> None:
    """ruff's `--statistics` lines: count, code, `[*]` when some are fixable, name."""
    counts = count_by_code(results)
    width = max((len(str(c.count)) for c in counts), default=1)
    for c in counts:
        marker = "[*] " if c.fixable else ""
        out.write(f"{c.count:>{width}}\t{c.code}\t{marker}{c.name}\n")
