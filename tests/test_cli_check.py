"""`bnlint check` end to end: formats, exit codes, fixes on disk, config, stdin."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from conftest import FIXTURES, REPO

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
    assert json.loads(out) == []


def test_json_fields(run_cli):
    code, out, _ = run_cli("check", "--format", "json", str(BUGGY))
    rows = json.loads(out)
    bn021 = next(r for r in rows if r["code"] == "BN021")
    assert (bn021["line"], bn021["column"], bn021["severity"]) == (18, 22, "error")
    assert bn021["name"] == "bn-batch-stats-in-test"
    assert bn021["fix"]["safe"] is False


def test_select_ignore_and_exit_zero(run_cli):
    assert run_cli("check", "--select", "N005", str(BUGGY))[0] == 0  # info only
    assert run_cli("check", "--select", "N005", "--fail-on", "info", str(BUGGY))[0] == 1
    assert run_cli("check", "--ignore", "BN", str(BUGGY))[0] == 0
    assert run_cli("check", "--exit-zero", str(BUGGY))[0] == 0


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
