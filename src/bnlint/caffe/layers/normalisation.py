"""Normalisation layers: BatchNorm in its forms (BVLC, NVIDIA Caffe, SegNet's BN),
LRN, MVN and SSD's Normalize."""

from __future__ import annotations

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    LayerShapes,
    Shape,
    expect_bottoms,
    fork_field,
    fork_param,
    legacy_dim,
    same_shape,
)
from bnlint.caffe.layers.table import (
    FOLD_NORM,
    NORMALISATION,
    ROLE_IN_PLACE,
    ROLE_PARAMETRIC,
    declare,
    shape_rule,
)
from bnlint.errors import ShapeError

declare("BatchNorm", NORMALISATION, param="batch_norm_param",
        roles=[ROLE_PARAMETRIC, ROLE_IN_PLACE], fold=FOLD_NORM,
        doc="batch normalisation (statistics only in BVLC; NVCaffe adds scale and bias)")
declare("BN", NORMALISATION, dialect=forks.SEGNET, param="bn_param",
        roles=[ROLE_PARAMETRIC], fold=FOLD_NORM,
        doc="SegNet/ENet batch normalisation with its scale and shift")
declare("LRN", NORMALISATION, param="lrn_param", doc="local response normalisation")
declare("MVN", NORMALISATION, param="mvn_param", doc="mean-variance normalisation")
declare("Normalize", NORMALISATION, dialect=forks.SSD, param="norm_param",
        roles=[ROLE_PARAMETRIC], doc="L2 normalisation with a learned scale (SSD)")
shape_rule("MVN")(same_shape)


# ---------------------------------------------------------------- normalisation, affine


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

@shape_rule("LRN")
def _lrn(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    if len(bottoms[0]) != 4:
        raise ShapeError(f"LRN needs a 4-D bottom, got shape {bottoms[0]}")
    if layer.lrn_param.local_size % 2 == 0:
        raise ShapeError(f"LRN local_size must be odd, got {layer.lrn_param.local_size}")
    return LayerShapes(tops=[bottoms[0]])

@shape_rule("Normalize")
def _normalize(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    if not 2 <= len(shape) <= 4:
        raise ShapeError(f"Normalize needs a bottom with 2 to 4 axes, got shape {shape}")
    shared = bool(fork_field(fork_param(layer, "norm_param"), "channel_shared", True))
    # normalize_layer.cpp: a channel-shared scale is a 0-axis blob, else one per channel.
    return LayerShapes(tops=[shape], params=[() if shared else (shape[1],)])


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

