"""GitHub Actions workflow commands, so findings show up as annotations on a PR.

`::error file=PATH,line=L,col=C,endLine=..,endColumn=..,title=bnlint CODE::message`.
GitHub reads `%`, CR and LF as escapes in the message, and `:` and `,` too in the
properties (they separate them); see toolkit's `command.ts` (`escapeData`,
`escapeProperty`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, TextIO

from bnlint.lint.diagnostics import Severity
from bnlint.report.groups import findings
from bnlint.report.registry import ReportOptions, register_format

if TYPE_CHECKING:
    from bnlint.errors import BnlintError
    from bnlint.lint.runner import FileResult

COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


@register_format("github")
class GithubFormat:
    def write(self, results: list[FileResult], out: TextIO, options: ReportOptions,
              errors: Sequence[BnlintError] = ()) -> None:
        # GitHub shows only the first annotations of a step: one per repeated finding
        for f in findings(results, options.show_all):
            d = f.first
            line, col = d.start_line_col()
            end_line, end_col = d.end_line_col()
            props = {"file": d.path, "line": line, "col": col, "endLine": end_line,
                     "endColumn": end_col, "title": f"bnlint {d.code}"}
            joined = ",".join(f"{k}={escape_property(str(v))}" for k, v in props.items())
            message = d.message if not f.grouped else f"{d.message}\n({f.others_text()})"
            out.write(f"::{COMMANDS[d.severity]} {joined}::{escape_data(message)}\n")


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")
