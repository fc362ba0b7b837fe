"""Output formats: each parses as what it claims to be, puts findings at the right
1-based line:column, maps severities, and escapes what its syntax needs escaped.

The findings are built by hand (no rules run), so these tests pin the formats only.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnlint.lint.diagnostics import Diagnostic, Fix, Severity
from bnlint.lint.registry import all_rules
from bnlint.lint.runner import FileResult
from bnlint.report import ReportOptions, count_by_code, formats, get_format, write_report
from bnlint.report.github import escape_data, escape_property
from bnlint.source import SourceFile
from bnlint.syntax.edits import Edit

SRC = Path(__file__).resolve().parents[1] / "src"

TEXT = (
    'name: "net"\n'
    "layer {\n"
    '\tname: "bn1" type: "BatchNorm"\n'
    "  batch_norm_param { use_global_stats: false }\n"
    "}\n"
)
NASTY = "100% [bold]wrong[/bold]\nsecond line <xml> & {\"x\"}: a,b"


def _diag(source, code, name, severity, message, needle, length=None, **kw) -> Diagnostic:
    start = source.text.index(needle)
    return Diagnostic(code, name, severity, message, source, start,
                      start + (len(needle) if length is None else length), **kw)


@pytest.fixture
def results() -> list[FileResult]:
    src = SourceFile("nets/bn.prototxt", TEXT)
    value = TEXT.index("false")
    fix = Fix("use global statistics", (Edit(value, value + len("false"), "true"),), safe=False)
    error = _diag(src, "BN021", "bn-batch-stats-in-test", Severity.ERROR, NASTY,
                  "use_global_stats: false", phases=("TEST", "TRAIN+deploy"), fix=fix,
                  layer="bn1")
    # after a tab: line 3, column 14 in characters
    warning = _diag(src, "BN001", "bn-stats-not-frozen", Severity.WARNING, "no param blocks",
                    'type: "BatchNorm"', fix=Fix("add param blocks", (Edit(0, 0, "x\n"),)),
                    layer="bn1")
    info = _diag(src, "N005", "deprecated-input-fields", Severity.INFO, "at the start",
                 "name", length=0)
    clean = SourceFile("nets/clean.prototxt", 'name: "clean"\n')
    return [FileResult(src, [error, warning, info]), FileResult(clean, [])]


def render(name: str, results, **options) -> str:
    out = io.StringIO()
    get_format(name)().write(results, out, ReportOptions(**{"color": False, **options}))
    return out.getvalue()


# -- registry ------------------------------------------------------------------------------

def test_formats_are_registered_in_a_stable_order():
    assert formats() == ["text", "concise", "json", "github", "sarif", "junit"]
    assert formats() == formats()
    for name in formats():
        assert callable(get_format(name)().write)


def test_unknown_format_names_the_choices():
    with pytest.raises(ValueError, match="one of text, concise"):
        get_format("xml")


def test_write_report_uses_default_options(results):
    out = io.StringIO()
    write_report("concise", results, out)
    assert out.getvalue().startswith("nets/bn.prototxt:4:22: BN021 ")


@pytest.mark.parametrize("name", ["json", "concise", "github", "sarif", "junit", None])
def test_machine_formats_do_not_import_rich_or_numpy(name):
    load = f"get_format({name!r})().write([], io.StringIO(), ReportOptions())" if name else \
        "formats()"
    code = ("import io, sys\n"
            "from bnlint.report import ReportOptions, formats, get_format\n"
            f"{load}\n"
            "assert 'rich' not in sys.modules, 'rich'\n"
            "assert 'numpy' not in sys.modules, 'numpy'\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_count_by_code(results):
    counts = count_by_code(results + results)
    assert [(c.code, c.count, c.fixable) for c in counts] == [
        ("BN001", 2, 2), ("BN021", 2, 0), ("N005", 2, 0)]


# -- json ----------------------------------------------------------------------------------

def test_json(results):
    document = json.loads(render("json", results))
    assert list(document) == ["version", "findings", "errors"]
    assert document["version"] == 1 and document["errors"] == []
    data = document["findings"]
    assert [d["code"] for d in data] == ["BN021", "BN001", "N005"]
    error, warning, info = data
    assert list(error) == ["path", "line", "column", "end_line", "end_column", "code", "name",
                           "severity", "message", "phase", "layer", "fix", "count", "sites"]
    assert error["count"] == 1
    assert error["sites"] == [{k: error[k] for k in ("line", "column", "end_line", "end_column",
                                                      "message", "phase", "layer", "fix")}]
    assert (error["path"], error["line"], error["column"]) == ("nets/bn.prototxt", 4, 22)
    assert (error["end_line"], error["end_column"]) == (4, 45)
    assert error["message"] == NASTY
    assert error["phase"] == ["TEST", "TRAIN+deploy"]
    assert error["layer"] == "bn1"
    assert error["fix"] == {
        "description": "use global statistics", "safe": False,
        "edits": [{"start": {"line": 4, "column": 40}, "end": {"line": 4, "column": 45},
                   "content": "true"}]}
    assert (warning["line"], warning["column"], warning["end_column"]) == (3, 14, 31)
    assert [d["severity"] for d in data] == ["error", "warning", "info"]
    assert info["fix"] is None and info["layer"] is None and info["phase"] == []
    assert (info["line"], info["column"], info["end_line"], info["end_column"]) == (1, 1, 1, 1)


# -- concise -------------------------------------------------------------------------------

def test_concise(results):
    assert render("concise", results).splitlines() == [
        'nets/bn.prototxt:4:22: BN021 [error] 100% [bold]wrong[/bold] second line <xml> & '
        '{"x"}: a,b',
        "nets/bn.prototxt:3:14: BN001 [warning] [*] no param blocks",
        "nets/bn.prototxt:1:1: N005 [info] at the start",
    ]


def test_concise_statistics(results):
    lines = render("concise", results, statistics=True).splitlines()
    assert lines == ["1\tBN001\t[*] bn-stats-not-frozen",
                         "1\tBN021\tbn-batch-stats-in-test",
                         "1\tN005\tdeprecated-input-fields"]


# -- github --------------------------------------------------------------------------------

def test_github(results):
    lines = render("github", results).splitlines()
    assert len(lines) == 3  # the newline in the message is escaped
    assert lines[0] == (
        "::error file=nets/bn.prototxt,line=4,col=22,endLine=4,endColumn=45,"
        "title=bnlint BN021::100%25 [bold]wrong[/bold]%0Asecond line <xml> & {\"x\"}: a,b")
    assert lines[1].startswith("::warning file=nets/bn.prototxt,line=3,col=14,")
    assert lines[2].startswith("::notice file=nets/bn.prototxt,line=1,col=1,")


def test_github_escapes_properties():
    src = SourceFile("C:\\nets\\a,b%.prototxt", "x\n")
    diag = Diagnostic("E001", "syntax-error", Severity.ERROR, "a\r\nb", src, 0, 1)
    line = render("github", [FileResult(src, [diag])])
    assert line == ("::error file=C%3A\\nets\\a%2Cb%25.prototxt,line=1,col=1,endLine=1,"
                    "endColumn=2,title=bnlint E001::a%0D%0Ab\n")


def _unescape(text: str) -> str:
    for raw, escaped in (("\r", "%0D"), ("\n", "%0A"), (":", "%3A"), (",", "%2C"),
                         ("%", "%25")):
        text = text.replace(escaped, raw)
    return text


@given(st.text())
def test_github_escaping_round_trips(text):
    for escaped in (escape_data(text), escape_property(text)):
        assert "\n" not in escaped and "\r" not in escaped
        assert _unescape(escaped) == text
    assert ":" not in escape_property(text) and "," not in escape_property(text)


# -- sarif ---------------------------------------------------------------------------------

def test_sarif(results):
    log = json.loads(render("sarif", results, tool_version="9.9"))
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("bnlint", "9.9")
    assert driver["informationUri"].startswith("https://")
    rules = driver["rules"]
    assert [r["id"] for r in rules] == list(all_rules())
    bn001 = rules[[r["id"] for r in rules].index("BN001")]
    assert bn001["name"] == "bn-stats-not-frozen"
    assert bn001["shortDescription"]["text"] == all_rules()["BN001"].summary()
    assert bn001["fullDescription"]["text"] == all_rules()["BN001"].documentation()
    assert bn001["defaultConfiguration"]["level"] == "warning"

    error, warning, info = run["results"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    assert [r["level"] for r in run["results"]] == ["error", "warning", "note"]
    assert error["message"]["text"] == NASTY
    assert len(error["partialFingerprints"]["bnlintFinding/v1"]) == 32
    (invocation,) = run["invocations"]
    assert invocation == {"executionSuccessful": True, "toolExecutionNotifications": []}
    location = error["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "nets/bn.prototxt"
    assert location["region"] == {"startLine": 4, "startColumn": 22,
                                  "endLine": 4, "endColumn": 45}
    assert warning["locations"][0]["physicalLocation"]["region"]["startColumn"] == 14
    assert run["columnKind"] == "unicodeCodePoints"
    (replacement,) = error["fixes"][0]["artifactChanges"][0]["replacements"]
    assert replacement == {"deletedRegion": {"startLine": 4, "startColumn": 40,
                                             "endLine": 4, "endColumn": 45},
                           "insertedContent": {"text": "true"}}


def test_sarif_uris_and_unregistered_codes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inside = SourceFile(str(tmp_path / "sub dir" / "a.prototxt"), "x\n")
    outside = SourceFile(str(Path(tmp_path.anchor) / "elsewhere" / "b.prototxt"), "x\n")
    results = [FileResult(src, [Diagnostic("Z999", "plugin-rule", Severity.INFO, "m", src, 0, 1)])
               for src in (inside, outside)]
    run = json.loads(render("sarif", results))["runs"][0]
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in run["results"]]
    assert uris[0] == {"uri": "sub%20dir/a.prototxt", "uriBaseId": "%SRCROOT%"}
    assert uris[1]["uri"].startswith("file:///") and "uriBaseId" not in uris[1]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules].count("Z999") == 1
    assert all(rules[r["ruleIndex"]]["id"] == "Z999" for r in run["results"])


# -- junit ---------------------------------------------------------------------------------

def test_junit(results):
    text = render("junit", results)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "0")
    dirty, clean = root.findall("testsuite")
    assert dirty.get("name") == "nets/bn.prototxt"
    cases = dirty.findall("testcase")
    assert len(cases) == 3
    failure = cases[0].find("failure")
    assert failure.get("message") == NASTY
    assert failure.get("type") == "error"
    assert failure.text.startswith("nets/bn.prototxt:4:22: BN021 [error] 100% [bold]")
    assert failure.text.endswith("(TEST, TRAIN+deploy)")
    # below the default fail-on (error): passing cases, the finding in system-out
    assert [c.find("failure") is not None for c in cases] == [True, False, False]
    assert cases[1].find("system-out").text.startswith("nets/bn.prototxt:3:14: BN001 [warning]")
    (passing,) = clean.findall("testcase")
    assert passing.find("failure") is None and clean.get("failures") == "0"


def test_junit_under_exit_zero_has_no_failure(results):
    """--exit-zero makes the run green, so the report is green too."""
    root = ET.fromstring(render("junit", results, exit_zero=True))
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "0", "0")
    cases = root.find("testsuite").findall("testcase")
    assert [c.find("failure") is None for c in cases] == [True, True, True]
    assert cases[0].find("system-out").text.startswith("nets/bn.prototxt:4:22: BN021 [error]")


def test_junit_replaces_characters_xml_cannot_hold():
    src = SourceFile("\u00e9t\u00e9.prototxt", "x\n")
    diag = Diagnostic("E001", "syntax-error", Severity.ERROR, "bad \x00\x1b byte \u2603", src, 0, 1)
    text = render("junit", [FileResult(src, [diag])])
    assert text.isascii()
    failure = ET.fromstring(text).find("testsuite/testcase/failure")
    assert failure.get("message") == "bad \ufffd\ufffd byte \u2603"
    assert ET.fromstring(text).find("testsuite").get("name") == "\u00e9t\u00e9.prototxt"


@given(st.text())
def test_junit_message_round_trips(message):
    src = SourceFile("a.prototxt", "x\n")
    diag = Diagnostic("E001", "syntax-error", Severity.ERROR, message, src, 0, 1)
    failure = ET.fromstring(render("junit", [FileResult(src, [diag])])).find(
        "testsuite/testcase/failure")
    expected = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]", "\ufffd", message)
    assert failure.get("message") == expected


# -- text ----------------------------------------------------------------------------------

def _block(lines: list[str], header_start: str) -> list[str]:
    i = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    return lines[i:i + 6]


def test_text_finding_with_caret_under_the_span(results):
    lines = render("text", results).splitlines()
    header, bar, source, carets, marker = _block(lines, "nets/bn.prototxt:4:22:")[:5]
    assert header == ('nets/bn.prototxt:4:22: BN021 [error] 100% [bold]wrong[/bold] '
                      'second line <xml> & {"x"}: a,b (TEST, TRAIN+deploy)')
    assert bar == "  |"
    assert source == "4 |   batch_norm_param { use_global_stats: false }"
    assert carets.index("^") == source.index("use_global_stats")
    assert carets.count("^") == len("use_global_stats: false")
    assert carets.rstrip().endswith("^")
    assert marker == "  = unsafe fix available (--unsafe-fixes): use global statistics"


def test_text_caret_after_a_tab_and_zero_width_span(results):
    lines = render("text", results).splitlines()
    _, _, source, carets, marker, _ = _block(lines, "nets/bn.prototxt:3:14:")
    assert "\t" not in source
    assert carets.index("^") == source.index('type: "BatchNorm"')
    assert carets.count("^") == len('type: "BatchNorm"')
    assert marker == "  = fix available: add param blocks"
    _, _, source, carets, after, _ = _block(lines, "nets/bn.prototxt:1:1:")
    assert carets.index("^") == source.index("name") and carets.count("^") == 1
    assert "fix available" not in after


def test_text_summary_and_plain_output(results):
    text = render("text", results)
    assert "\x1b[" not in text
    assert text.splitlines()[-1] == (
        "Found 3 findings (1 error, 1 warning, 1 info); 1 fixable with --fix "
        "(1 more with --unsafe-fixes).")


def test_text_color_when_asked(results):
    assert "\x1b[" in render("text", results, color=True)


def test_text_show_fixes_prints_the_changed_lines(results):
    lines = render("text", results, show_fixes=True).splitlines()
    block = lines[lines.index("  = unsafe fix available (--unsafe-fixes): use global statistics")
                  + 1:][:2]
    assert block == ["    -   batch_norm_param { use_global_stats: false }",
                     "    +   batch_norm_param { use_global_stats: true }"]


def test_text_statistics_table(results):
    text = render("text", results, statistics=True)
    row = next(line for line in text.splitlines() if "bn-stats-not-frozen" in line)
    assert row.split() == ["1", "BN001", "bn-stats-not-frozen", "1"]


def test_text_control_characters_do_not_reach_the_terminal():
    src = SourceFile("a.prototxt", "name: \"\x1b[31mred\"\n")
    diag = Diagnostic("E003", "invalid-value", Severity.ERROR, "saw \x1b[2J", src, 6, 7)
    assert "\x1b" not in render("text", [FileResult(src, [diag])])


# -- zero findings -------------------------------------------------------------------------

#: what "nothing to report" looks like in each format; a new format adds its line here
EMPTY = {
    "text": lambda text: text.startswith("No findings in "),
    "concise": lambda text: text == "",
    "json": lambda text: json.loads(text) in ({"version": 1, "findings": [], "errors": []},
                                              {"version": 1, "statistics": [], "errors": []}),
    "github": lambda text: text == "",
    "sarif": lambda text: json.loads(text)["runs"][0]["results"] == [],
    "junit": lambda text: ET.fromstring(text).get("failures") == "0",
}


def test_every_format_has_a_zero_findings_check():
    assert sorted(EMPTY) == sorted(formats())


@pytest.mark.parametrize("name", formats())
@pytest.mark.parametrize("files", [0, 2])
def test_zero_findings(name, files):
    results = [FileResult(SourceFile(f"f{i}.prototxt", "name: 'x'\n"), [])
               for i in range(files)]
    text = render(name, results, statistics=True, show_fixes=True)
    assert EMPTY[name](text)
    if name == "junit":
        assert len(ET.fromstring(text).findall("testsuite/testcase")) == files
    if name == "text":
        assert text == f"No findings in {files} files.\n"


# -- repeated findings: one entry per rule and reason in a file ------------------------------

REPEATED = "".join(f'layer {{ name: "bn{i}" type: "BatchNorm" bottom: "x" top: "x" }}\n'
                   for i in range(12))


@pytest.fixture
def repeated() -> list[FileResult]:
    src = SourceFile("nets/rep.prototxt", REPEATED)
    diags = []
    for i in range(12):
        start = REPEATED.index(f'"bn{i}"')
        diags.append(Diagnostic("BN001", "bn-stats-not-frozen", Severity.WARNING,
                                f"BatchNorm 'bn{i}' has no param blocks", src, start, start + 5,
                                fix=Fix("add", (Edit(start, start, "x"),)), layer=f"bn{i}"))
    other = REPEATED.index('"bn3"')
    diags.append(Diagnostic("BN021", "bn-batch-stats-in-test", Severity.ERROR, "batch stats",
                            src, other, other + 5, layer="bn3"))
    diags.sort(key=Diagnostic.sort_key)
    return [FileResult(src, diags)]


def test_concise_shows_a_repeated_finding_once(repeated):
    lines = render("concise", repeated).splitlines()
    assert [line.split()[1] for line in lines] == ["BN001", "BN021"]
    assert lines[0].startswith("nets/rep.prototxt:1:15: BN001 [warning] [*] BatchNorm 'bn0' ")
    assert "and 11 more: bn1, bn2, bn3, bn4, bn5, bn6, bn7, bn8, ..." in lines[0]
    every = render("concise", repeated, show_all=True).splitlines()
    assert len(every) == 13 and "more" not in "".join(every)


def test_github_shows_a_repeated_finding_once(repeated):
    lines = render("github", repeated).splitlines()
    assert len(lines) == 2 and "and 11 more" in lines[0]
    assert len(render("github", repeated, show_all=True).splitlines()) == 13


def test_json_keeps_every_site_in_the_entry(repeated):
    data = json.loads(render("json", repeated))["findings"]
    bn001 = data[0]
    assert (bn001["code"], bn001["count"], bn001["layer"]) == ("BN001", 12, "bn0")
    assert [s["layer"] for s in bn001["sites"]] == [f"bn{i}" for i in range(12)]
    assert [s["line"] for s in bn001["sites"]] == list(range(1, 13))
    assert all(s["fix"]["safe"] for s in bn001["sites"])
    assert len(json.loads(render("json", repeated, show_all=True))["findings"]) == 13


def test_sarif_one_result_with_a_location_per_site(repeated):
    run = json.loads(render("sarif", repeated))["runs"][0]
    bn001, bn021 = run["results"]
    lines = [loc["physicalLocation"]["region"]["startLine"] for loc in bn001["locations"]]
    assert lines == list(range(1, 13))
    assert len(bn001["fixes"]) == 12 and len(bn021["locations"]) == 1
    assert bn001["partialFingerprints"] != bn021["partialFingerprints"]


def test_fingerprints_do_not_move_with_lines(repeated):
    before = json.loads(render("sarif", repeated))["runs"][0]["results"]
    src = repeated[0].source
    shifted = SourceFile(src.path, "# a comment\n" + src.text)
    moved = [FileResult(shifted, [Diagnostic(d.code, d.name, d.severity, d.message, shifted,
                                             d.start + 12, d.end + 12, fix=d.fix, layer=d.layer)
                                  for d in repeated[0].diagnostics])]
    after = json.loads(render("sarif", moved))["runs"][0]["results"]
    assert [r["partialFingerprints"] for r in before] == [r["partialFingerprints"] for r in after]
    assert [r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in after] == [2, 5]


def test_text_shows_a_repeated_finding_once(repeated):
    text = render("text", repeated)
    assert text.count("BN001 [warning]") == 1
    assert "12 sites in this file: this one and 11 more: bn1, bn2" in text
    assert "fix available for 12 of 12 sites: add" in text
    assert text.splitlines()[-1] == (
        "Found 13 findings (1 error, 12 warnings, 0 info); 12 fixable with --fix. Repeated "
        "findings are shown once per file (2 entries); --show-all lists every site.")
    assert render("text", repeated, show_all=True).count("BN001 [warning]") == 12


def test_junit_one_case_per_entry(repeated):
    suite = ET.fromstring(render("junit", repeated)).find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")


def test_statistics_count_every_site(repeated):
    assert render("concise", repeated, statistics=True).splitlines() == [
        "12\tBN001\t[*] bn-stats-not-frozen", " 1\tBN021\tbn-batch-stats-in-test"]
    stats = json.loads(render("json", repeated, statistics=True))
    assert list(stats) == ["version", "statistics", "errors"]
    assert stats["statistics"][0] == {"code": "BN001", "name": "bn-stats-not-frozen",
                                      "count": 12, "fixable": 12}


def test_a_rule_can_name_its_reason(repeated):
    """`extra["group"]` splits one rule's findings by reason (e.g. the blob they are about)."""
    src = repeated[0].source
    diags = [Diagnostic("N001", "unknown-bottom", Severity.ERROR, f"blob {blob}", src, i, i + 1,
                        extra={"group": blob}) for i, blob in enumerate("aab")]
    lines = render("concise", [FileResult(src, diags)]).splitlines()
    assert len(lines) == 2 and "blob a (and 1 more" in lines[0]


