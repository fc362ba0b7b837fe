"""Start-up and whole-run cost of `bnlint check`, against `python -c pass` and protoc.

Run as `python benchmarks/check.py [--runs N]`. Every row is the median wall time
of N whole processes (after one warm-up run), the commands of a table run in turn
(interleaved) so that load from other processes hits them alike. protoc is the C++
`protoc` on PATH when there is one (else grpc_tools' protoc behind a Python start-up).
Uses the corpus at ../shared/corpus relative to the repository and exits 0 with a
message when it is absent.

`--src DIR` times the bnlint of another source tree (`python -m bnlint` with DIR on
PYTHONPATH) instead of the installed one; `--baseline DIR` adds that tree's check
rows to the same interleaved runs, for an A/B comparison under the same load.
The runs are timed with byte-code caches, as an installed bnlint has them:
PYTHONDONTWRITEBYTECODE is dropped from their environment, so the warm-up run
writes the caches it lacks (otherwise every run recompiles every module, ~40 ms).

Every check runs in the default (text) format, as a pre-commit hook runs it, with its
output going to no terminal (/dev/null), as a hook's does.

Goals (issue 18): SENet-154 at most 100 ms and at most 4x protoc's encoder; a small
net at most 60 ms; the whole corpus in one call under 1.2 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
PROTO_DIR = REPO / "proto"
LARGEST = "SENet/SENet-154.prototxt"
SMALL = "caffe/mnist__lenet@V1_pre-e6c80da.prototxt"
TARGET_FILE_MS = 100.0
TARGET_PROTOC_RATIO = 4.0
TARGET_SMALL_MS = 60.0
TARGET_CORPUS_S = 1.2

def run_environment() -> dict:
    """This environment, minus what would make every run recompile bnlint's modules."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def bnlint_command(src: Path | None = None) -> tuple[list[str], dict, str]:
    """`python -m bnlint` from the source tree `src` when given, else the installed
    `bnlint` script next to this Python or on PATH, else `python -m bnlint` from here."""
    env = run_environment()
    script = None if src else (shutil.which("bnlint", path=str(Path(sys.executable).parent))
                               or shutil.which("bnlint"))
    if script:
        return [script], env, script
    tree = src or REPO / "src"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH", ""))
                                        if p)
    return [sys.executable, "-m", "bnlint"], env, f"python -m bnlint from {tree}"


def timed_run(argv: list[str], env: dict | None, stdin_path: Path | None
              ) -> tuple[float, int]:
    """Wall seconds of one whole process, and its exit code."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        done = subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env, cwd=REPO)
        return time.perf_counter() - start, done.returncode
    finally:
        if stdin_path:
            stdin.close()


def median_run(argv: list[str], runs: int, env: dict | None = None,
               stdin_path: Path | None = None) -> tuple[float, float, int]:
    """(median, min) wall seconds of a whole process over `runs` runs, and its exit code."""
    _, code = timed_run(argv, env, stdin_path)
    times = [timed_run(argv, env, stdin_path)[0] for _ in range(runs)]
    return statistics.median(times), min(times), code


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print an aligned table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    print(f"\n{title}")
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def interleaved(commands: list[tuple[list[str], dict | None, Path | None]], runs: int
                ) -> list[tuple[float, float, int]]:
    """`median_run` for several commands, run in turn: (median, min, exit code) each."""
    codes = [timed_run(*command)[1] for command in commands]          # warm-up
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for i, command in enumerate(commands):
            times[i].append(timed_run(*command)[0])
    return [(statistics.median(t), min(t), code) for t, code in zip(times, codes)]


def protoc_command() -> tuple[list[str], str] | None:
    """protoc --encode of a NetParameter: the C++ binary, else grpc_tools' copy."""
    args = [f"-I{PROTO_DIR}", "--encode=caffe.NetParameter", str(PROTO_DIR / "caffe.proto")]
    binary = shutil.which("protoc")
    if binary:
        return [binary, *args], "protoc --encode (C++)"
    try:
        import grpc_tools  # noqa: F401
    except ImportError:
        print("neither protoc nor grpc_tools (grpcio-tools) is installed: no protoc row")
        return None
    return [sys.executable, "-m", "grpc_tools.protoc", *args], "python -m grpc_tools.protoc"


