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
"""

from __future__ import annotations

import time
from collections import deque
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from bnlint.caffe.infer import infer_graph_shapes
from bnlint.caffe.inputs import find_inputs
from bnlint.caffe.layers.batchnorm import nvcaffe_batch_norm, uses_global_stats
from bnlint.caffe.net import (DATA_LAYER_TYPES, LOSS_LAYER_TYPES, Blob, LayerView, NetGraph,
                              NetInput, NetState, NetView, layer_phase)
from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError, ForwardError, SchemaError
from bnlint.forward.compare import allclose
from bnlint.forward.executor import Network
from bnlint.forward.fillers import blobs_from_fillers

Shape = tuple[int, ...]
Arrays = Mapping[str, Sequence[np.ndarray]]

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5
DEFAULT_TRIALS = 3
MIN_BATCH = 2
#: blobs[2] of a trained BatchNorm: 1 / (1 - 0.999) after many iterations (DOMAIN.md 1).
TRAINED_BN_FACTOR = np.float32(999.982)

# Fields of a LayerParameter that do not change its forward once it is included and
# its blobs are given (they name, wire, filter or train the layer).
_NOT_FORWARD_FIELDS = ("name", "bottom", "top", "param", "include", "exclude", "blobs",
                       "loss_weight", "propagate_down", "phase")


# --- inputs and results -----------------------------------------------------------------

@dataclass
class NetFile:
    """A net file read for verifying: its view and source (for error positions)."""

    path: str
    view: NetView
    source: object = None
    dialect: object = None       # the fork dialect the net was read in, if any

    def read_weights(self, path: str):
        """A .caffemodel read in this net's dialect (a fork's BlobProto may carry more fields)."""
        from bnlint.caffe.weights import read_weights

        return read_weights(path, self.dialect.schema() if self.dialect else None)


def read_net(path: str) -> NetFile:
    """Parse a net file; fork fields the schema does not know are refused, as `forward` does."""
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import net_view
    from bnlint.files import read_text

    text = parse_text(read_text(path))
    if text.problems:
        first = text.problems[0]
        more = f" (and {len(text.problems) - 1} more)" if len(text.problems) > 1 else ""
        raise SchemaError(f"{first.message}{more}; the forward would ignore it, so bnlint "
                          f"cannot verify this net", source=text.source, offset=first.start)
    return NetFile(path, net_view(text), text.source, getattr(text, "dialect", None))


@dataclass
class VerifyOptions:
    """How to compare. `weights_b` None with `weights_a` given: B uses A's file too."""

    weights_a: Arrays | None = None
    weights_b: Arrays | None = None
    phase_a: Phase = Phase.TEST
    trials: int = DEFAULT_TRIALS
    seed: int = 0
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    input_shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    outputs: Sequence[tuple[str, str]] = ()      # (A name, B name); empty: B's outputs
    min_batch: int = MIN_BATCH
    reuse_identical: bool = True
    progress: Callable[[int, int], None] | None = None    # (layers done, total)


@dataclass
class OutputResult:
    """One compared pair over all trials: the worst trial's errors."""

    a_name: str
    b_name: str
    max_abs: float = 0.0
    max_rel: float = 0.0        # max|b - a| / max|a|
    ok: bool = True
    problem: str = ""           # shape or non-finite mismatch
    trial: int = 0              # the worst trial
    note: str = ""              # why this pair stands for an output of B


@dataclass
class Divergence:
    """Where the nets part: a layer, what is wrong there, and what may have caused it."""

    layer: str
    layer_type: str
    kind: str                   # one of the KIND_* values
    trial: int = 0
    blob: str = ""              # the first differing top
    max_abs: float = 0.0
    max_rel: float = 0.0
    problem: str = ""
    detail: str = ""
    hints: list[str] = field(default_factory=list)


KIND_COMPUTES = "computes-differently"    # same inputs, different tops
KIND_MISSING = "missing-in-b"             # a layer of A that B does not have
KIND_EXTRA = "extra-in-b"                 # a layer of B that A does not have
KIND_REWIRED = "fed-differently"          # its inputs come from other layers in B
KIND_LOAD = "cannot-load"                 # Caffe would refuse B's weights for this layer


