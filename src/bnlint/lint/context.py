"""Everything a rule may look at, built once per file and computed lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from bnlint.caffe.net import LayerView, NetGraph, NetState, NetView, layer_included

if TYPE_CHECKING:
    from bnlint.caffe.dialects import Dialect
    from bnlint.caffe.load import TextFile
    from bnlint.lint.config import LintConfig
    from bnlint.source import SourceFile


@dataclass
class LintContext:
    """Everything the rules see of one file; derived facts are computed once, on first use."""

    source: "SourceFile"
    text_file: "TextFile"
    view: NetView
    config: "LintConfig"
    weights: dict | None = None          # layer name -> list of blob shapes/arrays info
    notes: dict = field(default_factory=dict)

    @property
    def dialect(self) -> str:
        """The name of the dialect the file is read in: the configured one, or under
        "auto" the detected fork, or "portable" when the net has no fork fields."""
        return self.dialect_info.name

    @cached_property
    def dialect_info(self) -> "Dialect":
        """The Dialect the rules follow: schema, BatchNorm masking, pooling rounding,
        layer types. A fork detected on weak evidence (one incidental field) lends
        its schema only: the rules stay those of `portable`."""
        from dataclasses import replace

        from bnlint.caffe.dialects import PORTABLE, get_dialect

        dialect = self.text_file.dialect
        if dialect is None:
            choice = self.config.dialect
            return PORTABLE if choice == "auto" else get_dialect(choice)
        detection = self.text_file.detection
        if detection is not None and detection.detected and not detection.strong:
            return replace(dialect, bn_stats_masked=PORTABLE.bn_stats_masked,
                           bn_eps_floor=PORTABLE.bn_eps_floor, fork=None)
        return dialect

    @cached_property
    def locator(self):
        from bnlint.syntax.edits import Locator

        return Locator(self.text_file.tree)

    @cached_property
    def states(self) -> list[NetState]:
        return self.view.states()

    @cached_property
    def graphs(self) -> list[NetGraph]:
        """One graph per state; states that select the same layers share the wiring."""
        import copy

        built: dict[tuple[int, ...], NetGraph] = {}
        out = []
        for state in self.states:
            key = tuple(lv.index for lv in self.view.layers if layer_included(lv, state))
            if key in built:
                graph = copy.copy(built[key])
                graph.state = state
            else:
                graph = built[key] = NetGraph(self.view, state)
            out.append(graph)
        return out

    @cached_property
    def _active(self) -> dict[int, tuple[list[NetState], list[NetGraph]]]:
        """Per layer index: the states it is active in, and their graphs (asked often)."""
        active: dict[int, tuple[list[NetState], list[NetGraph]]] = {
            lv.index: ([], []) for lv in self.view.layers}
        for graph in self.graphs:
            for lv in graph.layers:
                states, graphs = active[lv.index]
                states.append(graph.state)
                graphs.append(graph)
        return active

    def states_of(self, layer: LayerView) -> list[NetState]:
        return self._active[layer.index][0]

    def graphs_of(self, layer: LayerView) -> list[NetGraph]:
        return self._active[layer.index][1]

    @cached_property
    def is_deploy(self) -> bool:
        """A deploy net: no data layers, no losses, no phase rules (Caffe's convention)."""
        from bnlint.caffe.net import is_data_layer, is_loss_layer

        return (not any(is_data_layer(lv) or is_loss_layer(lv) for lv in self.view.layers)
                and not self.view.has_phase_rules())

    def graph_shapes(self, graph: NetGraph):
        """Shape inference of a graph (GraphShapes), once per distinct wiring."""
        key = ("shapes", id(graph.bottoms))
        if key not in self.notes:
            from bnlint.caffe.infer import infer_graph_shapes

            starts = [p.start for p in self.text_file.problems]
            broken = frozenset(lv.index for lv in self.view.layers
                               if any(lv.node.start <= s < lv.node.end for s in starts))
            self.notes[key] = infer_graph_shapes(graph, unknown=broken)
        return self.notes[key]
