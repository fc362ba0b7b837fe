"""`# bnlint: disable=CODE[,CODE]` comments, parsed into directives and applied after
linting as a filter (sqlfluff's noqa, ruff's RUF100): an unused one is reported.

- On a layer's first line, or on the line above it: for that whole layer.
- On any other line, or the line above it: for findings that start on that line.
- `# bnlint: disable-file=CODE`: anywhere, for the whole file.
Codes may be prefixes (`BN01`) or `all`; text after the codes is a free reason.
A `# bnlint:` comment that is no directive (`disabel=`), or that names a code no rule
has, is reported (S002) instead of silently suppressing nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bnlint.lint.diagnostics import Diagnostic
from bnlint.source import SourceFile
from bnlint.syntax.nodes import Document, iter_tokens

_DIRECTIVE = re.compile(r"#[ \t]*bnlint:[ \t]*(disable|disable-file)[ \t]*=[ \t]*"
                        r"([A-Za-z0-9_-]+(?:[ \t]*,[ \t]*[A-Za-z0-9_-]+)*)")
#: anything that looks meant for bnlint: `# bnlint:` or `# bnlint disable...`
_MENTION = re.compile(r"#[ \t]*bnlint(?:[ \t]*:|[ \t]+(?=disable|enable|noqa|ignore))[^\n]*")
KINDS = ("disable", "disable-file")


@dataclass(eq=False)
class Directive:
    """One `# bnlint: disable...` comment, and which of its codes suppressed something."""

    kind: str                 # "disable" or "disable-file"
    codes: tuple[str, ...]
    start: int                # offset of the comment
    end: int
    line: int
    span: tuple[int, int] | None = None   # what it covers, for layer directives
    used: set[str] = field(default_factory=set)

    def covers_code(self, code: str) -> bool:
        return any(c == "ALL" or code.startswith(c) for c in self.codes)


@dataclass(frozen=True)
class Problem:
    """A `# bnlint:` comment that suppresses nothing because it is written wrong."""

    start: int
    end: int
    message: str


def find_directives(source: SourceFile, tree: Document | None) -> list[Directive]:
    """Directives from comments; tokenizer trivia when there is a tree, else raw lines."""
    return [d for d in _scan(source, tree) if isinstance(d, Directive)]


def find_problems(source: SourceFile, tree: Document | None) -> list[Problem]:
    """Misspelt directives and unknown codes, with the nearest right spelling."""
    return [p for p in _scan(source, tree) if isinstance(p, Problem)]


def _scan(source: SourceFile, tree: Document | None) -> list[Directive | Problem]:
    out: list[Directive | Problem] = []
    if "bnlint" not in source.text:
        return out
    if tree is not None:
        for tok in iter_tokens(tree):
            prefix = tok.prefix
            if "bnlint" in prefix:
                out.extend(_comments(source, prefix, tok.offset - len(prefix)))
    else:
        out.extend(_comments(source, source.text, 0))
    return out


def _comments(source: SourceFile, text: str, base: int) -> list[Directive | Problem]:
    out: list[Directive | Problem] = []
    for mention in _MENTION.finditer(text):
        m = _DIRECTIVE.match(text, mention.start())
        start, end = base + mention.start(), base + mention.end()
        if m is None:
            out.append(Problem(start, end, _misspelt(mention.group(0))))
            continue
        directive = _directive(source, m, base)
        bad = [(c, why) for c in directive.codes if (why := _unknown_code(c))]
        for code, why in bad:
            out.append(Problem(start, base + m.end(), why))
        known = tuple(c for c in directive.codes if c not in dict(bad))
        if known:
            directive.codes = known
            out.append(directive)
    return out


def _misspelt(comment: str) -> str:
    import difflib

    body = comment.split("bnlint", 1)[1].lstrip(" \t:")
    word = re.match(r"[A-Za-z_-]*", body).group(0)
    if word.lower() in KINDS:
        return (f"'{word}' needs '=' and codes: `# bnlint: {word.lower()}=CODE[,CODE]`")
    near = difflib.get_close_matches(word.lower(), KINDS, n=1, cutoff=0.0)
    hint = f"; did you mean `{near[0]}=`?" if word and near else \
        " (`# bnlint: disable=CODE` or `# bnlint: disable-file=CODE`)"
    return f"unknown bnlint directive {word or body.strip()!r}{hint}"


def _unknown_code(code: str) -> str | None:
    from bnlint.lint.registry import UnknownCodeError, parse_selector

    try:
        parse_selector(code)
    except UnknownCodeError as err:
        return f"in a suppression: {err}"
    return None


def _directive(source: SourceFile, m: re.Match, base: int) -> Directive:
    codes = tuple(c.strip().upper() if "-" not in c else c.strip()
                  for c in m.group(2).split(",") if c.strip())
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
