"""Batch normalisation in its forms: BVLC's BatchNorm, NVIDIA Caffe's, the forks' BN.

What each form computes, in one place (the lint rules, fold, to-deploy, verify and the
forward op ask here rather than knowing it themselves):

- BVLC (`BatchNorm` read with BVLC's schema): y = (x - m/s) / sqrt(v/s + eps), from the
  stored sums m, v and the scale factor s = blobs[2], 1/s taken as 0 when s is 0
  (`inverse_scale_factor`). Global statistics when `use_global_stats` says so, else
  by phase: TEST global, TRAIN the batch's (`uses_global_stats`).
- NVIDIA Caffe (`BatchNorm` whose schema has `batch_norm_param.scale_bias`): the phase
  alone decides; the stored statistics are used as they are (blobs[2] is a variance
  correction never applied at TEST); eps at least 1e-5 (`effective_eps`); with
  `scale_bias` (or a scale/bias filler) 5 blobs, the last two a scale and a bias.
- SegNet/ENet's `BN` (`bn_mode: INFERENCE`): x * scale + shift; other forks' `BN`
  layers by their bn_param fields (`bn_variant`).
"""

from __future__ import annotations

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    LayerShapes,
    Shape,
    expect_bottoms,
    float32,
    fork_field,
    fork_param,
    legacy_dim,
)
from bnlint.caffe.layers.table import (
    FOLD_NORM,
    NORMALISATION,
    ROLE_IN_PLACE,
    ROLE_PARAMETRIC,
    declare,
    shape_rule,
)
from bnlint.caffe.phase import Phase
from bnlint.errors import ShapeError

declare("BatchNorm", NORMALISATION, param="batch_norm_param",
        roles=[ROLE_PARAMETRIC, ROLE_IN_PLACE], fold=FOLD_NORM,
        doc="batch normalisation (statistics only in BVLC; NVCaffe adds scale and bias)")
declare("BN", NORMALISATION, dialect=forks.SEGNET, param="bn_param",
        roles=[ROLE_PARAMETRIC], fold=FOLD_NORM,
        doc="SegNet/ENet batch normalisation with its scale and shift")

BVLC_FORM = "BVLC"
NVCAFFE_FORM = "NVCaffe"
SEGNET_FORM = "SegNet"

#: BatchNormParameter.eps's default in every form.
DEFAULT_EPS = 1e-5
#: cuDNN's CUDNN_BN_MIN_EPSILON as the float32 Caffe stores eps in: NVCaffe raises a
#: smaller eps to it (on CPU too), as forks with a cuDNN BatchNorm do.
MIN_EPS = float32(1e-5)
#: NVCaffe's BatchNormParameter fields, which BVLC's schema lacks.
NVCAFFE_FIELDS = ("scale_bias", "scale_filler", "bias_filler", "engine")
#: NVCaffe's per-layer precision fields (BVLC computes in float32 throughout).
NVCAFFE_LAYER_FIELDS = ("forward_type", "backward_type", "forward_math", "backward_math")
#: Intel Caffe's BatchNormParameter fields (its BatchNorm with a built-in affine).
INTEL_FIELDS = ("use_weight_bias", "bias_term")


def nvcaffe_batch_norm(layer) -> bool:
    """Whether the layer's schema is NVIDIA Caffe's: its BatchNormParameter has
    `scale_bias`. NVCaffe's BatchNorm differs at TEST whatever its fields say (stored
    statistics as they are, eps at least 1e-5), so the schema decides, not the text."""
    fields = layer.batch_norm_param.DESCRIPTOR.fields_by_name
    return "scale_bias" in fields


def nvcaffe_scale_bias(layer) -> bool:
    """NVCaffe's `scale_bias_`: the field, or implied by a scale or bias filler
    (NVIDIA/caffe batch_norm_layer.cpp LayerSetUp). False outside NVCaffe's schema."""
    if not nvcaffe_batch_norm(layer):
        return False
    param = layer.batch_norm_param
    return bool(param.scale_bias or param.HasField("scale_filler")
                or param.HasField("bias_filler"))


def batch_norm_blob_count(layer) -> int:
    """3 (mean, variance, BVLC's scale factor or NVCaffe's variance correction), or 5
    with NVCaffe's scale and bias: the count LayerSetUp creates, which
    CopyTrainedLayersFrom then requires of the weights."""
    return 5 if nvcaffe_scale_bias(layer) else 3


