"""Shape inference over a whole graph: the per-layer rules of `shapes`, in file order.

Where a shape cannot be known (a data layer reading a dataset, a fork layer) the
layers below it get None instead of a guess; a ShapeError is recorded per layer
and inference goes on for the rest of the net.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bnlint.caffe import shapes as shape_rules
from bnlint.caffe.net import LayerView, NetGraph
from bnlint.errors import ShapeError

Shape = tuple[int, ...]


@dataclass
class GraphShapes:
    """The shapes inferred over one NetGraph, and why inference stopped where it did."""

    tops: dict[int, list[Shape | None]] = field(default_factory=dict)
    params: dict[int, list[Shape]] = field(default_factory=dict)
    errors: list[tuple[LayerView, ShapeError]] = field(default_factory=list)
    unknown_types: list[LayerView] = field(default_factory=list)


def infer_graph_shapes(graph: NetGraph, input_shapes: dict[str, Shape] | None = None,
                       unknown: frozenset[int] = frozenset()) -> GraphShapes:
    """Shapes under one state. `input_shapes` overrides data/Input layer tops by blob name;
    layers whose index is in `unknown` (their text did not fit the schema) give unknown
    tops, so nothing below them is judged on values that were dropped."""
    given = dict(input_shapes or {})
    out = GraphShapes()
    blob_shape: dict[int, Shape | None] = {}
    for blob in graph.inputs:
        blob_shape[id(blob)] = given.get(blob.name, blob.shape)
    for lv in graph.layers:
        bottoms = graph.bottoms[lv.index]
        tops = graph.tops[lv.index]
        bshapes = [blob_shape.get(id(b)) if b is not None else None for b in bottoms]
        result: list[Shape | None] = [None] * len(tops)
        overridden = [given.get(t.name) for t in tops]
        if lv.bottoms == [] and any(s is not None for s in overridden):
            result = overridden
        elif lv.index in unknown:
            pass
        elif all(s is not None for s in bshapes):
            try:
                inferred = shape_rules.infer(lv.message, bshapes)
            except shape_rules.UnknownLayerTypeError:
                out.unknown_types.append(lv)
            except shape_rules.DataDependentShapeError:
                pass
            except ShapeError as err:
                out.errors.append((lv, err))
            else:
                result = list(inferred.tops) + [None] * (len(tops) - len(inferred.tops))
                out.params[lv.index] = list(inferred.params)
        for blob, shape in zip(tops, result):
            blob.shape = shape
            blob_shape[id(blob)] = shape
        out.tops[lv.index] = result
    return out