# -- errors in machine formats ---------------------------------------------------------------

def render_errors(name: str, results, errors) -> str:
    out = io.StringIO()
    get_format(name)().write(results, out, ReportOptions(color=False), errors)
    return out.getvalue()


def test_machine_formats_carry_errors(results):
    from bnlint.errors import BnlintError

    src = SourceFile("cfg/.bnlint.toml", "a = 1\nb = [\n")
    errors = [BnlintError("no such file", path="missing.prototxt"),
              BnlintError("bad toml", source=src, offset=8)]
    data = json.loads(render_errors("json", results, errors))
    assert data["errors"] == [
        {"path": "missing.prototxt", "line": None, "column": None, "message": "no such file"},
        {"path": "cfg/.bnlint.toml", "line": 2, "column": 3, "message": "bad toml"}]
    (invocation,) = json.loads(render_errors("sarif", results, errors))["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    notes = invocation["toolExecutionNotifications"]
    assert [n["message"]["text"] for n in notes] == ["no such file", "bad toml"]
    assert notes[1]["locations"][0]["physicalLocation"]["region"] == {"startLine": 2,
                                                                      "startColumn": 3}
    root = ET.fromstring(render_errors("junit", results, errors))
    assert root.get("errors") == "2"
    cases = [c for c in root.iter("testcase") if c.find("error") is not None]
    assert [c.get("name") for c in cases] == ["missing.prototxt", "cfg/.bnlint.toml:2:3"]
