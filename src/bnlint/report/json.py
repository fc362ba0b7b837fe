"""JSON: one versioned object, `{"version", "findings", "errors"}`, keys in a fixed order.

Each finding is one entry of the report (see groups.py): the fields of its first
site, then `count` and `sites`, every site with its own position, layer, phases,
message and fix, so a repeated finding loses nothing. With `--statistics`,
`statistics` (the counts per rule) replaces `findings`. `errors` lists the inputs
that could not be checked, with the exit code's reason. The README documents the
shape; a change to it bumps VERSION.

Lines and columns are 1-based characters, `end_*` points just past the span (as
in SARIF and ruff's JSON). Output is ASCII so any stream encoding can carry it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Sequence, TextIO

from bnlint.lint.diagnostics import Diagnostic
from bnlint.report.groups import Finding, findings
from bnlint.report.registry import ReportOptions, count_by_code, register_format

if TYPE_CHECKING:
    from bnlint.errors import BnlintError
    from bnlint.lint.runner import FileResult

VERSION = 1


@register_format("json")
class JsonFormat:
    def write(self, results: list[FileResult], out: TextIO, options: ReportOptions,
              errors: Sequence[BnlintError] = ()) -> None:
        document: dict = {"version": VERSION}
        if options.statistics:
            document["statistics"] = [
                {"code": c.code, "name": c.name, "count": c.count, "fixable": c.fixable}
                for c in count_by_code(results)]
        else:
            document["findings"] = [finding(f) for f in findings(results, options.show_all)]
        document["errors"] = [error(e) for e in errors]
        json.dump(document, out, indent=2)
        out.write("\n")


def finding(f: Finding) -> dict:
    d = f.first
    return {"path": d.path, **site(d), "code": d.code, "name": d.name,
            "severity": str(d.severity), "message": d.message, "phase": list(d.phases),
            "layer": d.layer, "fix": fix(d), "count": f.count,
            "sites": [site(s) | {"message": s.message, "phase": list(s.phases),
                                 "layer": s.layer, "fix": fix(s)} for s in f.sites]}


def site(d: Diagnostic) -> dict:
    line, column = d.start_line_col()
    end_line, end_column = d.end_line_col()
    return {"line": line, "column": column, "end_line": end_line, "end_column": end_column}


def fix(d: Diagnostic) -> dict | None:
    if d.fix is None:
        return None
    return {"description": d.fix.description, "safe": d.fix.safe,
            "edits": [{"start": _location(d, e.start), "end": _location(d, e.end),
                       "content": e.text} for e in d.fix.edits]}


def error(err: BnlintError) -> dict:
    """An input that could not be checked: its path and position when known."""
    line = column = None
    if err.source is not None and err.offset is not None:
        line, column = err.source.line_col(err.offset)
    return {"path": err.path, "line": line, "column": column, "message": err.message}


def _location(d: Diagnostic, offset: int) -> dict:
    line, column = d.source.line_col(offset)
    return {"line": line, "column": column}
