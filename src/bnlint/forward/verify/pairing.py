"""The nets under comparison: which blobs of A and B are paired, what each net runs
(pruned to what the pairs depend on), and the inputs both read."""

from __future__ import annotations

from collections import deque
from typing import Sequence

from bnlint.caffe.inputs import find_inputs
from bnlint.caffe.net import (DATA_LAYER_TYPES, LOSS_LAYER_TYPES, Blob, LayerView, NetGraph,
                              NetInput, NetState, NetView)
from bnlint.errors import BnlintError
from bnlint.forward.verify.report import Shape, VerifyOptions


def latest_versions(graph: NetGraph) -> dict[str, Blob]:
    """Each blob name's last version (an in-place top shadows the earlier ones)."""
    latest = {blob.name: blob for blob in graph.inputs}
    for lv in graph.layers:
        for blob in graph.tops[lv.index]:
            latest[blob.name] = blob
    return latest


def is_source(lv: LayerView | None) -> bool:
    """A layer whose tops the executor binds to the given inputs (as `Network` decides)."""
    return lv is not None and not lv.bottoms and (lv.type == "Input" or
                                                  lv.type in DATA_LAYER_TYPES)


def prune(view: NetView, graph: NetGraph, names: Sequence[str]) -> NetView:
    """The view with only the layers (and net inputs) the named blobs depend on."""
    latest = latest_versions(graph)
    needed: set[int] = set()
    inputs: set[str] = set()
    stack = [latest[name] for name in names]
    while stack:
        blob = stack.pop()
        if blob.producer is None:
            inputs.add(blob.name)
            continue
        if blob.producer.index in needed:
            continue
        needed.add(blob.producer.index)
        stack.extend(b for b in graph.bottoms[blob.producer.index] if b is not None)
    layers = [lv for lv in graph.layers if lv.index in needed]
    return NetView(view.message, layers, [i for i in view.inputs if i.name in inputs],
                   view.name, view.tree)


def _default_outputs(graph: NetGraph) -> list[str]:
    """B's outputs; a loss or accuracy output stands for its prediction (bottom 0)."""
    names: list[str] = []
    for blob in graph.outputs():
        producer = blob.producer
        if producer is not None and producer.type in LOSS_LAYER_TYPES:
            bottom = graph.bottoms[producer.index][0] if producer.bottoms else None
            if bottom is None or is_source(bottom.producer):
                continue
            blob = bottom
        if blob.name not in names:
            names.append(blob.name)
    return names


def _computable(graph: NetGraph) -> set[str]:
    """Blob names of A that its forward can produce (not the tops of losses and accuracy)."""
    names = {blob.name for blob in graph.inputs}
    for lv in graph.layers:
        if lv.type not in LOSS_LAYER_TYPES:
            names.update(lv.tops)
    return names


def pair_outputs(graph_a: NetGraph, graph_b: NetGraph, options: VerifyOptions
                  ) -> list[tuple[str, str, str]]:
    """(A name, B name, note) for each compared pair."""
    have_a = _computable(graph_a)
    latest_b = latest_versions(graph_b)
    if options.outputs:
        for a_name, b_name in options.outputs:
            if a_name not in have_a:
                raise BnlintError(f"--output {a_name}={b_name}: net A has no blob '{a_name}' "
                                  f"its forward computes")
            if b_name not in latest_b:
                raise BnlintError(f"--output {a_name}={b_name}: net B has no blob '{b_name}'")
        return [(a, b, "") for a, b in options.outputs]
    outputs = _default_outputs(graph_b)
    if not outputs:
        raise BnlintError("net B has no outputs to compare (every top is consumed, or only "
                          "losses read labels); name them with --output A_NAME=B_NAME")
    pairs: list[tuple[str, str, str]] = []
    for name in outputs:
        if name in have_a:
            pairs.append((name, name, ""))
            continue
        frontier, via = _shared_ancestors(graph_b, latest_b[name], have_a)
        if not frontier:
            raise BnlintError(f"net A has no blob '{name}' (an output of B) nor any blob it "
                              f"is computed from; pair outputs with --output A_NAME=B_NAME")
        # Standing in is sound only for what a deploy adds in place of A's loss (a
        # Softmax for a SoftmaxWithLoss, ...), computed from a blob A's loss reads:
        # anything else B adds is exactly what verify must not skip.
        consumed_by_loss = {name for lv in graph_a.view.layers if lv.type.endswith("Loss")
                            for name in lv.bottoms}   # in any phase (a TRAIN-only loss too)
        stand_in_ok = (all(lv.type in _LOSS_STAND_INS for lv in via)
                       and all(shared in consumed_by_loss for shared in frontier)
                       and not any(_is_input(graph_a, shared) for shared in frontier))
        if not stand_in_ok:
            raise BnlintError(
                f"net A has no blob '{name}' (an output of B); B computes it with layers A "
                f"lacks ({', '.join(repr(lv.name) for lv in via)}), so comparing what they "
                f"start from would prove nothing: pair outputs with --output A_NAME=B_NAME")
        note = (f"stands for B's output '{name}', which B computes from it with layers A "
                f"lacks ({', '.join(repr(lv.name) for lv in via)})")
        for shared in frontier:
            if all(p[0] != shared for p in pairs):
                pairs.append((shared, shared, note))
    return pairs


