"""Rule cases as data: fixtures/rules/*.prototxt declare the findings they must give."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bnlint.lint.config import LintConfig
from bnlint.lint.fixes import fix_source
from bnlint.lint.registry import all_rules
from bnlint.lint.runner import lint_source
from bnlint.source import SourceFile
from conftest import FIXTURES, needs_shared

CASES = sorted((FIXTURES / "rules").glob("*.prototxt"))


def header(text: str, key: str) -> str | None:
    m = re.search(rf"^# {key}:(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def config_for(text: str) -> LintConfig:
    opts = dict(kv.split("=", 1) for kv in (header(text, "options") or "").split())
    return LintConfig(select=tuple(opts["select"].split(",")) if "select" in opts else (),
                      dialect=opts.get("dialect", "portable"))


def found(result) -> list[str]:
    return sorted(f"{d.code}@{d.start_line_col()[0]}:{d.start_line_col()[1]}"
                  for d in result.diagnostics)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_rule_case(path: Path):
    text = path.read_text()
    expected = sorted((header(text, "expect") or "").split())
    result = lint_source(SourceFile(str(path), text), config_for(text))
    assert found(result) == expected


@pytest.mark.parametrize("path", [p for p in CASES if header(p.read_text(), "fixed")],
                         ids=lambda p: p.name)
def test_fix_case(path: Path):
    text = path.read_text()
    target = path.parent / header(text, "fixed")
    unsafe = header(text, "unsafe") == "true"
    fixed = fix_source(SourceFile(str(path), text), config_for(text), unsafe=unsafe)
    want = target.read_text()
    # the header comments differ between the two files; compare the rest exactly
    strip = lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("# expect:"))
    assert strip(fixed.text) == strip(want)
    again = fix_source(SourceFile(str(target), fixed.text), config_for(want), unsafe=unsafe)
    assert again.text == fixed.text, "a second --fix must change nothing"


def test_every_rule_has_a_case_and_documentation():
    covered = set()
    for path in CASES:
        covered.update(c.split("@")[0] for c in (header(path.read_text(), "expect") or "").split())
    for code, cls in all_rules().items():
        assert cls.documentation().strip(), code
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", cls.name), code
        if not cls.needs_weights:
            assert code in covered, f"no fixture in fixtures/rules reports {code}"


def _lint(text: str, **config) -> list:
    config.setdefault("dialect", "portable")
    return lint_source(SourceFile("net.prototxt", text), LintConfig(**config)).diagnostics


def test_findings_that_help_no_one_are_information():
    deploy = (FIXTURES / "rules" / "bn010_deploy_info.prototxt").read_text()
    assert [(d.code, str(d.severity)) for d in _lint(deploy, select=("BN010",))] == \
        [("BN010", "info")]
    # the same BatchNorm in a net that trains is a warning
    train = deploy.replace('type: "Input" top: "data"', 'type: "DummyData" top: "data"')
    assert [str(d.severity) for d in _lint(train, select=("BN010",))] == ["warning"]
    no_bias = deploy.replace('layer { name: "act1"',
                             'layer { name: "s1" type: "Scale" bottom: "a" top: "a" }\n'
                             'layer { name: "act1"')
    assert [(d.code, str(d.severity)) for d in _lint(no_bias, select=("BN01",))] == \
        [("BN011", "info")]
    twice = ('layer { name: "data" type: "Input" top: "d" input_param { shape { dim: 1 } } }\n'
             'layer { name: "r" type: "ReLU" bottom: "d" top: "a" }\n'
             'layer { name: "r" type: "ReLU" bottom: "a" top: "b" }\n')
    assert [(d.code, str(d.severity)) for d in _lint(twice, select=("N004",))] == \
        [("N004", "info")]


@pytest.mark.parametrize("dialect, severity", [
    ("portable", "warning"), ("nvcaffe", "info"), ("bvlc", None), ("legacy", None),
    ("ssd", None)])
def test_bn022_eps_floor_follows_the_dialect(dialect, severity):
    text = ('layer { name: "data" type: "Input" top: "d" input_param { shape { dim: 1 '
            'dim: 2 } } }\nlayer { name: "bn" type: "BatchNorm" bottom: "d" top: "b" '
            'batch_norm_param { eps: 1e-6 } }\n')
    got = [str(d.severity) for d in _lint(text, select=("BN022",), dialect=dialect)]
    assert got == ([severity] if severity else [])


# --- the README's rule table ------------------------------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"
TABLE_START = "<!-- rule table: tests/test_rules.py keeps it current -->"
TABLE_END = "<!-- end of rule table -->"


def _corpus_files_per_code() -> dict[str, int]:
    from conftest import corpus_files

    counts: dict[str, int] = {}
    for path in corpus_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        codes = {d.code for d in lint_source(SourceFile(str(path), text),
                                             LintConfig()).diagnostics}
        for code in codes:
            counts[code] = counts.get(code, 0) + 1
    return counts


def rule_table(counts: dict[str, int]) -> str:
    from conftest import corpus_files

    rows = [f"| code | name | default | what it finds | files of {len(corpus_files())} |",
            "| --- | --- | --- | --- | --- |"]
    for code, cls in all_rules().items():
        found = "-" if cls.needs_weights else str(counts.get(code, 0))
        rows.append(f"| {code} | {cls.name} | {cls.severity} | {cls.summary()} | {found} |")
    return "\n".join(rows)


@needs_shared
def test_readme_rule_table_is_current():
    text = README.read_text()
    assert TABLE_START in text and TABLE_END in text
    written = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    expected = rule_table(_corpus_files_per_code())
    assert written == expected, f"update the README's rule table to:\n{expected}"


@pytest.mark.parametrize("dialect, codes", [("portable", ["BN021"]), ("nvcaffe", [])])
def test_bn021_follows_what_the_batchnorm_form_computes(dialect, codes):
    # NVCaffe's BatchNorm uses its stored statistics at TEST whatever use_global_stats
    # says (caffe/layers/batchnorm.uses_global_stats); BVLC's follows the field
    text = ('layer { name: "data" type: "Input" top: "d" input_param { shape { dim: 1 '
            'dim: 2 } } }\nlayer { name: "bn" type: "BatchNorm" bottom: "d" top: "b" '
            'batch_norm_param { use_global_stats: false } }\n')
    assert [d.code for d in _lint(text, select=("BN021",), dialect=dialect)] == codes
