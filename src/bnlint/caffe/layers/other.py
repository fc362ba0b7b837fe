"""Layers of no other family: Dropout, Parameter, Python."""

from __future__ import annotations

from bnlint.caffe.layers.base import same_shape
from bnlint.caffe.layers.table import (
    OTHER,
    ROLE_DATA,
    ROLE_IN_PLACE,
    ROLE_PARAMETRIC,
    declare,
    shape_rule,
)

declare("Dropout", OTHER, param="dropout_param", roles=[ROLE_IN_PLACE],
        doc="zeroes values at random in TRAIN; the identity in TEST")
declare("Parameter", OTHER, param="parameter_param", roles=[ROLE_PARAMETRIC],
        doc="outputs a learned blob")
# A Python layer without bottoms is a net's reader (py-faster-rcnn's input layer).
declare("Python", OTHER, param="python_param", roles=[ROLE_DATA],
        doc="user code, never run by bnlint")
shape_rule("Dropout")(same_shape)
