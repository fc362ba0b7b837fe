"""Where the nets part: blob comparison, the first differing layer of A, its cause
upstream (a layer B lacks, adds or wires elsewhere), and hints for known causes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from bnlint.caffe.net import Blob, LayerView, layer_phase
from bnlint.forward.compare import allclose
from bnlint.forward.executor import Network
from bnlint.forward.verify.pairing import is_source, latest_versions
from bnlint.forward.verify.report import (KIND_COMPUTES, KIND_EXTRA, KIND_MISSING, KIND_REWIRED,
                                          Divergence, Hint)
from bnlint.forward.verify.reuse import NOT_FORWARD_FIELDS, global_stats_in, same_blobs
from bnlint.forward.verify.weights import NetWeights


@dataclass(frozen=True)
class BlobError:
    max_abs: float
    max_rel: float
    ok: bool
    problem: str


def compare_blob(out: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> BlobError:
    """max|out - ref| <= atol + rtol * max|ref|, NaNs and shapes checked by `allclose`.

    The same array (a layer B reused) agrees at no cost; finite float32 blobs well
    within tolerance are settled by one float32 pass (its own rounding is a few ulps
    of |ref|, far below rtol); anything else gets `allclose`'s careful float64 check.
    """
    if out is ref:
        return BlobError(0.0, 0.0, True, "")
    ref = np.asarray(ref)
    out = np.asarray(out)
    if out.shape == ref.shape and ref.size and out.dtype == ref.dtype == np.float32:
        with np.errstate(all="ignore"):
            diff = float(np.abs(out - ref).max())
            scale = float(np.abs(ref).max())
        if np.isfinite(diff) and np.isfinite(scale) and diff <= 0.5 * (atol + rtol * scale):
            return BlobError(diff, diff / scale if scale > 0 else 0.0, True, "")
    finite = ref[np.isfinite(ref)] if ref.size else ref
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    result = allclose(out, ref, rtol=0.0, atol=atol + rtol * scale)
    if result.problem:
        return BlobError(float("inf"), float("inf"), False, result.problem)
    rel = result.max_abs / scale if scale > 0 else (0.0 if result.max_abs == 0 else float("inf"))
    return BlobError(result.max_abs, rel, result.ok, "")


# --- localising -------------------------------------------------------------------------

@dataclass
class RecordedRun:
    """One net's recorded forward: each layer's tops by layer name, and the inputs."""

    network: Network
    tops: dict[str, list[np.ndarray]]
    inputs: Mapping[str, np.ndarray]
    layers: dict[str, LayerView]
    latest: dict[str, Blob] = field(init=False)

    def __post_init__(self) -> None:
        self.latest = latest_versions(self.network.graph)

    def bottom(self, lv: LayerView, index: int) -> np.ndarray | None:
        blob = self.network.graph.bottoms[lv.index][index]
        if blob is None:
            return None
        if blob.producer is None or is_source(blob.producer):
            return self.inputs.get(blob.name)
        tops = self.tops.get(blob.producer.name)
        return tops[blob.top_index] if tops is not None and blob.top_index < len(tops) else None

    def value(self, name: str) -> np.ndarray:
        """A blob's last value (after the last layer writing it), as pycaffe shows it."""
        blob = self.latest[name]
        if blob.producer is None or is_source(blob.producer):
            return self.inputs[name]
        return self.tops[blob.producer.name][blob.top_index]

    def producer(self, lv: LayerView, index: int) -> LayerView | None:
        blob = self.network.graph.bottoms[lv.index][index]
        return None if blob is None else blob.producer


@dataclass
class LocaliseContext:
    """What the hints read: both nets, their states, which layers were filled or refused."""

    run_a: RecordedRun
    run_b: RecordedRun
    weights_a: NetWeights
    weights_b: NetWeights
    given_weights: bool
    rtol: float
    atol: float


