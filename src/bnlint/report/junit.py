"""JUnit XML, the format most CI systems can show as test results.

One `testsuite` per file, one failing `testcase` per finding, and one passing
testcase for a clean file so it still counts as checked. Built with ElementTree,
so `<`, `&` and quotes are escaped; characters XML 1.0 cannot carry at all (most
control characters) are replaced first, and the output is ASCII with character
references, so it is valid whatever encoding the stream has.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, TextIO

from bnlint.report.registry import ReportOptions, register_format

if TYPE_CHECKING:
    from bnlint.lint.runner import FileResult

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


@register_format("junit")
class JunitFormat:
    def write(self, results: list[FileResult], out: TextIO, options: ReportOptions) -> None:
        total = sum(max(1, len(r.diagnostics)) for r in results)
        failures = sum(len(r.diagnostics) for r in results)
        root = ET.Element("testsuites", name="bnlint", tests=str(total),
                          failures=str(failures), errors="0")
        for result in results:
            path = xml_text(result.source.path)
            suite = ET.SubElement(root, "testsuite", name=path,
                                  tests=str(max(1, len(result.diagnostics))),
                                  failures=str(len(result.diagnostics)), errors="0")
            if not result.diagnostics:
                ET.SubElement(suite, "testcase", name="bnlint", classname=path)
            for d in result.diagnostics:
                line, col = d.start_line_col()
                case = ET.SubElement(suite, "testcase", name=f"{d.code} {d.name} ({line}:{col})",
                                     classname=path, file=path, line=str(line))
                failure = ET.SubElement(case, "failure", message=xml_text(d.message),
                                        type=str(d.severity))
                phases = f" ({', '.join(d.phases)})" if d.phases else ""
                failure.text = xml_text(f"{path}:{line}:{col}: {d.code} [{d.severity}] "
                                        f"{d.message}{phases}")
        ET.indent(root)
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        out.write(ET.tostring(root, encoding="us-ascii", xml_declaration=False).decode("ascii"))
        out.write("\n")
