"""JUnit XML, the format most CI systems can show as test results.

One `testsuite` per file and one `testcase` per finding (a repeated finding is one
test case naming its sites, see groups.py). Only what makes the run fail is a
`<failure>`: a finding below the file's `--fail-on` level (every finding under
`--exit-zero`) is a passing test case with the finding in `system-out`, so a green
exit is a green report. A clean file
has one passing test case so it still counts as checked; an input that could not
be checked (unreadable, a config error) is an `<error>` test case. Built with ElementTree,
so `<`, `&` and quotes are escaped; characters XML 1.0 cannot carry at all (most
control characters) are replaced first, and the output is ASCII with character
references, so it is valid whatever encoding the stream has.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Sequence, TextIO

from bnlint.report.groups import Finding, group
from bnlint.report.registry import ReportOptions, register_format

if TYPE_CHECKING:
    from bnlint.errors import BnlintError
    from bnlint.lint.runner import FileResult

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


@register_format("junit")
class JunitFormat:
    def write(self, results: list[FileResult], out: TextIO, options: ReportOptions,
              errors: Sequence[BnlintError] = ()) -> None:
        root = ET.Element("testsuites", name="bnlint")
        totals = {"tests": 0, "failures": 0, "errors": 0}
        for result in results:
            path = xml_text(result.source.path)
            entries = group(result.diagnostics, options.show_all)
            fails = [not options.exit_zero and f.first.severity >= result.fail_on
                     for f in entries]
            failures = sum(fails)
            suite = ET.SubElement(root, "testsuite", name=path, tests=str(max(1, len(entries))),
                                  failures=str(failures), errors="0")
            totals["tests"] += max(1, len(entries))
            totals["failures"] += failures
            if not entries:
                ET.SubElement(suite, "testcase", name="bnlint", classname=path)
            for f, fail in zip(entries, fails):
                _case(suite, path, f, fail)
        if errors:
            suite = ET.SubElement(root, "testsuite", name="bnlint", tests=str(len(errors)),
                                  failures="0", errors=str(len(errors)))
            totals["tests"] += len(errors)
            totals["errors"] += len(errors)
            for err in errors:
                where = xml_text(err.location() or "bnlint")
                case = ET.SubElement(suite, "testcase", name=where, classname=where)
                ET.SubElement(case, "error", message=xml_text(err.message),
                              type="input-error").text = xml_text(str(err))
        for key, value in totals.items():
            root.set(key, str(value))
        ET.indent(root)
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        out.write(ET.tostring(root, encoding="us-ascii", xml_declaration=False).decode("ascii"))
        out.write("\n")


def _case(suite: ET.Element, path: str, f: Finding, fails: bool) -> None:
    d = f.first
    line, col = d.start_line_col()
    case = ET.SubElement(suite, "testcase", name=f"{d.code} {d.name} ({line}:{col})",
                         classname=path, file=path, line=str(line))
    phases = f" ({', '.join(d.phases)})" if d.phases else ""
    text = xml_text(f"{path}:{line}:{col}: {d.code} [{d.severity}] {f.message(None)}{phases}")
    if fails:
        ET.SubElement(case, "failure", message=xml_text(f.message()),
                      type=str(d.severity)).text = text
    else:
        ET.SubElement(case, "system-out").text = text