def bench_single_file(bnlint: list[str], env: dict, runs: int, path: Path,
                      small: Path | None, baseline: tuple[list[str], dict] | None) -> None:
    def check(p: Path, command: list[str] = bnlint) -> list[str]:
        return [*command, "check", "--exit-zero", str(p)]

    rows_in = [("python -c pass", ([sys.executable, "-c", "pass"], None, None)),
               ("bnlint --version (CLI start-up only)", ([*bnlint, "--version"], env, None))]
    protoc = protoc_command()
    if protoc:
        rows_in.append((protoc[1], (protoc[0], None, path)))
    if baseline is not None:
        for p in ([small] if small is not None else []) + [path]:
            rows_in.append((f"baseline: check {p.name}", (check(p, baseline[0]), baseline[1],
                                                          None)))
    if small is not None:
        rows_in.append((f"bnlint check {small.name}", (check(small), env, None)))
    rows_in.append((f"bnlint check {path.name}", (check(path), env, None)))
    measured = list(zip([r[0] for r in rows_in], interleaved([r[1] for r in rows_in], runs)))
    base = measured[0][1][0]
    ours = measured[-1][1][0]
    rows = []
    for what, (med, low, code) in measured:
        rows.append([what, f"{med * 1e3:,.1f}", f"{low * 1e3:,.1f}", str(code),
                     f"{(med - base) * 1e3:+,.1f}", f"{ours / med:.2f}x"])
    table(f"one file ({path.relative_to(CORPUS)}, {path.stat().st_size / 1024:,.0f} KiB): "
          f"median of {runs} interleaved runs, milliseconds; load average "
          f"{os.getloadavg()[0]:.2f}",
          ["command", "median", "min", "exit", "over python", "check / this"], rows)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(f"  goal: check {path.name} <= {TARGET_FILE_MS:.0f} ms -> {ours * 1e3:.1f} ms, "
          f"{verdict(ours * 1e3 <= TARGET_FILE_MS)}")
    if protoc:
        ratio = ours / measured[2][1][0]
        print(f"  goal: <= {TARGET_PROTOC_RATIO:.0f}x protoc -> {ratio:.2f}x, "
              f"{verdict(ratio <= TARGET_PROTOC_RATIO)}")
    if small is not None:
        small_ms = measured[-2][1][0] * 1e3
        print(f"  goal: check {small.name} <= {TARGET_SMALL_MS:.0f} ms -> {small_ms:.1f} ms, "
              f"{verdict(small_ms <= TARGET_SMALL_MS)}")


def bench_corpus(bnlint: list[str], env: dict, runs: int,
                 baseline: tuple[list[str], dict] | None) -> None:
    files = sorted(CORPUS.rglob("*.prototxt"))
    size = sum(f.stat().st_size for f in files)
    args = ["check", "--exit-zero", str(CORPUS)]
    commands = [("bnlint check --exit-zero corpus", [*bnlint, *args], env)]
    if baseline is not None:
        commands.insert(0, ("baseline: the same", [*baseline[0], *args], baseline[1]))
    measured = interleaved([(argv, e, None) for _, argv, e in commands], runs)
    rows = [[what, f"{med:.2f}", f"{low:.2f}", str(code),
             f"{med / max(1, len(files)) * 1e3:.1f}", f"{size / 1e6 / med:.2f}"]
            for (what, _, _), (med, low, code) in zip(commands, measured)]
    table(f"whole corpus in one call ({len(files)} .prototxt, {size / 1e6:.1f} MB): "
          f"median of {runs} runs" + (", interleaved" if baseline else ""),
          ["command", "median s", "min s", "exit", "ms / file", "MB/s"], rows)
    med = measured[-1][0]
    verdict = "met" if med < TARGET_CORPUS_S else "NOT met"
    print(f"  goal: < {TARGET_CORPUS_S:.1f} s -> {med:.2f} s, {verdict}")


def bench_in_process(path: Path, repeat: int) -> None:
    """Where the work (not the start-up) goes, for the same file in this process."""
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import net_view
    from bnlint.lint.config import LintConfig
    from bnlint.lint.runner import lint_source
    from bnlint.source import SourceFile
    from bnlint.syntax import parse

    text = path.read_text(encoding="utf-8")

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    config = LintConfig()
    steps = [("syntax.parse (lossless tree)", best(lambda: parse(text, str(path)))),
             ("caffe.load.parse_text (+ NetParameter)",
              best(lambda: parse_text(SourceFile(str(path), text)))),
             ("parse_text + net_view",
              best(lambda: net_view(parse_text(SourceFile(str(path), text))))),
             ("lint.runner.lint_source (everything)",
              best(lambda: lint_source(SourceFile(str(path), text), config)))]
    total = steps[-1][1]
    table(f"in process, warm, best of {repeat}: {path.name}, milliseconds",
          ["step (cumulative)", "ms", "share of lint_source"],
          [[what, f"{t * 1e3:,.1f}", f"{t / total:.0%}"] for what, t in steps])


