"""Configuration: `[tool.bnlint]` in pyproject.toml or a `.bnlint.toml`, found upward
from each checked file; command-line options override it.

    [tool.bnlint]
    select = ["E", "N", "BN"]        # codes or prefixes; default: every rule
    ignore = ["BN023"]
    dialect = "auto"                 # auto (read from the net) | portable | bvlc | legacy
                                     # | ssd | ... (`bnlint check --help` lists them)
    # proto = "caffe/fork.proto"     # instead of dialect: your fork's own caffe.proto
    fail-on = "error"                # error | warning | info
    extend-exclude = ["third_party"] # globs skipped when a folder is searched (as ruff);
                                     # `exclude` replaces the defaults
    respect-gitignore = true         # skip what .gitignore ignores when searching folders
    [tool.bnlint.per-file-ignores]
    "models/legacy/*.prototxt" = ["N006"]
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from bnlint.caffe import dialects
from bnlint.errors import BnlintError
from bnlint.lint.diagnostics import Severity

CONFIG_FILES = (".bnlint.toml", "pyproject.toml")


@dataclass(frozen=True)
class LintConfig:
    """The settings one file is linted with: its config file's, then the options'."""

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()
    dialect: str = dialects.AUTO
    proto: str | None = None         # a user's caffe.proto; overrides `dialect`
    fail_on: Severity = Severity.ERROR
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    root: str | None = None          # folder of the config file (patterns are relative)
    exclude: tuple[str, ...] | None = None    # None: discovery's defaults
    extend_exclude: tuple[str, ...] = ()
    respect_gitignore: bool = True

    def enabled(self, code: str, path: str | None = None) -> bool:
        selected = (not self.select or _matches(code, self.select)
                    or _matches(code, self.extend_select))
        if not selected or _matches(code, self.ignore):
            return False
        if path is not None and self.per_file_ignores:
            rel = _relative(path, self.root)
            for pattern, codes in self.per_file_ignores:
                if (fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(os.path.basename(path),
                                                                     pattern)) \
                        and _matches(code, codes):
                    return False
        return True

    def merged(self, **overrides) -> "LintConfig":
        changes = {k: v for k, v in overrides.items() if v is not None}
        if "dialect" in changes and "proto" not in changes:
            changes["proto"] = None  # --dialect on the command line beats a config's proto
        return replace(self, **changes)

    def dialect_choice(self):
        """What the net is read in: the user's proto, a dialect name, or "auto"."""
        if self.proto:
            return dialects.load_user_proto(self.proto)
        return self.dialect


def _matches(code: str, patterns: tuple[str, ...]) -> bool:
    return any(p == "ALL" or code.startswith(p) for p in patterns)


def _relative(path: str, root: str | None) -> str:
    if root is None:
        return path
    try:
        return os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
    except ValueError:
        return path


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    data = _config_bytes(path)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except ValueError as err:        # TOMLDecodeError, UnicodeDecodeError
        raise BnlintError(f"cannot read configuration: {err}", path=str(path)) from None
    except RecursionError:
        raise BnlintError("cannot read configuration: nested too deeply",
                          path=str(path)) from None


# A configuration is a few lines; a bigger file is not one (`--config /dev/zero` read
# without a limit filled the memory).
MAX_CONFIG_BYTES = 1 << 20


def _config_bytes(path: Path) -> bytes:
    """The file's bytes, with the guards of inputs (devices refused) and a pipe refused
    too: a configuration that never ends or never comes would stall a pre-commit hook."""
    import os
    import stat

    from bnlint.files import read_bytes

    try:
        info = os.stat(path)
    except OSError:
        info = None              # read_bytes gives the message
    if info is not None and stat.S_ISFIFO(info.st_mode):
        raise BnlintError("is a pipe, not a configuration file", path=str(path))
    if info is not None and stat.S_ISREG(info.st_mode) and info.st_size > MAX_CONFIG_BYTES:
        raise BnlintError(f"larger than {MAX_CONFIG_BYTES:,} bytes: not a bnlint "
                          f"configuration", path=str(path))
    return read_bytes(str(path))


def find_config_file(start: Path) -> Path | None:
    """The nearest .bnlint.toml, or pyproject.toml with a [tool.bnlint] table."""
    folder = start if start.is_dir() else start.parent
    folder = folder.resolve()
    for d in (folder, *folder.parents):
        for name in CONFIG_FILES:
            candidate = d / name
            if candidate.is_file():
                if name == "pyproject.toml":
                    if "bnlint" not in _load_toml(candidate).get("tool", {}):
                        continue
                return candidate
    return None


