"""Which files `bnlint check` reads: the paths given, folders searched as ruff does.

- A folder is searched for `*.prototxt`, skipping what `exclude` (default: hidden
  folders, virtual environments, node_modules) and `extend-exclude` match, and what
  the repository's .gitignore ignores (asked of git itself, so every .gitignore,
  .git/info/exclude and the global excludes file count; tracked files never are).
- A file named explicitly is always checked (`--force-exclude` applies the excludes
  to it too, for pre-commit, which names every staged file).
- One file named twice (`net.prototxt` and `./net.prototxt`, a folder and a file in
  it, a symlink and its target) is checked once, under the first name given.

Patterns are globs as in ruff: one without `/` matches any file or folder of that
name; one with `/` matches the path relative to the folder of the config file that
sets it (the working directory for command-line options).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bnlint.errors import BnlintError

STDIO = "-"
SUFFIX = ".prototxt"
DEFAULT_EXCLUDE = (".*", "venv", "node_modules", "site-packages", "__pycache__")


@dataclass(frozen=True)
class Patterns:
    """Glob patterns and the folder their `/`-patterns are relative to."""

    globs: tuple[str, ...]
    root: str

    def match(self, path: str) -> bool:
        name = os.path.basename(path.rstrip(os.sep))
        rel = None
        for glob in self.globs:
            glob = glob.rstrip("/")
            if "/" not in glob:
                if name not in (".", "..") and fnmatch.fnmatchcase(name, glob):
                    return True
                continue
            if rel is None:
                rel = os.path.relpath(os.path.abspath(path), self.root).replace(os.sep, "/")
            if fnmatch.fnmatchcase(rel, glob.lstrip("./") if glob.startswith("./") else glob):
                return True
        return False


@dataclass
class Excludes:
    """What to skip under a folder: from the command line, else from the folder's config."""

    cli_exclude: tuple[str, ...] | None = None
    cli_extend: tuple[str, ...] = ()
    #: folder -> (exclude or None, extend-exclude, config root, respect-gitignore)
    config_for: Callable[[Path], tuple] | None = None
    _cache: dict = field(default_factory=dict)

    def patterns(self, folder: Path) -> tuple[list[Patterns], bool]:
        if folder not in self._cache:
            exclude, extend, root, gitignore = (None, (), None, True)
            if self.config_for is not None:
                exclude, extend, root, gitignore = self.config_for(folder)
            cwd = os.getcwd()
            out = []
            if self.cli_exclude is not None:
                out.append(Patterns(self.cli_exclude, cwd))
            elif exclude is not None:
                out.append(Patterns(tuple(exclude), root or cwd))
            else:
                out.append(Patterns(DEFAULT_EXCLUDE, cwd))
            if extend:
                out.append(Patterns(tuple(extend), root or cwd))
            if self.cli_extend:
                out.append(Patterns(self.cli_extend, cwd))
            self._cache[folder] = (out, gitignore)
        return self._cache[folder]

    def excluded(self, path: str) -> bool:
        """For a file named explicitly: it or one of its folders below the working
        directory matches (the folders above it are not the project's)."""
        patterns = self.patterns(Path(path).resolve().parent)[0]
        rel = Path(os.path.relpath(os.path.abspath(path)))
        candidates = [rel] if rel.parts[:1] == ("..",) else [rel, *rel.parents[:-1]]
        return any(p.match(str(candidate)) for p in patterns for candidate in candidates)


def discover(paths: tuple[str, ...], excludes: Excludes | None = None,
             force_exclude: bool = False) -> tuple[list[str], list[BnlintError]]:
    """The files to check, in the order given (folders sorted), each once."""
    excludes = excludes or Excludes()
    files: list[str] = []
    errors: list[BnlintError] = []
    seen: set = set()

    def add(path: str) -> None:
        key = _identity(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for p in paths:
        if p == STDIO:
            files.append(p)
            continue
        path = Path(p)
        try:
            if path.is_dir():
                for found in _search(p, excludes):
                    add(found)
            elif path.exists() or path.is_symlink():
                if not (force_exclude and excludes.excluded(p)):
                    add(p)
            else:
                errors.append(BnlintError("no such file or directory", path=p))
        except BnlintError as err:   # a config error met while searching
            if all(str(err) != str(seen_err) for seen_err in errors):
                errors.append(err)
    return files, errors


def _search(top: str, excludes: Excludes) -> list[str]:
    found: list[str] = []
    gitignore_on = False
    for folder, dirs, names in os.walk(top):
        here = Path(folder).resolve()
        patterns, gitignore = excludes.patterns(here)
        gitignore_on = gitignore_on or gitignore
        dirs[:] = sorted(d for d in dirs
                         if not any(p.match(os.path.join(folder, d)) for p in patterns))
        for name in sorted(names):
            if name.endswith(SUFFIX):
                path = os.path.join(folder, name)
                if not any(p.match(path) for p in patterns):
                    found.append(path)
    if gitignore_on and found:
        ignored = git_ignored(top, found)
        found = [f for f in found if f not in ignored]
    return found


def git_ignored(top: str, files: list[str]) -> set[str]:
    """The files git ignores (.gitignore and its other exclude files); nothing when `top`
    is not in a git work tree or git is not installed."""
    import subprocess   # here: a file named on the command line needs no git

    try:
        done = subprocess.run(["git", "-C", top, "check-ignore", "--stdin", "-z"],
                              input=b"\0".join(os.fsencode(os.path.relpath(f, top))
                                               for f in files) + b"\0",
                              capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return set()
    if done.returncode not in (0, 1):     # 128: not a repository
        return set()
    ignored = {os.path.normpath(os.path.join(top, os.fsdecode(rel)))
               for rel in done.stdout.split(b"\0") if rel}
    return {f for f in files if os.path.normpath(f) in ignored}


def _identity(path: str):
    try:
        info = os.stat(path)
        return (info.st_dev, info.st_ino)
    except OSError:
        return os.path.normcase(os.path.abspath(path))
