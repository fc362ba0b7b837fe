"""Say each thing once: the findings of one rule in one file, for one reason, as one entry.

A rule that fires on 53 BatchNorm layers of a ResNet says one thing 53 times; the
report shows it once, at its first site, with the count and the other layers' names.
Formats for people (text, concise, github) show the grouped entry; json and sarif
keep every site inside it, so tools lose nothing; `--show-all` lists every site as
its own entry. Grouping is presentation only: fixes and suppressions work per site
before it.

The reason is the rule's code and severity, refined by `extra["group"]` when a rule
sets it (for example the blob a family of N001 findings is about).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from bnlint.lint.diagnostics import Diagnostic

if TYPE_CHECKING:
    from bnlint.lint.runner import FileResult

#: how many other sites a one-line entry names before "and N more"
NAMED_SITES = 8


@dataclass(frozen=True)
class Finding:
    """One reported entry: its first site, and every site (first included) in file order."""

    sites: tuple[Diagnostic, ...]

    @property
    def first(self) -> Diagnostic:
        return self.sites[0]

    @property
    def count(self) -> int:
        return len(self.sites)

    @property
    def grouped(self) -> bool:
        return len(self.sites) > 1

    def site_names(self) -> list[str]:
        """The other sites by layer name (line number when a site has no layer), once each."""
        names = []
        for d in self.sites[1:]:
            name = d.layer if d.layer is not None else f"line {d.start_line_col()[0]}"
            if name not in names and name != self.first.layer:
                names.append(name)
        return names

    def others_text(self, limit: int | None = NAMED_SITES) -> str:
        """`and 52 more: res2a/bn, res2b/bn, ...`, or "" for a single site."""
        if not self.grouped:
            return ""
        names = self.site_names()
        shown = names if limit is None else names[:limit]
        text = f"and {self.count - 1} more"
        if shown:
            text += ": " + ", ".join(shown) + (", ..." if len(names) > len(shown) else "")
        return text

    def message(self, limit: int | None = NAMED_SITES) -> str:
        """The first site's message, then the other sites."""
        message = self.first.message
        if not self.grouped:
            return message
        return f"{message} ({self.others_text(limit)})"

    @property
    def fixable(self) -> int:
        """How many sites `--fix` repairs (safe fixes)."""
        return sum(d.fix is not None and d.fix.safe for d in self.sites)

    @property
    def unsafe_fixable(self) -> int:
        return sum(d.fix is not None and not d.fix.safe for d in self.sites)


def group_key(d: Diagnostic) -> tuple:
    return (d.code, d.severity, d.extra.get("group"))


def group(diagnostics: Iterable[Diagnostic], show_all: bool = False) -> list[Finding]:
    """Entries in the order of their first sites; each site its own entry when `show_all`."""
    if show_all:
        return [Finding((d,)) for d in diagnostics]
    by_key: dict[tuple, list[Diagnostic]] = {}
    for d in diagnostics:
        by_key.setdefault((d.path, *group_key(d)), []).append(d)
    return [Finding(tuple(sites)) for sites in by_key.values()]


def findings(results: list[FileResult], show_all: bool = False) -> list[Finding]:
    """Every file's entries, file by file."""
    return [f for r in results for f in group(r.diagnostics, show_all)]
