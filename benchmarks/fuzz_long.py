"""Run the fuzz suite long and randomized, to find the failures CI's fixed sample misses.

Run as `python benchmarks/fuzz_long.py [--minutes 30] [--examples 500] [--seed 1]
[-k EXPRESSION]`.

CI runs `tests/test_fuzz.py` derandomized with a few dozen examples per test (well
under a minute). This script runs the same Hypothesis tests with BNLINT_FUZZ_EXAMPLES
examples each and a new `--hypothesis-seed` per round, round after round until the
time is up, in a fresh pytest process each (a crash of one round does not end the
run). Every failing round's output is kept in the log folder with the seed that
reproduces it: `BNLINT_FUZZ_EXAMPLES=N pytest tests/test_fuzz.py
--hypothesis-seed=SEED -k TEST`. Exit status 1 when any round failed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The tests that feed generated or mutated input to the parser and to every command.
DEFAULT_SELECTION = "parser_on or cli_on"


def run_round(seed: int, examples: int, selection: str, log_dir: Path,
              timeout: float) -> tuple[bool, str]:
    env = dict(os.environ, BNLINT_FUZZ_EXAMPLES=str(examples))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"),
                                                    env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
            str(REPO / "tests" / "test_fuzz.py"), "-k", selection,
            f"--hypothesis-seed={seed}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO,
                              timeout=timeout)
        output, ok = done.stdout + done.stderr, done.returncode == 0
    except subprocess.TimeoutExpired as exc:
        output = f"round timed out after {timeout:.0f} s (a hang?)\n{exc.stdout or ''}"
        ok = False
    summary = (re.findall(r"^\d+ (?:passed|failed).*$", output, re.M) or ["no summary"])[-1]
    if not ok:
        path = log_dir / f"seed-{seed}.log"
        path.write_text(f"$ BNLINT_FUZZ_EXAMPLES={examples} {' '.join(argv[1:])}\n\n{output}")
        summary += f"  -> {path}"
    return ok, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30, help="how long to keep fuzzing")
    ap.add_argument("--examples", type=int, default=500,
                    help="Hypothesis examples per test and round")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100_000,
                    help="seed of the first round (then +1 per round)")
    ap.add_argument("-k", dest="selection", default=DEFAULT_SELECTION,
                    help="pytest -k expression choosing the fuzz tests")
    ap.add_argument("--logs", default=str(REPO / "fuzz-logs"),
                    help="folder for the output of failing rounds")
    ap.add_argument("--round-timeout", type=float, default=3600)
    args = ap.parse_args()
    log_dir = Path(args.logs)
    log_dir.mkdir(parents=True, exist_ok=True)
    end = time.monotonic() + args.minutes * 60
    seed, failures, rounds = args.seed, 0, 0
    print(f"fuzzing for {args.minutes:g} min, {args.examples} examples per test and round, "
          f"from seed {seed}; failing rounds go to {log_dir}", flush=True)
    while time.monotonic() < end:
        started = time.monotonic()
        ok, summary = run_round(seed, args.examples, args.selection, log_dir,
                                args.round_timeout)
        rounds += 1
        failures += not ok
        print(f"seed {seed}: {'ok  ' if ok else 'FAIL'} {summary} "
              f"({time.monotonic() - started:.0f} s)", flush=True)
        seed += 1
    print(f"{rounds} rounds, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
