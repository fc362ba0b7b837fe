"""Losses and evaluation layers: what a train net ends in and to-deploy removes."""

from __future__ import annotations

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    LayerShapes,
    Shape,
    canonical_axis,
    expect_bottoms,
)
from bnlint.caffe.layers.table import (
    LOSS,
    ROLE_EVALUATION,
    ROLE_LOSS,
    declare,
    shape_rule,
)
from bnlint.errors import ShapeError

for _name in ("SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
              "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss"):
    declare(_name, LOSS, param="loss_param", roles=[ROLE_LOSS])
declare("MultiBoxLoss", LOSS, dialect=forks.SSD, param="multibox_loss_param",
        roles=[ROLE_LOSS], doc="SSD's box and class loss")
declare("SmoothL1Loss", LOSS, dialect=forks.FRCNN, param="smooth_l1_loss_param",
        roles=[ROLE_LOSS], doc="Fast R-CNN's box regression loss")
# R-FCN's OHEM losses: named a fork's types only (no rules yet, not yet a loss role).
declare("SmoothL1LossOHEM", LOSS, dialect=forks.FRCNN, param="smooth_l1_loss_param",
        doc="smooth L1 loss with online hard example mining (R-FCN)")
declare("SoftmaxWithLossOHEM", LOSS, dialect=forks.FRCNN, param="loss_param",
        doc="softmax loss with online hard example mining (R-FCN)")
declare("Accuracy", LOSS, param="accuracy_param", roles=[ROLE_EVALUATION],
        doc="top-k accuracy against labels")
declare("DetectionEvaluate", LOSS, dialect=forks.SSD, param="detection_evaluate_param",
        roles=[ROLE_EVALUATION], doc="SSD's detection scoring against boxes")


# ---------------------------------------------------------------- losses (train nets)


@shape_rule("SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
            "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss")
def _loss(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 2, 3)
    if bottoms[0][:1] != bottoms[1][:1]:
        raise ShapeError(f"the data {bottoms[0]} and label {bottoms[1]} must have the "
                         "same first dimension")
    tops: list[Shape] = [()]
    if layer.type == "SoftmaxWithLoss" and len(layer.top) > 1:
        tops.append(bottoms[0])
    return LayerShapes(tops=tops)


@shape_rule("Accuracy")
def _accuracy(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 2)
    tops: list[Shape] = [()]
    if len(layer.top) > 1:
        if segnet_schema(layer):
            # caffe-segnet's older AccuracyLayer: top[1]->Reshape(shape(1), 1, 1, 1)
            tops.append((bottoms[0][1] if len(bottoms[0]) > 1 else 1, 1, 1, 1))
        else:
            axis = canonical_axis(layer.accuracy_param.axis, bottoms[0])
            tops.append((bottoms[0][axis],))
    return LayerShapes(tops=tops)


def segnet_schema(layer) -> bool:
    """Whether the layer is read in caffe-segnet's schema (alone or combined): its
    LossParameter has `weight_by_label_freqs`, and its loss and accuracy layers are
    that fork's own."""
    return "weight_by_label_freqs" in layer.loss_param.DESCRIPTOR.fields_by_name
