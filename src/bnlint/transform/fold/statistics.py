"""What a BatchNorm's stored blobs mean, per Caffe fork, and weights that fit the net.

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnlint.caffe.layers import base as layer_fields
from bnlint.caffe.layers.batchnorm import (
    BVLC_FORM,
    NVCAFFE_FORM,
    SEGNET_FORM,
    batch_norm_blob_count,
    batch_norm_form,
    effective_eps,
    inverse_scale_factor,
)
from bnlint.caffe.net import LayerView
from bnlint.errors import BnlintError, WeightsError
from bnlint.transform.fold.sites import Reason


@dataclass
class Stats:
    mean: np.ndarray
    var: np.ndarray
    factor: float
    eps: float
    gamma: np.ndarray | None
    beta: np.ndarray | None
    form: str                             # BVLC_FORM, NVCAFFE_FORM or SEGNET_FORM


def blob_size(array) -> int:
    return int(np.asarray(array).size)


def shape_text(blobs) -> str:
    return ", ".join(str(list(np.shape(b))) for b in blobs)


def form_of(lv: LayerView) -> str:
    """Which Caffe's BatchNorm the layer is (for another fork's "BN": what it is)."""
    try:
        return batch_norm_form(lv.message)
    except BnlintError:
        return "a BN layer whose schema has no bn_param"


def bn_statistics(bn: LayerView, weights, channels: int | None, text_file
                  ) -> tuple[Stats | None, str, list[str]]:
    """The BatchNorm's statistics (and affine of its own), or why they cannot be used."""
    blobs = weights.get(bn.name)
    form = form_of(bn)
    if form == SEGNET_FORM:
        stats, why, notes = _segnet_statistics(bn, blobs, channels)
    elif bn.type == "BN":
        return None, Reason("unknown-form", f"{form}: bnlint folds SegNet's BN only"), []
    elif blobs is None:
        return None, Reason("no-weights", (
            "the weights hold no trained statistics for it (Caffe would use "
            "zeros)")), []
    elif form == NVCAFFE_FORM:
        stats, why, notes = _nvcaffe_statistics(bn, blobs, channels)
    else:
        stats, why, notes = _bvlc_statistics(bn, blobs, channels, text_file)
    if stats is None:
        return None, why, []
    inverse = inverse_scale_factor(stats.factor)
    if not np.all(stats.var.astype(np.float64) * inverse + stats.eps > 0):
        return None, Reason("nan-variance", (
            "variance + eps is not positive for some channel (Caffe gives NaN)")), []
    if bn.find("batch_norm_param.eps") is not None:
        notes.append(f"eps {stats.eps:g}")
    return stats, "", notes


def _bvlc_statistics(bn: LayerView, blobs, channels: int | None, text_file):
    sizes = [blob_size(b) for b in blobs]
    channels = channels if channels is not None else (sizes[0] if sizes else 0)
    param = bn.message.batch_norm_param
    if len(blobs) == 5:
        dialect = getattr(getattr(text_file, "dialect", None), "name", "portable")
        return None, Reason("blob-count", (
            f"5 blobs ({shape_text(blobs)}), as NVIDIA Caffe's BatchNorm with "
            f"scale and bias stores them, but the net is read as '{dialect}', "
            f"where BatchNorm has 3; NVCaffe itself loads 5 only into a "
            f"BatchNorm with `batch_norm_param {{ scale_bias: true }}`")), []
    if len(blobs) != 3:
        return None, Reason("blob-count", (
            f"{len(blobs)} blobs ({shape_text(blobs)}); BVLC's BatchNorm has "
            f"3")), []
    if sizes[0] != channels or sizes[1] != channels or sizes[2] < 1:
        return None, Reason("blob-shapes", (
            f"its blobs {shape_text(blobs)} do not fit {channels} "
            f"channels (mean, variance, scale factor)")), []
    if param.HasField("use_global_stats") and not param.use_global_stats:
        return None, Reason("batch-statistics", (
            "it uses batch statistics (use_global_stats: false), so its "
            "output depends on the batch and there is nothing to fold")), []
    flat = [np.asarray(b, dtype=np.float32).reshape(-1) for b in blobs]
    stats = Stats(flat[0], flat[1], float(flat[2][0]), float(param.eps), None, None,
                   BVLC_FORM)
    notes = ["scale factor 0: mean and variance 0, as Caffe computes it"] \
        if stats.factor == 0 else []
    return stats, "", notes


