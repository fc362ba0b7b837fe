"""Resources on big and deep inputs: does time grow linearly, and how much memory?

Run as `python benchmarks/resources.py [--sizes 1000,2000,5000,10000,20000] [--mb 50]
[--depths 10000,50000] [--skip-big]`.

Each measurement runs in a fresh process (this script with `--worker`), which
times the task after its imports, in wall time (time.perf_counter) and CPU time
(time.process_time: the ratios use it, so a busy machine does not fake a blow-up),
and reports its peak resident memory (resource.getrusage ru_maxrss) and the
baseline after imports. Tasks: `parse` (bnlint.syntax.parse of the file's text),
`parse-nogc` (the same with Python's cyclic garbage collector off, to show what the
collector costs as the tree grows) and `check` (the whole `bnlint check` command,
report to /dev/null). Nets are ResNet-style blocks
(Convolution, BatchNorm, Scale, ReLU) on a small input, so shape inference stays
meaningful at any depth; the big file is the same net grown to the given size.

Linear means a flat time per layer: the "x first" column divides each size's CPU
time per layer by the smallest size's, so 1.0 everywhere is linear and a column
that grows with the size is a superlinear cost. Nesting is measured the same way,
per level.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

try:
    import bnlint  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "src"))


# --- inputs ---------------------------------------------------------------------------------

HEADER = ('name: "Generated"\n'
          'layer {\n  name: "data"\n  type: "Input"\n  top: "data"\n'
          '  input_param { shape { dim: 1 dim: 16 dim: 8 dim: 8 } }\n}\n')


def block(b: int, bottom: str) -> str:
    """Four layers: a 3x3 convolution, its frozen BatchNorm, Scale and ReLU, in place."""
    conv = f"conv{b}"
    return (f'layer {{\n  name: "{conv}"\n  type: "Convolution"\n  bottom: "{bottom}"\n'
            f'  top: "{conv}"\n  convolution_param {{\n    num_output: 16\n'
            f'    bias_term: false\n    pad: 1\n    kernel_size: 3\n  }}\n}}\n'
            f'layer {{\n  name: "{conv}_bn"\n  type: "BatchNorm"\n  bottom: "{conv}"\n'
            f'  top: "{conv}"\n  param {{ lr_mult: 0 decay_mult: 0 }}\n'
            f'  param {{ lr_mult: 0 decay_mult: 0 }}\n  param {{ lr_mult: 0 decay_mult: 0 }}\n'
            f'  batch_norm_param {{ use_global_stats: true }}\n}}\n'
            f'layer {{\n  name: "{conv}_scale"\n  type: "Scale"\n  bottom: "{conv}"\n'
            f'  top: "{conv}"\n  scale_param {{ bias_term: true }}\n}}\n'
            f'layer {{\n  name: "{conv}_relu"\n  type: "ReLU"\n  bottom: "{conv}"\n'
            f'  top: "{conv}"\n}}\n')


def write_net(path: Path, n_layers: int | None = None, min_bytes: int | None = None) -> int:
    """Write a net of `n_layers` layers (or at least `min_bytes`); returns its layer count."""
    written = len(HEADER)
    layers = 1
    bottom = "data"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(HEADER)
        b = 0
        while (n_layers is not None and layers + 4 <= n_layers) or \
                (min_bytes is not None and written < min_bytes):
            text = block(b, bottom)
            fh.write(text)
            written += len(text)
            layers += 4
            bottom = f"conv{b}"
            b += 1
    return layers


def write_one_per_line(path: Path, n_layers: int) -> int:
    """`n_layers` ReLUs, one layer per line: the layout that made to-deploy's style
    detection quadratic (list.pop(0) over every field)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('layer { name: "data" type: "Input" top: "data" input_param { shape { '
                 'dim: 1 dim: 3 dim: 4 dim: 4 } } }\n')
        for i in range(n_layers - 1):
            fh.write(f'layer {{ name: "relu{i}" type: "ReLU" bottom: "data" top: "data" }}\n')
    return n_layers


def write_long_name(path: Path, megabytes: float) -> int:
    """One layer whose name is `megabytes` long: `info` wrapped it in a table cell in
    time quadratic in its length. Returns the name's length in characters."""
    length = int(megabytes * 1e6)
    path.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { '
                    'dim: 1 dim: 3 dim: 4 dim: 4 } } }\nlayer { name: "' + "n" * length +
                    '" type: "ReLU" bottom: "data" top: "r" }\n', encoding="utf-8")
    return length


def write_nested(path: Path, depth: int) -> None:
    """A net whose one layer holds an unknown (fork) parameter nested `depth` deep."""
    path.write_text(HEADER + 'layer {\n  name: "deep"\n  type: "ReLU"\n  bottom: "data"\n'
                    '  top: "deep"\n  fork_param ' + "{ a " * depth + "{ }" + " }" * depth
                    + "\n}\n", encoding="utf-8")


# --- the worker: one task in a fresh process --------------------------------------------------

