"""Which losses a forward runs: all of them once labels are given, none otherwise.

A loss's labels are the net's sources (inputs, data-layer or Python-layer tops) that
its label bottoms are computed from (SoftmaxWithLoss's second bottom, through a
Reshape or Slice too) and that no loss's prediction bottom reads. A seeded run has
no real labels, so by default every loss and Accuracy is left out and a train net
runs up to its predictions. Giving any label (or asking for a loss's top) means the
caller wants the losses: then each one runs, and one whose labels are missing is
refused, naming the layer and the blob, rather than dropped without a word.
"""

from __future__ import annotations

from typing import Collection

from bnlint.caffe.net import DATA_LAYER_TYPES, NetGraph, NetState, NetView, is_loss_layer
from bnlint.errors import ForwardError

#: The bottoms of each loss that hold labels or targets (the rest are predictions).
LABEL_BOTTOMS = {
    "SoftmaxWithLoss": (1,),
    "InfogainLoss": (1, 2),
    "MultinomialLogisticLoss": (1,),
    "HingeLoss": (1,),
    "EuclideanLoss": (1,),
    "SigmoidCrossEntropyLoss": (1,),
    "ContrastiveLoss": (2,),
    "Accuracy": (1,),
}


def _is_source(lv) -> bool:
    return not lv.bottoms and (lv.type in ("Input", "Python", "DummyData")
                               or lv.type in DATA_LAYER_TYPES) or lv.type == "Python"


def loss_labels(graph: NetGraph) -> tuple[dict[str, list[str]], set[int]]:
    """Each loss layer's name -> the source blobs its labels come from; and the layers
    computed from labels alone (a Reshape or Slice of the label), useless without them."""
    sources: dict[int, frozenset[str]] = {id(b): frozenset({b.name}) for b in graph.inputs}
    made_up = set()              # DummyData tops: values from its fillers, never missing
    computed: dict[int, frozenset[str]] = {}
    for lv in graph.layers:
        tops = graph.tops[lv.index]
        if _is_source(lv):
            for blob in tops:
                sources[id(blob)] = frozenset({blob.name})
                if lv.type == "DummyData":
                    made_up.add(blob.name)
            continue
        reads = frozenset().union(*(sources.get(id(b), frozenset())
                                    for b in graph.bottoms[lv.index] if b is not None))
        for blob in tops:
            sources[id(blob)] = reads
        computed[lv.index] = reads

    def reads(lv, indexes) -> set[str]:
        blobs = graph.bottoms[lv.index]
        return set().union(*(sources.get(id(blobs[i]), frozenset())
                             for i in indexes if i < len(blobs) and blobs[i] is not None))

    losses = [lv for lv in graph.layers if lv.type in LABEL_BOTTOMS]
    predicted = set().union(*(reads(lv, [i for i in range(len(lv.bottoms))
                                         if i not in LABEL_BOTTOMS[lv.type]])
                              for lv in losses))
    labels = {lv.name: sorted(reads(lv, LABEL_BOTTOMS[lv.type]) - predicted - made_up)
              for lv in losses}
    every_label = set().union(*labels.values())
    label_side = {index for index, names in computed.items()
                  if names and names <= every_label}
    return labels, label_side


def select_losses(view: NetView, state: NetState, given: Collection[str],
                  wanted: Collection[str] = (), source=None) -> tuple[NetView, list[str]]:
    """The view to run (losses kept or dropped) and what to tell the user."""
    from bnlint.forward.registry import OPS

    graph = NetGraph(view, state)
    if graph.problems:
        return view, []                       # the executor reports the broken wiring
    labels, label_side = loss_labels(graph)
    every_label = set().union(*labels.values())
    loss_tops = {top: lv for lv in graph.layers if lv.name in labels for top in lv.tops}
    asked = [loss_tops[name] for name in wanted if name in loss_tops]
    if not (every_label & set(given)) and not asked:
        losses = [lv for lv in graph.layers if is_loss_layer(lv)]
        notes = []
        if any(lv.name in labels for lv in losses):
            shown = ", ".join(sorted(every_label)) or "none"
            notes.append(f"note: {len(losses)} loss/accuracy layers not run: give their "
                         f"labels as inputs to run them (labels: {shown})")
        dropped = losses + [lv for lv in graph.layers
                            if lv.index in label_side and not is_loss_layer(lv)]
        return _without(view, dropped), notes
    for lv in graph.layers:
        missing = [name for name in labels.get(lv.name, ()) if name not in given]
        if missing:
            err = ForwardError(
                f"layer '{lv.name}' ({lv.type}) needs its label '{missing[0]}': give it "
                f"as an input (--input {missing[0]}=FILE.npy or in --inputs), or give no "
                f"labels to run the net up to its predictions")
            if source is not None:
                err.source, err.path, err.offset = source, source.path, lv.node.start
            raise err
    unsupported = [lv for lv in graph.layers if is_loss_layer(lv) and lv.type not in OPS]
    notes = [f"note: layer '{lv.name}' ({lv.type}) not run: bnlint's forward has no "
             f"{lv.type}" for lv in unsupported]
    return _without(view, unsupported), notes


def _without(view: NetView, layers) -> NetView:
    gone = {lv.index for lv in layers}
    return NetView(view.message, [lv for lv in view.layers if lv.index not in gone],
                   view.inputs, view.name, view.tree)


def weighted_losses(network, blobs) -> list[tuple[str, float, float]]:
    """(top, value, loss_weight) of each returned top that counts in the net's loss, as
    Caffe's solver lists them ("loss = v (* w = v*w loss)"): Layer::Forward adds
    weight * sum(top) for each top with a non-zero weight."""
    import numpy as np

    from bnlint.forward.ops.loss import loss_weights

    out = []
    for step in network.steps:
        if step.op is None:
            continue
        for top, weight in zip(step.layer.tops, loss_weights(step.layer.message)):
            if weight and top in blobs:
                out.append((top, float(np.sum(blobs[top], dtype=np.float64)), weight))
    return out
