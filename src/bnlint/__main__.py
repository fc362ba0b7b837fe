"""`python -m bnlint` and the `bnlint` script.

The signals are set before anything heavy is imported: Ctrl-C or SIGTERM while click
and bnlint load, or at any later point, ends the run quietly with 130 or 143, and the
writers' cleanup (temporary files) runs as for any exception.
"""

import signal


def _quit(signum, frame) -> None:
    raise SystemExit(128 + signum)


def run() -> None:
    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _quit)
    from bnlint.cli import main

    main()


if __name__ == "__main__":
    run()
