"""`python -m bnlint` and the `bnlint` script.

The signals are set before anything heavy is imported: Ctrl-C or SIGTERM while click
and bnlint load, or at any later point, ends the run quietly with 130 or 143, and the
writers' cleanup (temporary files) runs as for any exception.

So is the thread policy, which must precede NumPy's import: one BLAS thread, and the
forward's big products split over bnlint's own threads (bnlint.forward.parallel), as
many as the cores free when the run starts; OpenBLAS's spinning threads collapse when
another process holds a core. A user's OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or
MKL_NUM_THREADS turns the policy off; a user's BNLINT_THREADS sets bnlint's threads.
"""

import gc
import os
import signal

_BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _thread_policy() -> None:
    if any(name in os.environ for name in _BLAS_VARIABLES):
        return                                  # the user chose BLAS's threads
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    os.environ.setdefault("BNLINT_THREADS", str(_free_cores()))


def _free_cores() -> int:
    """The cores this process may use minus those other runnable tasks hold right now
    (/proc/loadavg's running count includes this process), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        with open("/proc/loadavg") as loadavg:
            running = int(loadavg.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return cores
    return max(1, min(cores, cores - (running - 1)))


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
    _thread_policy()
    # One run's objects mostly live to its end: collecting every 700 allocations (the
    # default) walked them ~60 times in a check of SENet-154 for almost nothing freed.
    gc.set_threshold(50_000, 20, 20)
    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _quit)
    from bnlint.cli import main

    try:
        main()
    except SystemExit as exc:
        _exit(exc)


def _exit(exc: SystemExit) -> None:
    """End the process without Python's teardown, which frees every module and object
    one by one: ~10 ms after check's imports, ~25 ms with SENet-154's tree and
    message alive, where the OS frees it all at once. Only when everything printed
    has been flushed and no thread of ours is still working; otherwise (and for an
    exit with a message) the usual way out."""
    import sys

    code = exc.code
    if code is not None and not isinstance(code, int):
        raise exc
    threading = sys.modules.get("threading")    # no threads of ours when not imported
    if threading is not None and any(t.is_alive() and not t.daemon
                                     for t in threading.enumerate()
                                     if t is not threading.main_thread()):
        raise exc
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        raise exc from None     # Python reports it and sets the exit status as usual
    os._exit(code or 0)


if __name__ == "__main__":
    run()
