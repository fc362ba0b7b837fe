"""Caffe's limits on one blob, checked before anything is allocated.

`Blob::Reshape` (blob.cpp) stops at more than `kMaxBlobAxes` axes and at an element
count over INT_MAX, and each dimension is an `int`. A shape past these limits is one
Caffe never runs, so bnlint refuses it up front, naming the layer and the blob,
instead of letting NumPy fail (or the memory run out) somewhere inside a run.

Pure Python: the linter, the caffemodel reader and the forward executor all use it.
"""

from __future__ import annotations

from typing import Sequence

from bnlint.errors import BnlintError, ShapeError

MAX_BLOB_AXES = 32            # kMaxBlobAxes, include/caffe/blob.hpp
MAX_BLOB_COUNT = 2**31 - 1    # INT_MAX: Blob::Reshape's "blob size exceeds INT_MAX"
MAX_DIM = 2**31 - 1           # a dimension is an int in Blob::shape_


def shape_problem(shape: Sequence[int]) -> str | None:
    """Why Caffe would refuse a blob of this shape, or None when it fits."""
    dims = list(shape)
    if len(dims) > MAX_BLOB_AXES:
        return (f"{len(dims)} axes; Caffe allows at most {MAX_BLOB_AXES} "
                f"(kMaxBlobAxes)")
    count = 1
    for d in dims:
        if d < 0:
            return f"negative dimension in shape {_shown(dims)}"
        if d > MAX_DIM:
            return (f"dimension {d} in shape {_shown(dims)} is over INT_MAX "
                    f"({MAX_DIM}), the largest Caffe allows")
        count *= d
        if count > MAX_BLOB_COUNT:
            return (f"shape {_shown(dims)} holds more than INT_MAX ({MAX_BLOB_COUNT:,}) "
                    f"elements, the most Caffe allows in one blob")
    return None


def check_blob_shape(shape: Sequence[int], layer: str | None, blob: str | int, *,
                     error: type[BnlintError] = ShapeError, path: str | None = None
                     ) -> tuple[int, ...]:
    """`shape` as a tuple, or `error` naming the layer and the blob when Caffe would
    refuse it. `blob` is a blob name, or the index of a learnable blob; `layer` None:
    a net-level input or a command-line shape."""
    problem = shape_problem(shape)
    if problem is None:
        return tuple(shape)
    what = f"blob {blob}" if isinstance(blob, int) else f"blob '{blob}'"
    where = f"layer '{layer}', {what}" if layer is not None else what
    raise error(f"{where}: {problem}", path=path)


def _shown(dims: list[int]) -> str:
    """The shape for a message, shortened when it is long."""
    if len(dims) <= 8:
        return str(dims)
    return "[" + ", ".join(str(d) for d in dims[:4]) + f", ... ({len(dims)} axes)]"
