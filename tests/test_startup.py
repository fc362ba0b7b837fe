"""Start-up cost: what `bnlint --help`, `convert` and `check` import (a pre-commit hook
runs on every commit, so numpy must stay out of the check path)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import FIXTURES, REPO

EXAMPLE = FIXTURES / "examples" / "tiny_resnet_train_val.prototxt"

PROBE = """
import sys
from bnlint.cli import main
try:
    main({args!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("numpy", "rich", "google.protobuf.json_format", "difflib",
                           "subprocess", "tempfile") if m in sys.modules)
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
"""


def _imports(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))],
                          capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    line = [l for l in proc.stderr.splitlines() if l.startswith("HEAVY=")]
    assert line, proc.stderr
    return [m for m in line[-1][6:].split(",") if m]


@pytest.mark.parametrize("args", [
    ("--help",),
    ("convert", str(EXAMPLE)),
    ("check", "--format", "concise", str(EXAMPLE)),
    ("check", str(EXAMPLE)),
])
def test_no_numpy_on_the_start_up_path(args):
    assert "numpy" not in _imports(*args)


def test_machine_formats_do_not_import_rich():
    assert "rich" not in _imports("check", "--format", "concise", str(EXAMPLE))


def test_checking_a_named_file_needs_no_git_protoc_or_hints():
    """git (folders), protoc (--proto) and "did you mean" (shown messages) load only
    when used: a clean file named on the command line needs none of them."""
    loaded = _imports("check", "--format", "concise", str(EXAMPLE))
    assert not {"difflib", "subprocess", "tempfile"} & set(loaded)
