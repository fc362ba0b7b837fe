"""SARIF 2.1.0, the format GitHub code scanning and most security dashboards read.

One run; the driver lists every registered rule (plus any code found that is not
registered), so a viewer can show a rule's documentation next to its findings.
Columns are characters, so the run declares `unicodeCodePoints` rather than
SARIF's default of UTF-16 code units. Paths under the working directory are
relative to `%SRCROOT%`; others are absolute file URIs.

A repeated finding (see groups.py) is one result with one location per site. Each
result has a `partialFingerprints` entry built from the rule, the file and the first
site's layer (never line numbers), so code scanning follows it across commits. Inputs
that could not be checked are `toolExecutionNotifications` of the run's invocation,
whose `executionSuccessful` is false then.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, TextIO
from urllib.parse import quote

from bnlint.lint.diagnostics import Diagnostic, Severity
from bnlint.report.groups import Finding, findings
from bnlint.report.registry import ReportOptions, register_format

if TYPE_CHECKING:
    from bnlint.errors import BnlintError
    from bnlint.lint.runner import FileResult

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# pyproject.toml names no project URL yet; the package's index page is the stable one.
INFORMATION_URI = "https://pypi.org/project/bnlint/"
#: where a rule's documentation lives, with {code} and {name}; set (for example by the
#: GitHub Action, which knows the repository and version it runs) through BNLINT_RULES_URL
HELP_URI = os.environ.get("BNLINT_RULES_URL", "")
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


@register_format("sarif")
class SarifFormat:
    def write(self, results: list[FileResult], out: TextIO, options: ReportOptions,
              errors: Sequence[BnlintError] = ()) -> None:
        from bnlint.lint.registry import all_rules

        rules = [_rule_descriptor(cls) for cls in all_rules().values()]
        index = {rule["id"]: i for i, rule in enumerate(rules)}
        entries = []
        for f in findings(results, options.show_all):
            d = f.first
            if d.code not in index:
                index[d.code] = len(rules)
                rules.append({"id": d.code, "name": d.name,
                              "shortDescription": {"text": d.name},
                              "defaultConfiguration": {"level": LEVELS[d.severity]}})
            entries.append(_result(f, index[d.code]))
        run = {
            "tool": {"driver": {"name": "bnlint", "version": options.tool_version,
                                "informationUri": INFORMATION_URI, "rules": rules}},
            "invocations": [{
                "executionSuccessful": not errors,
                "toolExecutionNotifications": [_notification(e) for e in errors],
            }],
            "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri() + "/"}},
            "columnKind": "unicodeCodePoints",
            "results": entries,
        }
        json.dump({"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}, out, indent=2)
        out.write("\n")


def _rule_descriptor(cls) -> dict:
    rule = {"id": cls.code, "name": cls.name,
            "shortDescription": {"text": cls.summary()},
            "fullDescription": {"text": cls.documentation()},
            "help": {"text": cls.documentation()},
            "defaultConfiguration": {"level": LEVELS[cls.severity]}}
    if HELP_URI:
        rule["helpUri"] = HELP_URI.format(code=cls.code, name=cls.name)
    return rule


def _notification(err: BnlintError) -> dict:
    notification: dict = {"level": "error", "message": {"text": err.message},
                          "descriptor": {"id": "input-error"}}
    if err.path:
        location: dict = {"artifactLocation": artifact_location(err.path)}
        if err.source is not None and err.offset is not None:
            line, column = err.source.line_col(err.offset)
            location["region"] = {"startLine": line, "startColumn": column}
        notification["locations"] = [{"physicalLocation": location}]
    return notification


def _result(f: Finding, rule_index: int) -> dict:
    d = f.first
    artifact = artifact_location(d.path)
    result = {
        "ruleId": d.code,
        "ruleIndex": rule_index,
        "level": LEVELS[d.severity],
        "message": {"text": f.message()},
        "locations": [{"physicalLocation": {"artifactLocation": artifact,
                                            "region": _region(s, s.start, s.end)}}
                      for s in f.sites],
        "partialFingerprints": {FINGERPRINT: fingerprint(f)},
    }
    properties = {"layer": d.layer, "phases": list(d.phases),
                  "layers": [s.layer for s in f.sites] if f.grouped else []}
    if any(properties.values()):
        result["properties"] = {k: v for k, v in properties.items() if v}
    fixes = [s.fix for s in f.sites if s.fix is not None]
    if fixes:
        result["fixes"] = [{
            "description": {"text": fx.description},
            "artifactChanges": [{"artifactLocation": artifact, "replacements": [
                {"deletedRegion": _region(d, e.start, e.end), "insertedContent": {"text": e.text}}
                for e in fx.edits]}],
        } for fx in fixes]
    return result


#: the partialFingerprints key; its number changes when the recipe below changes
FINGERPRINT = "bnlintFinding/v1"


def fingerprint(f: Finding) -> str:
    """Rule, file, and the first site's layer and message: stable when lines move (a
    message names layers and values, never lines)."""
    d = f.first
    key = "\0".join((d.code, artifact_location(d.path)["uri"], d.layer or "", d.message))
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


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
