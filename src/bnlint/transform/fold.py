"""Fold BatchNorm, and the channel-wise Scale after it, into the layer that produces its input.

Three parts, each usable alone:

- The maths, pure functions of arrays (as torch/nn/utils/fusion.py): float64 inside,
  rounded once to float32. `batchnorm_as_scale` turns BatchNorm (+ affine) into one
  per-channel (scale, bias); `fold_batchnorm` puts it into a producer's weights.
- The plan, made on the blob graph of the TEST net (each blob version with its
  producer and consumers, in-place chains resolved), never on positions in the file:
  which BatchNorm folds into which Convolution, Deconvolution or InnerProduct, which
  becomes a Scale, and why each other one stays. Folds chain: in conv -> bn -> scale
  -> bn, the second BatchNorm folds into the conv too, so a second run finds nothing.
- The rewrite: format-preserving text edits and the new weights, checked before
  anything is returned (black's safe mode): the output parses and wires, a second
  fold finds nothing to do, each rewritten layer fed the input net's own blob matches
  the BatchNorm chain it replaces (a wrong axis, eps or group is named at its site,
  not blurred by the layers after it), and the outputs of both nets match on seeded
  inputs.

What the numbers mean (docs/DOMAIN.md sections 1, 2, 6, 7):

- BVLC BatchNorm: mean = blobs[0] / s, var = blobs[1] / s with s = blobs[2][0], both
  0 when s == 0 (Caffe's guard: it then computes x / sqrt(eps)); eps as written, read as
  the float32 Caffe stores. `use_global_stats: false` means batch statistics even at
  TEST: nothing to fold.
- NVIDIA Caffe BatchNorm, a layer read in NVCaffe's schema (`batch_norm_param` has
  `scale_bias`): blobs [mean, variance, correction] and, with scale_bias or a
  scale/bias filler, [scale, bias] too (5 blobs: C, C, 1, C, C). At TEST NVCaffe uses
  the stored mean and variance as they are (the correction is not applied, and
  use_global_stats is not read), eps = max(eps, 1e-5), then scale and bias
  (NVIDIA/caffe src/caffe/layers/batch_norm_layer.cpp). 5 blobs of other sizes
  (Intel Caffe's order) or in a net read in another dialect are left alone.
- SegNet's "BN" (alexgkendall/caffe-segnet) with bn_mode INFERENCE: y = x * scale +
  shift, blobs (1, C, 1, 1); its statistics were folded into them by SegNet's
  compute_bn_statistics.py, so it folds as a BatchNorm with mean 0 and variance 1.
  bn_mode LEARN normalises with the batch's statistics even at TEST: kept.
- A Scale is absorbed when it is the only reader of the BatchNorm's output, has one
  bottom and one blob per channel (axis 1 after canonicalisation, one axis).

The edits, chosen to be minimal:

- Folded: the BatchNorm and Scale layers are removed (with their own comment lines,
  as `remove_field` does). When the chain ends in another name than the producer's top
  (`conv -> bn_out -> s_out`), the producer's top is renamed to that last name: one
  edit, and every later reader stays as written. That rename is always safe here,
  because folding requires that nothing but the BatchNorm reads the producer's top,
  and Caffe forbids a second non-in-place writer of the last name. (Rewiring the
  readers' bottoms instead would touch each consumer and each in-place layer after
  them.) `bias_term: false` on the producer becomes `true`; its new bias blob is
  written.
- Not foldable (the producer's output has other readers, it is a Pooling or an input,
  ...): with a Scale after it, the BatchNorm is removed and the Scale reads the
  BatchNorm's bottom and gets `bias_term: true`; alone, the BatchNorm layer becomes a
  Scale layer with bias in place (type, parameter block, `param` specs). Both keep the
  layer names the weights are matched by. `keep_unfoldable` leaves them as they are.
- `to_dialect` "bvlc": what is left of the forks' forms becomes BVLC's. A kept NVCaffe
  BatchNorm becomes a BVLC BatchNorm (blobs mean, variance, 1; its NVCaffe-only fields
  removed, eps raised to NVCaffe's 1e-5 floor where lower) followed by an in-place
  Scale with bias holding its scale and bias; a kept SegNet BN becomes a BatchNorm
  that passes x through exactly (mean 0, variance 1 - eps) and that Scale. A fork's
  form that cannot be written so (no weights, batch statistics) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from bnlint.caffe.layers import FOLD_INTO, FOLD_NORM, ROLE_SELECTION, TABLE, types_with
from bnlint.caffe.layers import base as layer_fields
from bnlint.caffe.infer import infer_graph_shapes
from bnlint.caffe.net import (Blob, LayerView, NetGraph, NetState, NetView, layer_included,
                              net_view)
from bnlint.caffe.phase import Phase
from bnlint.caffe.layers.batchnorm import (
    BVLC_FORM,
    DEFAULT_EPS,
    MIN_EPS,
    NVCAFFE_FIELDS,
    NVCAFFE_FORM,
    NVCAFFE_LAYER_FIELDS,
    SEGNET_FORM,
    batch_norm_blob_count,
    batch_norm_form,
    effective_eps,
    inverse_scale_factor,
)
from bnlint.errors import EXIT_FINDINGS, BnlintError, WeightsError
from bnlint.syntax.edits import (Edit, Locator, apply_edits, insert_after, insert_into,
                                 remove_field, remove_fields, replace_value)
from bnlint.syntax.nodes import Field, Message, Scalar
from bnlint.transform import UnsafeRewriteError, collapse_blank_lines

FOLDABLE_TYPES = tuple(name for name, t in TABLE.items() if t.fold == FOLD_INTO)
BATCHNORM_TYPES = tuple(name for name, t in TABLE.items() if t.fold == FOLD_NORM)
TEST_STATE = NetState(Phase.TEST)

FOLDED = "folded"
AS_SCALE = "scale"
KEPT = "kept"
CONVERTED = "converted"          # kept, and written in BVLC's form (to_dialect)


# --- the maths ------------------------------------------------------------------------------

def _batchnorm_affine(mean, var, scale_factor, eps, gamma=None, beta=None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm (+ affine) as y = x * k + c, per channel, in float64."""
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    var = np.asarray(var, dtype=np.float64).reshape(-1)
    inverse = inverse_scale_factor(float(scale_factor))
    mean = mean * inverse
    var = var * inverse
    gamma = np.ones_like(mean) if gamma is None else np.asarray(gamma, np.float64).reshape(-1)
    beta = np.zeros_like(mean) if beta is None else np.asarray(beta, np.float64).reshape(-1)
    if not mean.size == var.size == gamma.size == beta.size:
        raise ValueError(f"per-channel sizes differ: mean {mean.size}, variance {var.size}, "
                         f"scale {gamma.size}, bias {beta.size}")
    k = gamma / np.sqrt(var + float(eps))
    return k, beta - mean * k


