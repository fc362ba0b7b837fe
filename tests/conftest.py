"""Shared fixtures: where ../shared is, and a skip when a clone has no ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
GOLDEN = SHARED / "golden"
FIXTURES = REPO / "fixtures"

needs_shared = pytest.mark.skipif(
    not CORPUS.is_dir(),
    reason=f"../shared (the corpus and golden data) is not next to this clone ({SHARED})",
)


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(CORPUS.rglob("*.prototxt"))


def corpus_id(path: Path) -> str:
    return str(path.relative_to(CORPUS))


@pytest.fixture
def run_cli(capsysbinary):
    """Run `bnlint ARGS...` in-process; returns (exit code, stdout text, stderr text)."""
    from bnlint.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        else:
            code = 0
        out, err = capsysbinary.readouterr()
        return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    return run