def uses_global_stats(layer, phase: Phase) -> bool:
    """Whether a BatchNorm running in `phase` normalises with its stored statistics.

    BVLC: `use_global_stats` when given, else TEST. NVCaffe: the phase alone
    (batch_norm_layer.cpp reads the field only to warn).
    """
    param = layer.batch_norm_param
    if not nvcaffe_batch_norm(layer) and param.HasField("use_global_stats"):
        return bool(param.use_global_stats)
    return phase == Phase.TEST


def effective_eps(layer) -> float:
    """The eps a BatchNorm computes with, as a float32 value: NVCaffe's is at least
    `MIN_EPS`; BVLC's is the stored one."""
    eps = float32(layer.batch_norm_param.eps)
    return max(eps, MIN_EPS) if nvcaffe_batch_norm(layer) else eps


def inverse_scale_factor(factor):
    """1 / s for BVLC's scale factor blob s, or 0 when s is 0, as Caffe computes it
    (its statistics are then 0 and y = x / sqrt(eps)). Keeps the type of `factor`
    (a float32 stays float32)."""
    return type(factor)(0) if factor == 0 else type(factor)(1) / factor


def batch_norm_form(layer) -> str:
    """Which Caffe's batch normalisation the layer is: BVLC_FORM, NVCAFFE_FORM,
    SEGNET_FORM, or for another fork's BN what it is. ShapeError for a BN whose schema
    has no bn_param."""
    if layer.type == "BN":
        variant = bn_variant(layer)
        return SEGNET_FORM if variant == "segnet" else f"the {variant} fork's BN layer"
    return NVCAFFE_FORM if nvcaffe_batch_norm(layer) else BVLC_FORM


@shape_rule("BatchNorm")
def _batch_norm(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    if not shape:       # Caffe's bottom[0]->shape(1) fails on a 0-axis blob
        raise ShapeError("needs a bottom with at least 1 axis, got a 0-axis blob")
    channels = 1 if len(shape) == 1 else shape[1]
    params = [(channels,), (channels,), (1,)]
    if batch_norm_blob_count(layer) == 5:
        params += [(channels,), (channels,)]
    return LayerShapes(tops=[shape], params=params)



def bn_variant(layer) -> str:
    """Which fork's "BN" the message is, from its bn_param fields.

    - "segnet" (alexgkendall/caffe-segnet, ENet): bn_mode; blobs scale, shift (1,C,1,1).
    - "pspnet" (hszhao/PSPNet's own): var_eps/moving_average; four (1,C,1,1) blobs
      scale, shift, mean, variance (channels on `axis`).
    - "tsn" (yjxiong's caffe, used by PSPNet's released models and others): slope and
      bias fillers, frozen, eps; four (1,C) blobs scale, shift, mean, variance.
    """
    param = fork_param(layer, "bn_param")
    if param is None:
        raise ShapeError("the layer's schema has no bn_param, so bnlint cannot tell which "
                         "fork's BN layer this is; parse the net with the fork's dialect")
    fields = param.DESCRIPTOR.fields_by_name
    if "bn_mode" in fields:
        return "segnet"
    if "var_eps" in fields or "moving_average" in fields:
        return "pspnet"
    return "tsn"


def bn_channel_axis(layer, variant: str) -> int:
    if variant == "pspnet":
        axis = int(fork_field(fork_param(layer, "bn_param"), "axis", 1))
        if axis not in (1, 2):
            raise ShapeError(f"BN axis must be 1 or 2, got {axis}")
        return axis
    return 1


@shape_rule("BN")
def _bn(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    variant = bn_variant(layer)
    axis = bn_channel_axis(layer, variant)
    channels = legacy_dim(shape, axis)
    if variant == "segnet":
        return LayerShapes(tops=[shape] + [(1, channels, 1, 1)] * (_num_extra_tops(layer)),
                           params=[(1, channels, 1, 1)] * 2)
    if variant == "pspnet":
        blob = tuple(channels if i == axis else 1 for i in range(4))
        return LayerShapes(tops=[shape], params=[blob] * 4)
    return LayerShapes(tops=[shape], params=[(1, channels)] * 4)


def _num_extra_tops(layer) -> int:
    """SegNet's BN may output the batch mean and variance as tops 1 and 2."""
    return min(2, max(0, len(layer.top) - 1))
