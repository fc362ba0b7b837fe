"""SARIF 2.1.0, the format GitHub code scanning and most security dashboards read.

One run; the driver lists every registered rule (plus any code found that is not
registered), so a viewer can show a rule's documentation next to its findings.
Columns are characters, so the run declares `unicodeCodePoints` rather than
SARIF's default of UTF-16 code units. Paths under the working directory are
relative to `%SRCROOT%`; others are absolute file URIs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import quote

from bnlint.lint.diagnostics import Diagnostic, Severity
from bnlint.report.registry import ReportOptions, register_format

if TYPE_CHECKING:
    from bnlint.lint.runner import FileResult

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# pyproject.toml names no project URL yet; the package's index page is the stable one.
INFORMATION_URI = "https://pypi.org/project/bnlint/"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


@register_format("sarif")
class SarifFormat:
    def write(self, results: list[FileResult], out: TextIO, options: ReportOptions) -> None:
        from bnlint.lint.registry import all_rules

        rules = [{"id": cls.code, "name": cls.name,
                  "shortDescription": {"text": cls.summary()},
                  "fullDescription": {"text": cls.documentation()},
                  "defaultConfiguration": {"level": LEVELS[cls.severity]}}
                 for cls in all_rules().values()]
        index = {rule["id"]: i for i, rule in enumerate(rules)}
        findings = []
        for d in (d for r in results for d in r.diagnostics):
            if d.code not in index:
                index[d.code] = len(rules)
                rules.append({"id": d.code, "name": d.name,
                              "shortDescription": {"text": d.name},
                              "defaultConfiguration": {"level": LEVELS[d.severity]}})
            findings.append(_result(d, index[d.code]))
        run = {
            "tool": {"driver": {"name": "bnlint", "version": options.tool_version,
                                "informationUri": INFORMATION_URI, "rules": rules}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri() + "/"}},
            "columnKind": "unicodeCodePoints",
            "results": findings,
        }
        json.dump({"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}, out, indent=2)
        out.write("\n")


def _result(d: Diagnostic, rule_index: int) -> dict:
    artifact = artifact_location(d.path)
    result = {
        "ruleId": d.code,
        "ruleIndex": rule_index,
        "level": LEVELS[d.severity],
        "message": {"text": d.message},
        "locations": [{"physicalLocation": {"artifactLocation": artifact,
                                            "region": _region(d, d.start, d.end)}}],
    }
    properties = {"layer": d.layer, "phases": list(d.phases)}
    if d.layer is not None or d.phases:
        result["properties"] = {k: v for k, v in properties.items() if v}
    if d.fix is not None:
        result["fixes"] = [{
            "description": {"text": d.fix.description},
            "artifactChanges": [{"artifactLocation": artifact, "replacements": [
                {"deletedRegion": _region(d, e.start, e.end), "insertedContent": {"text": e.text}}
                for e in d.fix.edits]}],
        }]
    return result


def _region(d: Diagnostic, start: int, end: int) -> dict:
    start_line, start_column = d.source.line_col(start)
    end_line, end_column = d.source.line_col(max(start, end))
    return {"startLine": start_line, "startColumn": start_column,
            "endLine": end_line, "endColumn": end_column}


def artifact_location(path: str) -> dict:
    """A relative posix URI under %SRCROOT% when the file is below the working directory."""
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(Path.cwd())
        except ValueError:
            return {"uri": p.as_uri()}
    return {"uri": quote(os.fsencode(p.as_posix())), "uriBaseId": "%SRCROOT%"}
