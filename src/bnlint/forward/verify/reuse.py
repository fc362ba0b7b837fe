"""Reusing A's computation in B: a layer of B identical to A's and fed A's very
arrays returns A's tops instead of computing them again."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from bnlint.caffe.layers.batchnorm import uses_global_stats
from bnlint.caffe.net import LayerView, NetState, layer_phase
from bnlint.caffe.semantics import normal_form
from bnlint.forward.executor import Network

# Fields of a LayerParameter that do not change its forward once it is included and
# its blobs are given (they name, wire, filter or train the layer).
NOT_FORWARD_FIELDS = ("name", "bottom", "top", "param", "include", "exclude", "blobs",
                      "loss_weight", "propagate_down", "phase")


def forward_key(lv: LayerView, state: NetState) -> tuple[int, bytes]:
    """What a layer's forward depends on besides its blobs and bottoms, as comparable bytes.

    Names, wiring, rules and training settings are dropped; the rest is compared in
    `caffe.semantics`' normal form (no fillers, defaults dropped, BatchNorm's
    `use_global_stats` as its effective value), so a deploy that spells out a default
    matches the train net that leaves it implicit.
    """
    phase = layer_phase(lv, state)
    msg = normal_form(lv.message, phase, NOT_FORWARD_FIELDS)
    return int(phase), msg.SerializePartialToString(deterministic=True)


def global_stats_in(lv: LayerView, state: NetState) -> bool:
    return uses_global_stats(lv.message, layer_phase(lv, state))


class _Recorder:
    """Stands in for an op of A: remembers the bottoms it saw and the tops it made."""

    def __init__(self, op, name: str, seen: dict) -> None:
        self.op, self.name, self.seen = op, name, seen

    def run(self, bottoms):
        tops = self.op.run(bottoms)
        self.seen[self.name] = (list(bottoms), tops)
        return tops


class _Reuser:
    """Stands in for an op of B identical to A's `twin`: A's tops when given A's very bottoms."""

    def __init__(self, op, twin: str, seen: dict, counter: list[int]) -> None:
        self.op, self.twin, self.seen, self.counter = op, twin, seen, counter

    def run(self, bottoms):
        record = self.seen.get(self.twin)
        if record is not None and len(record[0]) == len(bottoms) and all(
                a is b for a, b in zip(record[0], bottoms)):
            self.counter[0] += 1
            return list(record[1])
        return self.op.run(bottoms)


def same_blobs(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> bool:
    """Equal blobs; views of the same memory (one weights dict for both nets) need no scan."""
    return len(a) == len(b) and all(_same_array(x, y) for x, y in zip(a, b))


def _same_array(x: np.ndarray, y: np.ndarray) -> bool:
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    if x.strides == y.strides and x.ctypes.data == y.ctypes.data:
        return True
    return bool(np.array_equal(x, y))


def link_twins(net_a: Network, net_b: Network, seen: dict, counter: list[int]) -> int:
    """Wrap A's ops to record and B's identical ones to reuse; returns the twin count."""
    steps_a = {step.layer.name: step for step in net_a.steps if step.op is not None}
    twins = 0
    for step in net_b.steps:
        twin = steps_a.get(step.layer.name) if step.op is not None else None
        if twin is None:
            continue
        if forward_key(twin.layer, net_a.state) != forward_key(step.layer, net_b.state):
            continue
        if not same_blobs(net_a.blobs.get(twin.layer.name, []),
                           net_b.blobs.get(step.layer.name, [])):
            continue
        if not isinstance(twin.op, _Recorder):
            twin.op = _Recorder(twin.op, twin.layer.name, seen)
        step.op = _Reuser(step.op, twin.layer.name, seen, counter)
        twins += 1
    return twins
