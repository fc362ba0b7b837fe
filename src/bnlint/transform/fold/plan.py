"""The plan of a fold, made on the blob graph of the TEST net, never on file positions.

Each blob version has its producer and consumers, in-place chains resolved. The plan
says which BatchNorm folds into which Convolution, Deconvolution or InnerProduct,
which becomes a Scale, and why each other one stays. Folds chain: in conv -> bn ->
scale -> bn, the second BatchNorm folds into the conv too, so a second run finds
nothing. A Scale is absorbed when it is the only reader of the BatchNorm's output,
has one bottom and one blob per channel (axis 1 after canonicalisation, one axis).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from bnlint.caffe.infer import infer_graph_shapes
from bnlint.caffe.layers.batchnorm import BVLC_FORM, NVCAFFE_FIELDS, NVCAFFE_LAYER_FIELDS
from bnlint.caffe.net import (Blob, LayerView, NetGraph, NetState, NetView, layer_included,
                              net_view)
from bnlint.caffe.netfile import reparse
from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError
from bnlint.syntax.edits import apply_edits
from bnlint.transform import UnsafeRewriteError
from bnlint.transform.fold.edits import Convert, PlanOutput, Target, ToBvlc, scalar_text
from bnlint.transform.fold.maths import batchnorm_affine, fold_affine64
from bnlint.transform.fold.sites import (AS_SCALE, BATCHNORM_TYPES, CONVERTED, FOLDABLE_TYPES,
                                         FOLDED, KEPT, TEST_STATE, FoldPlan, Reason, Site)
from bnlint.transform.fold.statistics import (Stats, bn_statistics, check_weights, form_of,
                                              reshaped, shape_text)


class Planner(PlanOutput):
    """Each BatchNorm's site, decided on the TEST graph; `PlanOutput` writes the result."""

    def __init__(self, text_file, weights: Mapping[str, Sequence[np.ndarray]],
                 input_shapes: Mapping[str, Sequence[int]] | None,
                 keep_unfoldable: bool, to_dialect=None) -> None:
        self.text_file = text_file
        self.to_dialect = to_dialect
        self.text = text_file.source.text
        self.view = net_view(text_file)
        self.weights = weights
        self.keep_unfoldable = keep_unfoldable
        self.graph = NetGraph(self.view, TEST_STATE)
        shapes = {name: tuple(int(d) for d in s) for name, s in (input_shapes or {}).items()}
        self.shapes = infer_graph_shapes(self.graph, shapes)
        self.by_name = {lv.name: lv for lv in self.graph.layers}
        self.sites: list[Site] = []
        self.targets: dict[int, Target] = {}         # producer layer index -> target
        self.chain_end: dict[int, Target] = {}       # id(blob) -> target that now writes it
        self.converts: list[Convert] = []
        self.stats: dict[int, Stats] = {}            # BatchNorm layer index -> its numbers
        self.to_bvlc: list[ToBvlc] = []
        self.removed: set[int] = set()               # layer indices
        self.warnings: list[str] = []

    # --- reading blobs -------------------------------------------------------------------

    def _stored(self, lv: LayerView) -> list[np.ndarray] | None:
        """The layer's blobs as float32, reshaped to the shapes the net expects if known."""
        blobs = self.weights.get(lv.name)
        if blobs is None:
            return None
        arrays = [np.asarray(b, dtype=np.float32) for b in blobs]
        return reshaped(arrays, self.shapes.params.get(lv.index))

    # --- the graph questions -------------------------------------------------------------

    def _channel_scale(self, bn: LayerView, out: Blob, channels: int
                       ) -> tuple[LayerView | None, list | None, str]:
        """The Scale that can be absorbed with this BatchNorm, its (gamma, beta), or why not."""
        scales = [lv for lv, _ in out.consumers if lv.type == "Scale"]
        if len(out.consumers) != 1 or not scales:
            if scales:
                return None, None, (f"Scale '{scales[0].name}' not absorbed: the BatchNorm's "
                                    f"output also feeds {self._readers(out.consumers, scales[0])}")
            return None, None, ""
        scale = scales[0]
        param = scale.message.scale_param
        if len(scale.bottoms) != 1 or len(scale.tops) != 1:
            return None, None, (f"Scale '{scale.name}' not absorbed: it takes its scale from "
                                f"a second bottom")
        if out.shape is None:
            return None, None, f"Scale '{scale.name}' not absorbed: shapes unknown"
        ndim = len(out.shape)
        axis = param.axis + ndim if param.axis < 0 else param.axis
        axes = param.num_axes if param.num_axes >= 0 else ndim - axis
        if axis != 1 or axes != 1:
            return None, None, (f"Scale '{scale.name}' not absorbed: it scales axes "
                                f"{axis}..{axis + axes - 1}, not the channels alone")
        blobs = self._stored(scale)
        want = 2 if param.bias_term else 1
        if blobs is None:
            return None, None, (f"Scale '{scale.name}' not absorbed: it has no weights (Caffe "
                                f"would use its fillers)")
        if len(blobs) != want or any(b.size != channels for b in blobs):
            return None, None, (f"Scale '{scale.name}' not absorbed: its blobs "
                                f"{shape_text(blobs)} are not {want} per-channel blob(s)")
        if scalar_text(scale.find("top")) is None:
            return None, None, f"Scale '{scale.name}' not absorbed: its top is a list"
        gamma = blobs[0].reshape(-1)
        beta = blobs[1].reshape(-1) if param.bias_term else None
        return scale, [gamma, beta], ""

    @staticmethod
    def _readers(consumers, besides: LayerView) -> str:
        others = [lv for lv, _ in consumers if lv is not besides]
        shown = ", ".join(f"{lv.type} '{lv.name}'" for lv in others[:3])
        return shown + (f" and {len(others) - 3} more" if len(others) > 3 else "")

    def _target(self, bn: LayerView, blob: Blob, channels: int) -> tuple[Target | None, str]:
        """The producer this BatchNorm can fold into, or why there is none."""
        if [(lv.index, i) for lv, i in blob.consumers] != [(bn.index, 0)]:
            return None, Reason("input-shared", (
                f"its input '{blob.name}' also feeds "
                f"{self._readers(blob.consumers, bn)}"))
        chained = self.chain_end.get(id(blob))
        if chained is not None:
            return chained, ""
        producer = blob.producer
        if producer is None:
            return None, Reason("net-input", f"its input '{blob.name}' is a net input")
        what = f"{producer.type} '{producer.name}'"
        if producer.type not in FOLDABLE_TYPES:
            return None, Reason("producer-type", (
                f"its input comes from {what}; only Convolution, Deconvolution and "
                f"InnerProduct fold"))
        if len(producer.tops) != 1 or len(producer.bottoms) != 1:
            return None, Reason("producer-wiring", (
                f"{what} has {len(producer.bottoms)} bottoms and "
                f"{len(producer.tops)} tops sharing its weights"))
        if producer.tops[0] == producer.bottoms[0]:
            return None, Reason("in-place", f"{what} works in place")
        top_text = scalar_text(producer.find("top"))
        if top_text is None:
            return None, Reason("top-list", f"{what} writes its top as a list")
        shared = self._shared_params(producer)
        if shared:
            return None, Reason("shared-weights", (
                f"{what} shares its weights with {shared} (param name), which the "
                f"fold would change too"))
        blobs = self._stored(producer)
        if blobs is None:
            return None, Reason("no-weights", (
                f"the weights hold nothing for {what} (Caffe would use its fillers)"))
        bottom = self.graph.bottoms[producer.index][0]
        if bottom is None or bottom.shape is None or producer.index not in self.shapes.params:
            return None, Reason("shapes-unknown", f"the shapes around {what} are unknown")
        ndim = len(bottom.shape)
        if producer.type == "InnerProduct":
            param = producer.message.inner_product_param
            out_axis, groups = (1 if param.transpose else 0), 1
        else:
            param = producer.message.convolution_param
            groups = max(1, int(param.group))
            out_axis = 1 if producer.type == "Deconvolution" else 0
        axis = param.axis + ndim if param.axis < 0 else param.axis
        if axis != 1:
            return None, Reason("axis", (
                f"{what} puts its outputs on axis {axis}, while BatchNorm "
                f"normalises axis 1"))
        expected = 2 if param.bias_term else 1
        if len(blobs) != expected:
            return None, Reason("blob-count", (
                f"{what} has {len(blobs)} blobs in the weights, {expected} expected"))
        weight = blobs[0]
        outputs = weight.shape[out_axis] * (groups if out_axis == 1 else 1)
        if outputs != channels:
            return None, Reason("channels", (
                f"{what} has {outputs} outputs, the BatchNorm {channels} channels"))
        bias = blobs[1].astype(np.float64).reshape(-1) if param.bias_term else None
        return Target(producer, weight.astype(np.float64), bias, out_axis, groups, channels,
                       producer.tops[0], top_text), ""

    def _shared_params(self, producer: LayerView) -> str:
        names = {p.name for p in producer.message.param if p.name}
        if not names:
            return ""
        for lv in self.graph.layers:
            if lv is not producer and names & {p.name for p in lv.message.param if p.name}:
                return f"{lv.type} '{lv.name}'"
        return ""

    def _rewritten_between(self, name: str, first: LayerView, last: LayerView) -> bool:
        """Whether a layer strictly between two layers (file order) writes blob `name`."""
        return any(name in lv.tops for lv in self.graph.layers
                   if first.index < lv.index < last.index)

    # --- the sites -----------------------------------------------------------------------

    def plan(self) -> None:
        if self.graph.problems:
            problem = self.graph.problems[0]
            raise BnlintError(f"cannot fold a net Caffe refuses: {problem.message}",
                              source=self.text_file.source, offset=problem.layer.node.start)
        check_weights(self.weights, self.graph, self.shapes)
        for lv in self.graph.layers:
            if lv.type in BATCHNORM_TYPES:
                self.sites.append(self._site(lv))
        if self.to_dialect is not None:
            for site in self.sites:
                if site.action == KEPT and form_of(site.batchnorm) != BVLC_FORM:
                    self._plan_bvlc(site)

    def _plan_bvlc(self, site: Site) -> None:
        """A kept fork BatchNorm in BVLC's form: BatchNorm, and a Scale for its affine."""
        bn = site.batchnorm
        stats = self.stats.get(bn.index)
        problem = site.reason if stats is None else ""
        bottom = self.graph.bottoms[bn.index][0] if len(bn.bottoms) == 1 else None
        if not problem and stats.gamma is not None and bottom is not None and \
                bottom.shape is not None and len(bottom.shape) < 2:
            problem = "its affine part needs a Scale, and a Scale needs a channel axis"
        if not problem and bn.legacy:
            problem = f"it is written in the {bn.legacy} syntax"
        if problem:
            raise BnlintError(f"cannot write {bn.type} '{bn.name}' in BVLC's form "
                              f"(--to-dialect {self.to_dialect.name}): {problem}",
                              source=self.text_file.source, offset=bn.node.start)
        scale_name = None
        if stats.gamma is not None:
            taken = {lv.name for lv in self.view.layers} | \
                {c.scale_name for c in self.to_bvlc if c.scale_name}
            scale_name, n = f"{bn.name}/scale", 1
            while scale_name in taken:
                n += 1
                scale_name = f"{bn.name}/scale{n}"
        self.to_bvlc.append(ToBvlc(bn, stats, scale_name))
        site.action, site.added = CONVERTED, scale_name

    def _site(self, bn: LayerView) -> Site:
        if len(bn.bottoms) != 1 or len(bn.tops) != 1:
            return Site(bn, KEPT, Reason("wiring", f"it has {len(bn.bottoms)} bottoms and "
                                                   f"{len(bn.tops)} tops"))
        bottom = self.graph.bottoms[bn.index][0]
        top = self.graph.tops[bn.index][0]
        shape = bottom.shape if bottom is not None else None
        if shape == ():
            return Site(bn, KEPT, Reason("zero-axis", "its bottom is a 0-axis blob, which "
                                                      "Caffe's BatchNorm refuses"))
        channels = None if shape is None else (1 if len(shape) == 1 else shape[1])
        stats, why, notes = bn_statistics(bn, self.weights, channels, self.text_file)
        if stats is None:
            return Site(bn, KEPT, why)
        self.stats[bn.index] = stats
        channels = stats.mean.size
        scale, affine, scale_why = self._channel_scale(bn, top, channels)
        if scale_why:
            notes.append(scale_why)
        k, c = self._affine(stats, affine)
        end = self.graph.tops[scale.index][0] if scale is not None else top
        end_layer = scale if scale is not None else bn
        target, why = self._target(bn, bottom, channels)
        if target is not None:
            return self._fold(bn, scale, target, k, c, end, end_layer, notes)
        if self.keep_unfoldable:
            return Site(bn, KEPT, Reason(why.code, f"not foldable, {why} (--keep-unfoldable)"),
                        notes=notes)
        if shape is not None and len(shape) < 2:
            return Site(bn, KEPT, Reason(why.code, f"not foldable, {why}; and a Scale needs a "
                                                   f"channel axis"), notes=notes)
        if scale is not None and (self._rewritten_between(bn.bottoms[0], bn, scale) or
                                  scalar_text(scale.find_all("bottom")[0]) is None or
                                  scalar_text(bn.find_all("bottom")[0]) is None):
            # The Scale could not read what the BatchNorm read: convert the BatchNorm alone.
            notes.append(f"Scale '{scale.name}' kept apart: it cannot be rewired to "
                         f"'{bn.bottoms[0]}'")
            scale = None
            k, c = self._affine(stats, None)
        if scale is not None:
            self.removed.add(bn.index)
        self.converts.append(Convert(bn, scale, (k.astype(np.float32), c.astype(np.float32))))
        return Site(bn, AS_SCALE, why, scale, scale or bn, notes)

    @staticmethod
    def _affine(stats: Stats, affine) -> tuple[np.ndarray, np.ndarray]:
        """(k, c) of the BatchNorm, its own affine (NVCaffe) and the absorbed Scale's."""
        gamma, beta = stats.gamma, stats.beta
        if affine is not None:
            g2, b2 = affine
            n = stats.mean.size
            g1 = np.ones(n) if gamma is None else gamma.astype(np.float64)
            b1 = np.zeros(n) if beta is None else beta.astype(np.float64)
            gamma = g1 * g2.astype(np.float64)
            beta = b1 * g2.astype(np.float64) + (0.0 if b2 is None else b2.astype(np.float64))
        return batchnorm_affine(stats.mean, stats.var, stats.factor, stats.eps, gamma, beta)

    def _fold(self, bn, scale, target: Target, k, c, end: Blob, end_layer: LayerView,
              notes: list[str]) -> Site:
        try:
            weight, bias = fold_affine64(target.weight, target.bias, k, c, target.out_axis,
                                          target.groups)
        except ValueError as err:
            return Site(bn, KEPT, Reason("weights-mismatch", f"its producer's weights do not "
                                                             f"fit: {err}"), notes=notes)
        if target.bias is None:
            notes.append("bias added")
        target.weight, target.bias = weight, bias
        producer = target.layer
        self.targets[producer.index] = target
        self.removed.add(bn.index)
        if scale is not None:
            self.removed.add(scale.index)
        if end.name != target.top_name:
            notes.append(f"top '{target.top_name}' renamed '{end.name}'")
            target.top_name = end.name
            target.top_text = scalar_text(end_layer.find("top"))
        self.chain_end[id(end)] = target
        return Site(bn, FOLDED, "", scale, producer, notes)


