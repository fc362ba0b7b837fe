"""The format registry: `@register_format(name)` on a class with a `write` method.

Format modules import only the standard library and bnlint's lint types at the top
(the text format imports rich inside `write`), so loading all of them to list the `--format` choices
is cheap and `bnlint check --format json` never pulls in rich or numpy. A new format
is one module here plus its name in `_MODULES`, like the rule modules in
`bnlint.lint.rules`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence, TextIO

from bnlint import __version__
from bnlint.errors import BnlintError

if TYPE_CHECKING:
    from bnlint.lint.runner import FileResult

#: the format modules, in the order `--format` lists them (the default first)
_MODULES = ("text", "concise", "json", "github", "sarif", "junit")

_FORMATS: dict[str, type["Format"]] = {}

#: the formats that have a `--statistics` form (the others are read by tools that
#: expect findings)
STATISTICS_FORMATS = ("text", "concise", "json")


@dataclass(frozen=True)
class ReportOptions:
    """What the user asked of the report, independent of the format.

    `color` None means "if the output is a terminal"; only the text format uses it.
    `show_all` lists every site of a repeated finding as its own entry (see groups.py).
    `statistics` prints the counts per rule instead of the findings, where the format
    has a form for them (STATISTICS_FORMATS).
    """

    show_fixes: bool = False
    statistics: bool = False
    color: bool | None = None
    tool_version: str = __version__
    show_all: bool = False
    #: -q: the findings and nothing else (no summary line)
    quiet: bool = False
    #: --exit-zero: no finding fails the run, so formats that mark failures mark none
    exit_zero: bool = False
    #: with --fix: how many findings were fixed (the summary says so)
    fixed: int | None = None


class Format(Protocol):
    def write(self, results: list[FileResult], out: TextIO, options: ReportOptions,
              errors: Sequence[BnlintError] = ()) -> None:
        """`errors`: the inputs that could not be checked (unreadable files, config
        errors); machine formats carry them, the others leave them to stderr."""


def register_format(name: str) -> Callable[[type[Format]], type[Format]]:
    def decorate(cls: type[Format]) -> type[Format]:
        if name in _FORMATS and _FORMATS[name] is not cls:
            raise RuntimeError(f"output format {name!r} registered twice")
        _FORMATS[name] = cls
        return cls

    return decorate


def _load() -> None:
    for module in _MODULES:
        importlib.import_module(f"bnlint.report.{module}")


def formats() -> list[str]:
    """Format names in the order of `_MODULES` (the default, `text`, first), whichever
    module happened to be imported first."""
    _load()

    def position(name: str) -> int:
        module = _FORMATS[name].__module__.rpartition(".")[2]
        return _MODULES.index(module) if module in _MODULES else len(_MODULES)

    return sorted(_FORMATS, key=position)


def get_format(name: str) -> type[Format]:
    """The format's class; only its own module is imported (start-up time matters)."""
    if name not in _FORMATS and name in _MODULES:
        importlib.import_module(f"bnlint.report.{name}")
    if name not in _FORMATS:
        _load()
    try:
        return _FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown output format {name!r} "
                         f"(one of {', '.join(formats())})") from None


def write_report(name: str, results: list[FileResult], out: TextIO,
                 options: ReportOptions | None = None,
                 errors: Sequence[BnlintError] = ()) -> None:
    get_format(name)().write(results, out, options or ReportOptions(), errors)


@dataclass(frozen=True)
class CodeCount:
    """One row of --statistics."""

    code: str
    name: str
    count: int
    fixable: int


def count_by_code(results: list[FileResult]) -> list[CodeCount]:
    """Findings per code, most frequent first (for `--statistics`); `fixable` counts
    the safe fixes, the ones `--fix` applies."""
    counts: dict[str, CodeCount] = {}
    for result in results:
        for d in result.diagnostics:
            prev = counts.get(d.code) or CodeCount(d.code, d.name, 0, 0)
            fixable = d.fix is not None and d.fix.safe
            counts[d.code] = CodeCount(d.code, d.name, prev.count + 1, prev.fixable + fixable)
    return sorted(counts.values(), key=lambda c: (-c.count, c.code))
