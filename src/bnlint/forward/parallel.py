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

import numpy as np

# Below this many multiply-adds a product is done in the calling thread: handing it to
# another thread costs tens of microseconds.
MIN_SPLIT_MACS = 1 << 21

_pool = None


def threads() -> int:
    try:
        return max(1, int(os.environ.get("BNLINT_THREADS", "1")))
    except ValueError:
        return 1


_THREADS = threads()


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`np.matmul(a, b, out=out)`, big products split over the longer of rows and columns."""
    rows, depth, cols = a.shape[-2], a.shape[-1], b.shape[-1]
    count = _THREADS
    if count < 2 or out.size * depth < MIN_SPLIT_MACS:
        return np.matmul(a, b, out=out)
    jobs = []
    if rows >= cols:
        for first, last in _chunks(rows, count):
            jobs.append((a[..., first:last, :], b, out[..., first:last, :]))
    else:
        for first, last in _chunks(cols, count):
            jobs.append((a, b[..., first:last], out[..., first:last]))
    pool = _threads_pool(count - 1)
    pending = [pool.submit(_product, *job) for job in jobs[1:]]
    _product(*jobs[0])
    for job in pending:
        job.result()
    return out


def _product(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    np.matmul(a, b, out=out)


def _chunks(size: int, count: int) -> list[tuple[int, int]]:
    bounds = [size * i // count for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(count) if bounds[i] < bounds[i + 1]]


def _threads_pool(workers: int):
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bnlint-matmul")
    return _pool
