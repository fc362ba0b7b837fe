"""`bnlint check`: lint prototxts, in CI and as a pre-commit hook."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bnlint.cli.options import check_dialect_options, color_option, dialect_options
from bnlint.errors import EXIT_BAD_INPUT, BnlintError


def _codes(ctx, param, values: tuple[str, ...]) -> tuple[str, ...] | None:
    """Every use of a repeatable code option, comma-separated lists included, each code
    checked: a typo is a usage error naming the nearest code, never an empty selection."""
    from bnlint.lint.registry import UnknownCodeError, parse_selector

    if not values:
        return None
    try:
        return tuple(parse_selector(c) for value in values for c in value.split(",")
                     if c.strip())
    except UnknownCodeError as err:
        raise click.BadParameter(str(err), ctx=ctx, param=param) from None


def _weights_reader(path: str):
    """Reads the .caffemodel in each net's dialect (once per dialect): a fork's
    weights use the fork's field numbers."""
    from bnlint.caffe.weights import read_weights

    cache: dict = {}

    def for_dialect(dialect):
        if dialect.name not in cache:
            cache[dialect.name] = read_weights(path, dialect.schema())
        return cache[dialect.name]

    return for_dialect


def _format_names() -> list[str]:
    from bnlint.report import formats

    return formats()


def _globs(ctx, param, values: tuple[str, ...]) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(g.strip() for value in values for g in value.split(",") if g.strip())


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--format", "fmt", metavar="FORMAT",
              help="text (default), concise, json, github (default under GitHub Actions), "
                   "sarif, junit.")
@click.option("-o", "--output-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the report to FILE (any format) instead of stdout.")
@click.option("--select", multiple=True, callback=_codes, metavar="CODES",
              help="Only these codes or prefixes (comma-separated; repeatable, the uses add up). "
                   "ALL selects every rule.")
@click.option("--extend-select", multiple=True, callback=_codes, metavar="CODES",
              help="Add these codes or prefixes to the selection (repeatable).")
@click.option("--ignore", multiple=True, callback=_codes, metavar="CODES",
              help="Skip these codes or prefixes (repeatable).")
@dialect_options
@click.option("--weights", type=click.Path(dir_okay=False),
              help="A .caffemodel to check against the net (W rules).")
@click.option("--fail-on", type=click.Choice(["error", "warning", "info"]),
              help="Lowest severity that makes the exit code 1 (default error).")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even with findings.")
@click.option("--statistics", is_flag=True,
              help="The counts per rule instead of the findings (text, concise, json).")
@click.option("--show-all", is_flag=True,
              help="List every site of a repeated finding (by default a rule that fires on "
                   "many layers of a file for one reason is shown once, at its first site, "
                   "with the count and the other layers).")
@click.option("--fix", is_flag=True, help="Apply safe fixes in place.")
@click.option("--unsafe-fixes", is_flag=True,
              help="With --fix/--diff, also apply fixes that change behaviour.")
@click.option("--diff", is_flag=True,
              help="Show the fixes as a diff; write nothing (exit 1 when there is one).")
@click.option("--exclude", multiple=True, callback=_globs, metavar="GLOBS",
              help="Skip these when searching folders, instead of the defaults (hidden "
                   "folders, venv, node_modules; comma-separated globs, as ruff).")
@click.option("--extend-exclude", multiple=True, callback=_globs, metavar="GLOBS",
              help="Skip these too when searching folders.")
@click.option("--force-exclude", is_flag=True,
              help="Apply the excludes to files named on the command line too (pre-commit).")
