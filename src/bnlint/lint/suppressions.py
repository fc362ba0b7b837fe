"""`# bnlint: disable=CODE[,CODE]` comments, parsed into directives and applied after
linting as a filter (sqlfluff's noqa, ruff's RUF100): an unused one is reported.

- On a layer's first line, or on the line above it: for that whole layer.
- On any other line, or the line above it: for findings that start on that line.
- `# bnlint: disable-file=CODE`: anywhere, for the whole file.
Codes may be prefixes (`BN01`) or `all`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bnlint.lint.diagnostics import Diagnostic
from bnlint.source import SourceFile
from bnlint.syntax.nodes import Document, iter_tokens

_DIRECTIVE = re.compile(r"#[ \t]*bnlint:[ \t]*(disable|disable-file)[ \t]*=[ \t]*"
                        r"([A-Za-z0-9_]+(?:[ \t]*,[ \t]*[A-Za-z0-9_]+)*)")


@dataclass(eq=False)
class Directive:
    kind: str                 # "disable" or "disable-file"
    codes: tuple[str, ...]
    start: int                # offset of the comment
    end: int
    line: int
    span: tuple[int, int] | None = None   # what it covers, for layer directives
    used: set[str] = field(default_factory=set)

    def covers_code(self, code: str) -> bool:
        return any(c == "ALL" or code.startswith(c) for c in self.codes)


def find_directives(source: SourceFile, tree: Document | None) -> list[Directive]:
    """Directives from comments; tokenizer trivia when there is a tree, else raw lines."""
    out: list[Directive] = []
    if "bnlint" not in source.text:
        return out
    if tree is not None:
        for tok in iter_tokens(tree):
            prefix = tok.prefix
            if "bnlint" not in prefix:
                continue
            base = tok.offset - len(prefix)
            for m in _DIRECTIVE.finditer(prefix):
                out.append(_directive(source, m, base))
    else:
        for m in _DIRECTIVE.finditer(source.text):
            out.append(_directive(source, m, 0))
    return out


def _directive(source: SourceFile, m: re.Match, base: int) -> Directive:
    codes = tuple(c.strip().upper() for c in m.group(2).split(",") if c.strip())
    start = base + m.start()
    return Directive(m.group(1), codes, start, base + m.end(), source.line_col(start)[0])


def attach_to_layers(directives: list[Directive], source: SourceFile,
                     layer_spans: list[tuple[int, int]]) -> None:
    """Give each `disable` directive the span of the layer starting on its line or the next."""
    by_line: dict[int, tuple[int, int]] = {}
    for start, end in layer_spans:
        by_line.setdefault(source.line_col(start)[0], (start, end))
    for d in directives:
        if d.kind == "disable":
            d.span = by_line.get(d.line) or by_line.get(d.line + 1)


def apply(diagnostics: list[Diagnostic], directives: list[Directive],
          source: SourceFile) -> list[Diagnostic]:
    if not directives:
        return diagnostics
    kept = []
    for diag in diagnostics:
        line = source.line_col(diag.start)[0]
        hit = None
        for d in directives:
            if not d.covers_code(diag.code):
                continue
            if d.kind == "disable-file":
                hit = d
            elif d.span is not None:
                if d.span[0] <= diag.start < max(d.span[1], d.span[0] + 1):
                    hit = d
            elif line in (d.line, d.line + 1):
                hit = d
            if hit is not None:
                break
        if hit is None:
            kept.append(diag)
        else:
            hit.used.add(diag.code)
    return kept


def unused(directives: list[Directive]) -> list[tuple[Directive, tuple[str, ...]]]:
    """Directives (and which of their codes) that suppressed nothing."""
    out = []
    for d in directives:
        idle = tuple(c for c in d.codes
                     if not any(u == c or u.startswith(c) or c == "ALL" for u in d.used))
        if idle:
            out.append((d, idle))
    return out
