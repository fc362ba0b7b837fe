"""`path:line:col: CODE message`, one finding per line and nothing else.

For editors and grep: every line stands alone, so a message that spans lines is
joined into one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from bnlint.report.registry import ReportOptions, count_by_code, register_format

if TYPE_CHECKING:
    from bnlint.lint.runner import FileResult


@register_format("concise")
class ConciseFormat:
    def write(self, results: list[FileResult], out: TextIO, options: ReportOptions) -> None:
        for result in results:
            for d in result.diagnostics:
                line, col = d.start_line_col()
                message = " ".join(d.message.splitlines())
                out.write(f"{d.path}:{line}:{col}: {d.code} {message}\n")
        if options.statistics:
            write_statistics(results, out)


def write_statistics(results: list[FileResult], out: TextIO) -> None:
    """ruff's `--statistics` lines: count, code, `[*]` when some are fixable, name."""
    counts = count_by_code(results)
    width = max((len(str(c.count)) for c in counts), default=1)
    for c in counts:
        marker = "[*] " if c.fixable else ""
        out.write(f"{c.count:>{width}}\t{c.code}\t{marker}{c.name}\n")