def worker(task: str, path: str) -> None:
    import gc

    import bnlint.cli
    import bnlint.syntax

    if task == "check":
        # import what the command imports, so the baseline holds the code, not the input
        import bnlint.lint.runner  # noqa: F401
        import bnlint.report  # noqa: F401
    if task in COMMAND_TASKS:
        import importlib

        importlib.import_module(bnlint.cli.COMMANDS[task][0])
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = 0
    start, cpu = time.perf_counter(), time.process_time()
    if task in ("parse", "parse-nogc"):
        text = Path(path).read_text(encoding="utf-8")
        if task == "parse-nogc":
            gc.disable()
        start, cpu = time.perf_counter(), time.process_time()
        bnlint.syntax.parse(text, path)
    else:
        saved = sys.stdout
        sys.stdout = open(os.devnull, "w")
        argv = COMMAND_TASKS.get(task, ["check", "--format", "concise"]) + [path]
        try:
            bnlint.cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        finally:
            sys.stdout.close()
            sys.stdout = saved
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "code": code, "baseline_kb": baseline,
                      "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def measure(task: str, path: Path, timeout: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"),
                                                    env.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", task, str(path)],
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"] not in (0, 1):
        result["error"] = f"bnlint check exit {result['code']}"
    return result


# --- reporting ------------------------------------------------------------------------------

def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    print(f"\n{title}")
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def mb(kb: float) -> str:
    return f"{kb / 1024:,.0f}"


TASKS = ("parse", "parse-nogc", "check")
# Whole commands measured on the inputs that once made them superlinear.
COMMAND_TASKS = {"to-deploy": ["to-deploy"], "info": ["info"]}


def scaling_rows(cases: list[tuple[str, int, Path]], timeout: float,
                 tasks: tuple[str, ...] = TASKS) -> list[list[str]]:
    """One row per case: its size, then per task the wall time, the CPU time per unit
    (layer or level), that CPU time's ratio to the first case's, and the peak memory
    above the baseline."""
    rows = []
    first: dict[str, float] = {}
    for label, units, path in cases:
        row = [label, f"{path.stat().st_size / 1e6:,.1f}"]
        for task in tasks:
            r = measure(task, path, timeout)
            if "error" in r and "seconds" not in r:
                row += [r["error"], "-", "-", "-"]
                continue
            per = r["cpu"] / units
            first.setdefault(task, per)
            row += [f"{r['seconds']:,.2f}", f"{per * 1e6:,.1f}", f"{per / first[task]:.2f}x",
                    mb(r["peak_kb"] - r["baseline_kb"])]
            if "error" in r:
                row[-4] += f" ({r['error']})"
        rows.append(row)
        print(f"  measured {label}", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,2000,5000,10000,20000",
                    help="layer counts of the generated nets")
    ap.add_argument("--mb", type=float, default=50, help="size of the big prototxt in MB")
    ap.add_argument("--depths", default="10000,50000", help="nesting depths")
    ap.add_argument("--skip-big", action="store_true", help="leave out the big prototxt")
    ap.add_argument("--line-sizes", default="10000,50000",
                    help="layer counts of the one-layer-per-line nets")
    ap.add_argument("--name-mb", default="1,10", help="sizes of the long layer names in MB")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per measurement")
    ap.add_argument("--worker", nargs=2, metavar=("TASK", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    import platform

    print(f"bnlint resources benchmark: Python {platform.python_version()} on "
          f"{platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bnlint-resources-") as tmp:
        cases = []
        for n in (int(s) for s in args.sizes.split(",") if s):
            path = Path(tmp) / f"net_{n}.prototxt"
            layers = write_net(path, n_layers=n)
            cases.append((f"{layers:,} layers", layers, path))
        if not args.skip_big:
            path = Path(tmp) / "big.prototxt"
            layers = write_net(path, min_bytes=int(args.mb * 1e6))
            cases.append((f"{layers:,} layers ({args.mb:g} MB)", layers, path))
        header = ["net", "MB"] + [f"{t} {c}" if c == "s" else c for t in TASKS
                                  for c in ("s", "cpu us/layer", "x first", "peak MB")]
        table("Layers: CPU time per layer should stay flat (x first ~ 1.0 = linear); "
              "s is wall time; peak MB is above the post-import baseline",
              header, scaling_rows(cases, args.timeout))

        nested = []
        for depth in (int(s) for s in args.depths.split(",") if s):
            path = Path(tmp) / f"nested_{depth}.prototxt"
            write_nested(path, depth)
            nested.append((f"{depth:,} deep", depth, path))
        header = ["nesting", "MB"] + [f"{t} {c}" if c == "s" else c for t in TASKS
                                      for c in ("s", "cpu us/level", "x first", "peak MB")]
        table("Nesting: no recursion limit; CPU time per level should stay flat",
              header, scaling_rows(nested, args.timeout))

        lines = []
        for n in (int(s) for s in args.line_sizes.split(",") if s):
            path = Path(tmp) / f"lines_{n}.prototxt"
            lines.append((f"{n:,} lines", write_one_per_line(path, n), path))
        tasks = ("check", "to-deploy")
        header = ["one layer per line", "MB"] + [
            f"{t} {c}" if c == "s" else c for t in tasks
            for c in ("s", "cpu us/layer", "x first", "peak MB")]
        table("One layer per line: to-deploy's CPU time per layer should stay flat (the "
              "issue's bound: the last size's total CPU time under 6x the first's for "
              "10,000 -> 50,000)", header, scaling_rows(lines, args.timeout, tasks))

        names = []
        for size in (float(s) for s in args.name_mb.split(",") if s):
            path = Path(tmp) / f"name_{size:g}.prototxt"
            names.append((f"{size:g} MB name", write_long_name(path, size), path))
        tasks = ("check", "info")
        header = ["long layer name", "MB"] + [
            f"{t} {c}" if c == "s" else c for t in tasks
            for c in ("s", "cpu us/char", "x first", "peak MB")]
        table("A long layer name: CPU time per character should stay flat", header,
              scaling_rows(names, args.timeout, tasks))


if __name__ == "__main__":
    main()