def localise(ctx: LocaliseContext, trial: int) -> Divergence | None:
    """The first layer of A (in A's order) whose tops differ from B's same-named layer's."""
    run_a, run_b = ctx.run_a, ctx.run_b
    for lv in run_a.network.graph.layers:
        if is_source(lv) or lv.name not in run_a.tops or lv.name not in run_b.tops:
            continue
        lb = run_b.layers[lv.name]
        tops_a, tops_b = run_a.tops[lv.name], run_b.tops[lv.name]
        worst: tuple[str, BlobError] | None = None
        for index, ref in enumerate(tops_a):
            if index >= len(tops_b):
                worst = (lv.tops[index], BlobError(float("inf"), float("inf"), False,
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
            div.hints = layer_hints(ctx, lv, lb)
            return div
        return _upstream_culprit(ctx, lv, lb, rewired, trial, blob, err)
    return None


def _after_absorbed_layers(ctx: LocaliseContext, lv: LayerView, index: int) -> np.ndarray | None:
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


def _first_differing_bottom(ctx: LocaliseContext, lv: LayerView, lb: LayerView) -> int | None:
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


def _upstream_culprit(ctx: LocaliseContext, lv: LayerView, lb: LayerView, index: int, trial: int,
                      blob: str, err: BlobError) -> Divergence:
    """A layer whose inputs differ: blame the layer B lacks, adds, or the rewiring."""
    pa = ctx.run_a.producer(lv, index) if index < len(lv.bottoms) else None
    pb = ctx.run_b.producer(lb, index) if index < len(lb.bottoms) else None
    name_a = pa.name if pa is not None else "a net input"
    name_b = pb.name if pb is not None else "a net input"
    if pa is not None and not is_source(pa) and pa.name not in ctx.run_b.tops:
        first = _first_absent(ctx.run_a, pa, ctx.run_b.tops)
        div = Divergence(first.name, first.type, KIND_MISSING, trial, blob, err.max_abs,
                         err.max_rel, err.problem)
        div.detail = (f"A's layer '{first.name}' ({first.type}) has no counterpart in B; "
                      f"B feeds '{lv.name}' from '{name_b}' instead, and from there on "
                      f"the nets differ")
        div.hints = _missing_hints(ctx, first)
        return div
    if pb is not None and not is_source(pb) and pb.name not in ctx.run_a.tops:
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
    div.hints = [Hint("rewired", f"layers reordered or rewired: in B, '{lv.name}' reads the "
                                 f"output of '{name_b}' where A has it read '{name_a}'")]
    return div


def _first_absent(run: RecordedRun, layer: LayerView, other_tops: Mapping[str, object]
                  ) -> LayerView:
    """Walk up bottom 0 from `layer` while the layers are absent from the other net."""
    current = layer
    while current.bottoms:
        up = run.producer(current, 0)
        if up is None or is_source(up) or up.name in other_tops:
            break
        current = up
    return current


def _missing_hints(ctx: LocaliseContext, lv: LayerView) -> list[str]:
    if lv.type == "Scale":
        return [Hint("missing-scale",
                     f"A's Scale '{lv.name}' is missing from B: the learned per-channel gamma"
                     f"{' and beta' if lv.message.scale_param.bias_term else ''} after the "
                     f"BatchNorm are dropped (Caffe's BatchNorm has no affine part of its "
                     f"own)")]
    if lv.type == "BatchNorm":
        return [Hint("missing-batchnorm",
                     f"A's BatchNorm '{lv.name}' is missing from B; unless its statistics "
                     f"were folded into the layer before, the deploy skips the "
                     f"normalisation")]
    return [Hint("missing-layer", f"A's layer '{lv.name}' ({lv.type}) is missing from B")]


def layer_hints(ctx: LocaliseContext, la: LayerView, lb: LayerView) -> list[str]:
    """Known reasons a layer of the same name computes differently in B."""
    hints: list[str] = []
    state_a, state_b = ctx.run_a.network.state, ctx.run_b.network.state
    if lb.name in ctx.weights_b.load_problems:
        hints.append(Hint("load-refused", f"Caffe refuses to load the weights into B's "
                                          f"'{lb.name}': {ctx.weights_b.load_problems[lb.name]}"))
    if la.type != lb.type:
        hints.append(Hint("type", f"type {la.type} in A, {lb.type} in B"))
        return hints
    if la.type == "BatchNorm":
        global_a, global_b = global_stats_in(la, state_a), global_stats_in(lb, state_b)
        if global_a and not global_b:
            why = ("use_global_stats: false" if lb.message.batch_norm_param.HasField(
                "use_global_stats") else f"the layer runs in phase {layer_phase(lb, state_b).name}")
            hints.append(Hint("batch-statistics",
                              f"B's BatchNorm '{lb.name}' normalises with batch statistics "
                              f"({why}); a deploy must use the stored ones: set "
                              f"use_global_stats: true"))
        elif global_b and not global_a:
            hints.append(Hint("stored-statistics",
                              f"A's BatchNorm '{la.name}' normalises with batch statistics, "
                              f"B's with the stored ones"))
        eps_a, eps_b = la.message.batch_norm_param.eps, lb.message.batch_norm_param.eps
        if np.float32(eps_a) != np.float32(eps_b):
            hints.append(Hint("eps", f"eps differs: {eps_a:g} in A, {eps_b:g} in B (the "
                                     f"deploy must keep the train net's eps)"))
    elif layer_phase(la, state_a) != layer_phase(lb, state_b):
        hints.append(Hint("phase", f"'{la.name}' runs in phase "
                                   f"{layer_phase(la, state_a).name} in A, "
                                   f"{layer_phase(lb, state_b).name} in B"))
    if la.type == "Scale":
        bias_a, bias_b = la.message.scale_param.bias_term, lb.message.scale_param.bias_term
        if bias_a != bias_b:
            hints.append(Hint("bias-term", f"Scale '{la.name}': bias_term "
                                           f"{str(bias_a).lower()} in A, "
                                           f"{str(bias_b).lower()} in B (the learned beta is "
                                           f"{'dropped' if bias_a else 'added'})"))
    filled = la.name in ctx.weights_a.filled or lb.name in ctx.weights_b.filled
    filler_diffs = [d for d in _param_diffs(la.message, lb.message) if "filler" in d[0]]
    if filled and filler_diffs:
        shown = "; ".join(f"{path}: {va} in A, {vb} in B" for path, va, vb in filler_diffs)
        hints.append(Hint("filler", f"'{la.name}' has no weights in the caffemodel, so each "
                                    f"net fills it from its own filler, and they differ "
                                    f"({shown})"))
    known = {"batch_norm_param.use_global_stats", "batch_norm_param.eps",
             "batch_norm_param.moving_average_fraction", "scale_param.bias_term"}
    others = [d for d in _param_diffs(la.message, lb.message)
              if "filler" not in d[0] and d[0] not in known]
    if others:
        hints.append(Hint("parameters", "parameters differ: " + "; ".join(
            f"{path}: {va} in A, {vb} in B" for path, va, vb in others[:5])))
    blobs_a = ctx.run_a.network.blobs.get(la.name, [])
    blobs_b = ctx.run_b.network.blobs.get(lb.name, [])
    if not hints and not same_blobs(blobs_a, blobs_b):
        if ctx.given_weights:
            hints.append(Hint("blobs", "its blobs differ between the two nets' weights"))
        else:
            hints.append(Hint("blobs", "its blobs differ"))
    return hints


def _param_diffs(a, b, prefix: str = "") -> list[tuple[str, str, str]]:
    """(field path, A's value, B's value) where two LayerParameters differ, defaults applied."""
    diffs: list[tuple[str, str, str]] = []
    b_fields = b.DESCRIPTOR.fields_by_name
    for fd in a.DESCRIPTOR.fields:
        if not prefix and fd.name in NOT_FORWARD_FIELDS:
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