def plan_fold(text_file, weights: Mapping[str, Sequence[np.ndarray]], *,
              keep_unfoldable: bool = False,
              input_shapes: Mapping[str, Sequence[int]] | None = None,
              to_dialect=None) -> FoldPlan:
    """Plan the fold of a deploy net with its weights: sites, new text, new arrays.

    Refuses (BnlintError) a solver, a net Caffe itself refuses, and a file that also
    describes a training net: folding is for the TEST net alone. `to_dialect` (a name
    or Dialect with BVLC's schema: "bvlc") also writes the kept fork BatchNorms in
    BVLC's form, and refuses one that cannot be.
    """
    if text_file.kind == "SolverParameter":
        raise BnlintError("a solver, not a net: fold the deploy net it trains",
                          path=text_file.path)
    target = _target_dialect(to_dialect)
    view = net_view(text_file)
    _check_deploy(view, text_file)
    planner = Planner(text_file, weights, input_shapes, keep_unfoldable, target)
    planner.plan()
    text = apply_edits(planner.text, planner.edits())
    dialect = getattr(text_file, "dialect", None)
    if target is not None:
        dialect = _written_dialect(planner, text, target) or dialect
    out_view = parse_view(text_file, text, dialect)
    arrays = planner.arrays(out_view)
    return FoldPlan(planner.sites, text, arrays, planner.warnings, dialect)


