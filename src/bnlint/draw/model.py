"""What a picture of a net shows, before any geometry: blocks, edges, findings.

The net is the one Caffe's FilterNet keeps for one state (phase and stages). An
in-place chain (Convolution -> BatchNorm -> Scale -> ReLU written over one blob) is one
block listing its members, as a person reads it; every other layer is a block of its
own. Edges carry the blob's name and its inferred shape. Findings come from the same
lint run as `bnlint check` (the file's config applies) and are attached to the layer
whose text holds them.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field

from bnlint.caffe.net import LayerView, NetGraph, NetState, NetView

Shape = tuple[int, ...]


@dataclass
class Finding:
    code: str
    severity: str            # "error" | "warning" | "info"
    message: str
    line: int
    col: int
    layer: str | None        # the layer it is on (None: the net as a whole)
    phases: tuple[str, ...] = ()
    offset: int = 0          # where in the file (to find its layer)


@dataclass
class Member:
    """One layer of the drawn net (or a net-level `input:` blob, kind "input")."""

    name: str
    type: str
    family: str
    kind: str = "layer"
    doc: str = ""                                    # the layer table's line on the type
    text: str = ""                                   # the layer as written
    line: int = 0
    bottoms: list[tuple[str, Shape | None]] = field(default_factory=list)
    tops: list[tuple[str, Shape | None]] = field(default_factory=list)
    params: int = 0
    macs: int = 0
    findings: list[Finding] = field(default_factory=list)
    status: str = ""                                 # --diff: added | changed | removed
    changes: list[str] = field(default_factory=list)
    message: object = field(default=None, repr=False, compare=False)  # LayerParameter

    @property
    def severity(self) -> str:
        """The worst severity of its findings ("" when it has none)."""
        order = {"info": 0, "warning": 1, "error": 2}
        worst = max((order[f.severity] for f in self.findings), default=-1)
        return {v: k for k, v in order.items()}.get(worst, "")


@dataclass
class Block:
    index: int
    members: list[Member]

    @property
    def family(self) -> str:
        return self.members[0].family


@dataclass
class Edge:
    src: int                 # block index
    dst: int
    blob: str
    shape: Shape | None


@dataclass
class Picture:
    title: str
    path: str
    state: str
    blocks: list[Block]
    edges: list[Edge]
    findings: list[Finding]                          # every finding of the file
    rules: dict[str, str]                            # code -> `bnlint rules CODE` text
    hidden: list[str] = field(default_factory=list)  # layers outside the drawn state
    removed: list[Member] = field(default_factory=list)  # --diff: in A, not in B
    subtitle: str = ""

    def members(self) -> list[Member]:
        return [m for b in self.blocks for m in b.members]


def family(layer: LayerView) -> str:
    """The drawing family of a layer, from the layer table (a Python layer without
    bottoms reads data, as py-faster-rcnn's input layer does)."""
    from bnlint.caffe.layers import family_of
    from bnlint.caffe.net import is_data_layer

    return "data" if is_data_layer(layer) else family_of(layer.type)


def default_state(view: NetView, phase: str | None, stages: tuple[str, ...]) -> NetState:
    """The state to draw: the one asked for, else the first one `check` looks at."""
    from bnlint.caffe.phase import Phase

    if phase is not None:
        return NetState(Phase.parse(phase), tuple(stages))
    states = view.states()
    first = states[0] if states else NetState()
    return NetState(first.phase, tuple(stages) if stages else first.stages)


def build_picture(text_file, state: NetState, findings: list[Finding],
                  input_shapes: dict[str, Shape] | None = None) -> Picture:
    """The picture of `text_file` under `state`, with `findings` attached to layers."""
    from bnlint.caffe.inputs import with_inferred_inputs
    from bnlint.caffe.net import net_view

    view = net_view(text_file)
    graph = NetGraph(view, state)
    shapes = with_inferred_inputs(view, state, input_shapes or {})
    members, blocks, block_of = _blocks(view, graph, text_file, shapes)
    _attach_findings(view, members, findings,
                     {b.members[0].name: b.members[0] for b in blocks
                      if b.members[0].kind == "input"})
    edges = _edges(graph, block_of)
    shown = {lv.index for lv in graph.layers}
    hidden = [lv.name for lv in view.layers if lv.index not in shown]
    from bnlint.lint.registry import all_rules

    rules = all_rules()
    docs = {f.code: reflow(rules[f.code].documentation()) for f in findings if f.code in rules}
    name = view.name or os.path.basename(text_file.path) or text_file.path
    where = f"phase {state.phase.name}"
    where += f", stages: {', '.join(state.stages)}" if state.stages else ", no stage"
    return Picture(f"{name} ({where})", text_file.path, str(state), blocks, edges, findings,
                   dict(sorted(docs.items())), hidden)


def reflow(doc: str) -> str:
    """A rule's docstring with its paragraphs unwrapped (indented lines, examples, kept
    as they are), so the side panel wraps them to its own width."""
    out: list[str] = []
    for line in doc.splitlines():
        joinable = out and out[-1] and line and not line[0].isspace() \
            and not out[-1][0].isspace() and not line.startswith(("-", "*"))
        if joinable:
            out[-1] += " " + line
        else:
            out.append(line)
    return "\n".join(out)


def _blocks(view: NetView, graph: NetGraph, text_file, input_shapes):
    from bnlint.caffe import cost
    from bnlint.caffe import shapes as shape_rules
    from bnlint.caffe.infer import infer_graph_shapes
    from bnlint.caffe.layers import lookup
    from bnlint.errors import ShapeError

    inferred = infer_graph_shapes(graph, input_shapes)
    source = text_file.source
    blocks: list[Block] = []
    block_of: dict[object, int] = {}     # layer index or ("input", name) -> block index
    members: dict[int, Member] = {}
    last_member: dict[int, int] = {}     # block index -> layer index of its last member
    for blob in graph.inputs:
        member = Member(blob.name, "Input", "data", kind="input", tops=[(blob.name, blob.shape)])
        block_of[("input", id(blob))] = len(blocks)
        blocks.append(Block(len(blocks), [member]))
    for lv in graph.layers:
        bottoms = graph.bottoms[lv.index]
        tops = graph.tops[lv.index]
        params = inferred.params.get(lv.index, [])
        bottom_shapes = [b.shape if b is not None else None for b in bottoms]
        macs = 0
        if lv.index in inferred.params and all(s is not None for s in bottom_shapes):
            try:
                macs = cost.macs(lv.message, bottom_shapes,
                                 shape_rules.LayerShapes(list(inferred.tops[lv.index]), params))
            except (ShapeError, ValueError, IndexError):
                macs = 0
        start, end = lv.node.start, lv.node.end
        if lv.item is not None:
            start, end = lv.item.start, lv.item.end
        entry = lookup(lv.type)
        member = Member(lv.name, lv.type, family(lv), doc=entry.doc if entry else "",
                        text=source.text[start:end],
                        line=source.line_col(start)[0],
                        bottoms=[(b.name if b is not None else name, b.shape if b else None)
                                 for b, name in zip(bottoms, lv.bottoms)],
                        tops=[(t.name, t.shape) for t in tops],
                        params=sum(shape_rules.count(s) for s in params), macs=macs,
                        message=lv.message)
        members[lv.index] = member
        host = _in_place_host(graph, lv, block_of, last_member)
        if host is None:
            host = len(blocks)
            blocks.append(Block(host, []))
        blocks[host].members.append(member)
        block_of[lv.index] = host
        last_member[host] = lv.index
    return members, blocks, block_of


def _in_place_host(graph: NetGraph, lv: LayerView, block_of: dict, last_member: dict):
    """The block an in-place layer joins: that of the layer whose blob it overwrites,
    when it is that blob's only reader and the block ends there."""
    if len(lv.bottoms) != 1 or lv.bottoms != lv.tops:
        return None
    blob = graph.bottoms[lv.index][0]
    if blob is None or blob.producer is None or len(blob.consumers) != 1:
        return None
    host = block_of.get(blob.producer.index)
    if host is None or last_member.get(host) != blob.producer.index:
        return None
    return host


def _edges(graph: NetGraph, block_of: dict) -> list[Edge]:
    edges: list[Edge] = []
    seen: set[tuple] = set()
    for lv in graph.layers:
        dst = block_of[lv.index]
        for blob in graph.bottoms[lv.index]:
            if blob is None:
                continue
            src = (block_of[blob.producer.index] if blob.producer is not None
                   else block_of[("input", id(blob))])
            key = (src, dst, blob.name)
            if src == dst or key in seen:
                continue
            seen.add(key)
            edges.append(Edge(src, dst, blob.name, blob.shape))
    return edges


def _attach_findings(view: NetView, members: dict[int, Member], findings: list[Finding],
                     inputs: dict[str, Member]) -> None:
    """Each finding goes to the layer whose text holds it (else the layer it names), or
    to the net-level input whose `input:` field holds it."""
    spans = sorted((lv.node.start, lv.node.end, lv.index) for lv in view.layers)
    starts = [s for s, _, _ in spans]
    by_name: dict[str, int] = {}
    for lv in view.layers:
        by_name.setdefault(lv.name, lv.index)
    for f in findings:
        index = None
        at = bisect.bisect_right(starts, f.offset) - 1
        if at >= 0 and spans[at][0] <= f.offset < max(spans[at][1], spans[at][0] + 1):
            index = spans[at][2]
        elif f.layer is not None:
            index = by_name.get(f.layer)
        if index is None:
            for net_input in view.inputs:
                node = net_input.node
                if node is not None and net_input.name in inputs and \
                        node.start <= f.offset < max(node.end, node.start + 1):
                    f.layer = net_input.name
                    inputs[net_input.name].findings.append(f)
                    break
            continue
        f.layer = view.layers[index].name
        if index is not None and index in members:
            members[index].findings.append(f)


def lint_findings(source, config, weights=None) -> list[Finding]:
    """The findings `bnlint check` reports for this file, as plain values."""
    from bnlint.lint.runner import lint_source

    result = lint_source(source, config, weights)
    out = []
    for d in result.diagnostics:
        line, col = d.start_line_col()
        out.append(Finding(d.code, str(d.severity), d.message, line, col, d.layer, d.phases,
                           d.start))
    return out
