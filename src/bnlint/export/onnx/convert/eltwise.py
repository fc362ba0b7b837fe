"""Eltwise SUM (with its per-bottom coefficients, in Caffe's order), PROD and MAX."""

from __future__ import annotations

import numpy as np

from bnlint.export.onnx.registry import register_converter


@register_converter("Eltwise")
def eltwise(nodes) -> None:
    op = nodes.op
    kinds = type(nodes.layer.eltwise_param)
    bottoms = nodes.bottoms
    if op.operation == kinds.MAX:
        nodes.node("Max", bottoms, nodes.tops[0])
        return
    if op.operation == kinds.PROD:
        total = bottoms[0]
        for index, bottom in enumerate(bottoms[1:], start=1):
            total = nodes.node("Mul", [total, bottom],
                               nodes.tops[0] if index == len(bottoms) - 1 else None)
        return
    coeffs = op.coeffs or [np.float32(1)] * len(bottoms)
    terms = [b if c == 1 else nodes.node("Mul", [b, nodes.scalar(c, f"coeff{i}")])
             for i, (b, c) in enumerate(zip(bottoms, coeffs))]
    total = terms[0]
    for index, term in enumerate(terms[1:], start=1):
        total = nodes.node("Add", [total, term],
                           nodes.tops[0] if index == len(terms) - 1 else None)
