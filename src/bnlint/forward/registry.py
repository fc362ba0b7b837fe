"""Layer ops, registered by Caffe type name with a decorator.

An op is built once per layer (parameters read from the LayerParameter message and
its blobs), then run on float32 bottoms. `run` checks arity and puts the layer's
name and type into every error; `_forward` is the pure maths.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, ClassVar, Sequence

from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError, ForwardError

if TYPE_CHECKING:
    import numpy as np

OPS: dict[str, type["Op"]] = {}


def out_of_memory(err: BaseException) -> str:
    """What to say when an array of a layer does not fit (NumPy's text names no layer
    and, for its own size limit, speaks of `arr.size * arr.dtype.itemsize`)."""
    import re

    size = re.search(r"allocate ([\d.]+ [KMGTPE]?i?B)", str(err))
    need = f" ({size.group(1)} at once)" if size else ""
    return (f"out of memory: an array this layer's forward needs does not fit in memory"
            f"{need}")


class NumericWarning(RuntimeWarning):
    """inf or NaN made by a layer's maths: shown to the user as a note naming the layer."""


def register_op(*type_names: str) -> Callable[[type["Op"]], type["Op"]]:
    def deco(cls: type["Op"]) -> type["Op"]:
        for name in type_names:
            if name in OPS:
                raise RuntimeError(f"op {name!r} registered twice")
            OPS[name] = cls
        cls.type_names = type_names
        return cls
    return deco


class Op(ABC):
    type_names: ClassVar[tuple[str, ...]] = ()
    #: (min, max) number of bottoms; max None = unbounded
    bottoms: ClassVar[tuple[int, int | None]] = (1, 1)

    def __init__(self, layer, blobs: Sequence["np.ndarray"], phase: Phase) -> None:
        self.layer = layer
        self.name = layer.name
        self.type = layer.type
        self.blobs = list(blobs)
        self.phase = phase
        with self._numeric_notes():
            self.setup(layer)

    def setup(self, layer) -> None:
        """Read the layer's parameters once (override)."""

    def run(self, bottoms: Sequence["np.ndarray"]) -> list["np.ndarray"]:
        lo, hi = self.bottoms
        if len(bottoms) < lo or (hi is not None and len(bottoms) > hi):
            want = str(lo) if hi == lo else f"{lo}..{'' if hi is None else hi}"
            raise ForwardError(f"layer '{self.name}' ({self.type}): takes {want} bottoms, "
                               f"got {len(bottoms)}")
        try:
            with self._numeric_notes():
                return self._forward(list(bottoms))
        except BnlintError as err:
            if f"layer '{self.name}'" in err.message:
                raise
            raise ForwardError(f"layer '{self.name}' ({self.type}): {err.message}") from err
        except MemoryError as err:
            raise ForwardError(f"layer '{self.name}' ({self.type}): {out_of_memory(err)}") \
                from None
        except (ValueError, IndexError) as err:
            if "array is too big" in str(err):       # NumPy's own size limit
                raise ForwardError(f"layer '{self.name}' ({self.type}): "
                                   f"{out_of_memory(err)}") from None
            raise ForwardError(f"layer '{self.name}' ({self.type}): {err}") from err

    def _numeric_notes(self):
        """NumPy's floating-point warnings (overflow, invalid value, division by zero)
        raised as `NumericWarning`s naming this layer, not as warnings about bnlint's
        source lines. Caffe computes on and gets inf or NaN; so does bnlint, and says so."""
        import numpy as np

        return np.errstate(over="call", invalid="call", divide="call", under="ignore",
                           call=self._note)

    def _note(self, kind: str, flag: int) -> None:
        import warnings

        what = kind if kind != "invalid value" else "an invalid operation (NaN)"
        warnings.warn(f"layer '{self.name}' ({self.type}): {what} in the float32 maths; "
                      f"its outputs may hold inf or NaN, as they would in Caffe",
                      NumericWarning, stacklevel=2)

    @abstractmethod
    def _forward(self, bottoms: list["np.ndarray"]) -> list["np.ndarray"]:
        """The maths: float32 bottoms in, float32 tops out."""


def op_for(layer, blobs, phase: Phase) -> Op:
    cls = OPS.get(layer.type)
    if cls is None:
        raise ForwardError(f"layer '{layer.name}': type '{layer.type}' is not supported by "
                           f"bnlint's forward (supported: {', '.join(sorted(OPS))})")
    return cls(layer, blobs, phase)
