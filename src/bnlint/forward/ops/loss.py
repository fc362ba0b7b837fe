"""Losses and Accuracy, as BVLC Caffe's CPU forwards compute them (float32).

They run only when their labels are given (`bnlint.forward.labels`). Each follows its
`*_loss_layer.cpp` / `accuracy_layer.cpp`: labels cast to int by truncation, the
normalisation modes of `LossParameter` with the legacy `normalize` field where the
layer reads it, and Caffe's float accumulation (`loss -= ...` one term after another,
reproduced by a float32 running sum). What Caffe only DCHECKs (a label outside
[0, classes)) reads foreign memory in a release build; here it is an error.

The top is the unweighted loss, as in Caffe's blob; the net's loss weighs it by the
layer's `loss_weight` (`loss_weights`). Fields and modes are read through the layer's
own schema: caffe-segnet's SoftmaxWithLoss is computed as that fork's; another fork's
field or mode a loss does not compute is refused, never ignored.
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe.layers.base import canonical_axis
from bnlint.caffe.layers.loss import segnet_schema
from bnlint.errors import ForwardError
from bnlint.forward.ops.base import via_double
from bnlint.forward.ops.norm import softmax
from bnlint.forward.registry import Op, register_op

#: Caffe's kLOG_THRESHOLD (loss_layer.hpp), the floor of a probability under a log.
LOG_THRESHOLD = np.float32(1e-20)
#: FLT_MIN, SoftmaxWithLoss's floor.
FLT_MIN = np.float32(np.finfo(np.float32).tiny)

#: Types built on Caffe's LossLayer: a loss weight of 1 on their first top by default.
LOSS_LAYER_TYPES = frozenset({"SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss",
                              "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss",
                              "ContrastiveLoss"})


def loss_weights(layer) -> list[float]:
    """The weight of each top in the net's loss: Layer::SetLossWeights after
    LossLayer::LayerSetUp adds weight 1 when none is written (so a two-top
    SoftmaxWithLoss needs both weights written, as in Caffe)."""
    written = [float(w) for w in layer.loss_weight]
    if not written and layer.type in LOSS_LAYER_TYPES:
        written = [1.0]
    if written and len(written) != len(layer.top):
        why = "" if layer.loss_weight else "; a loss layer gets weight 1 on its first top only"
        raise ForwardError(
            f"layer '{layer.name}' ({layer.type}): loss_weight must be unspecified or "
            f"specified once per top blob ({len(written)} for {len(layer.top)} tops{why})")
    return written or [0.0] * len(layer.top)


def check_layer(layer, own_param: str | None = None, handled: tuple[str, ...] = ()) -> None:
    """What every loss checks at set-up: its loss weights, and no fork field it would
    ignore (R-FCN's `pre_fixed_normalizer`); `handled` names the fork fields the op
    computes (SegNet's `class_weighting` in SoftmaxWithLoss)."""
    from bnlint.caffe import caffe_pb2

    loss_weights(layer)
    for name in ("loss_param", own_param):
        if name is None or not layer.HasField(name):
            continue
        message = getattr(layer, name)
        bvlc = caffe_pb2.DESCRIPTOR.message_types_by_name[message.DESCRIPTOR.name]
        extra = [field.name for field, _ in message.ListFields()
                 if field.name not in bvlc.fields_by_name and field.name not in handled]
        if extra:
            raise ForwardError(f"layer '{layer.name}' ({layer.type}): {name} "
                               f"{', '.join(extra)}: a fork's {layer.type} that bnlint's "
                               f"forward does not compute")


def running_sum(terms: np.ndarray) -> np.float32:
    """`loss += term` in float, term after term, as Caffe's loops accumulate."""
    terms = np.asarray(terms, dtype=np.float32).reshape(-1)
    if not terms.size:
        return np.float32(0)
    return np.add.accumulate(terms, dtype=np.float32)[-1]


def int_labels(op: Op, label: np.ndarray, classes: int, ignore: int | None) -> np.ndarray:
    """static_cast<int> of each label (truncation), checked against [0, classes)."""
    values = np.asarray(label, dtype=np.float32).reshape(-1)
    if not np.isfinite(values).all():
        raise ForwardError(f"label '{op.layer.bottom[1]}' holds inf or NaN")
    index = values.astype(np.int64)
    bad = (index < 0) | (index >= classes)
    if ignore is not None:
        bad &= index != ignore
    if bad.any():
        first = values[np.flatnonzero(bad)[0]]
        raise ForwardError(f"label value {float(first):g} in '{op.layer.bottom[1]}' is "
                           f"outside [0, {classes})"
                           + ("" if ignore is None else f" and not the ignore_label {ignore}"))
    return index


def normalization_mode(loss_param, legacy_default: str, layer,
                       allow_normalize: bool = True) -> str:
    """The NormalizationMode name a layer uses: `normalization` when written, else the
    legacy `normalize` (true: VALID, false: BATCH_SIZE), else the layer's default. The
    mode is named by the layer's own schema (a fork may number its modes otherwise)."""
    if loss_param.HasField("normalize") and not allow_normalize:
        raise ForwardError(f"layer '{layer.name}' ({layer.type}): normalize is deprecated. "
                           f"use \"normalization\" (Caffe refuses it here)")
    field = loss_param.DESCRIPTOR.fields_by_name.get("normalization")
    if field is not None and loss_param.HasField("normalization"):
        name = field.enum_type.values_by_number[loss_param.normalization].name
        if name not in ("FULL", "VALID", "BATCH_SIZE", "NONE"):
            raise ForwardError(f"layer '{layer.name}' ({layer.type}): normalization {name} "
                               f"is a fork's mode that bnlint's forward does not compute")
        return name
    if loss_param.HasField("normalize"):
        return "VALID" if loss_param.normalize else "BATCH_SIZE"
    return legacy_default


def normalizer(mode: str, outer: int, inner: int, valid: int) -> np.float32:
    """get_normalizer: max(1, FULL outer*inner | VALID valid | BATCH_SIZE outer | NONE 1)."""
    value = {"FULL": outer * inner, "VALID": valid, "BATCH_SIZE": outer, "NONE": 1}[mode]
    return max(np.float32(1.0), np.float32(value))


def _ignore_label(loss_param) -> int | None:
    return int(loss_param.ignore_label) if loss_param.HasField("ignore_label") else None


def _outer_inner(x: np.ndarray, axis: int) -> tuple[int, int, int]:
    axis = canonical_axis(axis, x.shape)
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    return axis, outer, inner


def _check_label_count(op: Op, outer: int, inner: int, label: np.ndarray, axis: int) -> None:
    if outer * inner != label.size:
        raise ForwardError(f"number of labels must match number of predictions: "
                           f"{label.size} labels for {outer * inner} predictions "
                           f"(the bottom's axes other than axis {axis})")


def _class_rows(x: np.ndarray, axis: int, outer: int, inner: int) -> np.ndarray:
    """x as (outer*inner, classes): row i*inner+j holds x[i, :, j]."""
    return np.moveaxis(x.reshape(outer, x.shape[axis], inner), 1, 2).reshape(outer * inner, -1)


class _SoftmaxLoss(Op):
    """What SoftmaxWithLoss and InfogainLoss share: the internal softmax along an axis,
    ignore_label, the normaliser, the probabilities as an optional second top."""

    bottoms = (2, 2)
    own_param: str | None = None
    handled: tuple[str, ...] = ()

    def setup(self, layer) -> None:
        check_layer(layer, self.own_param, self.handled)
        self.ignore = _ignore_label(layer.loss_param)

    def _scale(self, outer: int, inner: int, valid: int) -> np.float32:
        return normalizer(self.mode, outer, inner, valid)

    def _forward(self, bottoms):
        x, label = bottoms[0], bottoms[1]
        axis, outer, inner = _outer_inner(x, self.axis)
        _check_label_count(self, outer, inner, label, axis)
        prob = softmax(x, self.axis)
        labels = int_labels(self, label, x.shape[axis], self.ignore)
        rows = _class_rows(prob, axis, outer, inner)
        kept = np.ones(labels.shape, bool) if self.ignore is None else labels != self.ignore
        terms = self._terms(rows[kept], labels[kept], bottoms)
        loss = -running_sum(terms)      # loss -= term: the same roundings as adding -term
        top = np.array(loss / self._scale(outer, inner, int(kept.sum())), dtype=np.float32)
        return [top, prob] if len(self.layer.top) > 1 else [top]


@register_op("SoftmaxWithLoss")
class SoftmaxWithLoss(_SoftmaxLoss):
    """-log(max(p[label], FLT_MIN)) summed, divided by the normaliser (VALID default).

    In caffe-segnet's schema (its LossParameter has no `normalization`) it is that
    fork's layer: each term times class_weighting[label] when weight_by_label_freqs,
    and the sum divided by the count of labels (normalize, true by default there) or
    by the outer count, without BVLC's guard against 0."""

    own_param = "softmax_param"
    handled = ("weight_by_label_freqs", "class_weighting")

    def setup(self, layer) -> None:
        super().setup(layer)
        self.axis = int(layer.softmax_param.axis)
        param = layer.loss_param
        self.segnet = segnet_schema(layer)
        self.class_weights = None
        if self.segnet:
            self.mode = "count" if param.normalize else "outer"
            if param.weight_by_label_freqs:
                self.class_weights = np.array(param.class_weighting, dtype=np.float32)
        else:
            self.mode = normalization_mode(param, "VALID", layer)

    def _scale(self, outer: int, inner: int, valid: int) -> np.float32:
        if not self.segnet:
            return super()._scale(outer, inner, valid)
        return np.float32(valid if self.mode == "count" else outer)

    def _terms(self, rows, labels, bottoms):
        picked = rows[np.arange(len(labels)), labels]
        logs = via_double(np.log, np.maximum(picked, FLT_MIN))
        if self.class_weights is None:
            return logs
        channels = bottoms[0].shape[1] if bottoms[0].ndim > 1 else 1
        if self.class_weights.size != channels:
            raise ForwardError(f"Number of class weight values does not match the number "
                               f"of classes: {self.class_weights.size} class_weighting "
                               f"values for {channels} channels")
        return logs * self.class_weights[labels]


@register_op("InfogainLoss")
class InfogainLoss(_SoftmaxLoss):
    """sum over l of H[label, l] * log(max(p_l, 1e-20)), H from a third bottom or the
    `source` BlobProto file (read as Caffe does, relative to the working directory)."""

    bottoms = (2, 3)
    own_param = "infogain_loss_param"

    def setup(self, layer) -> None:
        super().setup(layer)
        self.axis = int(layer.infogain_loss_param.axis)
        self.mode = normalization_mode(layer.loss_param, "VALID", layer,
                                       allow_normalize=False)
        self.matrix = None
        if len(layer.bottom) < 3:
            if not layer.infogain_loss_param.source:
                raise ForwardError(f"layer '{layer.name}' (InfogainLoss): Infogain matrix "
                                   f"source must be specified (or given as a third bottom)")
            self.matrix = _read_blob_proto(layer.infogain_loss_param.source)

    def _terms(self, rows, labels, bottoms):
        matrix = self.matrix if len(bottoms) < 3 else np.asarray(bottoms[2], np.float32)
        classes = rows.shape[1]
        if matrix.size != classes * classes:
            raise ForwardError(f"the infogain matrix has {matrix.size} values, not "
                               f"{classes}x{classes}")
        gains = matrix.reshape(classes, classes)[labels]
        logs = via_double(np.log, np.maximum(rows, LOG_THRESHOLD))
        return gains * logs       # row by row, l in order: the order of Caffe's loop


def _read_blob_proto(path: str) -> np.ndarray:
    from bnlint.caffe import caffe_pb2
    from bnlint.errors import BnlintError
    from bnlint.files import read_bytes

    blob = caffe_pb2.BlobProto()
    try:
        blob.ParseFromString(read_bytes(path))
    except Exception as err:  # protobuf's DecodeError has no stable import path
        raise BnlintError(f"not a BlobProto file ({err})", path=path) from None
    values = blob.double_data if len(blob.double_data) else blob.data
    return np.asarray(values, dtype=np.float32)


@register_op("EuclideanLoss")
class EuclideanLoss(Op):
    """dot(a - b, a - b) / num / 2."""

    bottoms = (2, 2)

    def setup(self, layer) -> None:
        check_layer(layer)

    def _forward(self, bottoms):
        a, b = bottoms
        if a[0].size != b[0].size or a.shape[:1] != b.shape[:1]:
            raise ForwardError(f"inputs must have the same dimension: {list(a.shape)} and "
                               f"{list(b.shape)}")
        diff = np.subtract(a.reshape(-1), b.reshape(-1))      # flat, as caffe_sub
        dot = np.float32(np.dot(diff, diff))
        return [np.array(dot / np.float32(a.shape[0]) / np.float32(2), dtype=np.float32)]


@register_op("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLoss(Op):
    """-(x (t - [x >= 0]) - log(1 + exp(x - 2x [x >= 0]))) summed over the targets not
    ignored, divided by the normaliser (BATCH_SIZE unless written)."""

    bottoms = (2, 2)

    def setup(self, layer) -> None:
        check_layer(layer)
        self.ignore = _ignore_label(layer.loss_param)
        self.mode = normalization_mode(layer.loss_param, "BATCH_SIZE", layer)

    def _forward(self, bottoms):
        x, target = bottoms
        if x.size != target.size:
            raise ForwardError(f"inputs must have the same count: {x.size} and {target.size}")
        x = x.reshape(-1)
        t = np.asarray(target, np.float32).reshape(-1)
        if self.ignore is not None:
            keep = t.astype(np.int64) != self.ignore
            x, t = x[keep], t[keep]
        positive = (x >= 0).astype(np.float32)
        inner = np.subtract(x, np.float32(2) * x * positive)
        logs = via_double(np.log, np.float32(1) + via_double(np.exp, inner))
        terms = x * (t - positive) - logs
        outer = bottoms[0].shape[0] if bottoms[0].ndim else 1
        loss = -running_sum(terms)
        scale = normalizer(self.mode, outer, bottoms[0].size // max(outer, 1), x.size)
        return [np.array(loss / scale, dtype=np.float32)]


@register_op("HingeLoss")
class HingeLoss(Op):
    """max(0, 1 + x) with x's true-class entry negated; L1 (sum) or L2 (sum of squares),
    divided by num."""

    bottoms = (2, 2)

    def setup(self, layer) -> None:
        from bnlint.caffe import caffe_pb2

        check_layer(layer, "hinge_loss_param")
        self.squared = layer.hinge_loss_param.norm == caffe_pb2.HingeLossParameter.L2

    def _forward(self, bottoms):
        x, label = bottoms
        num = x.shape[0]
        rows = x.reshape(num, -1).copy()
        labels = int_labels(self, np.asarray(label).reshape(-1)[:num], rows.shape[1], None)
        rows[np.arange(num), labels] *= np.float32(-1)
        margins = np.maximum(np.float32(0), np.float32(1) + rows).reshape(-1)
        total = np.dot(margins, margins) if self.squared else np.abs(margins).sum(
            dtype=np.float32)
        return [np.array(np.float32(total) / np.float32(num), dtype=np.float32)]


@register_op("MultinomialLogisticLoss")
class MultinomialLogisticLoss(Op):
    """-log(max(p[label], 1e-20)) summed over the batch, divided by num (the bottom holds
    probabilities: no softmax inside)."""

    bottoms = (2, 2)

    def setup(self, layer) -> None:
        check_layer(layer)

    def _forward(self, bottoms):
        prob, label = bottoms
        if any(d != 1 for d in label.shape[1:4]):
            raise ForwardError(f"the label must be N x 1 x 1 x 1, not {list(label.shape)}")
        num = prob.shape[0]
        rows = prob.reshape(num, -1)
        labels = int_labels(self, label.reshape(-1)[:num], rows.shape[1], None)
        picked = np.maximum(rows[np.arange(num), labels], LOG_THRESHOLD)
        loss = -running_sum(via_double(np.log, picked))
        return [np.array(loss / np.float32(num), dtype=np.float32)]


@register_op("ContrastiveLoss")
class ContrastiveLoss(Op):
    """Per pair d^2 = |a - b|^2: similar pairs add d^2, others max(margin - d, 0)^2
    (legacy_version: max(margin - d^2, 0)); the sum divided by num and by 2."""

    bottoms = (3, 3)

    def setup(self, layer) -> None:
        check_layer(layer, "contrastive_loss_param")
        self.margin = np.float32(layer.contrastive_loss_param.margin)
        self.legacy = bool(layer.contrastive_loss_param.legacy_version)

    def _forward(self, bottoms):
        a, b, similar = bottoms
        def legacy(blob, axis):       # Blob::LegacyShape: missing axes count as 1
            return blob.shape[axis] if axis < blob.ndim else 1

        if (legacy(a, 1) != legacy(b, 1) or
                any(legacy(blob, axis) != 1 for blob in (a, b) for axis in (2, 3)) or
                any(legacy(similar, axis) != 1 for axis in (1, 2, 3))):
            raise ForwardError(f"bottoms of shapes {list(a.shape)}, {list(b.shape)} and "
                               f"{list(similar.shape)}: Caffe wants two N x C x 1 x 1 "
                               f"blobs and an N x 1 x 1 x 1 similarity")
        num = a.shape[0]
        diff = np.subtract(a, b).reshape(num, -1)
        dist_sq = np.einsum("ij,ij->i", diff, diff, dtype=np.float32)
        same = np.asarray(similar, np.float32).reshape(-1)[:num].astype(np.int64) != 0
        if self.legacy:
            apart = np.maximum(self.margin - dist_sq, np.float32(0))
        else:
            apart = np.square(np.maximum(self.margin - np.sqrt(dist_sq), np.float32(0)))
        loss = running_sum(np.where(same, dist_sq, apart))
        return [np.array(loss / np.float32(num) / np.float32(2), dtype=np.float32)]


@register_op("Accuracy")
class Accuracy(Op):
    """The share of labels (not ignored) whose score has fewer than top_k scores >= it
    (ties count against); a second top holds that share per class (0 for a class not
    seen). In caffe-segnet's schema, that fork's older layer: scores ranked as
    (score, class) pairs (a tie goes to the higher class), accuracy / count and the
    per-class shares unguarded (NaN when nothing was counted), the second top of shape
    (C, 1, 1, 1)."""

    bottoms = (2, 2)

    def setup(self, layer) -> None:
        check_layer(layer, "accuracy_param")
        param = layer.accuracy_param
        self.top_k = int(param.top_k)
        self.axis = int(param.axis)
        self.ignore = int(param.ignore_label) if param.HasField("ignore_label") else None
        self.segnet = segnet_schema(layer)

    def _forward(self, bottoms):
        x, label = bottoms
        if self.top_k > x.size // max(label.size, 1):
            raise ForwardError(f"top_k ({self.top_k}) must be less than or equal to the "
                               f"number of classes")
        axis, outer, inner = _outer_inner(x, self.axis)
        _check_label_count(self, outer, inner, label, axis)
        classes = x.shape[axis]
        labels = int_labels(self, label, classes, self.ignore)
        rows = _class_rows(x, axis, outer, inner)
        kept = np.ones(labels.shape, bool) if self.ignore is None else labels != self.ignore
        rows, labels = rows[kept], labels[kept]
        true_scores = rows[np.arange(len(labels)), labels][:, None]
        if self.segnet:      # std::partial_sort of (score, class) pairs, greater first
            ahead = (rows > true_scores) | ((rows == true_scores) &
                                           (np.arange(classes)[None, :] > labels[:, None]))
            better = ahead.sum(axis=1)
        else:
            better = (rows >= true_scores).sum(axis=1) - 1    # the true class itself
        hit = better < self.top_k
        count = len(labels)
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.segnet or count:
                accuracy = np.float32(hit.sum()) / np.float32(count)
            else:
                accuracy = np.float32(0)
            tops = [np.array(accuracy, dtype=np.float32)]
            if len(self.layer.top) > 1:
                seen = np.bincount(labels, minlength=classes).astype(np.float32)
                right = np.bincount(labels[hit], minlength=classes).astype(np.float32)
                if self.segnet:
                    if x.ndim < 2 or x.shape[1] != classes:
                        raise ForwardError("caffe-segnet's per-class accuracy needs the "
                                           "classes on axis 1")
                    tops.append((right / seen).reshape(classes, 1, 1, 1))
                else:
                    tops.append(np.where(seen == 0, np.float32(0), right / seen)
                                .astype(np.float32))
        return tops
