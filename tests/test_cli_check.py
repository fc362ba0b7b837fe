"""`bnlint check` end to end: formats, exit codes, fixes on disk, config, stdin."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections import Counter

import pytest

from conftest import CORPUS, FIXTURES, REPO, needs_shared

EXAMPLES = FIXTURES / "examples"
BUGGY = EXAMPLES / "tiny_resnet_deploy_by_hand.prototxt"
TRAIN = EXAMPLES / "tiny_resnet_train_val.prototxt"


def test_examples_exit_1_with_findings(run_cli):
    code, out, _ = run_cli("check", "--format", "concise", str(EXAMPLES))
    assert code == 1
    assert f"{BUGGY}:18:22: BN021" in out


def test_clean_train_net_exits_0(run_cli):
    code, out, _ = run_cli("check", "--format", "json", str(TRAIN))
    assert code == 0
    assert json.loads(out) == {"version": 1, "findings": [], "errors": []}


def test_json_fields(run_cli):
    code, out, _ = run_cli("check", "--format", "json", str(BUGGY))
    rows = json.loads(out)["findings"]
    bn021 = next(r for r in rows if r["code"] == "BN021")
    assert (bn021["line"], bn021["column"], bn021["severity"]) == (18, 22, "error")
    assert bn021["name"] == "bn-batch-stats-in-test"
    assert bn021["fix"]["safe"] is False


def test_select_ignore_and_exit_zero(run_cli):
    assert run_cli("check", "--select", "N005", str(BUGGY))[0] == 0  # info only
    assert run_cli("check", "--select", "N005", "--fail-on", "info", str(BUGGY))[0] == 1
    assert run_cli("check", "--ignore", "BN", str(BUGGY))[0] == 0
    assert run_cli("check", "--exit-zero", str(BUGGY))[0] == 0


def test_junit_report_is_green_when_the_exit_is(run_cli):
    import xml.etree.ElementTree as ET

    code, out, _ = run_cli("check", "--format", "junit", str(BUGGY))
    assert code == 1 and ET.fromstring(out).get("failures") == "1"
    code, out, _ = run_cli("check", "--format", "junit", "--exit-zero", str(BUGGY))
    assert code == 0 and ET.fromstring(out).get("failures") == "0"


def test_github_format_is_automatic_under_actions(run_cli, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, _ = run_cli("check", str(BUGGY))
    assert "::error file=" in out and "BN021" in out


def test_missing_file_is_exit_2(run_cli, tmp_path):
    code, _, err = run_cli("check", str(tmp_path / "nope.prototxt"))
    assert code == 2 and "no such file" in err


def test_syntax_error_is_a_finding(run_cli, tmp_path):
    f = tmp_path / "broken.prototxt"
    f.write_text("layer {\n  name: 'x'\n")
    code, out, _ = run_cli("check", "--format", "concise", str(f))
    assert code == 1 and f"{f}:1:7: E001" in out


def test_fix_writes_only_changed_files_and_keeps_permissions(run_cli, tmp_path):
    bad = tmp_path / "bad.prototxt"
    shutil.copy(FIXTURES / "rules" / "bn001_not_frozen.prototxt", bad)
    os.chmod(bad, 0o640)
    clean = tmp_path / "clean.prototxt"
    shutil.copy(TRAIN, clean)
    before = clean.stat().st_mtime_ns
    code, _, _ = run_cli("check", "--fix", "--select", "BN001", str(tmp_path))
    assert code == 0
    assert bad.read_text().count("param { lr_mult: 0 decay_mult: 0 }") == 3
    assert stat.S_IMODE(bad.stat().st_mode) == 0o640
    assert clean.stat().st_mtime_ns == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # a second run changes nothing
    text = bad.read_text()
    run_cli("check", "--fix", "--select", "BN001", str(bad))
    assert bad.read_text() == text


def test_diff_writes_nothing(run_cli, tmp_path):
    bad = tmp_path / "bad.prototxt"
    shutil.copy(FIXTURES / "rules" / "bn001_not_frozen.prototxt", bad)
    text = bad.read_text()
    code, out, _ = run_cli("check", "--diff", "--select", "BN001", str(bad))
    assert code == 1
    assert "+  param { lr_mult: 0 decay_mult: 0 }" in out
    assert bad.read_text() == text


def test_unsafe_fixes_need_the_flag(run_cli, tmp_path):
    f = tmp_path / "deploy.prototxt"
    shutil.copy(BUGGY, f)
    run_cli("check", "--fix", str(f))
    assert "use_global_stats: false" in f.read_text()
    run_cli("check", "--fix", "--unsafe-fixes", str(f))
    text = f.read_text()
    assert "use_global_stats: true }  # copied from a training snippet" in text


def test_stdin(run_cli, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BUGGY.read_bytes())))
    code, out, _ = run_cli("check", "--format", "concise", "-")
    assert code == 1 and "<stdin>:18:22: BN021" in out


def test_config_file_found_upward_and_overridden(run_cli, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.bnlint]\nignore = ["BN021"]\n')
    sub = tmp_path / "models"
    sub.mkdir()
    f = sub / "deploy.prototxt"
    shutil.copy(BUGGY, f)
    code, out, _ = run_cli("check", "--format", "concise", str(f))
    assert "BN021" not in out and code == 0
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021",
                           "--config", str(REPO / "pyproject.toml"), str(f))
    assert "BN021" in out and code == 1


def test_bad_config_is_exit_2(run_cli, tmp_path):
    (tmp_path / ".bnlint.toml").write_text('selekt = ["BN"]\n')
    f = tmp_path / "n.prototxt"
    f.write_text('name: "n"\n')
    code, _, err = run_cli("check", str(f))
    assert code == 2 and "selekt" in err


def test_per_file_ignores(run_cli, tmp_path):
    (tmp_path / ".bnlint.toml").write_text('[per-file-ignores]\n"legacy/*" = ["BN021"]\n')
    (tmp_path / "legacy").mkdir()
    f = tmp_path / "legacy" / "d.prototxt"
    shutil.copy(BUGGY, f)
    code, out, _ = run_cli("check", "--format", "concise", str(f))
    assert "BN021" not in out


@pytest.mark.parametrize("fmt", ["text", "concise", "json", "github", "sarif", "junit"])
def test_every_format_runs(run_cli, fmt):
    code, out, _ = run_cli("check", "--format", fmt, str(BUGGY))
    assert code == 1 and out.strip()


def test_rules_command(run_cli):
    code, out, _ = run_cli("rules")
    assert code == 0 and "BN010" in out and "bn-without-scale" in out
    code, out, _ = run_cli("rules", "BN010")
    assert code == 0 and "Bad:" in out and "Good:" in out
    assert run_cli("rules", "XX999")[0] == 2


def test_fix_on_stdin_always_writes_the_text(run_cli, monkeypatch):
    """As a filter (`--fix -`), the text comes back even when nothing needed fixing."""
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(TRAIN.read_bytes())))
    code, out, _ = run_cli("check", "--fix", "-")
    assert out == TRAIN.read_text()


def test_each_file_is_judged_by_its_own_fail_on(run_cli, tmp_path):
    strict, lax = tmp_path / "strict", tmp_path / "lax"
    for folder, level in ((strict, "info"), (lax, "error")):
        folder.mkdir()
        (folder / ".bnlint.toml").write_text(f'fail-on = "{level}"\n')
        shutil.copy(BUGGY, folder / "d.prototxt")
    (lax / "d.prototxt").write_text('name: "clean"\n')
    (strict / "d.prototxt").write_text('input: "x"\ninput_dim: 1\n')   # N005 (info)
    a = run_cli("check", str(strict / "d.prototxt"), str(lax / "d.prototxt"))[0]
    b = run_cli("check", str(lax / "d.prototxt"), str(strict / "d.prototxt"))[0]
    assert a == b == 1


def test_config_values_of_the_wrong_type_are_exit_2(run_cli, tmp_path):
    (tmp_path / ".bnlint.toml").write_text("fail-on = 1\n")
    f = tmp_path / "n.prototxt"
    f.write_text('name: "n"\n')
    code, _, err = run_cli("check", str(f))
    assert code == 2 and "fail-on" in err


# -- a typo must never turn CI green -----------------------------------------------------------

@pytest.mark.parametrize("option, value, nearest", [
    ("--select", "BN999", "BN"), ("--ignore", "FOO1", None), ("--extend-select", "BN02x", None),
    ("--select", "BN010,XY", None)])
def test_unknown_code_or_prefix_is_a_usage_error(run_cli, option, value, nearest):
    code, out, err = run_cli("check", option, value, str(TRAIN))
    assert code == 2 and out == ""
    bad = [v for v in value.split(",") if v != "BN010"][0]
    assert f"unknown rule code or prefix {bad!r}" in err and "did you mean" in err
    if nearest:
        assert f"did you mean {nearest}" in err   # a whole code


def test_a_rule_name_is_refused_with_its_code(run_cli):
    code, _, err = run_cli("check", "--select", "bn-without-scale", str(TRAIN))
    assert code == 2 and "'bn-without-scale' is the name of rule BN010; use its code" in err


def test_known_prefixes_and_all_are_accepted(run_cli):
    for value in ("B", "BN0", "bn01", "ALL", "all", "E,N"):
        assert run_cli("check", "--select", value, str(TRAIN))[0] == 0, value


def test_unknown_codes_in_the_config_are_exit_2(run_cli, tmp_path):
    f = tmp_path / "n.prototxt"
    f.write_text('name: "n"\n')
    for body in ('select = ["BN999"]\n', 'ignore = ["bn-without-scale"]\n',
                 '[per-file-ignores]\n"*.prototxt" = ["XX1"]\n'):
        (tmp_path / ".bnlint.toml").write_text(body)
        code, _, err = run_cli("check", str(f))
        assert code == 2 and ".bnlint.toml" in err, body
        assert "BN010" in err if "bn-" in body else "unknown rule code" in err


def test_repeated_select_options_accumulate(run_cli):
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021",
                           "--select", "BN010", str(BUGGY))
    assert {line.split()[1] for line in out.splitlines()} == {"BN021", "BN010"}
    code, out, _ = run_cli("check", "--format", "concise", "--ignore", "BN021",
                           "--ignore", "N", str(BUGGY))
    assert {line.split()[1] for line in out.splitlines()} == {"BN010"}


def test_a_config_error_is_reported_once_per_run(run_cli, tmp_path):
    (tmp_path / ".bnlint.toml").write_text('selekt = ["BN"]\n')
    for name in ("a", "b", "c"):
        sub = tmp_path / name
        sub.mkdir()
        (sub / "n.prototxt").write_text('name: "n"\n')
    code, _, err = run_cli("check", str(tmp_path))
    assert code == 2 and err.count("selekt") == 1


def test_bnlint_toml_takes_the_pyproject_table_form(run_cli, tmp_path):
    f = tmp_path / "deploy.prototxt"
    shutil.copy(BUGGY, f)
    (tmp_path / ".bnlint.toml").write_text('[tool.bnlint]\nselect = ["BN021"]\n')
    code, out, err = run_cli("check", "--format", "concise", str(f))
    assert code == 1, err
    assert {line.split()[1] for line in out.splitlines()} == {"BN021"}
    (tmp_path / ".bnlint.toml").write_text('ignore = ["N"]\n[tool.bnlint]\nselect = ["BN"]\n')
    code, _, err = run_cli("check", str(f))
    assert code == 2 and "use one form" in err


# -- say each thing once ---------------------------------------------------------------------

MANY_BN = "".join(f'layer {{ name: "bn{i}" type: "BatchNorm" bottom: "x" top: "x" }}\n'
                  for i in range(5))
MANY_BN = ('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }\n'
           + MANY_BN.replace('type: "BatchNorm"', 'type: "BatchNorm" include { phase: TRAIN }'))


def test_repeated_findings_once_and_every_site_fixed(run_cli, tmp_path):
    f = tmp_path / "many.prototxt"
    f.write_text(MANY_BN)
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN001", str(f))
    assert code == 0 and len(out.splitlines()) == 1
    assert ": BN001 [warning] [*] " in out and "and 4 more: bn1, bn2, bn3, bn4" in out
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN001", "--show-all",
                           str(f))
    assert len(out.splitlines()) == 5
    run_cli("check", "--fix", "--select", "BN001", str(f))
    assert f.read_text().count("param { lr_mult: 0 decay_mult: 0 }") == 15


def test_suppressions_still_work_per_layer_in_a_group(run_cli, tmp_path):
    f = tmp_path / "many.prototxt"
    f.write_text(MANY_BN.replace('layer { name: "bn2"', '# bnlint: disable=BN001\nlayer { name: "bn2"'))
    code, out, _ = run_cli("check", "--format", "json", "--select", "BN001,S", str(f))
    (entry,) = json.loads(out)["findings"]
    assert [s["layer"] for s in entry["sites"]] == ["bn0", "bn1", "bn3", "bn4"]


def test_statistics_only_where_the_format_has_a_form(run_cli):
    code, out, _ = run_cli("check", "--statistics", "--format", "json", str(BUGGY))
    assert code == 1 and {c["code"] for c in json.loads(out)["statistics"]} >= {"BN021"}
    code, _, err = run_cli("check", "--statistics", "--format", "sarif", str(BUGGY))
    assert code == 2 and "--statistics" in err


@needs_shared
def test_corpus_concise_report_says_each_thing_once(run_cli, pytestconfig):
    """Prints the before/after line counts; at most one line per rule and file."""
    _, grouped, _ = run_cli("check", "--format", "concise", "--exit-zero", str(CORPUS))
    _, every, _ = run_cli("check", "--format", "concise", "--exit-zero", "--show-all",
                          str(CORPUS))
    grouped, every = grouped.splitlines(), every.splitlines()

    def rule_and_file(line: str) -> tuple[str, str]:
        where, code = line.split(": ", 1)[0], line.split(": ", 1)[1].split()[0]
        return where.rsplit(":", 2)[0], code

    per_rule_file = Counter(rule_and_file(line) for line in grouped)
    assert max(per_rule_file.values()) == 1, per_rule_file.most_common(3)
    assert set(per_rule_file) == {rule_and_file(line) for line in every}
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nconcise report over {CORPUS}: {len(every)} lines with --show-all, "
              f"{len(grouped)} grouped")
    assert len(grouped) < len(every)


# -- paths -------------------------------------------------------------------------------------

def _tree(tmp_path):
    """models/{a,b}.prototxt, models/third_party/c.prototxt, models/.cache/d.prototxt."""
    models = tmp_path / "models"
    for rel in ("a.prototxt", "b.prototxt", "third_party/c.prototxt", ".cache/d.prototxt",
                "gen/e.prototxt"):
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(BUGGY, models / rel)
    return models


def _checked(out: str) -> set[str]:
    return {os.path.basename(line.split(":", 1)[0]) for line in out.splitlines()}


def test_exclude_and_extend_exclude(run_cli, tmp_path, monkeypatch):
    models = _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021", "models")
    assert _checked(out) == {"a.prototxt", "b.prototxt", "c.prototxt", "e.prototxt"}
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021",
                           "--extend-exclude", "third_party", "--extend-exclude", "models/gen/*",
                           "models")
    assert _checked(out) == {"a.prototxt", "b.prototxt"}
    # --exclude replaces the defaults: the hidden folder is searched again
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021",
                           "--exclude", "b.prototxt", "models")
    assert _checked(out) == {"a.prototxt", "c.prototxt", "d.prototxt", "e.prototxt"}
    # a file named explicitly is always checked, unless --force-exclude
    named = str(models / "third_party" / "c.prototxt")
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021",
                           "--extend-exclude", "third_party", named)
    assert _checked(out) == {"c.prototxt"}
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021",
                           "--extend-exclude", "third_party", "--force-exclude", named)
    assert code == 0 and out == ""


def test_exclude_in_the_config(run_cli, tmp_path, monkeypatch):
    models = _tree(tmp_path)
    (tmp_path / ".bnlint.toml").write_text('extend-exclude = ["models/third_party", "e.*"]\n')
    monkeypatch.chdir(models)       # config patterns are relative to the config's folder
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021", ".")
    assert _checked(out) == {"a.prototxt", "b.prototxt"}


def test_gitignored_files_are_skipped_when_searching(run_cli, tmp_path, monkeypatch):
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    models = _tree(tmp_path)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("gen/\nb.prototxt\n")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021", "models")
    assert _checked(out) == {"a.prototxt", "c.prototxt"}
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021",
                           "models/b.prototxt")
    assert _checked(out) == {"b.prototxt"}     # named explicitly: checked
    (tmp_path / ".bnlint.toml").write_text("respect-gitignore = false\n")
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021", "models")
    assert _checked(out) == {"a.prototxt", "b.prototxt", "c.prototxt", "e.prototxt"}


def test_the_same_file_named_twice_is_checked_once(run_cli, tmp_path, monkeypatch):
    models = _tree(tmp_path)
    monkeypatch.chdir(models)
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021",
                           "a.prototxt", "./a.prototxt", ".", str(models / "a.prototxt"))
    lines = out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("a.prototxt:")   # a, b, c, e once each


def test_stdin_filename(run_cli, tmp_path, monkeypatch):
    import io
    import sys

    (tmp_path / ".bnlint.toml").write_text('[per-file-ignores]\n"legacy/*" = ["BN021"]\n')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BUGGY.read_bytes())))
    code, out, _ = run_cli("check", "--format", "concise", "--select", "BN021,BN010",
                           "--stdin-filename", str(tmp_path / "legacy" / "x.prototxt"), "-")
    assert out.startswith(f"{tmp_path}/legacy/x.prototxt:") and "BN021" not in out
    assert run_cli("check", "--stdin-filename", "x.prototxt", str(BUGGY))[0] == 2


# -- say what happened -------------------------------------------------------------------------

def test_fix_and_diff_say_what_they_did(run_cli, tmp_path):
    f = tmp_path / "many.prototxt"
    f.write_text(MANY_BN)
    code, out, err = run_cli("check", "--diff", "--select", "BN001,BN010", str(f))
    assert code == 1 and "Would fix 5 findings in 1 file." in err and out.startswith("---")
    code, out, err = run_cli("check", "--fix", "--select", "BN001,BN010", str(f))
    remaining = len(run_cli("check", "--format", "concise", "--show-all", "--select",
                            "BN001,BN010", str(f))[1].splitlines())
    assert remaining > 0
    assert out.splitlines()[-1] == f"Found {5 + remaining} findings (5 fixed, {remaining} remaining)."
    code, out, err = run_cli("check", "--diff", "--select", "BN001", str(f))
    assert code == 0 and "Would fix 0 findings." in err and out == ""
    f.write_text(MANY_BN)
    code, out, err = run_cli("check", "--fix", "--format", "json", "--select", "BN001", str(f))
    assert "Found 5 findings (5 fixed, 0 remaining)." in err
    assert json.loads(out)["findings"] == []


def test_quiet_prints_findings_only(run_cli):
    code, out, _ = run_cli("check", "-q", str(BUGGY))
    assert code == 1 and "BN021" in out and "Found" not in out
    code, out, _ = run_cli("check", "--quiet", str(TRAIN))
    assert code == 0 and out == ""


@pytest.mark.parametrize("fmt", ["text", "concise", "json", "github", "sarif", "junit"])
def test_output_file_for_every_format(run_cli, tmp_path, fmt):
    report = tmp_path / f"report.{fmt}"
    code, out, _ = run_cli("check", "--format", fmt, "--output-file", str(report), str(BUGGY))
    _, direct, _ = run_cli("check", "--format", fmt, str(BUGGY))
    assert code == 1 and out == ""
    text = report.read_text()
    if fmt == "sarif":   # the same document
        assert json.loads(text) == json.loads(direct)
    else:
        assert text == direct
    copy = tmp_path / "in.prototxt"
    shutil.copy(BUGGY, copy)
    assert run_cli("check", "-o", str(copy), str(copy))[0] == 2   # never over an input
    assert copy.read_bytes() == BUGGY.read_bytes()


def test_color_follows_no_color_and_force_color(run_cli, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[" in run_cli("check", str(BUGGY))[1]
    assert "\x1b[" not in run_cli("check", "--no-color", str(BUGGY))[1]
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in run_cli("check", str(BUGGY))[1]
    assert "\x1b[" in run_cli("check", "--color", str(BUGGY))[1]


def test_invalid_suppressions_are_reported(run_cli, tmp_path):
    f = tmp_path / "n.prototxt"
    f.write_text(TRAIN.read_text() + "# bnlint: disabel=BN021\n# bnlint: disable=BN999\n")
    code, out, _ = run_cli("check", "--format", "concise", "--show-all", str(f))
    assert [line.split()[1] for line in out.splitlines()] == ["S002", "S002"]
    assert "did you mean `disable=`" in out


def test_rules_shows_which_fixes_are_safe(run_cli):
    code, out, _ = run_cli("rules", "--format", "json")
    kinds = {r["code"]: r["fix"] for r in json.loads(out)}
    assert kinds["BN001"] == "safe" and kinds["BN021"] == "unsafe" and kinds["N001"] is None
    code, out, _ = run_cli("rules")
    row = next(line for line in out.splitlines() if line.startswith("BN021"))
    assert row.split()[3] == "unsafe"


def test_documented_fix_kinds_match_the_fixes_rules_make():
    """`bnlint rules` reads the fix kind from the documentation: hold the rules to it."""
    from bnlint.lint.config import LintConfig
    from bnlint.lint.registry import all_rules
    from bnlint.lint.runner import lint_source
    from bnlint.source import SourceFile

    seen: dict[str, set[str]] = {}
    for path in sorted((FIXTURES / "rules").glob("*.prototxt")):
        for dialect in ("portable", "auto"):
            result = lint_source(SourceFile(str(path), path.read_text()),
                                 LintConfig(dialect=dialect))
            for d in result.diagnostics:
                if d.fix is not None:
                    seen.setdefault(d.code, set()).add("safe" if d.fix.safe else "unsafe")
    for code, cls in all_rules().items():
        assert seen.get(code, set()) == ({cls.fix_kind()} if cls.fix_kind() else set()), code
