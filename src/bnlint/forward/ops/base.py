"""What the ops share: error prefixes, in-place hand-over, float32 maths and padding.

`Op` itself and its registry are in `bnlint.forward.registry`; this module holds the
helpers several op modules use, so no op module imports another.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Sequence

import numpy as np

from bnlint.errors import ForwardError

if TYPE_CHECKING:
    from bnlint.forward.registry import Op


def via_double(ufunc: np.ufunc, x: np.ndarray, *args) -> np.ndarray:
    """ufunc(x, *args) evaluated in float64 and rounded once to float32.

    Caffe calls glibc's float expf/logf/powf (or the double versions), which are
    correctly rounded; NumPy's float32 exp/log/power are SIMD approximations (SVML on
    AVX-512) that miss by an ulp or two, differently per CPU. Double then one rounding
    reproduces glibc's float32 answers (golden Caffe outputs match bit for bit).
    Overflow and NaN are results here, as in Caffe, so NumPy's warnings are silenced.
    """
    wide = x.astype(np.float64)
    with np.errstate(all="ignore"):
        ufunc(wide, *args, out=wide)
        return wide.astype(np.float32)


_OVERWRITABLE: ContextVar[tuple[np.ndarray, ...]] = ContextVar("bnlint_overwritable",
                                                              default=())


class overwriting:  # noqa: N801  (used as a function-like context manager)
    """`with overwriting(arrays):` ops run inside may write their results into these
    arrays (their owner gave them up).

    A context variable rather than an argument, so `Op.run` keeps its signature and an
    op run any other way (or in another thread) never overwrites its bottoms. A class,
    not @contextmanager, as it is entered once per layer.
    """

    __slots__ = ("_arrays", "_token")

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self._arrays = tuple(arrays)

    def __enter__(self) -> None:
        self._token = _OVERWRITABLE.set(self._arrays)

    def __exit__(self, *exc) -> None:
        _OVERWRITABLE.reset(self._token)


def may_overwrite(x: np.ndarray) -> bool:
    """Whether bottom `x` was handed over (see `overwriting`) and can take a float32 result."""
    return (any(x is given for given in _OVERWRITABLE.get())
            and x.dtype == np.float32 and x.flags.writeable)


def result_like(x: np.ndarray) -> np.ndarray:
    """Where an element-wise op writes its result: `x` itself when it was handed over."""
    return x if may_overwrite(x) else np.empty_like(x, dtype=np.float32)


#: Shortest row (values per broadcast operand value) that `unbuffered_rows` runs in place
#: (measured: rows of 196 go 1.3x faster unbuffered, rows of 144 1.1x slower).
UNBUFFERED_MIN_ROW = 160


class unbuffered_rows:  # noqa: N801  (used as a function-like context manager)
    """`with unbuffered_rows(length):` around ufuncs that broadcast one operand value over
    each row of `length` values (a per-channel operand over an image).

    NumPy copies such rows into its 8192-value ufunc buffers, which costs 2-3x the
    arithmetic for rows of a few hundred to a few thousand values; with a 16-value
    buffer it runs each row in place. Rows shorter than UNBUFFERED_MIN_ROW are faster
    buffered, so they are left alone. np.errstate scopes the buffer size (a context
    variable): nothing outside the block, or in another thread, sees it.
    """

    __slots__ = ("_state",)

    def __init__(self, length: int) -> None:
        self._state = np.errstate() if length >= UNBUFFERED_MIN_ROW else None

    def __enter__(self) -> None:
        if self._state is not None:
            self._state.__enter__()
            np.setbufsize(16)

    def __exit__(self, *exc) -> None:
        if self._state is not None:
            self._state.__exit__(*exc)


def row_length(operand: np.ndarray, shape: tuple[int, ...]) -> int:
    """Values per row when `operand` broadcasts over `shape`: the trailing axes it spans
    with size 1."""
    row = 1
    for size, own in zip(reversed(shape), reversed(operand.shape)):
        if own != 1:
            break
        row *= size
    return row


class FreshTops:
    """Mixin for an op whose tops are always new arrays, or its bottoms (or views of them):
    never a blob or an array it keeps between runs. Only such tops can be handed over
    to the ops that read them last, since nothing else holds them."""

    fresh_tops = True


def layer_error(op: Op, message: str) -> ForwardError:
    """An error raised while an op reads its layer (outside `run`, which adds the same prefix)."""
    return ForwardError(f"layer '{op.name}' ({op.type}): {message}")


def caffe_blob(blobs: Sequence[np.ndarray], index: int, expected: tuple[int, ...],
               what: str) -> np.ndarray:
    """Parameter blob `index` as float32 of shape `expected`.

    Accepts the legacy 4-D form Caffe itself accepts when it loads weights
    (Blob::ShapeEquals): `expected` padded on the left with 1s to four axes.
    """
    if index >= len(blobs):
        raise ForwardError(f"missing {what} blob (blob {index}); expected shape {expected}")
    blob = np.asarray(blobs[index], dtype=np.float32)
    legacy = (1,) * (4 - len(expected)) + tuple(expected)
    if blob.shape != tuple(expected) and not (blob.ndim == 4 and blob.shape == legacy):
        raise ForwardError(f"{what} blob has shape {blob.shape}, expected {expected}")
    return blob.reshape(expected)


def pad_spatial(x: np.ndarray, pad: Sequence[int], fill: float = 0.0,
                total: Sequence[int] | None = None, *, scratch: bool = False) -> np.ndarray:
    """(N, C, *spatial) with `pad` before each spatial axis, filled to `total` after.

    `total` defaults to symmetric padding. Returns `x` itself when nothing is added.
    With `scratch`, the result is a float32 buffer this thread reuses for the next
    padding (read it before padding again): only its border is filled, and no fresh
    allocation is made.
    """
    spatial = x.shape[2:]
    if total is None:
        total = tuple(size + 2 * p for size, p in zip(spatial, pad))
    if not any(pad) and tuple(total) == tuple(spatial):
        return x
    shape = x.shape[:2] + tuple(total)
    out = scratch_buffer("padded", shape) if scratch else np.empty(shape, dtype=x.dtype)
    _pad_into(x, pad, out, fill)
    return out


_scratch = threading.local()


def scratch_buffer(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 work buffer reused across calls (one per name and thread).

    Reusing it saves the page faults of a fresh multi-megabyte allocation per layer,
    which otherwise cost about a third of a small convolution.
    """
    size = 1
    for dim in shape:
        size *= dim
    buffer = getattr(_scratch, name, None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, dtype=np.float32)
        setattr(_scratch, name, buffer)
    return buffer[:size].reshape(shape)


def _pad_into(x: np.ndarray, pad: Sequence[int], out: np.ndarray, fill: float = 0.0) -> None:
    """Copy x into `out` at offset `pad` along each spatial axis and fill the rest."""
    spatial = x.shape[2:]
    for axis, (p, size) in enumerate(zip(pad, spatial), start=2):
        border = [slice(None)] * out.ndim
        if p:
            border[axis] = slice(0, p)
            out[tuple(border)] = fill
        if out.shape[axis] > p + size:
            border[axis] = slice(p + size, None)
            out[tuple(border)] = fill
    inner = tuple(slice(p, p + size) for p, size in zip(pad, spatial))
    out[(slice(None), slice(None)) + inner] = x