@dataclass
class VerifyReport:
    path_a: str
    path_b: str
    phase_a: str
    weights: str
    trials: int
    seed: int
    rtol: float
    atol: float
    inputs: dict[str, Shape]
    outputs: list[OutputResult]
    divergence: Divergence | None = None
    load_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    layers_a: int = 0
    layers_b: int = 0
    trials_run: int = 0         # fewer than `trials` when one showed a difference
    reused: int = 0             # B's layer runs that reused A's identical computation
    seconds: float = 0.0

    @property
    def equivalent(self) -> bool:
        return all(o.ok for o in self.outputs) and not self.load_problems

    def to_dict(self) -> dict:
        """Plain JSON-ready values (non-finite errors become null, with `problem` saying why)."""
        def number(x: float):
            return float(x) if np.isfinite(x) else None

        def output(o: OutputResult) -> dict:
            return {"a": o.a_name, "b": o.b_name, "max_abs": number(o.max_abs),
                    "max_rel": number(o.max_rel), "ok": o.ok, "problem": o.problem,
                    "trial": o.trial, "note": o.note}

        div = None
        if self.divergence is not None:
            d = self.divergence
            div = {"layer": d.layer, "type": d.layer_type, "kind": d.kind, "trial": d.trial,
                   "blob": d.blob, "max_abs": number(d.max_abs), "max_rel": number(d.max_rel),
                   "problem": d.problem, "detail": d.detail, "hints": list(d.hints)}
        return {"equivalent": self.equivalent, "net_a": self.path_a, "net_b": self.path_b,
                "phase_a": self.phase_a, "weights": self.weights, "trials": self.trials,
                "seed": self.seed, "rtol": self.rtol, "atol": self.atol,
                "inputs": {k: list(v) for k, v in self.inputs.items()},
                "outputs": [output(o) for o in self.outputs], "divergence": div,
                "load_problems": list(self.load_problems), "notes": list(self.notes),
                "trials_run": self.trials_run, "layers_a": self.layers_a,
                "layers_b": self.layers_b, "reused": self.reused,
                "seconds": round(self.seconds, 3)}


# --- seeded weights --------------------------------------------------------------------

def layer_rng(seed: int, layer_name: str) -> np.random.Generator:
    """A generator of its own per layer: the blobs do not depend on which layers came first."""
    return np.random.default_rng([seed, zlib.crc32(layer_name.encode("utf-8"))])


def realistic_blobs(layer, shapes: Sequence[Shape], rng: np.random.Generator
                    ) -> list[np.ndarray]:
    """Blobs that look trained, for one layer (a LayerParameter) with these blob shapes.

    Zero statistics, unit gammas and zero biases make a dropped Scale, a lost bias or a
    wrong eps invisible, so: BatchNorm mean ~ N(0, 0.5) and variance ~ U(0.5, 2), stored
    times the scale factor blobs[2] = 999.982 as trained Caffe stores them; Scale gamma
    ~ U(0.5, 1.5) and beta ~ N(0, 0.2); weights He-scaled so activations stay near
    unit size through deep nets; other biases ~ N(0, 0.1). A blob whose ParamSpec has
    lr_mult 0 is never trained, so it keeps its filler's value (a bilinear upsampling
    kernel stays bilinear).
    """
    shapes = [tuple(int(d) for d in s) for s in shapes]
    for index, shape in enumerate(shapes):
        if 0 in shape:      # as `forward` refuses to fill one (zero channels, num_output 0)
            raise ForwardError(f"layer '{layer.name}' ({layer.type}), blob {index}: cannot "
                               f"make weights for an empty blob of shape {list(shape)}")
    if layer.type == "BatchNorm" and len(shapes) in (3, 5):
        channels = shapes[0]
        mean = rng.normal(0.0, 0.5, channels).astype(np.float32)
        var = rng.uniform(0.5, 2.0, channels).astype(np.float32)
        if nvcaffe_batch_norm(layer):
            # NVCaffe stores the statistics as they are (blobs[2], its variance
            # correction, stays 1); with scale_bias, blobs[3:5] are gamma and beta.
            blobs = [mean, var, np.ones(shapes[2], np.float32)]
            if len(shapes) == 5:
                blobs += [rng.uniform(0.5, 1.5, shapes[3]).astype(np.float32),
                          rng.normal(0.0, 0.2, shapes[4]).astype(np.float32)]
            return blobs
        return [mean * TRAINED_BN_FACTOR, var * TRAINED_BN_FACTOR,
                np.full(shapes[2], TRAINED_BN_FACTOR, np.float32)]
    frozen = [i < len(layer.param) and layer.param[i].HasField("lr_mult")
              and layer.param[i].lr_mult == 0 for i in range(len(shapes))]
    from_fillers = blobs_from_fillers(layer, shapes, rng) if any(frozen) else None
    blobs = []
    for index, shape in enumerate(shapes):
        if frozen[index]:
            blobs.append(from_fillers[index])
        else:
            blobs.append(_trained_like(layer, index, shape, rng))
    return blobs


