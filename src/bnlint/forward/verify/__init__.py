"""Do two nets compute the same thing? Run both on the same seeded inputs and say where not.

The question every deploy, fold or hand edit raises is whether net B (a deploy) still
computes what net A (the train net it came from, or a reference deploy) computes.
`verify` answers it with the NumPy forward, as Caffe would compute it:

- Both nets run on the same seeded uniform [-1, 1] inputs, `trials` times, with a
  batch of at least 2, so a deploy that normalises with batch statistics cannot
  agree by luck (a stored mean and variance matching one image's statistics).
- Weights are a .caffemodel for both, one for each, or none. With none, blobs that
  look trained (`seeded_weights`: He-scaled weights, non-zero biases, BatchNorm
  statistics and Scale parameters away from their trivial initial values, which
  hide mistakes) are made for every parameterised layer of A and given to B by
  layer name, as Caffe copies a caffemodel into a net. A layer a weights file lacks
  is filled from that net's own fillers with a generator seeded by the layer's name,
  so two nets with the same filler get the same blobs and a changed filler shows.
- Only what the compared outputs depend on runs: a train net's losses and accuracy
  need labels that a deploy does not have, and they compute nothing a deploy outputs.
- Outputs are B's (a loss or accuracy output stands for its prediction bottom),
  matched by name; an output A lacks (the deploy's Softmax "prob" where the train
  net has SoftmaxWithLoss) is compared at the nearest blobs it is computed from that
  both nets have. Two tensors agree when max|b - a| <= atol + rtol * max|a|.
- When they do not, the nets are run again recording every layer's tops; the
  culprit is the first layer of A, in A's order, whose tops differ from those of B's
  layer of the same name, or, when that layer's inputs already differ, the layer
  upstream that B lacks, adds or wires elsewhere. Known causes get a hint.

A layer of B that matches A's layer of the same name in everything the forward
reads (type, parameters, phase, blobs) and sees the very same input arrays computes
the very same tops, so B reuses A's instead of computing them again: an equivalent
deploy costs little more than one forward, and a mismatch still computes every layer
from where the nets part.

What is compared (`pairing`), with which weights (`weights`), what B reuses of A
(`reuse`), where the nets part (`localise`) and the report (`report`) are one module
each; this module runs them in turn.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

import numpy as np

from bnlint.caffe.infer import infer_graph_shapes
from bnlint.caffe.net import NetGraph, NetState
from bnlint.caffe.netfile import NetFile
from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError
from bnlint.forward.executor import Network
from bnlint.forward.seeded import seeded_inputs
from bnlint.forward.verify.localise import (LocaliseContext, RecordedRun, compare_blob,
                                            layer_hints, localise)
from bnlint.forward.verify.pairing import (is_source, pair_outputs, prune, shared_input_shapes,
                                           with_unproduced_inputs)
from bnlint.forward.verify.report import (DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_TRIALS,
                                          KIND_COMPUTES, KIND_EXTRA, KIND_LOAD, KIND_MISSING,
                                          KIND_REWIRED, MIN_BATCH, CANNOT_VERIFY, HINTS,
                                          Arrays, Divergence, Hint, OutputResult, Shape,
                                          VerifyOptions, VerifyReport)
from bnlint.forward.verify.reuse import forward_key, link_twins
from bnlint.forward.verify.weights import (TRAINED_BN_FACTOR, complete_weights, layer_rng,
                                           realistic_blobs, seeded_weights)


def verify(net_a: NetFile, net_b: NetFile, options: VerifyOptions | None = None) -> VerifyReport:
    """Compare A (reference, train or deploy) with B (deploy) on seeded inputs.

    BnlintError for what makes the question unanswerable: unknown or mismatched inputs,
    outputs with no counterpart, a layer of B without parameters to give it.
    """
    options = options or VerifyOptions()
    if options.trials < 1:
        raise BnlintError(f"--trials must be at least 1, got {options.trials}")
    started = time.perf_counter()
    state_a, state_b = NetState(options.phase_a), NetState(Phase.TEST)
    full_b = NetGraph(net_b.view, state_b)
    whole_a, notes = with_unproduced_inputs(net_a.view, state_a, net_b.view, state_b)
    full_a = NetGraph(whole_a, state_a)
    pairs = pair_outputs(full_a, full_b, options)
    view_a = prune(whole_a, full_a, [a for a, _, _ in pairs])
    view_b = prune(net_b.view, full_b, [b for _, b, _ in pairs])
    shapes, shape_notes = shared_input_shapes(view_a, state_a, view_b, state_b, options)
    notes += shape_notes

    graph_a, graph_b = NetGraph(view_a, state_a), NetGraph(view_b, state_b)
    params_a = infer_graph_shapes(graph_a, shapes).params
    params_b = infer_graph_shapes(graph_b, shapes).params
    given = options.weights_a is not None or options.weights_b is not None
    if given:
        source_a = options.weights_a if options.weights_a is not None else options.weights_b
        source_b = options.weights_b if options.weights_b is not None else source_a
        weights_a = complete_weights(graph_a, params_a, source_a, options.seed,
                                      check_fit=False)
        weights_b = complete_weights(graph_b, params_b, source_b, options.seed,
                                      check_fit=True)
        described = (_weights_name(source_a) if source_a is source_b else
                     f"{_weights_name(source_a)} for A, {_weights_name(source_b)} for B")
    else:
        every = NetGraph(whole_a, state_a)      # every parameterised layer, not only those run
        seeded = seeded_weights(every, infer_graph_shapes(every, shapes).params, options.seed)
        weights_a = complete_weights(graph_a, params_a, seeded, options.seed, check_fit=False)
        weights_b = complete_weights(graph_b, params_b, seeded, options.seed, check_fit=True,
                                      must_have="with no --weights, B's blobs are copied "
                                                "from A's seeded ones by layer name")
        described = f"seeded (seed {options.seed}), made for A and copied to B by layer name"
    for name in weights_a.filled:
        notes.append(f"A: layer '{name}' has no weights; filled from its fillers")
    for name in weights_b.filled:
        notes.append(f"B: layer '{name}' has no weights; filled from its fillers")

    net_a_run = Network(view_a, state_a, weights_a.arrays, input_shapes=_for(shapes, graph_a),
                        seed=options.seed, source=net_a.source)
    net_b_run = Network(view_b, state_b, weights_b.arrays, input_shapes=_for(shapes, graph_b),
                        seed=options.seed, source=net_b.source)
    seen: dict = {}
    reused = [0]
    if options.reuse_identical:
        link_twins(net_a_run, net_b_run, seen, reused)

    total = (len(net_a_run.steps) + len(net_b_run.steps)) * options.trials
    done = [0]

    def tick() -> None:
        done[0] += 1
        if options.progress is not None:
            options.progress(done[0], total)

    report = VerifyReport(net_a.path, net_b.path, str(state_a), described, options.trials,
                          options.seed, options.rtol, options.atol, dict(shapes),
                          [OutputResult(a, b, note=note) for a, b, note in pairs], notes=notes,
                          layers_a=len(net_a_run.steps), layers_b=len(net_b_run.steps),
                          trials_run=options.trials)
    report.load_problems = [f"layer '{name}': {why}"
                            for name, why in weights_b.load_problems.items()]
    ctx = None
    for trial in range(options.trials):
        inputs = seeded_inputs(shapes, [options.seed, 1, trial], per_input=True, draw="float32")
        ctx = None          # the previous trial's blobs go before this trial makes its own
        ctx = LocaliseContext(_record(net_a_run, inputs, tick), _record(net_b_run, inputs, tick),
                       weights_a, weights_b, given, options.rtol, options.atol)
        seen.clear()
        failed = False
        for result in report.outputs:
            err = compare_blob(ctx.run_b.value(result.b_name), ctx.run_a.value(result.a_name),
                               options.rtol, options.atol)
            failed |= not err.ok
            if (not err.ok and result.ok) or (err.ok == result.ok and
                                              err.max_abs > result.max_abs):
                result.max_abs, result.max_rel, result.trial = err.max_abs, err.max_rel, trial
                result.ok, result.problem = err.ok, err.problem
        if failed:
            # The verdict is settled; the trial's records say where the nets part.
            report.trials_run = trial + 1
            report.divergence = localise(ctx, trial)
            break
    if report.divergence is None and weights_b.load_problems and ctx is not None:
        report.divergence = _load_divergence(ctx, report.trials_run - 1)
    report.reused = reused[0]
    report.seconds = time.perf_counter() - started
    return report


def _load_divergence(ctx: LocaliseContext, trial: int) -> Divergence:
    """Outputs agree, yet Caffe would refuse B's weights: the first such layer is the culprit."""
    name = next(iter(ctx.weights_b.load_problems))
    la, lb = ctx.run_a.layers.get(name), ctx.run_b.layers.get(name)
    hints = (layer_hints(ctx, la, lb) if la is not None and lb is not None else
             [Hint("load-refused", f"Caffe refuses to load the weights: "
                                   f"{ctx.weights_b.load_problems[name]}")])
    return Divergence(name, lb.type if lb is not None else "", KIND_LOAD, trial,
                      detail="Caffe would refuse to load the weights into this layer of B",
                      hints=hints)


