"""Matrix products split over bnlint's own threads, with one BLAS thread each.

OpenBLAS's threads spin while they wait for each other: when another process holds a
core, a 2-thread product waits for a descheduled spinner and runs several times slower
than with one thread (ResNet-50 628 ms against 138 ms measured). Python threads that
each run a one-thread BLAS call on a slice of the rows (NumPy drops the GIL inside
matmul) have nothing to spin on: on a busy machine they share the free cores with the
other processes, on an idle one they use them all.

The `bnlint` command sets OPENBLAS_NUM_THREADS=1 and BNLINT_THREADS to the cores it may
run on before NumPy is imported (see bnlint.__main__), unless the user set either;
as a library bnlint leaves NumPy's threads alone and splits nothing (BNLINT_THREADS
unset means 1).
"""

from __future__ import annotations

import os
import threading

import numpy as np

# Below this many multiply-adds a product is done in the calling thread: one BLAS
# thread does ~65 G multiply-adds a second here, so handing a piece to another thread
# (tens of microseconds, and the caches of another core) pays only for big products:
# measured on 2 cores, a 103 M product 1.54 -> 1.04 ms split, 51 M 0.65 -> 0.55, 29 M
# even, 26 M 0.36 -> 0.46 ms (slower). A product is cut into pieces of at least
# MIN_PIECE_MACS, up to PIECES_PER_THREAD per thread. With the earlier 2 M / 0.5 M / 4
# a forward of DenseNet-121 took 126 ms against 118 ms unsplit; now 106-112 ms.
MIN_SPLIT_MACS = 1 << 25
MIN_PIECE_MACS = 1 << 22
PIECES_PER_THREAD = 2

_pool = None


def threads() -> int:
    try:
        return max(1, int(os.environ.get("BNLINT_THREADS", "1")))
    except ValueError:
        return 1


_THREADS = threads()


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`np.matmul(a, b, out=out)`, big products cut along the longer of rows and columns.

    The calling thread and the helpers take pieces from one queue until none is left,
    so a helper that the system does not schedule (another process holds its core)
    delays nothing but the one piece it may have taken: the caller does the rest.
    """
    rows, depth, cols = a.shape[-2], a.shape[-1], b.shape[-1]
    count = _THREADS
    macs = out.size * depth
    if count < 2 or macs < MIN_SPLIT_MACS:
        return np.matmul(a, b, out=out)
    pieces = max(2, min(PIECES_PER_THREAD * count, macs // MIN_PIECE_MACS))
    jobs = []
    if rows >= cols:
        for first, last in _chunks(rows, pieces):
            jobs.append((a[..., first:last, :], b, out[..., first:last, :]))
    else:
        for first, last in _chunks(cols, pieces):
            jobs.append((a, b[..., first:last], out[..., first:last]))
    work = _SharedPieces(jobs)
    helpers = min(count - 1, len(jobs) - 1)
    pool = _threads_pool()
    pool.ensure(helpers)
    for _ in range(helpers):
        pool.submit(work.drain)
    work.drain()
    work.finished.wait()
    if work.error is not None:
        raise work.error
    return out


class _SharedPieces:
    """Products to do, taken one at a time by whichever thread is free."""

    def __init__(self, jobs: list) -> None:
        self.jobs = jobs
        self.taken = self.done = 0
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.finished = threading.Event()

    def drain(self) -> None:
        while True:
            with self.lock:
                if self.taken >= len(self.jobs) or self.error is not None:
                    return
                a, b, out = self.jobs[self.taken]
                self.taken += 1
            try:
                np.matmul(a, b, out=out)
            except BaseException as err:        # MemoryError: the caller raises it
                with self.lock:
                    self.error = self.error or err
                self.finished.set()
                return
            with self.lock:
                self.done += 1
                if self.done == len(self.jobs):
                    self.finished.set()


def _chunks(size: int, count: int) -> list[tuple[int, int]]:
    count = min(count, size)
    bounds = [size * i // count for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(count) if bounds[i] < bounds[i + 1]]


def _threads_pool() -> "_Workers":
    global _pool
    if _pool is None:
        _pool = _Workers()
    return _pool


class _Workers:
    """Daemon threads that run what is submitted, started as the products need them
    (never more than a product has pieces, whatever BNLINT_THREADS says). Daemon,
    unlike ThreadPoolExecutor's: an idle helper must not keep the process from its
    quick exit (bnlint.__main__ skips Python's teardown only when no non-daemon thread
    is alive; that teardown cost a forward process 30-50 ms), and `matmul` waits for
    every piece itself."""

    def __init__(self) -> None:
        import queue

        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.started = 0

    def ensure(self, count: int) -> None:
        while self.started < count:
            threading.Thread(target=self._serve, name=f"bnlint-matmul-{self.started}",
                             daemon=True).start()
            self.started += 1

    def submit(self, fn) -> None:
        self.tasks.put(fn)

    def _serve(self) -> None:
        while True:
            self.tasks.get()()