_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


def bench_imports(bnlint: list[str], env: dict, path: Path, top: int = 10) -> None:
    """`-X importtime`: the top entries by cumulative time, and self time per package."""
    if bnlint[0] != sys.executable:
        argv = [sys.executable, "-X", "importtime", "-m", "bnlint"]
        env = dict(env, PYTHONPATH=os.pathsep.join(
            p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p))
    else:
        argv = [sys.executable, "-X", "importtime", *bnlint[1:]]
    argv += ["check", "--exit-zero", str(path)]
    subprocess.run(argv, env=env, cwd=REPO, capture_output=True)    # warm the .pyc caches
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
    entries = []
    for line in done.stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            entries.append((int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2,
                            m.group(4)))
    if not entries:
        print("\n-X importtime printed nothing parseable; skipped")
        return
    total_self = sum(e[0] for e in entries)
    rows = [[("  " * depth) + name, f"{cum / 1e3:.1f}", f"{own / 1e3:.1f}",
             f"{cum / total_self:.0%}"]
            for own, cum, depth, name in sorted(entries, key=lambda e: -e[1])[:top]]
    table(f"python -X importtime -m bnlint check {path.name}: top {top} by cumulative time "
          f"(all imports: {total_self / 1e3:.1f} ms, {len(entries)} modules)",
          ["module (indent = nesting)", "cumulative ms", "self ms", "of all imports"], rows)
    groups: dict[str, int] = defaultdict(int)
    for own, _, _, name in entries:
        head = name.split(".")[0]
        groups[head if head in ("bnlint", "google", "click", "rich", "numpy") else
               "stdlib / other"] += own
    table("import self time by package",
          ["package", "ms", "share"],
          [[k, f"{v / 1e3:.1f}", f"{v / total_self:.0%}"]
           for k, v in sorted(groups.items(), key=lambda kv: -kv[1])])
    loaded = {e[3].split(".")[0] for e in entries}
    print(f"  numpy imported: {'yes' if 'numpy' in loaded else 'no'}; "
          f"rich imported: {'yes' if 'rich' in loaded else 'no'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="runs per single-file row (median)")
    ap.add_argument("--corpus-runs", type=int, default=5, help="runs of the whole corpus")
    ap.add_argument("--src", type=Path, metavar="DIR",
                    help="time `python -m bnlint` from this source tree (e.g. src)")
    ap.add_argument("--baseline", type=Path, metavar="DIR",
                    help="also time the check rows of this source tree, interleaved (A/B)")
    args = ap.parse_args()
    if not CORPUS.is_dir():
        print(f"corpus not found at {CORPUS}: nothing to benchmark")
        return 0
    path = CORPUS / LARGEST
    if not path.is_file():
        path = max(CORPUS.rglob("*.prototxt"), key=lambda p: p.stat().st_size)
    if args.src:
        sys.path.insert(0, str(args.src.resolve()))    # the in-process rows too
    else:
        try:
            import bnlint  # noqa: F401
        except ImportError:
            sys.path.insert(0, str(REPO / "src"))
    bnlint, env, shown = bnlint_command(args.src and args.src.resolve())
    baseline = bnlint_command(args.baseline.resolve())[:2] if args.baseline else None
    print(f"bnlint check benchmark  (Python {sys.version.split()[0]}, bnlint via {shown}, "
          f"corpus {CORPUS})")
    if baseline:
        print(f"baseline: python -m bnlint from {args.baseline.resolve()}")
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        print("PYTHONDONTWRITEBYTECODE is set here; the timed runs do without it (see --help)")
    small = CORPUS / SMALL
    bench_single_file(bnlint, env, args.runs, path, small if small.is_file() else None,
                      baseline)
    bench_corpus(bnlint, env, args.corpus_runs, baseline)
    bench_in_process(path, 10)
    bench_imports(bnlint, env, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