def _trained_like(layer, index: int, shape: Shape, rng: np.random.Generator) -> np.ndarray:
    one_bottom = len(layer.bottom) < 2
    if layer.type == "Scale":
        if index == 0 and one_bottom:
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return rng.normal(0.0, 0.2, shape).astype(np.float32)
    if layer.type == "Bias":
        return rng.normal(0.0, 0.2, shape).astype(np.float32)
    if layer.type == "PReLU":
        return rng.uniform(0.05, 0.5, shape).astype(np.float32)
    if index == 0:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        values = rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(np.sqrt(2.0 / max(fan_in, 1)))
        return values
    return rng.normal(0.0, 0.1, shape).astype(np.float32)


def seeded_weights(graph: NetGraph, params: Mapping[int, Sequence[Shape]], seed: int
                   ) -> dict[str, list[np.ndarray]]:
    """`realistic_blobs` for every layer of `graph` with parameters (shapes by layer index)."""
    out: dict[str, list[np.ndarray]] = {}
    for lv in graph.layers:
        shapes = params.get(lv.index)
        if shapes and lv.name not in out:
            out[lv.name] = realistic_blobs(lv.message, shapes, layer_rng(seed, lv.name))
    return out


# --- the nets under comparison ---------------------------------------------------------

def _latest(graph: NetGraph) -> dict[str, Blob]:
    """Each blob name's last version (an in-place top shadows the earlier ones)."""
    latest = {blob.name: blob for blob in graph.inputs}
    for lv in graph.layers:
        for blob in graph.tops[lv.index]:
            latest[blob.name] = blob
    return latest


def _is_source(lv: LayerView | None) -> bool:
    """A layer whose tops the executor binds to the given inputs (as `Network` decides)."""
    return lv is not None and not lv.bottoms and (lv.type == "Input" or
                                                  lv.type in DATA_LAYER_TYPES)


def _prune(view: NetView, graph: NetGraph, names: Sequence[str]) -> NetView:
    """The view with only the layers (and net inputs) the named blobs depend on."""
    latest = _latest(graph)
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
            if bottom is None or _is_source(bottom.producer):
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


def _pair_outputs(graph_a: NetGraph, graph_b: NetGraph, options: VerifyOptions
                  ) -> list[tuple[str, str, str]]:
    """(A name, B name, note) for each compared pair."""
    have_a = _computable(graph_a)
    latest_b = _latest(graph_b)
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
    blob = _latest(graph).get(name)
    return blob is None or blob.producer is None or _is_source(blob.producer)


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
        if producer is None or _is_source(producer):
            continue
        if producer not in via:
            via.append(producer)
        stack.extend(b for b in graph.bottoms[producer.index] if b is not None)
    return frontier, via


# --- inputs ----------------------------------------------------------------------------

def _with_unproduced_inputs(view_a: NetView, state_a: NetState, view_b: NetView,
                            state_b: NetState) -> tuple[NetView, list[str]]:
    """A's view, with B's inputs that no layer of A produces in its phase as net inputs.

    A train net whose only data layer is `include { phase: TRAIN }` has no data in
    TEST; Caffe could not even build it so, but what it computes from the data is
    still defined, and a deploy is its TEST-phase view.
    """
    produced = set(_latest(NetGraph(view_a, state_a)))
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