def load_config(path: Path) -> LintConfig:
    """pyproject.toml holds a `[tool.bnlint]` table; a .bnlint.toml holds the options at
    its top level or, pasted from a pyproject.toml, in a `[tool.bnlint]` table."""
    data = _load_toml(path)
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("bnlint", {})
    elif isinstance(data.get("tool"), dict) and "bnlint" in data["tool"]:
        others = sorted(set(data) - {"tool"}) + sorted(f"tool.{k}" for k in data["tool"]
                                                         if k != "bnlint")
        if others:
            raise BnlintError(f"options both at the top level and in [tool.bnlint] "
                              f"({', '.join(others)}): use one form", path=str(path))
        table = data["tool"]["bnlint"]
    else:
        table = data
    return config_from_table(table, str(path))


def config_from_table(table: dict, where: str) -> LintConfig:
    known = {"select", "ignore", "extend-select", "dialect", "proto", "fail-on",
             "per-file-ignores", "exclude", "extend-exclude", "respect-gitignore"}
    unknown = set(table) - known
    if unknown:
        raise BnlintError(f"unknown option(s) in [tool.bnlint]: {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(known))})", path=where)

    def codes(key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BnlintError(f"'{key}' must be a list of rule codes", path=where)
        return selectors(value, f"'{key}'", where)

    dialect = table.get("dialect", dialects.AUTO)
    if not isinstance(dialect, str):
        raise BnlintError("'dialect' must be a dialect name", path=where)
    try:
        dialects.check_dialect_name(dialect)
    except BnlintError as err:
        raise BnlintError(err.message, path=where) from None
    proto = table.get("proto")
    if proto is not None:
        if not isinstance(proto, str) or not proto:
            raise BnlintError("'proto' must be the path of a .proto file", path=where)
        if "dialect" in table:
            raise BnlintError("set 'dialect' or 'proto', not both ('proto' is the dialect)",
                              path=where)
        proto = str(Path(where).resolve().parent / proto)
    try:
        fail_on_text = table.get("fail-on", "error")
        if not isinstance(fail_on_text, str):
            raise ValueError(f"'fail-on' must be one of error, warning, info, not "
                             f"{fail_on_text!r}")
        fail_on = Severity.parse(fail_on_text)
    except ValueError as err:
        raise BnlintError(str(err), path=where) from None
    pfi = table.get("per-file-ignores", {})
    if not isinstance(pfi, dict):
        raise BnlintError("'per-file-ignores' must be a table of pattern = [codes]",
                          path=where)
    per_file = []
    for pattern, v in pfi.items():
        listed = v if isinstance(v, list) else [v]
        if not all(isinstance(c, str) for c in listed):
            raise BnlintError(f"'per-file-ignores' entry {pattern!r} must be a list of rule "
                              f"codes", path=where)
        per_file.append((pattern, selectors(listed, f"'per-file-ignores' entry {pattern!r}",
                                            where)))
    per_file = tuple(per_file)

    def globs(key: str) -> tuple[str, ...] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BnlintError(f"'{key}' must be a list of glob patterns", path=where)
        return tuple(value)

    gitignore = table.get("respect-gitignore", True)
    if not isinstance(gitignore, bool):
        raise BnlintError("'respect-gitignore' must be true or false", path=where)
    return LintConfig(codes("select"), codes("ignore"), codes("extend-select"), dialect,
                      proto, fail_on, per_file, str(Path(where).resolve().parent),
                      globs("exclude"), globs("extend-exclude") or (), gitignore)


def selectors(values, what: str, where: str) -> tuple[str, ...]:
    """Codes, prefixes or ALL, each checked: an unknown one is a configuration error."""
    from bnlint.lint.registry import UnknownCodeError, parse_selector

    try:
        return tuple(parse_selector(v) for v in values)
    except UnknownCodeError as err:
        raise BnlintError(f"{what}: {err}", path=where) from None


@dataclass
class ConfigResolver:
    """Caches the config found for each folder, or its error, so that a broken config
    is read and reported once per run (the same error object for every file under it);
    an explicit file overrides discovery."""

    explicit: Path | None = None
    cli_overrides: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)

    def for_path(self, path: str) -> LintConfig:
        if self.explicit is not None:
            key, find = "explicit", lambda: self.explicit
        elif path == "-":
            key, find = Path.cwd(), lambda: find_config_file(Path.cwd())
        else:
            folder = Path(path).resolve().parent
            key, find = folder, lambda: find_config_file(folder)
        if key not in self._cache:
            try:
                found = find()
            except BnlintError as err:
                self._cache[key] = err
            else:
                self._cache[key] = self._load(found) if found else LintConfig()
        base = self._cache[key]
        if isinstance(base, BnlintError):
            raise base
        return base.merged(**self.cli_overrides)

    def _load(self, config_file: Path) -> "LintConfig | BnlintError":
        key = ("file", config_file)
        if key not in self._cache:
            try:
                self._cache[key] = load_config(config_file)
            except BnlintError as err:
                self._cache[key] = err
        return self._cache[key]
