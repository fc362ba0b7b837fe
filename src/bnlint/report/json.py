"""A JSON list of findings, one object per finding, keys in a fixed order.

Lines and columns are 1-based characters, `end_*` points just past the span (as
in SARIF and ruff's JSON). Output is ASCII so any stream encoding can carry it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TextIO

from bnlint.lint.diagnostics import Diagnostic
from bnlint.report.registry import ReportOptions, register_format

if TYPE_CHECKING:
    from bnlint.lint.runner import FileResult


@register_format("json")
class JsonFormat:
    def write(self, results: list[FileResult], out: TextIO, options: ReportOptions) -> None:
        findings = [finding(d) for r in results for d in r.diagnostics]
        json.dump(findings, out, indent=2)
        out.write("\n")


def finding(d: Diagnostic) -> dict:
    line, column = d.start_line_col()
    end_line, end_column = d.end_line_col()
    return {
        "path": d.path,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "code": d.code,
        "name": d.name,
        "severity": str(d.severity),
        "message": d.message,
        "phase": list(d.phases),
        "layer": d.layer,
        "fix": None if d.fix is None else {
            "description": d.fix.description,
            "safe": d.fix.safe,
            "edits": [{"start": _location(d, e.start), "end": _location(d, e.end),
                       "content": e.text} for e in d.fix.edits],
        },
    }


def _location(d: Diagnostic, offset: int) -> dict:
    line, column = d.source.line_col(offset)
    return {"line": line, "column": column}
