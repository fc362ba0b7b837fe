"""Start-up and whole-run cost of `bnlint check`, against `python -c pass` and protoc.

Run as `python benchmarks/check.py [--runs N]`. Every row is the median wall time
of N whole processes (after one warm-up run). Uses the corpus at ../shared/corpus
relative to the repository and exits 0 with a message when it is absent.
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
TARGET_FILE_MS = 150.0
TARGET_CORPUS_S = 3.0

try:
    import bnlint  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "src"))


def bnlint_command() -> tuple[list[str], dict, str]:
    """The installed `bnlint` script next to this Python or on PATH, else `python -m bnlint`."""
    env = dict(os.environ)
    script = (shutil.which("bnlint", path=str(Path(sys.executable).parent))
              or shutil.which("bnlint"))
    if script:
        return [script], env, script
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"),
                                                    env.get("PYTHONPATH", "")) if p)
    return [sys.executable, "-m", "bnlint"], env, "python -m bnlint (no console script)"


def median_run(argv: list[str], runs: int, env: dict | None = None,
               stdin_path: Path | None = None) -> tuple[float, float, int]:
    """(median, min) wall seconds of a whole process over `runs` runs, and its exit code."""
    def once() -> tuple[float, int]:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        try:
            start = time.perf_counter()
            done = subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env=env, cwd=REPO)
            return time.perf_counter() - start, done.returncode
        finally:
            if stdin_path:
                stdin.close()

    _, code = once()
    times = [once()[0] for _ in range(runs)]
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


def bench_single_file(bnlint: list[str], env: dict, runs: int, path: Path) -> None:
    check = [*bnlint, "check", "--exit-zero", "--format", "concise", str(path)]
    protoc = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}",
              "--encode=caffe.NetParameter", str(PROTO_DIR / "caffe.proto")]
    measured = [("python -c pass", median_run([sys.executable, "-c", "pass"], runs)),
                ("bnlint --version (CLI start-up only)",
                 median_run([*bnlint, "--version"], runs, env))]
    try:
        import grpc_tools  # noqa: F401
    except ImportError:
        print("grpc_tools (grpcio-tools) is not installed: the protoc row is skipped")
    else:
        measured.append(("protoc --encode (python -m grpc_tools.protoc)",
                         median_run(protoc, runs, stdin_path=path)))
    measured.append((f"bnlint check {path.name}", median_run(check, runs, env)))
    base = measured[0][1][0]
    ours = measured[-1][1][0]
    rows = []
    for what, (med, low, code) in measured:
        rows.append([what, f"{med * 1e3:,.1f}", f"{low * 1e3:,.1f}", str(code),
                     f"{(med - base) * 1e3:+,.1f}", f"{ours / med:.2f}x"])
    table(f"one file ({path.relative_to(CORPUS)}, {path.stat().st_size / 1024:,.0f} KiB): "
          f"median of {runs} runs, milliseconds",
          ["command", "median", "min", "exit", "over python", "check / this"], rows)
    verdict = "OK" if ours * 1e3 < TARGET_FILE_MS else "OVER TARGET"
    print(f"  target: bnlint check < {TARGET_FILE_MS:.0f} ms -> {ours * 1e3:.1f} ms, {verdict}")


def bench_corpus(bnlint: list[str], env: dict, runs: int) -> None:
    files = sorted(CORPUS.rglob("*.prototxt"))
    size = sum(f.stat().st_size for f in files)
    check = [*bnlint, "check", "--exit-zero", "--format", "concise", str(CORPUS)]
    med, low, code = median_run(check, runs, env)
    per_file = med / max(1, len(files))
    table(f"whole corpus in one call ({len(files)} .prototxt, {size / 1e6:.1f} MB): "
          f"median of {runs} runs",
          ["command", "median s", "min s", "exit", "ms / file", "MB/s"],
          [["bnlint check --exit-zero --format concise corpus", f"{med:.2f}", f"{low:.2f}",
            str(code), f"{per_file * 1e3:.1f}", f"{size / 1e6 / med:.2f}"]])
    verdict = "OK" if med < TARGET_CORPUS_S else "OVER TARGET"
    print(f"  target: < {TARGET_CORPUS_S:.0f} s -> {med:.2f} s, {verdict}")


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
    argv += ["check", "--exit-zero", "--format", "concise", str(path)]
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
    args = ap.parse_args()
    if not CORPUS.is_dir():
        print(f"corpus not found at {CORPUS}: nothing to benchmark")
        return 0
    path = CORPUS / LARGEST
    if not path.is_file():
        path = max(CORPUS.rglob("*.prototxt"), key=lambda p: p.stat().st_size)
    bnlint, env, shown = bnlint_command()
    print(f"bnlint check benchmark  (Python {sys.version.split()[0]}, bnlint via {shown}, "
          f"corpus {CORPUS})")
    bench_single_file(bnlint, env, args.runs, path)
    bench_corpus(bnlint, env, args.corpus_runs)
    bench_in_process(path, 10)
    bench_imports(bnlint, env, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
