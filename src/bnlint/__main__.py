"""`python -m bnlint` and the `bnlint` script.

The signals are set before anything heavy is imported: Ctrl-C or SIGTERM while click
and bnlint load, or at any later point, ends the run quietly with 130 or 143, and the
writers' cleanup (temporary files) runs as for any exception.
"""

import signal


def _quit(signum, frame) -> None:
    # The exit is an exception so that the writers' cleanup runs. Code in C extensions
    # can clear it unseen (a signal landing while protobuf's upb calls back into Python
    # was seen to leave the run blocked on a FIFO), so a daemon timer ends the process
    # anyway if it is still running shortly after.
    import os
    import threading

    timer = threading.Timer(2.0, os._exit, args=(128 + signum,))
    timer.daemon = True
    timer.start()
    raise SystemExit(128 + signum)


def run() -> None:
    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _quit)
    from bnlint.cli import main

    main()


if __name__ == "__main__":
    run()
