"""What verify is given (the nets, the options) and what it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from bnlint.caffe.phase import Phase
from bnlint.coded import CodedText

Shape = tuple[int, ...]
Arrays = Mapping[str, Sequence[np.ndarray]]

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5
DEFAULT_TRIALS = 3
MIN_BATCH = 2
#: What verify says of a net the schema does not fully understand (`load_net`'s refusal).
CANNOT_VERIFY = "cannot verify this net"


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
    hints: list[str] = field(default_factory=list)    # Hint: each with its code

    @property
    def hint_codes(self) -> list[str]:
        return [getattr(hint, "code", "") for hint in self.hints]


#: What a hint is about (`Hint.code`); the hint says it in words.
HINTS = {
    "load-refused": "Caffe refuses to load B's weights into the layer",
    "type": "the layer's type differs",
    "batch-statistics": "B's BatchNorm normalises with batch statistics, A's with stored ones",
    "stored-statistics": "A's BatchNorm normalises with batch statistics, B's with stored ones",
    "eps": "BatchNorm's eps differs",
    "phase": "the layer runs in another phase",
    "bias-term": "a Scale's bias_term differs",
    "filler": "the layer is filled from fillers that differ",
    "parameters": "other parameters differ",
    "blobs": "the layer's blobs differ",
    "missing-scale": "A's Scale is missing from B",
    "missing-batchnorm": "A's BatchNorm is missing from B",
    "missing-layer": "A's layer is missing from B",
    "rewired": "layers reordered or rewired",
}


class Hint(CodedText):
    """A hint in words that carries its `HINTS` code."""

    CODES = HINTS


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
