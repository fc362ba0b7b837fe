"""`bnlint check`: lint prototxts, in CI and as a pre-commit hook."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bnlint.caffe.dialects import AUTO, dialect_names
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


def dialect_options(fn):
    """--dialect and --proto, for every command that reads nets."""
    fn = click.option("--proto", "proto", type=click.Path(dir_okay=False), metavar="FILE",
                      help="Read nets with this caffe.proto: your fork's own schema "
                           "(compiled at run time; needs pip install 'bnlint[proto]').")(fn)
    fn = click.option("--dialect", type=click.Choice((AUTO, *dialect_names())),
                      help="The Caffe the net is for. auto (default): a fork's when "
                           "the net has fields only that fork's schema knows, else "
                           "portable; portable, bvlc and legacy use BVLC's schema; the "
                           "others are forks.")(fn)
    return fn


def check_dialect_options(dialect: str | None, proto: str | None):
    """The Dialect for --proto (compiled now, so a bad schema fails before any
    file), the --dialect name, or None when neither was given."""
    if dialect and proto:
        raise click.UsageError("--dialect and --proto are mutually exclusive (a --proto "
                               "schema is the dialect)")
    if proto:
        from bnlint.caffe.dialects import load_user_proto

        return load_user_proto(proto)
    return dialect


def collect_paths(paths: tuple[str, ...]) -> tuple[list[str], list[BnlintError]]:
    """Files as given; directories searched for *.prototxt (hidden folders skipped)."""
    files: list[str] = []
    errors: list[BnlintError] = []
    for p in paths:
        if p == "-":
            files.append(p)
            continue
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.rglob("*.prototxt")
                           if not any(part.startswith(".") and part not in (".", "..")
                                      for part in f.relative_to(path).parts[:-1]))
            files.extend(found)
        elif path.exists() or path.is_symlink():
            files.append(p)
        else:
            errors.append(BnlintError("no such file or directory", path=p))
    return files, errors


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--format", "fmt", metavar="FORMAT",
              help="text (default), concise, json, github (default under GitHub Actions), "
                   "sarif, junit.")
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
@click.option("--diff", is_flag=True, help="Show the fixes as a diff; write nothing.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="Use this .bnlint.toml / pyproject.toml instead of searching upward.")
@click.option("--color/--no-color", default=None, help="Force or disable color.")
def command(paths, fmt, select, extend_select, ignore, dialect, proto, weights, fail_on,
            exit_zero, statistics, show_all, fix, unsafe_fixes, diff, config_file, color):
    """Lint Caffe prototxts for BatchNorm mistakes and nets Caffe would refuse.

    PATH is a file, a directory (searched for *.prototxt) or '-' for stdin.
    Exit 0: nothing at --fail-on level; 1: findings; 2: unreadable input or usage.
    """
    from bnlint.lint.config import ConfigResolver
    from bnlint.lint.diagnostics import Severity
    from bnlint.lint.fixes import fix_source
    from bnlint.lint.runner import exit_code, lint_source
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
    check_dialect_options(dialect, proto)
    overrides = {
        "select": select, "ignore": ignore,
        "extend_select": extend_select, "dialect": dialect, "proto": proto,
        "fail_on": Severity.parse(fail_on) if fail_on else None,
    }
    resolver = ConfigResolver(Path(config_file) if config_file else None, overrides)
    files, errors = collect_paths(paths)
    weights_info = _weights_reader(weights) if weights else None

    from bnlint.files import read_text, write_atomic

    results = []
    changed_files = 0
    for path in files:
        try:
            source = read_text(path)
            config = resolver.for_path(path)
        except BnlintError as err:
            if all(str(err) != str(seen) for seen in errors):  # a config error: once
                errors.append(err)
            continue
        if fix or diff:
            fixed = fix_source(source, config, unsafe=unsafe_fixes, weights=weights_info)
            if fix and path == "-":
                sys.stdout.write(fixed.text)  # a filter: the text, fixed or not
            if fixed.text != source.text:
                changed_files += 1
                if diff:
                    click.echo(fixed.unified_diff(), nl=False)
                elif path != "-":
                    try:
                        write_atomic(path, fixed.text, in_place=True)
                    except BnlintError as err:
                        errors.append(err)
                        continue
            result = fixed.result
        else:
            result = lint_source(source, config, weights_info)
        results.append(result)

    # The report goes to stderr when stdout carries a fixed file or a patch.
    out = sys.stderr if ((fix and "-" in files) or diff) else sys.stdout
    from bnlint import __version__

    formatter().write(results, out, ReportOptions(show_fixes=True, statistics=statistics,
                                                  color=color, tool_version=__version__,
                                                  show_all=show_all), errors)
    for err in errors:
        click.echo(str(err), err=True)
    if errors:
        sys.exit(EXIT_BAD_INPUT)
    if diff:
        sys.exit(0 if exit_zero or not changed_files else 1)
    sys.exit(0 if exit_zero else exit_code(results))
