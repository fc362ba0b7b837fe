"""The SSD fork's layers: Permute, Normalize, PriorBox; DetectionOutput is refused.

PriorBox depends on shapes only, so it is the constant the forward computes. Normalize
is the L2 norm over (C, H, W) per image (across_spatial) or over C per pixel, eps
inside the square root, then the learned scale. DetectionOutput's Caffe semantics
(per-class NMS with eta, stable score order, keep_top_k, rows of 7, -1 rows when
nothing is found) have no faithful form in ONNX's NonMaxSuppression, so it is refused;
`--until` exports the net up to its inputs (the heads).
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe.layers import structure
from bnlint.export.onnx.registry import register_converter


@register_converter("Permute")
def permute(nodes) -> None:
    order = structure.permute_order(nodes.layer, len(nodes.bottom_shapes[0]))
    if order == list(range(len(order))):
        nodes.node("Identity", [nodes.bottoms[0]], nodes.tops[0])
        return
    nodes.node("Transpose", [nodes.bottoms[0]], nodes.tops[0], perm=order)


@register_converter("Normalize")
def normalize(nodes) -> None:
    op = nodes.op
    shape = nodes.bottom_shapes[0]
    x = nodes.bottoms[0]
    axes = list(range(1, len(shape))) if op.across_spatial else [1]
    sums = nodes.reduce("ReduceSumSquare", x, axes, True)
    norm = nodes.node("Sqrt", [nodes.node("Add", [sums, nodes.scalar(op.eps, "eps")])])
    unit = nodes.node("Div", [x, norm])
    scale = (nodes.const(op.scale.reshape(1), "scale") if op.channel_shared
             else nodes.channel_operand(op.scale, len(shape), "scale"))
    nodes.node("Mul", [unit, scale], nodes.tops[0])


@register_converter("PriorBox")
def prior_box(nodes) -> None:
    zeros = [np.zeros((1,) + tuple(s[1:]), np.float32) for s in nodes.bottom_shapes]
    boxes = nodes.op.run(zeros)[0]
    nodes.node("Identity", [nodes.const(boxes, "priors")], nodes.tops[0])


@register_converter("DetectionOutput")
def detection_output(nodes) -> None:
    raise nodes.refuse(f"its per-class NMS (eta, stable score order, keep_top_k over all "
                       f"classes, -1 rows when nothing is found) is not ONNX's "
                       f"NonMaxSuppression; export up to its inputs with --until "
                       f"{','.join(nodes.layer.bottom)} and decode outside")
