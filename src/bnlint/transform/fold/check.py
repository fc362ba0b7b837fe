"""The fold checked before anything is returned (black's safe mode).

The output parses and wires, a second fold finds nothing to do, each rewritten layer
fed the input net's own blob matches the BatchNorm chain it replaces (a wrong axis,
eps or group is named at its site, not blurred by the layers after it), and the
outputs of both nets match on seeded inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from bnlint.caffe.layers import ROLE_SELECTION, types_with
from bnlint.caffe.net import LayerView, net_view
from bnlint.caffe.netfile import reparse
from bnlint.errors import EXIT_FINDINGS, BnlintError
from bnlint.transform import UnsafeRewriteError
from bnlint.transform.fold.plan import Planner
from bnlint.transform.fold.sites import (AS_SCALE, CONVERTED, FOLDED, KEPT, TEST_STATE,
                                         FoldPlan, Site)


class FoldMismatch(BnlintError):
    """The folded net's forward differs from the input net's: nothing is written (exit 1)."""

    exit_code = EXIT_FINDINGS


@dataclass
class Verification:
    """Both nets on the same seeded inputs: each rewritten layer against the BatchNorm
    chain it replaces (fed the same input), and the net's outputs."""

    seed: int
    inputs: dict[str, tuple[int, ...]]
    sites: dict[str, object]              # "bn + sc -> conv" -> compare.Comparison
    outputs: dict[str, object]            # blob -> compare.Comparison
    noise_limited: tuple[str, ...] = ()   # outputs accepted net of the input net's own noise

    def worst(self):
        every = list(self.sites.values()) + list(self.outputs.values())
        return max(every, key=lambda c: c.used, default=None)


#: Layers whose output selects (top-k, NMS, argmax): a rounding-level change of their
#: input may reorder it, so their inputs are compared instead.
SELECTION_TYPES = types_with(ROLE_SELECTION)


def _verification_close(out, ref, uncertainty=None):
    """onnx-simplifier's element-wise rule, its absolute part scaled to the blob.

    A fold moves `-mean * k` into the bias, so where a BatchNorm cancels a large mean
    the rounding error is relative to the blob's magnitude, not to the element's;
    the absolute part is the golden data's 1e-4 * max(1, max|ref|).
    """
    from bnlint.forward.compare import GOLDEN_MAX, ONNXSIM_RTOL, allclose

    scale = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
    if not np.isfinite(scale):
        scale = 1.0
    return allclose(out, ref, rtol=ONNXSIM_RTOL, atol=GOLDEN_MAX * max(1.0, scale),
                    uncertainty=uncertainty)


def verify_fold(text_file, weights: Mapping[str, Sequence[np.ndarray]], plan: FoldPlan,
                out_weights: Mapping[str, Sequence[np.ndarray]] | None = None, *,
                input_shapes: Mapping[str, Sequence[int]] | None = None,
                seed: int = 0) -> Verification:
    """Run the input and the folded net on the same seeded inputs and compare every output.

    `out_weights` are the folded net's weights as they will be written (default: the
    plan's arrays). Layers the input weights lack use the input net's filler values in
    both nets. Raises FoldMismatch naming the first site whose result differs.
    """
    from bnlint.forward.executor import Network
    from bnlint.forward.seeded import seeded_inputs

    out_file = reparse(text_file, plan.text, plan.dialect)
    try:
        reference = Network(net_view(text_file), TEST_STATE, weights,
                            input_shapes=input_shapes, seed=seed, source=text_file.source)
        written = dict(out_weights if out_weights is not None else plan.arrays)
        # Layers the weights lack: the very filler values the reference drew.
        merged = {name: reference.blobs[name] for name in reference.filled
                  if name not in written}
        merged.update(written)
        folded = Network(net_view(out_file), TEST_STATE, merged, input_shapes=input_shapes,
                         seed=seed)
    except BnlintError as err:
        raise BnlintError(f"cannot verify the fold: {err}; --no-verify writes it unchecked",
                          path=text_file.path) from None
    inputs = seeded_inputs(reference.input_shapes(), [seed, 1])
    if set(folded.input_shapes()) != set(inputs):
        raise UnsafeRewriteError(f"the folded net's inputs {sorted(folded.input_shapes())} "
                                 f"differ from the input net's {sorted(inputs)}")
    if set(folded.output_names) != set(reference.output_names):
        raise UnsafeRewriteError(f"the folded net's outputs {sorted(folded.output_names)} "
                                 f"differ from the input net's "
                                 f"{sorted(reference.output_names)}; nothing was written")
    units = _units(plan, reference, folded)
    wanted = {key for unit in units for key in (unit.source, unit.result)}
    captured: dict[tuple[int, int], np.ndarray] = {}

    def capture(layer, tops) -> None:
        for i, top in enumerate(tops):
            if (layer.index, i) in wanted:
                captured[(layer.index, i)] = np.array(top, copy=True)

    compared = _compared_blobs(reference, folded)
    ref_out = reference.run(inputs, keep=compared, on_layer=capture)
    sites = {}
    for unit in units:
        y = inputs[unit.input_name] if unit.source[0] < 0 else captured[unit.source]
        try:
            for op in unit.ops:
                y = op.run([y])[0]
        except BnlintError as err:
            raise UnsafeRewriteError(f"{unit.label}: the rewritten layer does not run on its "
                                     f"input ({err})") from None
        sites[unit.label] = result = _verification_close(y, captured[unit.result])
        if not result.ok:
            raise FoldMismatch(f"the fold changes the result at site {unit.label}: the new "
                               f"layer's output differs from the BatchNorm chain's on the same "
                               f"input ({result.describe()}); nothing was written",
                               path=text_file.path)
    got_out = folded.run(inputs, keep=compared)
    outputs = {name: _verification_close(got_out[name], ref_out[name]) for name in ref_out}
    failed = [name for name, result in outputs.items() if not result.ok]
    if failed:
        # Every rewritten layer matched, yet an output differs: accept it only where
        # the input net itself moves that much under 4-ulp input noise (an
        # ill-conditioned net: BatchNorm variances near 0 amplify any rounding).
        from bnlint.forward.compare import input_sensitivity

        noise = input_sensitivity(reference, inputs, set(failed), seed=seed)
        for name in failed:
            outputs[name] = _verification_close(got_out[name], ref_out[name], noise[name])
        noise_limited = tuple(failed)
        failed = [name for name in failed if not outputs[name].ok]
    else:
        noise_limited = ()
    if failed:
        raise FoldMismatch(_amplified_message(reference, folded, inputs, sites, failed[0],
                                              outputs[failed[0]]), path=text_file.path)
    return Verification(seed, {n: tuple(a.shape) for n, a in inputs.items()}, sites, outputs,
                        noise_limited)


