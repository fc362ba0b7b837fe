"""Layer converters, registered by Caffe type name with a decorator (as forward ops are).

A converter is a function of one `LayerNodes` (the layer, its forward op with the
parameters already read and checked, its blobs and bottom/top shapes, and the node
factory) that emits the ONNX nodes computing exactly what the forward op computes.
A layer with no faithful ONNX form raises `ExportRefused` through `LayerNodes.refuse`.
"""

from __future__ import annotations

from typing import Callable

from bnlint.errors import BnlintError

Converter = Callable[["LayerNodes"], None]  # noqa: F821  (builder.LayerNodes)

CONVERTERS: dict[str, Converter] = {}


class ExportRefused(BnlintError):
    """A layer (or net) that ONNX cannot express faithfully: bad input, exit 2."""


def register_converter(*type_names: str) -> Callable[[Converter], Converter]:
    def deco(fn: Converter) -> Converter:
        for name in type_names:
            if name in CONVERTERS:
                raise RuntimeError(f"converter {name!r} registered twice")
            CONVERTERS[name] = fn
        return fn
    return deco