@click.option("--stdin-filename", metavar="PATH",
              help="The name of the file read from stdin ('-'): for the config, "
                   "per-file-ignores and the report.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="Use this .bnlint.toml / pyproject.toml instead of searching upward.")
@color_option
@click.option("-q", "--quiet", is_flag=True,
              help="Print the findings and nothing else (no summary).")
def command(paths, fmt, output_file, select, extend_select, ignore, dialect, proto, weights,
            fail_on, exit_zero, statistics, show_all, fix, unsafe_fixes, diff, exclude,
            extend_exclude, force_exclude, stdin_filename, config_file, color, quiet):
    """Lint Caffe prototxts for BatchNorm mistakes and nets Caffe would refuse.

    PATH is a file, a directory (searched for *.prototxt; excludes and .gitignore
    apply) or '-' for stdin. Exit 0: nothing at --fail-on level; 1: findings (with
    --diff: a fix to apply); 2: unreadable input or usage.
    """
    from bnlint.discovery import Excludes, discover
    from bnlint.lint.config import ConfigResolver
    from bnlint.lint.diagnostics import Severity
    from bnlint.report import STATISTICS_FORMATS, ReportOptions, get_format

    if fmt is None:
        fmt = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
    try:
        formatter = get_format(fmt)
    except ValueError:
        raise click.BadParameter(f"{fmt!r} is not one of {', '.join(_format_names())}",
                                 param_hint="--format") from None
    if statistics and fmt not in STATISTICS_FORMATS:
        raise click.UsageError(f"--statistics has no {fmt} form (it has one in "
                               f"{', '.join(STATISTICS_FORMATS)})")
    if stdin_filename is not None and "-" not in paths:
        raise click.UsageError("--stdin-filename names stdin: give '-' as a PATH")
    fix = fix and not diff     # as in ruff, --diff shows what --fix would write
    check_dialect_options(dialect, proto)
    overrides = {
        "select": select, "ignore": ignore,
        "extend_select": extend_select, "dialect": dialect, "proto": proto,
        "fail_on": Severity.parse(fail_on) if fail_on else None,
    }
    resolver = ConfigResolver(Path(config_file) if config_file else None, overrides)

    def folder_config(folder: Path) -> tuple:
        config = resolver.for_path(str(folder / "_"))
        return config.exclude, config.extend_exclude, config.root, config.respect_gitignore

    files, errors = discover(paths, Excludes(exclude, extend_exclude or (), folder_config),
                             force_exclude)
    run = _Run(resolver, fix, diff, unsafe_fixes, weights, stdin_filename, errors)
    for path in files:
        run.check(path)

    # The report goes to stderr when stdout carries a fixed file or a patch.
    out_name = output_file or "-"
    to_stderr = output_file is None and ((fix and "-" in files) or diff)
    from bnlint import __version__

    options = ReportOptions(show_fixes=True, statistics=statistics, color=color,
                            tool_version=__version__, show_all=show_all, quiet=quiet,
                            fixed=run.fixed if fix else None, exit_zero=exit_zero)
    try:
        write_report(formatter, run.results, options, run.errors, out_name, to_stderr,
                     tuple(files))
    except BnlintError as err:
        run.errors.append(err)
    for err in run.errors:
        click.echo(str(err), err=True)
    if diff and not quiet:
        click.echo(f"Would fix {_findings(run.fixed)}"
                   + (f" in {run.changed_files} file{'s' * (run.changed_files != 1)}."
                      if run.fixed else "."), err=True)
    elif fix and not quiet and fmt != "text":
        remaining = sum(len(r.diagnostics) for r in run.results)
        click.echo(f"Found {_findings(run.fixed + remaining)} ({run.fixed} fixed, "
                   f"{remaining} remaining).", err=True)
    if run.errors:
        sys.exit(EXIT_BAD_INPUT)
    if diff:
        sys.exit(0 if exit_zero or not run.changed_files else 1)
    from bnlint.lint.runner import exit_code

    sys.exit(0 if exit_zero else exit_code(run.results))


def _findings(n: int) -> str:
    return f"{n} finding{'s' * (n != 1)}"


class _Run:
    """One `check` run over its files: lint or fix each, collect results and errors."""

    def __init__(self, resolver, fix: bool, diff: bool, unsafe: bool, weights: str | None,
                 stdin_filename: str | None, errors: list[BnlintError]) -> None:
        self.resolver, self.fix, self.diff, self.unsafe = resolver, fix, diff, unsafe
        self.weights = _weights_reader(weights) if weights else None
        self.stdin_filename = stdin_filename
        self.errors = errors
        self.results: list = []
        self.fixed = 0
        self.changed_files = 0

    def check(self, path: str) -> None:
        from bnlint.files import read_text
        from bnlint.source import SourceFile

        name = self.stdin_filename if path == "-" and self.stdin_filename else path
        try:
            source = read_text(path)
            if name != path:
                source = SourceFile(name, source.text)
            config = self.resolver.for_path(name)
        except BnlintError as err:
            if all(str(err) != str(seen) for seen in self.errors):  # a config error: once
                self.errors.append(err)
            return
        if self.fix or self.diff:
            result = self._fix(path, source, config)
        else:
            from bnlint.lint.runner import lint_source

            result = lint_source(source, config, self.weights)
        if result is not None:
            self.results.append(result)

    def _fix(self, path: str, source, config):
        from bnlint.files import write_atomic
        from bnlint.lint.fixes import fix_source

        fixed = fix_source(source, config, unsafe=self.unsafe, weights=self.weights)
        if self.fix and path == "-":
            sys.stdout.write(fixed.text)  # a filter: the text, fixed or not
        if fixed.text != source.text:
            if self.diff:
                click.echo(fixed.unified_diff(), nl=False)
            elif path != "-":
                try:
                    write_atomic(path, fixed.text, in_place=True)
                except BnlintError as err:
                    self.errors.append(err)
                    return None
            self.changed_files += 1
            self.fixed += fixed.fixed
        return fixed.result


def write_report(formatter, results, options, errors, out_name: str, to_stderr: bool,
                 inputs: tuple[str, ...]) -> None:
    """The report to stdout, stderr or --output-file (written whole, atomically)."""
    if out_name == "-":
        formatter().write(results, sys.stderr if to_stderr else sys.stdout, options, errors)
        return
    import io

    from bnlint.files import write_atomic

    buffer = io.StringIO()
    formatter().write(results, buffer, options, errors)
    write_atomic(out_name, buffer.getvalue(), inputs=inputs)