def _weights_name(weights: Arrays) -> str:
    return getattr(weights, "path", "") or "the given weights"


def _for(shapes: Mapping[str, Shape], graph: NetGraph) -> dict[str, Shape]:
    """The shared input shapes a net's graph reads (net inputs and source layers' tops)."""
    names = {blob.name for blob in graph.inputs}
    for lv in graph.layers:
        if is_source(lv):
            names.update(lv.tops)
    return {name: shape for name, shape in shapes.items() if name in names}


def _feed(network: Network, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The shared inputs, plus zeros for a declared top nothing compared reads (a label)."""
    feed = {}
    for name, shape in network.input_shapes().items():
        feed[name] = inputs[name] if name in inputs else np.zeros(shape, np.float32)
    return feed


def _record(network: Network, inputs: Mapping[str, np.ndarray], tick: Callable) -> RecordedRun:
    """One forward keeping every layer's tops (references, not copies) for localising."""
    tops: dict[str, list[np.ndarray]] = {}

    def keep(layer, values) -> None:
        tops[layer.name] = values
        tick()

    feed = _feed(network, inputs)
    network.run(feed, keep=(), on_layer=keep)
    return RecordedRun(network, tops, feed, {lv.name: lv for lv in network.graph.layers})


__all__ = ["CANNOT_VERIFY", "DEFAULT_ATOL", "DEFAULT_RTOL", "DEFAULT_TRIALS", "HINTS",
           "KIND_COMPUTES", "KIND_EXTRA", "KIND_LOAD", "KIND_MISSING", "KIND_REWIRED",
           "MIN_BATCH", "TRAINED_BN_FACTOR", "Divergence", "Hint", "OutputResult",
           "VerifyOptions", "VerifyReport", "compare_blob", "forward_key", "layer_rng",
           "realistic_blobs", "seeded_weights", "verify"]