def _target_dialect(choice):
    """The Dialect for `to_dialect`; fold writes BVLC's BatchNorm and Scale only."""
    if choice is None:
        return None
    from bnlint.caffe.dialects import resolve_dialect
    from bnlint.caffe.schema import default_schema

    target = resolve_dialect(choice)
    if target is None or target.schema() is not default_schema():
        raise BnlintError(f"fold writes BatchNorm in BVLC's form only: --to-dialect "
                          f"{getattr(target, 'name', choice)} is not a dialect with BVLC's "
                          f"schema (bvlc)")
    return target


def _written_dialect(planner: Planner, text: str, target):
    """`target` when the new text is all in its schema; else None (it is read in the
    input's dialect, so the fields left still mean what they meant) and a warning.
    A fork field the fold removes from the layers it wrote, still there, is a bug: raised."""
    out = reparse(planner.text_file, text, target)
    if not out.problems:
        return target
    view = net_view(out)
    ours = {s.batchnorm.name for s in planner.sites if s.action in (AS_SCALE, CONVERTED)}
    ours |= {c.scale_name for c in planner.to_bvlc if c.scale_name}
    removed = {*NVCAFFE_FIELDS, *NVCAFFE_LAYER_FIELDS, "bn_param"}
    left = []
    for problem in out.problems:
        layer = next((lv for lv in view.layers
                      if lv.node.start <= problem.start < lv.node.end), None)
        if layer is not None and layer.name in ours and problem.field in removed:
            raise UnsafeRewriteError(f"layer '{layer.name}' of the folded net still has "
                                     f"{problem.path}, which {target.name} lacks; this is a "
                                     f"bug in bnlint, nothing was written")
        left.append(f"{problem.path}" + (f" (layer '{layer.name}')" if layer else ""))
    shown = ", ".join(dict.fromkeys(left[:5])) + (", ..." if len(left) > 5 else "")
    planner.warnings.append(f"the BatchNorm layers are in {target.name}'s form, but "
                            f"{len(left)} other field(s) {target.name}'s schema lacks "
                            f"remain, which its Caffe refuses: {shown}")
    return None


