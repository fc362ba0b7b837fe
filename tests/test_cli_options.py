"""The same options on every command, the bundled weights, and the snippets in the README."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES, REPO

EXAMPLES = FIXTURES / "examples"
TRAIN = EXAMPLES / "tiny_resnet_train_val.prototxt"
WEIGHTS = EXAMPLES / "tiny_resnet.caffemodel"
README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("shape", ["data=2,3,32,32", "data:2x3x32x32"])
@pytest.mark.parametrize("command", ["info", "forward", "to-deploy"])
def test_one_input_shape_grammar_everywhere(run_cli, tmp_path, command, shape):
    extra = ["-o", str(tmp_path / "out.npz")] if command == "forward" else []
    code, out, err = run_cli(command, str(TRAIN), "--input-shape", shape, *extra)
    assert code == 0, err
    if command == "to-deploy":
        assert "dim: 2 dim: 3 dim: 32 dim: 32" in out
    code, _, err = run_cli(command, str(TRAIN), "--input-shape", "data=2,x", *extra)
    assert code == 2 and "--input-shape" in err


def test_to_deploy_batch_wins_over_the_input_shape(run_cli):
    code, out, _ = run_cli("to-deploy", str(TRAIN), "--input-shape", "data=1,3,32,32",
                           "--batch", "4")
    assert code == 0 and "dim: 4 dim: 3 dim: 32 dim: 32" in out


def test_to_deploy_reports_an_unknown_stage(run_cli):
    code, out, err = run_cli("to-deploy", str(TRAIN), "--stage", "deploi")
    assert code == 0 and "note: no include/exclude rule of the net names stage 'deploi'" in err


def test_bundled_weights_regenerate_byte_for_byte():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import make_weights
    finally:
        sys.path.remove(str(EXAMPLES))
    assert make_weights.caffemodel() == WEIGHTS.read_bytes()


def test_readme_weight_commands_work_on_bundled_files(run_cli, tmp_path):
    assert run_cli("check", "--weights", str(WEIGHTS), str(TRAIN))[0] == 0
    deploy, folded = tmp_path / "deploy.prototxt", tmp_path / "folded.prototxt"
    assert run_cli("to-deploy", str(TRAIN), "-o", str(deploy))[0] == 0
    code, _, err = run_cli("fold", str(deploy), "--weights", str(WEIGHTS), "-o", str(folded))
    assert code == 0, err
    code, out, err = run_cli("verify", str(deploy), str(folded), "--weights-a", str(WEIGHTS),
                             "--weights-b", str(tmp_path / "folded.caffemodel"))
    assert code == 0, out + err
    for line in ("bnlint check --weights fixtures/examples/tiny_resnet.caffemodel",
                 "bnlint fold deploy.prototxt --weights fixtures/examples/tiny_resnet.caffemodel"):
        assert line in README


def test_readme_installs_from_the_repository():
    assert "pip install bnlint" not in README
    assert "pip install -e ." in README
    assert "pre-commit try-repo" in README
    pins = re.findall(r"^\s*rev: (\S+)", README, re.MULTILINE)
    assert pins and all(re.fullmatch(r"[0-9a-f]{40}", rev) for rev in pins)
    assert "tag or commit" in README


def test_pre_commit_hooks_run_check():
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text()
    ids = re.findall(r"^- id: (\S+)", hooks, re.MULTILINE)
    assert ids == ["bnlint", "bnlint-fix"]
    assert "entry: bnlint check --force-exclude" in hooks
    for hook_id in ids:
        assert f"id: {hook_id}" in README


def test_github_action_is_composite_with_inputs():
    action = (REPO / "action.yml").read_text()
    assert re.search(r"^runs:\n  using: composite$", action, re.MULTILINE)
    inputs = re.findall(r"^  ([a-z-]+):\n    description:", action, re.MULTILINE)
    assert inputs == ["paths", "args", "sarif-file", "python-version"]
    assert 'pip install --quiet "$GITHUB_ACTION_PATH"' in action
    assert "bnlint check --format github $BNLINT_ARGS $BNLINT_PATHS" in action
    assert "${{ inputs." not in action.split("run: |", 1)[1].split("env:")[0]  # no injection
    for name in inputs:
        assert f"{name}:" in README


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_github_action_script_runs(tmp_path):
    """The action's check step, run as GitHub runs it (bnlint from PYTHONPATH here)."""
    action = (REPO / "action.yml").read_text()
    script = action.split("run: |\n", 1)[1]
    script = "\n".join(line[8:] for line in script.splitlines())
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "BNLINT_PATHS": str(EXAMPLES),
           "BNLINT_ARGS": "--select BN021", "BNLINT_SARIF": str(tmp_path / "r.sarif"),
           "PYTHONPATH": str(REPO / "src")}
    shim = tmp_path / "bnlint"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m bnlint \"$@\"\n")
    shim.chmod(0o755)
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    assert "::error file=" in done.stdout and "BN021" in done.stdout
    assert (tmp_path / "r.sarif").read_text().startswith("{")


@pytest.mark.parametrize("command", ["info", "forward"])
@pytest.mark.parametrize("content", ["", "# nothing\n", "base_lr: 0.1\nmax_iter: 10\n"])
def test_info_and_forward_refuse_what_has_no_net(run_cli, tmp_path, command, content):
    f = tmp_path / "x.prototxt"
    f.write_text(content)
    code, out, err = run_cli(command, str(f))
    assert code == 2 and str(f) in err and out == ""
    assert ("solver" in err) if content.startswith("base_lr") else ("no layers" in err)


def test_info_says_when_totals_are_partial(run_cli, tmp_path):
    f = tmp_path / "fork.prototxt"
    f.write_text('layer { name: "data" type: "Input" top: "data" '
                 'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
                 'layer { name: "odd" type: "NoSuchOp" bottom: "data" top: "o" }\n'
                 'layer { name: "fc" type: "InnerProduct" bottom: "o" top: "fc" '
                 'inner_product_param { num_output: 10 } }\n')
    code, out, err = run_cli("info", str(f))
    assert code == 0
    assert "partial totals: 2 layer(s) of unknown shape count as 0 (odd, fc)" in out
    assert "parameters: 0+" in out
    code, out, _ = run_cli("info", str(TRAIN), "--input-shape", "data=1,3,32,32")
    assert "partial" not in out