# What a deploy net puts where the train net's loss was: the loss's own activation or
# decoding (SoftmaxWithLoss -> Softmax; SSD's MultiBoxLoss -> reshape, softmax,
# flatten, DetectionOutput).
_LOSS_STAND_INS = frozenset({"Softmax", "Sigmoid", "ArgMax", "Reshape", "Flatten",
                             "DetectionOutput"})


def _is_input(graph: NetGraph, name: str) -> bool:
    blob = latest_versions(graph).get(name)
    return blob is None or blob.producer is None or is_source(blob.producer)


def _shared_ancestors(graph: NetGraph, blob: Blob, have: set[str]
                      ) -> tuple[list[str], list[LayerView]]:
    """The nearest blobs upstream of `blob` whose names A has, and the B layers between."""
    frontier: list[str] = []
    via: list[LayerView] = []
    stack = deque([blob])
    seen: set[int] = set()
    while stack:
        current = stack.popleft()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if current is not blob and current.name in have:
            if current.name not in frontier:
                frontier.append(current.name)
            continue
        producer = current.producer
        if producer is None or is_source(producer):
            continue
        if producer not in via:
            via.append(producer)
        stack.extend(b for b in graph.bottoms[producer.index] if b is not None)
    return frontier, via


def with_unproduced_inputs(view_a: NetView, state_a: NetState, view_b: NetView,
                            state_b: NetState) -> tuple[NetView, list[str]]:
    """A's view, with B's inputs that no layer of A produces in its phase as net inputs.

    A train net whose only data layer is `include { phase: TRAIN }` has no data in
    TEST; Caffe could not even build it so, but what it computes from the data is
    still defined, and a deploy is its TEST-phase view.
    """
    produced = set(latest_versions(NetGraph(view_a, state_a)))
    missing = [b.name for b in find_inputs(view_b, state_b) if b.name not in produced]
    if not missing:
        return view_a, []
    extra = [NetInput(name, None, None) for name in missing]
    notes = [f"A: no layer produces '{name}' in {state_a}; it is fed as an input"
             for name in missing]
    return NetView(view_a.message, view_a.layers, list(view_a.inputs) + extra, view_a.name,
                   view_a.tree), notes


def _with_batch(shape: Shape, batch: int) -> Shape:
    if len(shape) and shape[0] < batch:
        return (batch,) + tuple(shape[1:])
    return tuple(shape)


def shared_input_shapes(view_a: NetView, state_a: NetState, view_b: NetView, state_b: NetState,
                  options: VerifyOptions) -> tuple[dict[str, Shape], list[str]]:
    """The shared inputs' shapes: --input-shape, else B's (batch raised), else A's.

    B's inputs must be A's inputs too, with the same shape beyond the batch axis,
    and A may not read an input B does not feed.
    """
    given = {name: tuple(int(d) for d in shape) for name, shape in options.input_shapes.items()}
    blobs_a = {b.name: b for b in find_inputs(view_a, state_a, given)}
    blobs_b = {b.name: b for b in find_inputs(view_b, state_b, given)}
    unknown = sorted(set(given) - set(blobs_a) - set(blobs_b))
    if unknown:
        raise BnlintError(f"--input-shape names {', '.join(map(repr, unknown))}, not an input "
                          f"either net reads (A: {', '.join(blobs_a) or 'none'}; B: "
                          f"{', '.join(blobs_b) or 'none'})")
    for name in blobs_b:
        if name not in blobs_a:
            raise BnlintError(f"input '{name}' of net B is not an input of net A (A's inputs: "
                              f"{', '.join(blobs_a) or 'none'}); the nets must read the same "
                              f"inputs by name")
    for name in blobs_a:
        if name not in blobs_b:
            raise BnlintError(f"net A reads input '{name}', which net B does not have (B's "
                              f"inputs: {', '.join(blobs_b) or 'none'})")
    notes: list[str] = []
    shapes: dict[str, Shape] = {}
    for name, blob_b in blobs_b.items():
        shape_a = blobs_a[name].shape
        if name in given:
            shapes[name] = given[name]
            continue
        if shape_a is not None and blob_b.shape is not None and (
                tuple(shape_a[1:]) != tuple(blob_b.shape[1:]) or len(shape_a) != len(blob_b.shape)):
            raise BnlintError(f"input '{name}': net A {_shape_words(blobs_a[name])} "
                              f"{list(shape_a)}, net B {_shape_words(blob_b)} "
                              f"{list(blob_b.shape)}; they must agree beyond the batch axis "
                              f"(or give --input-shape {name}=N,C,H,W)")
        shape = blob_b.shape if blob_b.shape is not None else shape_a
        if shape is None:
            why = blob_b.missing or blobs_a[name].missing
            raise BnlintError(f"the shape of input '{name}' is unknown ({why}); give it with "
                              f"--input-shape {name}=N,C,H,W")
        shapes[name] = _with_batch(tuple(shape), options.min_batch)
        if shapes[name] != tuple(shape):
            notes.append(f"input '{name}': batch {shape[0]} raised to {shapes[name][0]}, so a "
                         f"BatchNorm using batch statistics cannot pass by luck")
    return shapes, notes


def _shape_words(blob) -> str:
    return "infers" if blob.source == "inferred" else "declares"