def _check_deploy(view: NetView, text_file) -> None:
    """Fold is for the TEST net: refuse a file that also describes a training net.

    TEST-only layers are fine (SSD's DetectionOutput says `include { phase: TEST }`
    in its deploy net); a TRAIN-only layer or a stage means another net shares the
    BatchNorm layers, and folding them would change that net too.
    """
    train = NetState(Phase.TRAIN)
    for lv in view.layers:
        trains_only = layer_included(lv, train) and not layer_included(lv, TEST_STATE)
        if trains_only or (lv.message.HasField("phase") and lv.message.phase == Phase.TRAIN):
            raise BnlintError(f"fold works on a deploy net, and layer '{lv.name}' belongs to "
                              f"the TRAIN phase only: this file also describes a training "
                              f"net, which folding would change; make the deploy net first",
                              source=text_file.source, offset=lv.node.start)
    if view.stages():
        raise BnlintError(f"fold works on one net, and this file selects layers by stage "
                          f"({', '.join(view.stages())}); make the deploy net first",
                          path=text_file.path)


def parse_view(text_file, text: str, dialect=None) -> NetView:
    """The folded text's view, read in `dialect` (None: the input's)."""
    try:
        return net_view(reparse(text_file, text, dialect))
    except BnlintError as err:
        raise UnsafeRewriteError(f"the folded text of {text_file.path} does not parse ({err}); "
                                 f"this is a bug in bnlint, nothing was written") from None