def batchnorm_as_scale(mean, var, scale_factor, eps, gamma=None, beta=None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias) of the one Scale layer equal to BatchNorm followed by (gamma, beta).

    mean and var are Caffe's stored sums, divided here by `scale_factor` (blobs[2];
    0 means mean 0 and variance 0, as Caffe). gamma/beta None: no Scale (1 and 0).
    """
    k, c = _batchnorm_affine(mean, var, scale_factor, eps, gamma, beta)
    return k.astype(np.float32), c.astype(np.float32)


def _fold_affine64(weight, bias, k, c, out_axis: int = 0, groups: int = 1
                   ) -> tuple[np.ndarray, np.ndarray]:
    """weight and bias of a layer followed by y = x * k + c, per output channel (float64)."""
    w = np.asarray(weight, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64).reshape(-1)
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    n = k.size
    b = np.zeros(n) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
    if b.size != n or c.size != n:
        raise ValueError(f"bias has {b.size} values, the fold has {n} channels")
    if out_axis == 0:
        if w.ndim < 1 or w.shape[0] != n:
            raise ValueError(f"weights {list(w.shape)} do not have {n} output channels on "
                             f"axis 0")
        scaled = w * k.reshape((n,) + (1,) * (w.ndim - 1))
    elif out_axis == 1:
        # Deconvolution (C_in, O/g, ...): group g's rows hold output channels g*O/g + j.
        if w.ndim < 2 or groups < 1 or w.shape[0] % groups or w.shape[1] * groups != n:
            raise ValueError(f"weights {list(w.shape)} with {groups} groups do not have {n} "
                             f"output channels on axis 1")
        grouped = w.reshape((groups, w.shape[0] // groups) + w.shape[1:])
        factor = k.reshape((groups, 1, w.shape[1]) + (1,) * (w.ndim - 2))
        scaled = (grouped * factor).reshape(w.shape)
    else:
        raise ValueError(f"output channels on axis {out_axis}: only 0 or 1 occur in Caffe")
    return scaled, b * k + c


def fold_batchnorm(weight, bias, mean, var, scale_factor, eps, gamma=None, beta=None,
                   out_axis: int = 0, groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') of a producer with BatchNorm (+ Scale gamma, beta) folded in, float32.

    k = gamma / sqrt(var + eps); W' = W * k along the output-channel axis; b' =
    (b - mean) * k + beta. `out_axis` is 0 for Convolution and InnerProduct, 1 for
    Deconvolution (per group: weights are (C_in, O/groups, ...)) and for a transposed
    InnerProduct. bias None: the producer had none (0). Maths in float64.
    """
    k, c = _batchnorm_affine(mean, var, scale_factor, eps, gamma, beta)
    w, b = _fold_affine64(weight, bias, k, c, out_axis, groups)
    return w.astype(np.float32), b.astype(np.float32)


# --- the plan -------------------------------------------------------------------------------

@dataclass
class Site:
    """One BatchNorm (or fork "BN") and what the fold does with it."""

    batchnorm: LayerView
    action: str                           # FOLDED, AS_SCALE, KEPT or CONVERTED
    reason: str = ""                      # why not folded (or not converted)
    scale: LayerView | None = None        # the Scale absorbed with it
    into: LayerView | None = None         # FOLDED: the producer; AS_SCALE: the Scale layer
    notes: list[str] = field(default_factory=list)
    added: str | None = None              # CONVERTED: the new Scale layer's name, if any

    @property
    def name(self) -> str:
        return self.batchnorm.name + (f" + {self.scale.name}" if self.scale else "")

    @property
    def written_as(self) -> str:
        """CONVERTED: the BVLC layers that now do its work."""
        return "BVLC BatchNorm" + (f" + Scale '{self.added}'" if self.added else "")

    def describe(self) -> str:
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        if self.action == FOLDED:
            return f"{self.name} folded into {self.into.type} '{self.into.name}'{notes}"
        if self.action == AS_SCALE:
            return (f"{self.name} -> Scale '{self.into.name}' with bias: not folded, "
                    f"{self.reason}{notes}")
        if self.action == CONVERTED:
            return f"{self.batchnorm.name} -> {self.written_as}: {self.reason}{notes}"
        return f"{self.batchnorm.name} kept: {self.reason}{notes}"