def _input_shapes(view_a: NetView, state_a: NetState, view_b: NetView, state_b: NetState,
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


def _trial_inputs(shapes: Mapping[str, Shape], seed: int, trial: int) -> dict[str, np.ndarray]:
    out = {}
    for name, shape in shapes.items():
        rng = np.random.default_rng([seed, 1, trial, zlib.crc32(name.encode("utf-8"))])
        values = rng.random(shape, dtype=np.float32)
        values *= np.float32(2)
        values -= np.float32(1)
        out[name] = values
    return out


# --- weights for each net ---------------------------------------------------------------

def _fits(array: np.ndarray, shape: Shape, legacy: bool | None) -> bool:
    """Caffe's Blob::ShapeEquals: exact, or legacy 4-D padded on the left with 1s."""
    got = tuple(array.shape)
    if got == tuple(shape):
        return True
    return legacy is not False and len(shape) <= 4 and len(got) == 4 and \
        got == (1,) * (4 - len(shape)) + tuple(shape)


@dataclass
class _NetWeights:
    arrays: dict[str, list[np.ndarray]]
    filled: list[str]                  # layers the weights lack: from this net's fillers
    load_problems: dict[str, str]      # layer -> why Caffe would refuse the given blobs


def _complete_weights(graph: NetGraph, params: Mapping[int, Sequence[Shape]],
                      source: Arrays, seed: int, *, check_fit: bool,
                      must_have: str = "") -> _NetWeights:
    """Every parameterised layer's blobs: from `source` by name, else from its fillers.

    `check_fit`: a layer whose stored blobs Caffe would refuse (count or shape) is
    recorded, and runs with the blobs that fit, the rest from its fillers, so the
    forward can still show where the nets part. `must_have`: no filling allowed; a
    missing layer is an error saying why (the seeded weights of A are all there is).
    """
    out = _NetWeights({}, [], {})
    for lv in graph.layers:
        shapes = params.get(lv.index)
        if not shapes or lv.name in out.arrays:
            continue
        given = source.get(lv.name)
        if given is None:
            if must_have:
                raise BnlintError(f"layer '{lv.name}' ({lv.type}) of net B has parameters, "
                                  f"but net A has no parameterised layer of that name: "
                                  f"{must_have}")
            out.filled.append(lv.name)
            out.arrays[lv.name] = blobs_from_fillers(lv.message, shapes,
                                                     layer_rng(seed, lv.name))
            continue
        if not check_fit:
            out.arrays[lv.name] = given       # the executor checks them, as Caffe does
            continue
        legacy = getattr(given, "legacy", ())
        problems = []
        if len(given) != len(shapes):
            problems.append(f"incompatible number of blobs, {len(given)} given vs "
                            f"{len(shapes)} the layer needs")
        blobs: list[np.ndarray] = []
        fallback = None
        for index, shape in enumerate(shapes):
            array = np.asarray(given[index], np.float32) if index < len(given) else None
            is_legacy = legacy[index] if index < len(legacy) else None
            if array is not None and _fits(array, shape, is_legacy):
                blobs.append(array.reshape(shape))
                continue
            if array is not None:
                problems.append(f"blob {index}: shape {list(array.shape)} given vs "
                                f"{list(shape)} expected")
            if fallback is None:
                fallback = blobs_from_fillers(lv.message, shapes, layer_rng(seed, lv.name))
            blobs.append(fallback[index])
        if problems:
            out.load_problems[lv.name] = "; ".join(problems)
        out.arrays[lv.name] = blobs
    return out


# --- reusing A's computation in B -------------------------------------------------------

def forward_key(lv: LayerView, state: NetState) -> tuple[int, bytes]:
    """What a layer's forward depends on besides its blobs and bottoms, as comparable bytes.

    Names, wiring, rules, training settings and fillers (the blobs are given) are
    dropped; fields at their default are dropped too, and BatchNorm's
    `use_global_stats` is replaced by its effective value, so a deploy that spells
    out a default matches the train net that leaves it implicit.
    """
    msg = type(lv.message)()
    msg.CopyFrom(lv.message)
    fields = msg.DESCRIPTOR.fields_by_name
    for name in _NOT_FORWARD_FIELDS:
        if name in fields:
            msg.ClearField(name)
    _normalise(msg)
    phase = layer_phase(lv, state)
    if lv.type == "BatchNorm":
        param = msg.batch_norm_param
        param.use_global_stats = _uses_global_stats(lv, state)
        param.ClearField("moving_average_fraction")
    return int(phase), msg.SerializePartialToString(deterministic=True)


def _normalise(msg) -> None:
    """Drop fillers, `engine` (CAFFE or CUDNN: one NumPy forward here) and fields set to
    their default value, recursively."""
    for fd, value in msg.ListFields():
        if fd.name == "engine":
            msg.ClearField(fd.name)
        elif fd.message_type is not None:
            if fd.message_type.name == "FillerParameter":
                msg.ClearField(fd.name)
            elif fd.is_repeated:
                for item in value:
                    _normalise(item)
            else:
                _normalise(value)
                if not value.ListFields():
                    msg.ClearField(fd.name)
        elif not fd.is_repeated and value == fd.default_value:
            msg.ClearField(fd.name)


def _uses_global_stats(lv: LayerView, state: NetState) -> bool:
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


def _same_blobs(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> bool:
    """Equal blobs; views of the same memory (one weights dict for both nets) need no scan."""
    return len(a) == len(b) and all(_same_array(x, y) for x, y in zip(a, b))


def _same_array(x: np.ndarray, y: np.ndarray) -> bool:
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    if x.strides == y.strides and x.ctypes.data == y.ctypes.data:
        return True
    return bool(np.array_equal(x, y))


def _link_twins(net_a: Network, net_b: Network, seen: dict, counter: list[int]) -> int:
    """Wrap A's ops to record and B's identical ones to reuse; returns the twin count."""
    steps_a = {step.layer.name: step for step in net_a.steps if step.op is not None}
    twins = 0
    for step in net_b.steps:
        twin = steps_a.get(step.layer.name) if step.op is not None else None
        if twin is None:
            continue
        if forward_key(twin.layer, net_a.state) != forward_key(step.layer, net_b.state):
            continue
        if not _same_blobs(net_a.blobs.get(twin.layer.name, []),
                           net_b.blobs.get(step.layer.name, [])):
            continue
        if not isinstance(twin.op, _Recorder):
            twin.op = _Recorder(twin.op, twin.layer.name, seen)
        step.op = _Reuser(step.op, twin.layer.name, seen, counter)
        twins += 1
    return twins


# --- comparing --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Error:
    max_abs: float
    max_rel: float
    ok: bool
    problem: str


def compare_blob(out: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> _Error:
    """max|out - ref| <= atol + rtol * max|ref|, NaNs and shapes checked by `allclose`.

    The same array (a layer B reused) agrees at no cost; finite float32 blobs well
    within tolerance are settled by one float32 pass (its own rounding is a few ulps
    of |ref|, far below rtol); anything else gets `allclose`'s careful float64 check.
    """
    if out is ref:
        return _Error(0.0, 0.0, True, "")
    ref = np.asarray(ref)
    out = np.asarray(out)
    if out.shape == ref.shape and ref.size and out.dtype == ref.dtype == np.float32:
        with np.errstate(all="ignore"):
            diff = float(np.abs(out - ref).max())
            scale = float(np.abs(ref).max())
        if np.isfinite(diff) and np.isfinite(scale) and diff <= 0.5 * (atol + rtol * scale):
            return _Error(diff, diff / scale if scale > 0 else 0.0, True, "")
    finite = ref[np.isfinite(ref)] if ref.size else ref
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    result = allclose(out, ref, rtol=0.0, atol=atol + rtol * scale)
    if result.problem:
        return _Error(float("inf"), float("inf"), False, result.problem)
    rel = result.max_abs / scale if scale > 0 else (0.0 if result.max_abs == 0 else float("inf"))
    return _Error(result.max_abs, rel, result.ok, "")


# --- localising -------------------------------------------------------------------------

@dataclass
class _Run:
    """One net's recorded forward: each layer's tops by layer name, and the inputs."""

    network: Network
    tops: dict[str, list[np.ndarray]]
    inputs: Mapping[str, np.ndarray]
    layers: dict[str, LayerView]
    latest: dict[str, Blob] = field(init=False)

    def __post_init__(self) -> None:
        self.latest = _latest(self.network.graph)

    def bottom(self, lv: LayerView, index: int) -> np.ndarray | None:
        blob = self.network.graph.bottoms[lv.index][index]
        if blob is None:
            return None
        if blob.producer is None or _is_source(blob.producer):
            return self.inputs.get(blob.name)
        tops = self.tops.get(blob.producer.name)
        return tops[blob.top_index] if tops is not None and blob.top_index < len(tops) else None

    def value(self, name: str) -> np.ndarray:
        """A blob's last value (after the last layer writing it), as pycaffe shows it."""
        blob = self.latest[name]
        if blob.producer is None or _is_source(blob.producer):
            return self.inputs[name]
        return self.tops[blob.producer.name][blob.top_index]

    def producer(self, lv: LayerView, index: int) -> LayerView | None:
        blob = self.network.graph.bottoms[lv.index][index]
        return None if blob is None else blob.producer


@dataclass
class _Context:
    """What the hints read: both nets, their states, which layers were filled or refused."""

    run_a: _Run
    run_b: _Run
    weights_a: _NetWeights
    weights_b: _NetWeights
    given_weights: bool
    rtol: float
    atol: float


def _localise(ctx: _Context, trial: int) -> Divergence | None:
    """The first layer of A (in A's order) whose tops differ from B's same-named layer's."""
    run_a, run_b = ctx.run_a, ctx.run_b
    for lv in run_a.network.graph.layers:
        if _is_source(lv) or lv.name not in run_a.tops or lv.name not in run_b.tops:
            continue
        lb = run_b.layers[lv.name]
        tops_a, tops_b = run_a.tops[lv.name], run_b.tops[lv.name]
        worst: tuple[str, _Error] | None = None
        for index, ref in enumerate(tops_a):
            if index >= len(tops_b):
                worst = (lv.tops[index], _Error(float("inf"), float("inf"), False,
                                                f"B's layer has {len(tops_b)} tops, A's "
                                                f"{len(tops_a)}"))
                break
            err = compare_blob(tops_b[index], ref, ctx.rtol, ctx.atol)
            if not err.ok:
                absorbed = _after_absorbed_layers(ctx, lv, index)
                if absorbed is not None and compare_blob(tops_b[index], absorbed, ctx.rtol,
                                                         ctx.atol).ok:
                    continue  # B folded A's in-place BatchNorm/Scale into this layer
                worst = (lv.tops[index] if index < len(lv.tops) else str(index), err)
                break
        if worst is None:
            continue
        blob, err = worst
        rewired = _first_differing_bottom(ctx, lv, lb)
        if rewired is None:
            div = Divergence(lv.name, lv.type, KIND_COMPUTES, trial, blob, err.max_abs,
                             err.max_rel, err.problem)
            div.detail = "its inputs agree in both nets, its outputs do not"
            div.hints = _layer_hints(ctx, lv, lb)
            return div
        return _upstream_culprit(ctx, lv, lb, rewired, trial, blob, err)
    return None


def _after_absorbed_layers(ctx: _Context, lv: LayerView, index: int) -> np.ndarray | None:
    """A's value of a top after the in-place layers that follow it in A but that B does
    not have (a fold absorbs them into the producer); None when there are none."""
    graph = ctx.run_a.network.graph
    tops = graph.tops.get(lv.index)
    if tops is None or index >= len(tops):
        return None
    blob, value = tops[index], None
    while True:
        nxt = graph.next_version(blob)
        if nxt is None or nxt.producer is None or nxt.producer.name in ctx.run_b.layers:
            return value
        produced = ctx.run_a.tops.get(nxt.producer.name)
        if produced is None or nxt.top_index >= len(produced):
            return value
        blob, value = nxt, produced[nxt.top_index]


def _first_differing_bottom(ctx: _Context, lv: LayerView, lb: LayerView) -> int | None:
    count = max(len(lv.bottoms), len(lb.bottoms))
    for index in range(count):
        if index >= len(lv.bottoms) or index >= len(lb.bottoms):
            return index
        a, b = ctx.run_a.bottom(lv, index), ctx.run_b.bottom(lb, index)
        if a is None or b is None:
            return index
        if not compare_blob(b, a, ctx.rtol, ctx.atol).ok:
            return index
    return None


def _upstream_culprit(ctx: _Context, lv: LayerView, lb: LayerView, index: int, trial: int,
                      blob: str, err: _Error) -> Divergence:
    """A layer whose inputs differ: blame the layer B lacks, adds, or the rewiring."""
    pa = ctx.run_a.producer(lv, index) if index < len(lv.bottoms) else None
    pb = ctx.run_b.producer(lb, index) if index < len(lb.bottoms) else None
    name_a = pa.name if pa is not None else "a net input"
    name_b = pb.name if pb is not None else "a net input"
    if pa is not None and not _is_source(pa) and pa.name not in ctx.run_b.tops:
        first = _first_absent(ctx.run_a, pa, ctx.run_b.tops)
        div = Divergence(first.name, first.type, KIND_MISSING, trial, blob, err.max_abs,
                         err.max_rel, err.problem)
        div.detail = (f"A's layer '{first.name}' ({first.type}) has no counterpart in B; "
                      f"B feeds '{lv.name}' from '{name_b}' instead, and from there on "
                      f"the nets differ")
        div.hints = _missing_hints(ctx, first)
        return div
    if pb is not None and not _is_source(pb) and pb.name not in ctx.run_a.tops:
        first = _first_absent(ctx.run_b, pb, ctx.run_a.tops)
        div = Divergence(first.name, first.type, KIND_EXTRA, trial, blob, err.max_abs,
                         err.max_rel, err.problem)
        div.detail = (f"B's layer '{first.name}' ({first.type}) is not in A; it feeds "
                      f"'{lv.name}', which A feeds from '{name_a}'")
        return div
    div = Divergence(lv.name, lv.type, KIND_REWIRED, trial, blob, err.max_abs, err.max_rel,
                     err.problem)
    div.detail = (f"bottom {index} of '{lv.name}' comes from '{name_a}' in A but from "
                  f"'{name_b}' in B, and its values differ")
    div.hints = [f"layers reordered or rewired: in B, '{lv.name}' reads the output of "
                 f"'{name_b}' where A has it read '{name_a}'"]
    return div


def _first_absent(run: _Run, layer: LayerView, other_tops: Mapping[str, object]) -> LayerView:
    """Walk up bottom 0 from `layer` while the layers are absent from the other net."""
    current = layer
    while current.bottoms:
        up = run.producer(current, 0)
        if up is None or _is_source(up) or up.name in other_tops:
            break
        current = up
    return current


def _missing_hints(ctx: _Context, lv: LayerView) -> list[str]:
    if lv.type == "Scale":
        return [f"A's Scale '{lv.name}' is missing from B: the learned per-channel gamma"
                f"{' and beta' if lv.message.scale_param.bias_term else ''} after the "
                f"BatchNorm are dropped (Caffe's BatchNorm has no affine part of its own)"]
    if lv.type == "BatchNorm":
        return [f"A's BatchNorm '{lv.name}' is missing from B; unless its statistics were "
                f"folded into the layer before, the deploy skips the normalisation"]
    return [f"A's layer '{lv.name}' ({lv.type}) is missing from B"]


def _layer_hints(ctx: _Context, la: LayerView, lb: LayerView) -> list[str]:
    """Known reasons a layer of the same name computes differently in B."""
    hints: list[str] = []
    state_a, state_b = ctx.run_a.network.state, ctx.run_b.network.state
    if lb.name in ctx.weights_b.load_problems:
        hints.append(f"Caffe refuses to load the weights into B's '{lb.name}': "
                     f"{ctx.weights_b.load_problems[lb.name]}")
    if la.type != lb.type:
        hints.append(f"type {la.type} in A, {lb.type} in B")
        return hints
    if la.type == "BatchNorm":
        global_a, global_b = _uses_global_stats(la, state_a), _uses_global_stats(lb, state_b)
        if global_a and not global_b:
            why = ("use_global_stats: false" if lb.message.batch_norm_param.HasField(
                "use_global_stats") else f"the layer runs in phase {layer_phase(lb, state_b).name}")
            hints.append(f"B's BatchNorm '{lb.name}' normalises with batch statistics ({why}); "
                         f"a deploy must use the stored ones: set use_global_stats: true")
        elif global_b and not global_a:
            hints.append(f"A's BatchNorm '{la.name}' normalises with batch statistics, B's "
                         f"with the stored ones")
        eps_a, eps_b = la.message.batch_norm_param.eps, lb.message.batch_norm_param.eps
        if np.float32(eps_a) != np.float32(eps_b):
            hints.append(f"eps differs: {eps_a:g} in A, {eps_b:g} in B (the deploy must keep "
                         f"the train net's eps)")
    elif layer_phase(la, state_a) != layer_phase(lb, state_b):
        hints.append(f"'{la.name}' runs in phase {layer_phase(la, state_a).name} in A, "
                     f"{layer_phase(lb, state_b).name} in B")
    if la.type == "Scale":
        bias_a, bias_b = la.message.scale_param.bias_term, lb.message.scale_param.bias_term
        if bias_a != bias_b:
            hints.append(f"Scale '{la.name}': bias_term {str(bias_a).lower()} in A, "
                         f"{str(bias_b).lower()} in B (the learned beta is "
                         f"{'dropped' if bias_a else 'added'})")
    filled = la.name in ctx.weights_a.filled or lb.name in ctx.weights_b.filled
    filler_diffs = [d for d in _param_diffs(la.message, lb.message) if "filler" in d[0]]
    if filled and filler_diffs:
        shown = "; ".join(f"{path}: {va} in A, {vb} in B" for path, va, vb in filler_diffs)
        hints.append(f"'{la.name}' has no weights in the caffemodel, so each net fills it from "
                     f"its own filler, and they differ ({shown})")
    known = {"batch_norm_param.use_global_stats", "batch_norm_param.eps",
             "batch_norm_param.moving_average_fraction", "scale_param.bias_term"}
    others = [d for d in _param_diffs(la.message, lb.message)
              if "filler" not in d[0] and d[0] not in known]
    if others:
        hints.append("parameters differ: " + "; ".join(f"{path}: {va} in A, {vb} in B"
                                                       for path, va, vb in others[:5]))
    blobs_a = ctx.run_a.network.blobs.get(la.name, [])
    blobs_b = ctx.run_b.network.blobs.get(lb.name, [])
    if not hints and not _same_blobs(blobs_a, blobs_b):
        if ctx.given_weights:
            hints.append("its blobs differ between the two nets' weights")
        else:
            hints.append("its blobs differ")
    return hints


def _param_diffs(a, b, prefix: str = "") -> list[tuple[str, str, str]]:
    """(field path, A's value, B's value) where two LayerParameters differ, defaults applied."""
    diffs: list[tuple[str, str, str]] = []
    b_fields = b.DESCRIPTOR.fields_by_name
    for fd in a.DESCRIPTOR.fields:
        if not prefix and fd.name in _NOT_FORWARD_FIELDS:
            continue
        path = prefix + fd.name
        va = getattr(a, fd.name)
        if fd.name not in b_fields:  # A and B read in different dialects
            if (len(va) if fd.is_repeated else a.HasField(fd.name)):
                diffs.append((path, _show(list(va) if fd.is_repeated else va),
                              "(not in B's schema)"))
            continue
        vb = getattr(b, fd.name)
        if fd.message_type is not None and not fd.is_repeated:
            if a.HasField(fd.name) or b.HasField(fd.name):
                diffs.extend(_param_diffs(va, vb, path + "."))
            continue
        if fd.is_repeated:
            if list(va) != list(vb):
                diffs.append((path, _show(list(va)), _show(list(vb))))
            continue
        if va != vb:
            diffs.append((path, _show(va, fd), _show(vb, fd)))
    return diffs


def _show(value, fd=None) -> str:
    if fd is not None and fd.enum_type is not None:
        return fd.enum_type.values_by_number[value].name
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value).strip().replace("\n", " ")


# --- the whole check ---------------------------------------------------------------------

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
    whole_a, notes = _with_unproduced_inputs(net_a.view, state_a, net_b.view, state_b)
    full_a = NetGraph(whole_a, state_a)
    pairs = _pair_outputs(full_a, full_b, options)
    view_a = _prune(whole_a, full_a, [a for a, _, _ in pairs])
    view_b = _prune(net_b.view, full_b, [b for _, b, _ in pairs])
    shapes, shape_notes = _input_shapes(view_a, state_a, view_b, state_b, options)
    notes += shape_notes

    graph_a, graph_b = NetGraph(view_a, state_a), NetGraph(view_b, state_b)
    params_a = infer_graph_shapes(graph_a, shapes).params
    params_b = infer_graph_shapes(graph_b, shapes).params
    given = options.weights_a is not None or options.weights_b is not None
    if given:
        source_a = options.weights_a if options.weights_a is not None else options.weights_b
        source_b = options.weights_b if options.weights_b is not None else source_a
        weights_a = _complete_weights(graph_a, params_a, source_a, options.seed,
                                      check_fit=False)
        weights_b = _complete_weights(graph_b, params_b, source_b, options.seed,
                                      check_fit=True)
        described = (_weights_name(source_a) if source_a is source_b else
                     f"{_weights_name(source_a)} for A, {_weights_name(source_b)} for B")
    else:
        every = NetGraph(whole_a, state_a)      # every parameterised layer, not only those run
        seeded = seeded_weights(every, infer_graph_shapes(every, shapes).params, options.seed)
        weights_a = _complete_weights(graph_a, params_a, seeded, options.seed, check_fit=False)
        weights_b = _complete_weights(graph_b, params_b, seeded, options.seed, check_fit=True,
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
        _link_twins(net_a_run, net_b_run, seen, reused)

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
        inputs = _trial_inputs(shapes, options.seed, trial)
        ctx = None          # the previous trial's blobs go before this trial makes its own
        ctx = _Context(_record(net_a_run, inputs, tick), _record(net_b_run, inputs, tick),
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
            report.divergence = _localise(ctx, trial)
            break
    if report.divergence is None and weights_b.load_problems and ctx is not None:
        report.divergence = _load_divergence(ctx, report.trials_run - 1)
    report.reused = reused[0]
    report.seconds = time.perf_counter() - started
    return report


def _load_divergence(ctx: _Context, trial: int) -> Divergence:
    """Outputs agree, yet Caffe would refuse B's weights: the first such layer is the culprit."""
    name = next(iter(ctx.weights_b.load_problems))
    la, lb = ctx.run_a.layers.get(name), ctx.run_b.layers.get(name)
    hints = (_layer_hints(ctx, la, lb) if la is not None and lb is not None else
             [f"Caffe refuses to load the weights: {ctx.weights_b.load_problems[name]}"])
    return Divergence(name, lb.type if lb is not None else "", KIND_LOAD, trial,
                      detail="Caffe would refuse to load the weights into this layer of B",
                      hints=hints)


def _weights_name(weights: Arrays) -> str:
    return getattr(weights, "path", "") or "the given weights"


def _for(shapes: Mapping[str, Shape], graph: NetGraph) -> dict[str, Shape]:
    """The shared input shapes a net's graph reads (net inputs and source layers' tops)."""
    names = {blob.name for blob in graph.inputs}
    for lv in graph.layers:
        if _is_source(lv):
            names.update(lv.tops)
    return {name: shape for name, shape in shapes.items() if name in names}


def _feed(network: Network, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The shared inputs, plus zeros for a declared top nothing compared reads (a label)."""
    feed = {}
    for name, shape in network.input_shapes().items():
        feed[name] = inputs[name] if name in inputs else np.zeros(shape, np.float32)
    return feed


def _record(network: Network, inputs: Mapping[str, np.ndarray], tick: Callable) -> _Run:
    """One forward keeping every layer's tops (references, not copies) for localising."""
    tops: dict[str, list[np.ndarray]] = {}

    def keep(layer, values) -> None:
        tops[layer.name] = values
        tick()

    feed = _feed(network, inputs)
    network.run(feed, keep=(), on_layer=keep)
    return _Run(network, tops, feed, {lv.name: lv for lv in network.graph.layers})