def _nvcaffe_statistics(bn: LayerView, blobs, channels: int | None):
    """NVCaffe's TEST numbers: stored mean and variance as they are, eps floored."""
    sizes = [blob_size(b) for b in blobs]
    channels = channels if channels is not None else (sizes[0] if sizes else 0)
    param = bn.message.batch_norm_param
    want = batch_norm_blob_count(bn.message)
    if len(blobs) != want:
        if len(blobs) == 5:
            return None, Reason("blob-count", (
                f"5 blobs ({shape_text(blobs)}), but without `scale_bias: "
                f"true` (or a scale/bias filler) NVIDIA Caffe's BatchNorm has "
                f"3 and refuses them")), []
        return None, Reason("blob-count", (
            f"{len(blobs)} blobs ({shape_text(blobs)}); NVIDIA Caffe's "
            f"BatchNorm has {want} here")), []
    c = channels
    if sizes != [c, c, 1, c, c][:want]:
        affine = ", scale, bias" if want == 5 else ""
        return None, Reason("unknown-form", (
            f"{want} blobs {shape_text(blobs)} that are not NVIDIA Caffe's "
            f"(mean, variance, correction [1]{affine}) for {c} channels: "
            f"another fork's BatchNorm, whose meaning bnlint does not know")), []
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
    return Stats(flat[0], flat[1], 1.0, eps, gamma, beta, NVCAFFE_FORM), "", notes


def _segnet_statistics(bn: LayerView, blobs, channels: int | None):
    """SegNet's BN at TEST with bn_mode INFERENCE: x * scale + shift, which is a
    BatchNorm with mean 0, variance 1 and eps 0 followed by (scale, shift)."""
    param = layer_fields.fork_param(bn.message, "bn_param")
    if layer_fields.fork_enum(param, "bn_mode", "LEARN") != "INFERENCE":
        return None, Reason("batch-statistics", (
            "SegNet's BN with bn_mode LEARN (the default) normalises with the "
            "batch's statistics even at TEST, so its output depends on the "
            "batch and there is nothing to fold (SegNet's "
            "compute_bn_statistics.py writes bn_mode: INFERENCE)")), []
    if blobs is None:
        return None, Reason("no-weights", (
            "the weights hold no scale and shift for it (Caffe would use its "
            "fillers)")), []
    sizes = [blob_size(b) for b in blobs]
    channels = channels if channels is not None else (sizes[0] if sizes else 0)
    if sizes != [channels, channels]:
        return None, Reason("blob-shapes", (
            f"its blobs {shape_text(blobs)} are not SegNet's scale and shift "
            f"for {channels} channels")), []
    scale, shift = (np.asarray(b, dtype=np.float32).reshape(-1) for b in blobs)
    stats = Stats(np.zeros(channels, np.float32), np.ones(channels, np.float32), 1.0, 0.0,
                   scale, shift, SEGNET_FORM)
    return stats, "", ["SegNet BN (bn_mode INFERENCE): x * scale + shift"]


def check_weights(weights, graph, shapes) -> None:
    """Weights that do not fit the net are bad input, with or without verification:
    Caffe refuses them (`CopyTrainedLayersFrom`), and a fold would write them on."""
    path = getattr(weights, "path", None) or None
    for lv in graph.layers:
        blobs = weights.get(lv.name)
        expected = shapes.params.get(lv.index)
        if blobs is None or expected is None:
            continue
        if lv.type == "BatchNorm" and len(blobs) == 5:
            continue                     # 5 blobs of some fork: bn_statistics says whose
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


def reshaped(arrays: list[np.ndarray], expected) -> list[np.ndarray]:
    """Arrays in the expected shapes where the sizes allow (legacy 4-D blobs)."""
    if expected is None or len(expected) != len(arrays):
        return arrays
    return [a.reshape(shape) if a.size == int(np.prod(shape, dtype=np.int64)) else a
            for a, shape in zip(arrays, expected)]
