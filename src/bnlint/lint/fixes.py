"""Applying fixes: rounds of lint, apply compatible fixes, re-parse, until stable.

Fixes are text edits planned on one parse; overlapping ones wait for the next
round (as ruff does). Every round's output is re-parsed, so a fix can never
leave a file that does not parse: such a round is dropped.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from bnlint.errors import ParseError
from bnlint.lint.config import LintConfig
from bnlint.lint.runner import FileResult, lint_source
from bnlint.source import SourceFile
from bnlint.syntax.edits import apply_edits, select_compatible

MAX_ROUNDS = 10


@dataclass
class FixedSource:
    original: SourceFile
    text: str
    result: FileResult          # the lint result of the fixed text
    fixed: int = 0              # findings whose fix was applied (`--fix`'s summary)

    def unified_diff(self) -> str:
        return "".join(difflib.unified_diff(
            self.original.text.splitlines(keepends=True), self.text.splitlines(keepends=True),
            fromfile=f"a/{self.original.path}", tofile=f"b/{self.original.path}"))


def fix_source(source: SourceFile, config: LintConfig, *, unsafe: bool = False,
               weights=None) -> FixedSource:
    current = source
    result = lint_source(current, config, weights)
    fixed = 0
    for _ in range(MAX_ROUNDS):
        groups = [list(d.fix.edits) for d in result.diagnostics
                  if d.fix is not None and (d.fix.safe or unsafe) and d.fix.edits]
        if not groups:
            break
        edits, deferred = select_compatible(groups)
        new_text = apply_edits(current.text, edits)
        if new_text == current.text:
            break
        candidate = SourceFile(source.path, new_text)
        try:
            from bnlint.syntax import parse_source

            parse_source(candidate)
        except ParseError:
            break  # never write a file that does not parse
        current = candidate
        fixed += len(groups) - deferred
        result = lint_source(current, config, weights)
    return FixedSource(source, current.text, result, fixed)
