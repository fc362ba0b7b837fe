"""A net's layers with their shapes, parameter counts and MACs: what `bnlint info` shows.

Computed once, outside the CLI, so that the table and `--format json` say the same.
Descriptive, so it does not stop at the first problem: where a shape cannot be known
(a data layer without an input shape, a type without a shape rule) it stays None, a
note says why, and the totals say they are partial. MACs are counted at batch 1
unless an input shape is given (a file declaring batch 10 would otherwise read ten
times the cost of one image). Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from bnlint.caffe.net import NetGraph, NetState, net_view
from bnlint.caffe.shapes import Shape


@dataclass
class LayerSummary:
    position: int                       # among the layers active in the state
    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    top_shapes: list[Shape | None]
    param_shapes: list[Shape]
    param_count: int
    macs: int
    #: its shapes or parameters are unknown, so the totals leave it out
    unknown: bool = False


@dataclass
class NetSummary:
    state: NetState
    layers: list[LayerSummary]
    #: MACs are at batch 1 (no input shape given), not at the net's own batch
    batch_one: bool
    notes: list[str] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(layer.param_count for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def partial_layers(self) -> list[str]:
        """Layers the totals leave out: the totals are lower bounds when there are any."""
        return [layer.name for layer in self.layers if layer.unknown]


def source_blob_names(graph: NetGraph) -> list[str]:
    """The blobs an input shape can be given for: net inputs and bottomless layers' tops."""
    return [b.name for b in graph.inputs] + [
        name for lv in graph.layers if not lv.bottoms for name in lv.tops]


def summarise(text, state: NetState, input_shapes: Mapping[str, Sequence[int]],
              check_names: Callable[[list[str], Mapping], None] | None = None) -> NetSummary:
    """The summary of a parsed net (`caffe.load.parse_text`) under `state`.

    `check_names(source_names, input_shapes)`, when given, is called before shapes
    are inferred (the CLI refuses an input shape for a blob the net does not have).
    """
    from bnlint.caffe.infer import infer_graph_shapes
    from bnlint.caffe.inputs import with_inferred_inputs
    from bnlint.caffe.known import PARAMETRIC_LAYER_TYPES
    from bnlint.caffe.shapes import count

    input_shapes = dict(input_shapes)
    notes: list[str] = []
    if text.problems:
        first = text.problems[0]
        line, col = text.source.line_col(first.start)
        notes.append(f"{text.path}:{line}:{col}: {first.message} ({len(text.problems)} "
                     f"schema problems; shapes assume BVLC Caffe's schema)")
    view = net_view(text)
    graph = NetGraph(view, state)
    notes += [problem.message for problem in graph.problems]
    if check_names is not None:
        check_names(source_blob_names(graph), input_shapes)
    macs_at, mac_notes = _macs_at_batch_one(graph, view, input_shapes)
    notes += mac_notes
    inferred = infer_graph_shapes(graph, with_inferred_inputs(view, graph.state, input_shapes))
    no_rule = {lv.index for lv in inferred.unknown_types}
    layers = []
    for position, lv in enumerate(graph.layers):
        params = inferred.params.get(lv.index, [])
        unknown = lv.index in no_rule or (
            lv.type in PARAMETRIC_LAYER_TYPES and lv.index not in inferred.params)
        layers.append(LayerSummary(
            position, lv.name, lv.type, list(lv.bottoms), list(lv.tops),
            list(inferred.tops.get(lv.index, [])), list(params),
            sum(count(shape) for shape in params), macs_at.get(lv.index, 0), unknown))
    notes += [err.message for lv, err in inferred.errors]
    notes += [f"layer '{lv.name}': type '{lv.type}' has no shape rule; the shapes below it "
              f"are unknown" for lv in inferred.unknown_types]
    data_tops = [b.name for lv in graph.layers if not lv.bottoms
                 for b in graph.tops[lv.index] if b.shape is None and b.consumers]
    if data_tops:
        notes.append(f"shapes of {', '.join(data_tops)} come from a dataset; pass "
                     f"--input-shape {data_tops[0]}=N,C,H,W to see the rest")
    return NetSummary(graph.state, layers, not input_shapes, notes)


def _macs_at_batch_one(graph: NetGraph, view, input_shapes: dict
                       ) -> tuple[dict[int, int], list[str]]:
    """{layer index: MACs} with every input's batch set to 1 unless an input shape
    gives it, and the notes of layers whose count failed."""
    from bnlint.caffe import cost
    from bnlint.caffe.infer import infer_graph_shapes
    from bnlint.caffe.inputs import find_inputs
    from bnlint.caffe.shapes import LayerShapes
    from bnlint.errors import ShapeError

    shapes = {blob.name: blob.shape for blob in find_inputs(view, graph.state, input_shapes, 1)
              if blob.shape is not None}
    inferred = infer_graph_shapes(graph, {**shapes, **input_shapes})
    result: dict[int, int] = {}
    notes: list[str] = []
    for lv in graph.layers:
        bottom_shapes = [b.shape if b is not None else None for b in graph.bottoms[lv.index]]
        if lv.index not in inferred.params or any(s is None for s in bottom_shapes):
            continue
        try:
            result[lv.index] = cost.macs(lv.message, bottom_shapes, LayerShapes(
                list(inferred.tops.get(lv.index, [])), inferred.params[lv.index]))
        except ShapeError as err:
            notes.append(err.message)
    return result, notes
