"""Rules as small units: a stable code, a kebab-case name, a default severity, and a
docstring that is the user documentation (`bnlint rules CODE` prints it).

A rule declares what it looks at; the runner walks the net and calls it:
`check_layer` once per layer of the declared `layer_types` (all layers when empty),
`check_net` once per file. Rules never parse or walk on their own.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, ClassVar, Iterable

from bnlint.lint.diagnostics import Diagnostic, Fix, Severity

if TYPE_CHECKING:
    from bnlint.caffe.net import LayerView
    from bnlint.lint.context import LintContext

RULES: dict[str, type["Rule"]] = {}


def register_rule(cls: type["Rule"]) -> type["Rule"]:
    if cls.code in RULES:
        raise RuntimeError(f"rule {cls.code} registered twice")
    if not cls.__doc__:
        raise RuntimeError(f"rule {cls.code} has no docstring (its documentation)")
    RULES[cls.code] = cls
    return cls


class Rule:
    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity] = Severity.WARNING
    layer_types: ClassVar[tuple[str, ...]] = ()
    #: rules that only make sense with --weights
    needs_weights: ClassVar[bool] = False

    def __init__(self, severity: Severity | None = None) -> None:
        if severity is not None:
            self.severity = severity

    # -- what rules override -------------------------------------------------------------
    def check_net(self, ctx: "LintContext") -> Iterable[Diagnostic]:
        return ()

    def check_layer(self, ctx: "LintContext", layer: "LayerView") -> Iterable[Diagnostic]:
        return ()

    # -- helpers --------------------------------------------------------------------------
    def diag(self, ctx: "LintContext", message: str, node=None, *, start: int | None = None,
             end: int | None = None, phases: Iterable[str] = (), fix: Fix | None = None,
             layer: "LayerView | None" = None, severity: Severity | None = None,
             **extra) -> Diagnostic:
        """A diagnostic at a syntax node (or an explicit span)."""
        if node is not None:
            start = node.start if start is None else start
            end = node.end if end is None else end
        severity = self.severity if severity is None else severity  # INFO is 0
        return Diagnostic(self.code, self.name, severity, message, ctx.source,
                          start or 0, end if end is not None else (start or 0),
                          tuple(phases), fix, layer.name if layer is not None else None, extra)

    @classmethod
    def summary(cls) -> str:
        return inspect.getdoc(cls).split("\n\n", 1)[0].replace("\n", " ")

    @classmethod
    def documentation(cls) -> str:
        return inspect.getdoc(cls) or ""

    @classmethod
    def fix_kind(cls) -> str | None:
        """"safe" or "unsafe" as the documentation declares it (a paragraph starting
        `Fix (safe...` or `Fix (unsafe...`), None for a rule without a fix; a test holds
        the rules' actual fixes to it."""
        import re

        m = re.search(r"^Fix \((safe|unsafe)\b", cls.documentation(), re.MULTILINE)
        return m.group(1) if m else None


def all_rules() -> dict[str, type[Rule]]:
    """Every rule, its module imported (the rule modules register on import)."""
    from bnlint.lint import rules  # noqa: F401  (registers)

    return dict(sorted(RULES.items(), key=lambda kv: _code_key(kv[0])))


def _code_key(code: str) -> tuple:
    prefix = code.rstrip("0123456789")
    return (prefix, int(code[len(prefix):] or 0))


class UnknownCodeError(ValueError):
    """A code or prefix that selects no rule: a typo must never turn CI green."""


def parse_selector(text: str) -> str:
    """A `--select`/`--ignore`/config entry as its canonical form: a code, a prefix of
    codes or ALL, upper-cased. Anything that selects no rule raises UnknownCodeError
    naming the nearest code; a rule's name is refused with the code it stands for, so
    configurations and suppressions have one spelling."""
    rules = all_rules()
    word = text.strip()
    by_name = {cls.name: code for code, cls in rules.items()}
    if word.lower() in by_name:
        code = by_name[word.lower()]
        raise UnknownCodeError(f"{word!r} is the name of rule {code}; use its code, {code}")
    code = word.upper()
    if code == "ALL" or any(known.startswith(code) for known in rules):
        if code:
            return code
    raise UnknownCodeError(f"unknown rule code or prefix {word!r}{_nearest(code, rules)} "
                           f"(`bnlint rules` lists them)")


def _nearest(code: str, rules: dict) -> str:
    import difflib

    letters = code.rstrip("0123456789")
    same_family = [c for c in rules if c.rstrip("0123456789") == letters]
    close = difflib.get_close_matches(code, same_family or list(rules), n=1, cutoff=0.0)
    return f"; did you mean {close[0]}?" if close else ""