@dataclass
class _Stats:
    mean: np.ndarray
    var: np.ndarray
    factor: float
    eps: float
    gamma: np.ndarray | None
    beta: np.ndarray | None
    form: str                             # BVLC_FORM, NVCAFFE_FORM or SEGNET_FORM


@dataclass
class _Target:
    """A producer receiving one or more folds (a chain conv -> bn -> bn folds twice)."""

    layer: LayerView
    weight: np.ndarray                    # float64
    bias: np.ndarray | None               # float64; None: the layer has no bias yet
    out_axis: int
    groups: int
    channels: int
    top_name: str                         # the producer's top after the folds so far
    top_text: str                         # ... as source text (quoted as the file quotes it)


@dataclass
class _Convert:
    """A BatchNorm done by a Scale layer: the BN rewritten, or the Scale after it reused."""

    batchnorm: LayerView
    scale: LayerView | None               # reuse this Scale (the BN is removed)
    arrays: tuple[np.ndarray, np.ndarray]


@dataclass
class _ToBvlc:
    """A kept fork BatchNorm written in BVLC's form: BatchNorm (+ a new Scale after it)."""

    layer: LayerView
    stats: _Stats
    scale_name: str | None                # the new in-place Scale; None: no affine part


@dataclass
class FoldPlan:
    """What a fold does: the sites, the new text and the new weights (by layer name).

    `dialect` is the one the new text is read in: the target of `to_dialect`, else the
    input's (a kept NVCaffe BatchNorm means what NVCaffe computes, fields or not).
    """

    sites: list[Site]
    text: str
    arrays: dict[str, list[np.ndarray]]
    warnings: list[str] = field(default_factory=list)
    dialect: object = None


def _blob_size(array) -> int:
    return int(np.asarray(array).size)


def _shape_text(blobs) -> str:
    return ", ".join(str(list(np.shape(b))) for b in blobs)


def _scalar_text(field: Field | None) -> str | None:
    """A field's value as written, when it is one scalar (not a `[list]`)."""
    if field is None or not isinstance(field.value, Scalar):
        return None
    return field.value.text


def _block_fields(lv: LayerView, block: str) -> set[str]:
    node = lv.find(block)
    if node is None or not isinstance(node.value, Message):
        return set()
    return {f.name for f in node.value.fields}


