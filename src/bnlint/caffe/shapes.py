"""Shape inference for Caffe layers, following BVLC Caffe's own `Reshape` code.

Pure Python on purpose (no NumPy): the linter imports this and must start fast. The
rules live in the layer table (`bnlint.caffe.layers`, one module per family) with
the geometry helpers the forward ops share, so a layer's output size has one
definition only.

`infer(layer, bottom_shapes)` takes a `caffe_pb2.LayerParameter` (only read through
attributes, so any message with BVLC's field names works) and the bottom shapes, and
returns a `LayerShapes`: the top shapes and the shapes of the learnable blobs the
layer implies, in Caffe's blob order.

Errors, all `ShapeError` and all naming the layer:
- `UnknownLayerTypeError`: no rule for the type (a fork layer, Python, a typo); a
  caller reports "unknown layer type" and stops inferring below that layer.
- `DataDependentShapeError`: a data layer whose shape comes from the dataset.
- plain `ShapeError`: shapes or parameters Caffe would reject (or would accept only
  to build an empty blob).
"""

from __future__ import annotations

from typing import Sequence

from bnlint.caffe.layers import TABLE
from bnlint.caffe.layers.base import (  # noqa: F401 - what callers of infer use
    DataDependentShapeError,
    LayerShapes,
    Shape,
    UnknownLayerTypeError,
    canonical_axis,
    count,
    enum_name,
)
from bnlint.caffe.limits import check_blob_shape
from bnlint.errors import ShapeError


def known_types() -> list[str]:
    """The layer types with a shape rule."""
    return sorted(name for name, entry in TABLE.items() if entry.shape is not None)


def infer(layer, bottom_shapes: Sequence[Sequence[int]]) -> LayerShapes:
    """Top and parameter shapes of `layer` fed with `bottom_shapes`.

    Raises UnknownLayerTypeError for a type without a rule, DataDependentShapeError
    for a data layer whose shape the prototxt does not fix, ShapeError otherwise.
    """
    entry = TABLE.get(layer.type)
    rule = entry.shape if entry is not None else None
    if rule is None:
        raise UnknownLayerTypeError(
            f"layer '{layer.name}': unknown layer type '{layer.type}'")
    bottoms = [tuple(int(d) for d in shape) for shape in bottom_shapes]
    try:
        result = rule(layer, bottoms)
        if len(layer.top) and len(layer.top) != len(result.tops):
            raise ShapeError(f"declares {len(layer.top)} tops; with these bottoms a "
                             f"{layer.type} layer makes {len(result.tops)}")
        for index, top in enumerate(result.tops):
            check_blob_shape(top, layer.name, layer.top[index] if len(layer.top) else index)
        for index, param in enumerate(result.params):
            check_blob_shape(param, layer.name, index)
        return result
    except ShapeError as err:
        if f"layer '{layer.name}'" in err.message:
            raise
        raise type(err)(f"layer '{layer.name}' ({layer.type}): {err.message}") from err
