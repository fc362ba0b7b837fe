"""The runner: one context per file, every enabled rule called for what it declared,
then phases merged, suppressions applied, unused suppressions reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bnlint.errors import ParseError
from bnlint.lint import suppressions
from bnlint.lint.config import LintConfig
from bnlint.lint.diagnostics import Diagnostic, Severity
from bnlint.lint.registry import Rule, all_rules
from bnlint.source import SourceFile

from bnlint.lint.rules.framework import InvalidSuppression, SyntaxError_, UnusedSuppression

# The two rules the runner reports itself (documented like every other rule).
SYNTAX_ERROR = (SyntaxError_.code, SyntaxError_.name)
UNUSED_SUPPRESSION = (UnusedSuppression.code, UnusedSuppression.name)
INVALID_SUPPRESSION = (InvalidSuppression.code, InvalidSuppression.name)


@dataclass
class FileResult:
    """What linting one file found, and what makes its exit code fail."""

    source: SourceFile
    diagnostics: list[Diagnostic] = field(default_factory=list)
    parsed: bool = True
    #: the lowest severity that fails this file (its config's fail-on)
    fail_on: Severity = Severity.ERROR

    def failing(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity >= self.fail_on]


def lint_source(source: SourceFile, config: LintConfig, weights=None) -> FileResult:
    """Lint one file in the dialect the config names (or the one read from the net).

    `weights` may be a callable taking the file's Dialect: weights files are read in
    the net's dialect, which is only known once the net is parsed.
    """
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import net_view
    from bnlint.lint.context import LintContext

    rules = [cls() for code, cls in all_rules().items()
             if config.enabled(code, source.path) and (weights is not None or
                                                       not cls.needs_weights)]
    try:
        text_file = parse_text(source, dialect=config.dialect_choice())
    except ParseError as err:
        diags = []
        if config.enabled(SYNTAX_ERROR[0], source.path):
            diags.append(Diagnostic(*SYNTAX_ERROR, Severity.ERROR, err.message, source,
                                    err.offset or 0, err.offset or 0))
        # file-wide suppressions still apply to a file that does not parse
        directives = suppressions.find_directives(source, None)
        diags = suppressions.apply(diags, [d for d in directives if d.kind == "disable-file"],
                                   source)
        return FileResult(source, diags, parsed=False, fail_on=config.fail_on)

    if callable(weights):
        weights = weights(text_file.dialect)
    view = net_view(text_file)
    ctx = LintContext(source, text_file, view, config, weights)
    diags: list[Diagnostic] = []
    for rule in rules:
        diags.extend(_run_rule(rule, ctx))
    diags = _merge_phases(diags, {str(state) for state in ctx.states})

    directives = suppressions.find_directives(source, text_file.tree)
    if config.enabled(INVALID_SUPPRESSION[0], source.path):
        diags.extend(Diagnostic(*INVALID_SUPPRESSION, Severity.WARNING, p.message, source,
                                p.start, p.end)
                     for p in suppressions.find_problems(source, text_file.tree))
    suppressions.attach_to_layers(directives, source,
                                  [(lv.node.start, lv.node.end) for lv in view.layers])
    diags = suppressions.apply(diags, directives, source)
    if config.enabled(UNUSED_SUPPRESSION[0], source.path):
        enabled_codes = {r.code for r in rules}
        for d, idle in suppressions.unused(directives):
            idle = tuple(c for c in idle if c == "ALL" or
                         any(code.startswith(c) for code in enabled_codes))
            if idle:
                diags.append(Diagnostic(*UNUSED_SUPPRESSION, Severity.WARNING,
                                        f"suppression of {', '.join(idle)} suppressed nothing",
                                        source, d.start, d.end))
    diags.sort(key=Diagnostic.sort_key)
    return FileResult(source, diags, fail_on=config.fail_on)


def _run_rule(rule: Rule, ctx) -> list[Diagnostic]:
    out = list(rule.check_net(ctx))
    types = rule.layer_types
    if type(rule).check_layer is not Rule.check_layer:
        for layer in ctx.view.layers:
            if not types or layer.type in types:
                out.extend(rule.check_layer(ctx, layer))
    return out


def _merge_phases(diags: list[Diagnostic], all_states: set[str]) -> list[Diagnostic]:
    """One finding per (code, span, message), with the union of the phases it holds in;
    a finding that holds in every state the net is checked under names none."""
    merged: dict[tuple, Diagnostic] = {}
    for d in diags:
        key = (d.code, d.start, d.end, d.message)
        if key in merged:
            prev = merged[key]
            phases = tuple(dict.fromkeys(prev.phases + d.phases))
            merged[key] = prev.with_phases(phases)
        else:
            merged[key] = d
    return [d.with_phases(()) if d.phases and set(d.phases) >= all_states else d
            for d in merged.values()]


def exit_code(results: list[FileResult], fail_on: Severity | None = None) -> int:
    """1 when a file has a finding at its fail-on level (or at `fail_on` when given)."""
    for r in results:
        level = r.fail_on if fail_on is None else fail_on
        if any(d.severity >= level for d in r.diagnostics):
            return 1
    return 0