def _quoted(name: str) -> str:
    """A protobuf text string literal."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unit_variance(eps: float) -> np.float32:
    """The float32 v with v + eps == 1 exactly in float32: a BatchNorm with mean 0 and
    variance v computes (x - 0) / sqrt(1), i.e. x, bit for bit."""
    e = np.float32(eps)
    v = np.float32(1) - e
    while v + e > np.float32(1):
        v = np.nextafter(v, np.float32(0))
    while v + e < np.float32(1):
        v = np.nextafter(v, np.float32(2))
    return v


def _form(lv: LayerView) -> str:
    """Which Caffe's BatchNorm the layer is (for another fork's "BN": what it is)."""
    try:
        return batch_norm_form(lv.message)
    except BnlintError:
        return "a BN layer whose schema has no bn_param"


class _Planner:
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
        self.targets: dict[int, _Target] = {}        # producer layer index -> target
        self.chain_end: dict[int, _Target] = {}      # id(blob) -> target that now writes it
        self.converts: list[_Convert] = []
        self.stats: dict[int, _Stats] = {}           # BatchNorm layer index -> its numbers
        self.to_bvlc: list[_ToBvlc] = []
        self.removed: set[int] = set()               # layer indices
        self.warnings: list[str] = []

    # --- reading blobs -------------------------------------------------------------------

    def _stored(self, lv: LayerView) -> list[np.ndarray] | None:
        """The layer's blobs as float32, reshaped to the shapes the net expects if known."""
        blobs = self.weights.get(lv.name)
        if blobs is None:
            return None
        arrays = [np.asarray(b, dtype=np.float32) for b in blobs]
        return _reshaped(arrays, self.shapes.params.get(lv.index))

    def _check_weights(self) -> None:
        """Weights that do not fit the net are bad input, with or without verification:
        Caffe refuses them (`CopyTrainedLayersFrom`), and a fold would write them on."""
        path = getattr(self.weights, "path", None) or None
        for lv in self.graph.layers:
            blobs = self.weights.get(lv.name)
            expected = self.shapes.params.get(lv.index)
            if blobs is None or expected is None:
                continue
            if lv.type == "BatchNorm" and len(blobs) == 5:
                continue                     # 5 blobs of some fork: _statistics says whose
            if len(blobs) != len(expected):
                raise WeightsError(f"layer '{lv.name}' ({lv.type}): {len(blobs)} blobs in the "
                                   f"weights, the net needs {len(expected)} "
                                   f"({', '.join(str(list(e)) for e in expected) or 'none'})",
                                   path=path)
            legacy = getattr(blobs, "legacy", ())
            for i, (blob, shape) in enumerate(zip(blobs, expected)):
                got = tuple(np.shape(blob))
                padded = len(shape) <= 4 and got == (1,) * (4 - len(shape)) + tuple(shape)
                if got != tuple(shape) and not (padded and (legacy[i] if i < len(legacy)
                                                            else True)):
                    raise WeightsError(f"layer '{lv.name}' ({lv.type}), blob {i}: shape "
                                       f"{list(got)} in the weights vs {list(shape)} expected "
                                       f"by the net", path=path)

    def _statistics(self, bn: LayerView, channels: int | None
                    ) -> tuple[_Stats | None, str, list[str]]:
        """The BatchNorm's statistics (and affine of its own), or why they cannot be used."""
        blobs = self.weights.get(bn.name)
        form = _form(bn)
        if form == SEGNET_FORM:
            stats, why, notes = self._segnet_statistics(bn, blobs, channels)
        elif bn.type == "BN":
            return None, f"{form}: bnlint folds SegNet's BN only", []
        elif blobs is None:
            return None, ("the weights hold no trained statistics for it (Caffe would use "
                          "zeros)"), []
        elif form == NVCAFFE_FORM:
            stats, why, notes = self._nvcaffe_statistics(bn, blobs, channels)
        else:
            stats, why, notes = self._bvlc_statistics(bn, blobs, channels)
        if stats is None:
            return None, why, []
        inverse = inverse_scale_factor(stats.factor)
        if not np.all(stats.var.astype(np.float64) * inverse + stats.eps > 0):
            return None, "variance + eps is not positive for some channel (Caffe gives NaN)", []
        if bn.find("batch_norm_param.eps") is not None:
            notes.append(f"eps {stats.eps:g}")
        return stats, "", notes

    def _bvlc_statistics(self, bn: LayerView, blobs, channels: int | None):
        sizes = [_blob_size(b) for b in blobs]
        channels = channels if channels is not None else (sizes[0] if sizes else 0)
        param = bn.message.batch_norm_param
        if len(blobs) == 5:
            dialect = getattr(getattr(self.text_file, "dialect", None), "name", "portable")
            return None, (f"5 blobs ({_shape_text(blobs)}), as NVIDIA Caffe's BatchNorm with "
                          f"scale and bias stores them, but the net is read as '{dialect}', "
                          f"where BatchNorm has 3; NVCaffe itself loads 5 only into a "
                          f"BatchNorm with `batch_norm_param {{ scale_bias: true }}`"), []
        if len(blobs) != 3:
            return None, (f"{len(blobs)} blobs ({_shape_text(blobs)}); BVLC's BatchNorm has "
                          f"3"), []
        if sizes[0] != channels or sizes[1] != channels or sizes[2] < 1:
            return None, (f"its blobs {_shape_text(blobs)} do not fit {channels} "
                          f"channels (mean, variance, scale factor)"), []
        if param.HasField("use_global_stats") and not param.use_global_stats:
            return None, ("it uses batch statistics (use_global_stats: false), so its "
                          "output depends on the batch and there is nothing to fold"), []
        flat = [np.asarray(b, dtype=np.float32).reshape(-1) for b in blobs]
        stats = _Stats(flat[0], flat[1], float(flat[2][0]), float(param.eps), None, None,
                       BVLC_FORM)
        notes = ["scale factor 0: mean and variance 0, as Caffe computes it"] \
            if stats.factor == 0 else []
        return stats, "", notes

    def _nvcaffe_statistics(self, bn: LayerView, blobs, channels: int | None):
        """NVCaffe's TEST numbers: stored mean and variance as they are, eps floored."""
        sizes = [_blob_size(b) for b in blobs]
        channels = channels if channels is not None else (sizes[0] if sizes else 0)
        param = bn.message.batch_norm_param
        want = batch_norm_blob_count(bn.message)
        if len(blobs) != want:
            if len(blobs) == 5:
                return None, (f"5 blobs ({_shape_text(blobs)}), but without `scale_bias: "
                              f"true` (or a scale/bias filler) NVIDIA Caffe's BatchNorm has "
                              f"3 and refuses them"), []
            return None, (f"{len(blobs)} blobs ({_shape_text(blobs)}); NVIDIA Caffe's "
                          f"BatchNorm has {want} here"), []
        c = channels
        if sizes != [c, c, 1, c, c][:want]:
            affine = ", scale, bias" if want == 5 else ""
            return None, (f"{want} blobs {_shape_text(blobs)} that are not NVIDIA Caffe's "
                          f"(mean, variance, correction [1]{affine}) for {c} channels: "
                          f"another fork's BatchNorm, whose meaning bnlint does not know"), []
        flat = [np.asarray(b, dtype=np.float32).reshape(-1) for b in blobs]
        eps = effective_eps(bn.message)
        gamma, beta = (flat[3], flat[4]) if want == 5 else (None, None)
        notes = ["NVCaffe BatchNorm with its scale and bias" if want == 5 else
                 "NVCaffe BatchNorm: its statistics as stored"]
        if float(flat[2][0]) != 1.0:
            notes.append(f"its correction blob {float(flat[2][0]):g} is not applied, as in "
                         f"NVCaffe")
        if param.HasField("use_global_stats") and not param.use_global_stats:
            notes.append("use_global_stats: false, which NVCaffe does not read at TEST")
        return _Stats(flat[0], flat[1], 1.0, eps, gamma, beta, NVCAFFE_FORM), "", notes

    def _segnet_statistics(self, bn: LayerView, blobs, channels: int | None):
        """SegNet's BN at TEST with bn_mode INFERENCE: x * scale + shift, which is a
        BatchNorm with mean 0, variance 1 and eps 0 followed by (scale, shift)."""
        param = layer_fields.fork_param(bn.message, "bn_param")
        if layer_fields.fork_enum(param, "bn_mode", "LEARN") != "INFERENCE":
            return None, ("SegNet's BN with bn_mode LEARN (the default) normalises with the "
                          "batch's statistics even at TEST, so its output depends on the "
                          "batch and there is nothing to fold (SegNet's "
                          "compute_bn_statistics.py writes bn_mode: INFERENCE)"), []
        if blobs is None:
            return None, ("the weights hold no scale and shift for it (Caffe would use its "
                          "fillers)"), []
        sizes = [_blob_size(b) for b in blobs]
        channels = channels if channels is not None else (sizes[0] if sizes else 0)
        if sizes != [channels, channels]:
            return None, (f"its blobs {_shape_text(blobs)} are not SegNet's scale and shift "
                          f"for {channels} channels"), []
        scale, shift = (np.asarray(b, dtype=np.float32).reshape(-1) for b in blobs)
        stats = _Stats(np.zeros(channels, np.float32), np.ones(channels, np.float32), 1.0, 0.0,
                       scale, shift, SEGNET_FORM)
        return stats, "", ["SegNet BN (bn_mode INFERENCE): x * scale + shift"]

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
                                f"{_shape_text(blobs)} are not {want} per-channel blob(s)")
        if _scalar_text(scale.find("top")) is None:
            return None, None, f"Scale '{scale.name}' not absorbed: its top is a list"
        gamma = blobs[0].reshape(-1)
        beta = blobs[1].reshape(-1) if param.bias_term else None
        return scale, [gamma, beta], ""

    @staticmethod
    def _readers(consumers, besides: LayerView) -> str:
        others = [lv for lv, _ in consumers if lv is not besides]
        shown = ", ".join(f"{lv.type} '{lv.name}'" for lv in others[:3])
        return shown + (f" and {len(others) - 3} more" if len(others) > 3 else "")

    def _target(self, bn: LayerView, blob: Blob, channels: int) -> tuple[_Target | None, str]:
        """The producer this BatchNorm can fold into, or why there is none."""
        if [(lv.index, i) for lv, i in blob.consumers] != [(bn.index, 0)]:
            return None, (f"its input '{blob.name}' also feeds "
                          f"{self._readers(blob.consumers, bn)}")
        chained = self.chain_end.get(id(blob))
        if chained is not None:
            return chained, ""
        producer = blob.producer
        if producer is None:
            return None, f"its input '{blob.name}' is a net input"
        what = f"{producer.type} '{producer.name}'"
        if producer.type not in FOLDABLE_TYPES:
            return None, (f"its input comes from {what}; only Convolution, Deconvolution and "
                          f"InnerProduct fold")
        if len(producer.tops) != 1 or len(producer.bottoms) != 1:
            return None, (f"{what} has {len(producer.bottoms)} bottoms and "
                          f"{len(producer.tops)} tops sharing its weights")
        if producer.tops[0] == producer.bottoms[0]:
            return None, f"{what} works in place"
        top_text = _scalar_text(producer.find("top"))
        if top_text is None:
            return None, f"{what} writes its top as a list"
        shared = self._shared_params(producer)
        if shared:
            return None, (f"{what} shares its weights with {shared} (param name), which the "
                          f"fold would change too")
        blobs = self._stored(producer)
        if blobs is None:
            return None, f"the weights hold nothing for {what} (Caffe would use its fillers)"
        bottom = self.graph.bottoms[producer.index][0]
        if bottom is None or bottom.shape is None or producer.index not in self.shapes.params:
            return None, f"the shapes around {what} are unknown"
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
            return None, (f"{what} puts its outputs on axis {axis}, while BatchNorm "
                          f"normalises axis 1")
        expected = 2 if param.bias_term else 1
        if len(blobs) != expected:
            return None, f"{what} has {len(blobs)} blobs in the weights, {expected} expected"
        weight = blobs[0]
        outputs = weight.shape[out_axis] * (groups if out_axis == 1 else 1)
        if outputs != channels:
            return None, f"{what} has {outputs} outputs, the BatchNorm {channels} channels"
        bias = blobs[1].astype(np.float64).reshape(-1) if param.bias_term else None
        return _Target(producer, weight.astype(np.float64), bias, out_axis, groups, channels,
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
        self._check_weights()
        for lv in self.graph.layers:
            if lv.type in BATCHNORM_TYPES:
                self.sites.append(self._site(lv))
        if self.to_dialect is not None:
            for site in self.sites:
                if site.action == KEPT and _form(site.batchnorm) != BVLC_FORM:
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
        self.to_bvlc.append(_ToBvlc(bn, stats, scale_name))
        site.action, site.added = CONVERTED, scale_name

    def _site(self, bn: LayerView) -> Site:
        if len(bn.bottoms) != 1 or len(bn.tops) != 1:
            return Site(bn, KEPT, f"it has {len(bn.bottoms)} bottoms and {len(bn.tops)} tops")
        bottom = self.graph.bottoms[bn.index][0]
        top = self.graph.tops[bn.index][0]
        shape = bottom.shape if bottom is not None else None
        if shape == ():
            return Site(bn, KEPT, "its bottom is a 0-axis blob, which Caffe's BatchNorm "
                                  "refuses")
        channels = None if shape is None else (1 if len(shape) == 1 else shape[1])
        stats, why, notes = self._statistics(bn, channels)
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
            return Site(bn, KEPT, f"not foldable, {why} (--keep-unfoldable)", notes=notes)
        if shape is not None and len(shape) < 2:
            return Site(bn, KEPT, f"not foldable, {why}; and a Scale needs a channel axis",
                        notes=notes)
        if scale is not None and (self._rewritten_between(bn.bottoms[0], bn, scale) or
                                  _scalar_text(scale.find_all("bottom")[0]) is None or
                                  _scalar_text(bn.find_all("bottom")[0]) is None):
            # The Scale could not read what the BatchNorm read: convert the BatchNorm alone.
            notes.append(f"Scale '{scale.name}' kept apart: it cannot be rewired to "
                         f"'{bn.bottoms[0]}'")
            scale = None
            k, c = self._affine(stats, None)
        if scale is not None:
            self.removed.add(bn.index)
        self.converts.append(_Convert(bn, scale, (k.astype(np.float32), c.astype(np.float32))))
        return Site(bn, AS_SCALE, why, scale, scale or bn, notes)

    @staticmethod
    def _affine(stats: _Stats, affine) -> tuple[np.ndarray, np.ndarray]:
        """(k, c) of the BatchNorm, its own affine (NVCaffe) and the absorbed Scale's."""
        gamma, beta = stats.gamma, stats.beta
        if affine is not None:
            g2, b2 = affine
            n = stats.mean.size
            g1 = np.ones(n) if gamma is None else gamma.astype(np.float64)
            b1 = np.zeros(n) if beta is None else beta.astype(np.float64)
            gamma = g1 * g2.astype(np.float64)
            beta = b1 * g2.astype(np.float64) + (0.0 if b2 is None else b2.astype(np.float64))
        return _batchnorm_affine(stats.mean, stats.var, stats.factor, stats.eps, gamma, beta)

    def _fold(self, bn, scale, target: _Target, k, c, end: Blob, end_layer: LayerView,
              notes: list[str]) -> Site:
        try:
            weight, bias = _fold_affine64(target.weight, target.bias, k, c, target.out_axis,
                                          target.groups)
        except ValueError as err:
            return Site(bn, KEPT, f"its producer's weights do not fit: {err}", notes=notes)
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
            target.top_text = _scalar_text(end_layer.find("top"))
        self.chain_end[id(end)] = target
        return Site(bn, FOLDED, "", scale, producer, notes)

    @staticmethod
    def _param_block(lv: LayerView) -> str:
        return "inner_product_param" if lv.type == "InnerProduct" else "convolution_param"

    def _had_no_bias(self, lv: LayerView) -> bool:
        return not getattr(lv.message, self._param_block(lv)).bias_term

    # --- the output ----------------------------------------------------------------------

    def edits(self) -> list[Edit]:
        loc = Locator(self.text_file.tree)
        edits: list[Edit] = []
        for index in sorted(self.removed):
            edits.append(remove_field(loc, self.view.layers[index].node))
        edits = collapse_blank_lines(self.text, edits)
        for target in self.targets.values():
            producer = target.layer
            top = producer.find("top")
            if target.top_name != producer.tops[0]:
                edits.append(replace_value(top, target.top_text))
            if self._had_no_bias(producer):
                edits.append(self._bias_term_edit(loc, producer, self._param_block(producer)))
        for convert in self.converts:
            edits.extend(self._convert_edits(loc, convert))
        for conv in self.to_bvlc:
            edits.extend(self._to_bvlc_edits(loc, conv))
        return edits

    @staticmethod
    def _bias_term_edit(loc: Locator, lv: LayerView, block: str) -> Edit:
        """`bias_term: true` in the layer's `block` (replaced, added, or a new block)."""
        existing = lv.find(f"{block}.bias_term")
        if existing is not None:
            return replace_value(existing, "true")
        holder = lv.find(block)
        if holder is not None and isinstance(holder.value, Message):
            return insert_into(loc, holder.value, "bias_term: true")
        return insert_into(loc, lv.body, f"{block} {{ bias_term: true }}")

    def _convert_edits(self, loc: Locator, convert: _Convert) -> list[Edit]:
        bn, scale = convert.batchnorm, convert.scale
        if scale is not None:
            # The BatchNorm is removed (above); the Scale reads what it read.
            edits = []
            bottom = scale.find_all("bottom")[0]
            new_bottom = bn.find_all("bottom")[0].value.text
            if bottom.value.text != new_bottom:
                edits.append(replace_value(bottom, new_bottom))
            if not scale.message.scale_param.bias_term:
                edits.append(self._bias_term_edit(loc, scale, "scale_param"))
            return edits
        edits = [replace_value(bn.find("type"), '"Scale"')]
        # BVLC's param specs are the statistics'; SegNet's two are its scale and shift,
        # which the Scale's two blobs are.
        gone = list(bn.find_all("param")) if bn.type == "BatchNorm" else []
        gone += self._nvcaffe_layer_fields(bn)
        block = "batch_norm_param" if bn.type == "BatchNorm" else "bn_param"
        blocks = bn.find_all(block)
        gone += blocks[:-1]
        edits.extend(remove_fields(loc, gone))
        new_block = "scale_param { bias_term: true }"
        if blocks:
            last = blocks[-1]
            edits.append(Edit(last.start, loc.last_token(last).end, new_block))
        else:
            edits.append(insert_after(loc, bn.find_all("top")[-1], new_block))
        return edits

    def _nvcaffe_layer_fields(self, lv: LayerView) -> list[Field]:
        """With to_dialect, NVCaffe's precision fields of a layer the fold rewrites."""
        if self.to_dialect is None:
            return []
        return [f for f in lv.body.fields if f.name in NVCAFFE_LAYER_FIELDS]

    def _to_bvlc_edits(self, loc: Locator, conv: _ToBvlc) -> list[Edit]:
        """The kept fork BatchNorm as BVLC's BatchNorm, and its new Scale after it."""
        bn = conv.layer
        edits: list[Edit] = []
        specs = list(bn.find_all("param"))
        gone = self._nvcaffe_layer_fields(bn)
        if conv.stats.form == SEGNET_FORM:
            edits.append(replace_value(bn.find("type"), '"BatchNorm"'))
            gone += bn.find_all("bn_param")
            moved = specs                 # SegNet's specs are the scale's and the shift's
        else:
            moved = specs[3:]             # NVCaffe's 4th and 5th: the scale's and bias's
            edits.extend(self._bvlc_param_edits(bn, gone))
        gone += moved
        edits.extend(_remove_from_layer(loc, bn, gone))
        if conv.scale_name is not None:
            top = _scalar_text(bn.find_all("top")[0]) or _quoted(bn.tops[0])
            parts = [f"name: {_quoted(conv.scale_name)}", 'type: "Scale"', f"bottom: {top}",
                     f"top: {top}"]
            parts += [self.text[spec.start:loc.last_token(spec).end] for spec in moved]
            parts.append("scale_param { bias_term: true }")
            edits.append(insert_after(loc, bn.node, "layer { " + " ".join(parts) + " }"))
        return edits

    def _bvlc_param_edits(self, bn: LayerView, gone: list[Field]) -> list[Edit]:
        """NVCaffe's batch_norm_param as BVLC reads it alike: its own fields go (to
        `gone`), a use_global_stats: false NVCaffe ignores at TEST goes, an eps below
        NVCaffe's floor becomes the floor. A block left empty goes whole."""
        param = bn.message.batch_norm_param
        low_eps = layer_fields.float32(param.eps) < MIN_EPS
        batch_stats = param.HasField("use_global_stats") and not param.use_global_stats
        edits = []
        for block in bn.find_all("batch_norm_param"):
            if not isinstance(block.value, Message):
                continue
            fields = block.value.fields
            drop = [f for f in fields if f.name in NVCAFFE_FIELDS or
                    (f.name == "use_global_stats" and batch_stats)]
            if len(drop) == len(fields):
                gone.append(block)
                continue
            gone.extend(drop)
            if low_eps:
                edits.extend(replace_value(f, "1e-05") for f in fields if f.name == "eps")
        return edits

    def arrays(self, out_view: NetView) -> dict[str, list[np.ndarray]]:
        """The new weights: every layer of the new net that has weights or needs none.

        Blobs are written in the shapes the net expects (a legacy 4-D blob becomes its
        real shape), so Caffe's exact shape check passes. A layer the input weights lack
        gets nothing: Caffe fills it from its fillers, as it did before.
        """
        changed: dict[str, list[np.ndarray]] = {}
        for target in self.targets.values():
            bias = target.bias if target.bias is not None else np.zeros(target.channels)
            changed[target.layer.name] = [target.weight.astype(np.float32),
                                          bias.astype(np.float32)]
        for convert in self.converts:
            owner = convert.scale or convert.batchnorm
            changed[owner.name] = [a.copy() for a in convert.arrays]
        for conv in self.to_bvlc:
            changed.update(self._bvlc_arrays(conv))
        removed = {self.view.layers[i].name for i in self.removed}
        out_graph = NetGraph(out_view, TEST_STATE)
        out_shapes = infer_graph_shapes(out_graph)
        arrays: dict[str, list[np.ndarray]] = {}
        missing = []
        for lv in out_graph.layers:
            expected = out_shapes.params.get(lv.index)
            if lv.name in changed:
                arrays[lv.name] = changed[lv.name]
            elif lv.name in self.weights and lv.name not in removed:
                blobs = [np.asarray(b, dtype=np.float32) for b in self.weights[lv.name]]
                arrays[lv.name] = _reshaped(blobs, expected)
            elif expected == []:
                arrays[lv.name] = []
            else:
                missing.append(lv.name)
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            self.warnings.append(f"{len(missing)} layers have no weights in the input, and "
                                 f"none are written for them (Caffe fills them from their "
                                 f"fillers, as before): {shown}")
        return arrays

    @staticmethod
    def _bvlc_arrays(conv: _ToBvlc) -> dict[str, list[np.ndarray]]:
        """BVLC's blobs: mean and variance with scale factor 1 (NVCaffe's as stored;
        SegNet's mean 0 and the variance that makes var + 1e-5 exactly 1, BVLC's default
        eps), and the affine part for the new Scale."""
        stats = conv.stats
        n = stats.mean.size
        if stats.form == SEGNET_FORM:
            mean = np.zeros(n, np.float32)
            var = np.full(n, _unit_variance(DEFAULT_EPS), np.float32)
        else:
            mean = np.asarray(stats.mean, np.float32).reshape(-1)
            var = np.asarray(stats.var, np.float32).reshape(-1)
        out = {conv.layer.name: [mean, var, np.ones(1, np.float32)]}
        if conv.scale_name is not None:
            out[conv.scale_name] = [np.asarray(stats.gamma, np.float32).reshape(-1),
                                    np.asarray(stats.beta, np.float32).reshape(-1)]
        return out


def _remove_from_layer(loc: Locator, layer: LayerView, fields: list[Field]) -> list[Edit]:
    """`remove_fields`, except that the layer's last fields, when they go and only the
    layer's closing brace follows them on their line, go with the line breaks before
    them: the brace then closes the line above, not a line of its own."""
    body = layer.body
    ids = {id(f) for f in fields}
    k = len(body.fields)
    while k > 1 and id(body.fields[k - 1]) in ids:
        k -= 1
    tail = body.fields[k:]
    after = loc.next_token(loc.last_token(tail[-1])) if tail else None
    if not tail or after is not body.close or "\n" in after.prefix or \
            any(f.name_token.prefix.strip() for f in tail):
        return remove_fields(loc, fields)
    rest = [f for f in fields if not any(f is t for t in tail)]
    start = loc.last_token(body.fields[k - 1]).end
    return remove_fields(loc, rest) + [Edit(start, loc.last_token(tail[-1]).end, "")]


def _reshaped(arrays: list[np.ndarray], expected) -> list[np.ndarray]:
    """Arrays in the expected shapes where the sizes allow (legacy 4-D blobs)."""
    if expected is None or len(expected) != len(arrays):
        return arrays
    return [a.reshape(shape) if a.size == int(np.prod(shape, dtype=np.int64)) else a
            for a, shape in zip(arrays, expected)]


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
    planner = _Planner(text_file, weights, input_shapes, keep_unfoldable, target)
    planner.plan()
    text = apply_edits(planner.text, planner.edits())
    dialect = getattr(text_file, "dialect", None)
    if target is not None:
        dialect = _written_dialect(planner, text, target) or dialect
    out_view = _parse_view(text, text_file.path, dialect)
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


def _written_dialect(planner: _Planner, text: str, target):
    """`target` when the new text is all in its schema; else None (it is read in the
    input's dialect, so the fields left still mean what they meant) and a warning.
    A fork field the fold removes from the layers it wrote, still there, is a bug: raised."""
    out = _parse_text_file(text, planner.text_file.path, target)
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


def _parse_text_file(text: str, path: str, dialect=None):
    """The new text, in `dialect` (None: detected from its fields)."""
    from bnlint.caffe.load import parse_text
    from bnlint.source import SourceFile

    extra = {"dialect": dialect} if dialect is not None else {}
    return parse_text(SourceFile(path, text), **extra)


def _parse_view(text: str, path: str, dialect=None) -> NetView:
    try:
        return net_view(_parse_text_file(text, path, dialect))
    except BnlintError as err:
        raise UnsafeRewriteError(f"the folded text of {path} does not parse ({err}); this is "
                                 f"a bug in bnlint, nothing was written") from None


# --- checking ---------------------------------------------------------------------------------

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

    out_file = _parse_text_file(plan.text, text_file.path, plan.dialect)
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
    rng = np.random.default_rng([seed, 1])
    inputs = {name: rng.uniform(-1.0, 1.0, shape).astype(np.float32)
              for name, shape in reference.input_shapes().items()}
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


def check_stable(plan: FoldPlan, path: str, keep_unfoldable: bool) -> None:
    """A second fold of the output finds nothing to do, and the output wires as Caffe needs."""
    out_file = _parse_text_file(plan.text, path, plan.dialect)
    again = _Planner(out_file, plan.arrays, None, keep_unfoldable)
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


@dataclass
class FoldResult:
    plan: FoldPlan
    caffemodel: bytes
    verification: Verification | None


def fold(text_file, weights: Mapping[str, Sequence[np.ndarray]], *,
         keep_unfoldable: bool = False, verify: bool = True,
         input_shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0,
         to_dialect=None) -> FoldResult:
    """Plan, check and serialise a fold; nothing is written here.

    The weights checked by the forward are the ones read back from the serialised
    .caffemodel, so what is verified is what the caller writes.
    """
    from bnlint.caffe.schema import default_schema
    from bnlint.caffe.weights import caffemodel_bytes, weights_from_net

    plan = plan_fold(text_file, weights, keep_unfoldable=keep_unfoldable,
                     input_shapes=input_shapes, to_dialect=to_dialect)
    check_stable(plan, text_file.path, keep_unfoldable)
    out_view = _parse_view(plan.text, text_file.path, plan.dialect)
    data = caffemodel_bytes(out_view, plan.arrays)
    verification = None
    if verify:
        message = default_schema().message_class("NetParameter")()
        message.ParseFromString(data)
        written = weights_from_net(message) if len(message.layer) else {}
        verification = verify_fold(text_file, weights, plan, written,
                                   input_shapes=input_shapes, seed=seed)
    return FoldResult(plan, data, verification)


__all__ = ["AS_SCALE", "CONVERTED", "FOLDED", "FOLDABLE_TYPES", "KEPT", "FoldMismatch",
           "FoldPlan", "FoldResult", "Site", "Verification", "batchnorm_as_scale",
           "check_stable", "fold", "fold_batchnorm", "plan_fold", "verify_fold"]
