"""Normalisation layers besides batch normalisation (`batchnorm`): LRN, MVN and SSD's
Normalize."""

from __future__ import annotations

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    LayerShapes,
    Shape,
    expect_bottoms,
    fork_field,
    fork_param,
    same_shape,
)
from bnlint.caffe.layers.table import (
    NORMALISATION,
    ROLE_PARAMETRIC,
    declare,
    shape_rule,
)
from bnlint.errors import ShapeError

declare("LRN", NORMALISATION, param="lrn_param", doc="local response normalisation")
declare("MVN", NORMALISATION, param="mvn_param", doc="mean-variance normalisation")
declare("Normalize", NORMALISATION, dialect=forks.SSD, param="norm_param",
        roles=[ROLE_PARAMETRIC], doc="L2 normalisation with a learned scale (SSD)")
shape_rule("MVN")(same_shape)


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