@dataclass
class _Unit:
    """The rewritten layers of one site (or of a chain folded into one producer) and the
    BatchNorm chain they replace, located in the reference."""

    label: str
    ops: tuple                            # the new net's ops, run in turn
    source: tuple[int, int]               # (reference layer index, top) of its input; -1: input
    input_name: str
    result: tuple[int, int]               # (reference layer index, top) of the chain's output


def _units(plan: FoldPlan, reference, folded) -> list[_Unit]:
    ref_layers = {lv.name: lv for lv in reference.graph.layers}
    ops = {step.layer.name: step.op for step in folded.steps}

    def source_of(layer: LayerView):
        blob = reference.graph.bottoms[layer.index][0]
        where = (-1, 0) if blob.producer is None else (blob.producer.index, blob.top_index)
        return where, blob.name

    groups: dict[str, list[Site]] = {}
    for site in plan.sites:
        if site.action in (FOLDED, AS_SCALE):
            groups.setdefault(site.into.name, []).append(site)
    units = []
    for owner, sites in groups.items():
        first = ref_layers[owner if sites[0].action == FOLDED else sites[0].batchnorm.name]
        end = ref_layers[(sites[-1].scale or sites[-1].batchnorm).name]
        kind = sites[0].into.type if sites[0].action == FOLDED else "Scale"
        label = ", ".join(site.name for site in sites) + f" -> {kind} '{owner}'"
        units.append(_Unit(label, (ops[owner],), *source_of(first), (end.index, 0)))
    for site in plan.sites:
        if site.action == CONVERTED:
            layer = ref_layers[site.batchnorm.name]
            chain = (ops[layer.name],) + ((ops[site.added],) if site.added else ())
            units.append(_Unit(f"{layer.name} -> {site.written_as}", chain,
                               *source_of(layer), (layer.index, 0)))
    return units


def _compared_blobs(reference, folded) -> set[str]:
    """The outputs, with the input of each Softmax that makes one (the logits: a
    saturated softmax hides a difference) and of each selecting layer instead of its
    output."""
    outputs = set(reference.output_names)
    names = set(outputs)
    for step in reference.steps:
        made = set(step.layer.tops) & outputs
        if step.layer.type in SELECTION_TYPES and made:
            names -= made
            names.update(step.layer.bottoms)
        elif step.layer.type == "Softmax" and made:
            names.update(step.layer.bottoms)
    return names & set(folded.top_names())


def _amplified_message(reference, folded, inputs, sites, output: str, result) -> str:
    """Every rewritten layer matches, yet an output differs: say where it grows past
    the tolerance, so the user can judge the net's conditioning."""
    ref_all = reference.run(inputs, keep="all")
    got_all = folded.run(inputs, keep="all")
    first = ""
    for name in folded.top_names():
        if name in ref_all and name in got_all and name not in inputs:
            close = _verification_close(got_all[name], ref_all[name])
            if not close.ok:
                first = f"; it first exceeds the tolerance at blob '{name}' ({close.describe()})"
                break
    worst = max(sites.values(), key=lambda c: c.used, default=None)
    local = (f"every rewritten layer matches its BatchNorm chain on the same input (worst "
             f"{worst.used:.1%} of tolerance), so the net amplifies float32 rounding"
             if worst is not None else "no layer was rewritten")
    return (f"the folded net's output '{output}' differs from the input net's "
            f"({result.describe()}): {local}{first}; nothing was written (--no-verify "
            f"writes it anyway)")


def check_stable(plan: FoldPlan, text_file, keep_unfoldable: bool) -> None:
    """A second fold of the output finds nothing to do, and the output wires as Caffe needs."""
    path = text_file.path
    out_file = reparse(text_file, plan.text, plan.dialect)
    again = Planner(out_file, plan.arrays, None, keep_unfoldable)
    try:
        again.plan()
    except BnlintError as err:
        raise UnsafeRewriteError(f"the folded net of {path} is not a valid net ({err}); this "
                                 f"is a bug in bnlint, nothing was written") from None
    left = [site for site in again.sites if site.action != KEPT]
    if left:
        raise UnsafeRewriteError(f"the fold of {path} is not stable: a second run would "
                                 f"change {left[0].describe()}; this is a bug in bnlint, "
                                 f"nothing was written")
