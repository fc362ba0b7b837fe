"""Pooling with Caffe's output size and AVE divisor.

Caffe's ceil rounding (and its "last window starts in the padding" correction, and a
ceil-mode fork's floor) becomes explicit pads: the front pad as written, the end pad
whatever makes ONNX's floor rounding give Caffe's output size. MAX ignores padding in
both. AVE: Caffe divides by the window clipped to the padded extent (input + pad on
each side), so the padding counts but the extra end pad does not; ONNX's
count_include_pad divides by the whole kernel, so where the two differ the result is
rescaled by a constant map kernel / Caffe's divisor. A window wholly outside the input
(Caffe: -FLT_MAX or NaN) and STOCHASTIC pooling are refused. A MAX mask top is
Caffe's h * W + w: ONNX's flat NCHW index modulo the plane size.
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe.layers.pooling import pool_geometry
from bnlint.export.onnx.registry import register_converter
from bnlint.forward.ops.pooling import ave_pool_divisor


def _end_pads(geom) -> list[int]:
    pads = []
    for size, k, s, p, out in zip(geom.input, geom.kernel, geom.stride, geom.pad, geom.output):
        pads.append(max(0, (out - 1) * s + k - size - p))
    return pads


def emit_pool(nodes, x: str, geom, shape, out: str | None, mask: str | None = None) -> str:
    """The ONNX nodes of one Caffe pooling `geom` over x (4-axis `shape`); returns the
    pooled value's name (`out` when given). `mask`: also write Caffe's MAX mask there."""
    method = geom.method
    if method == "STOCHASTIC":
        raise nodes.refuse("STOCHASTIC pooling (Caffe's CPU code aborts on it)")
    if geom.has_empty_windows:
        raise nodes.refuse(f"a pooling window lies wholly past the input (kernel "
                           f"{geom.kernel}, stride {geom.stride}, no padding, ceil rounding), "
                           f"where Caffe outputs {'-FLT_MAX' if method == 'MAX' else 'NaN'}")
    whole = geom.pad == (0, 0) and geom.output == (1, 1) and geom.kernel == tuple(shape[2:])
    if whole and mask is None:
        return nodes.node("GlobalMaxPool" if method == "MAX" else "GlobalAveragePool", [x], out)
    attrs = {"kernel_shape": list(geom.kernel), "strides": list(geom.stride),
             "pads": list(geom.pad) + _end_pads(geom)}
    if method == "MAX":
        if mask is None:
            return nodes.node("MaxPool", [x], out, **attrs)
        top = out or nodes._builder.values.fresh(f"{nodes.name}/MaxPool")
        _, index = nodes.node("MaxPool", [x], [top, nodes._builder.values.fresh(
            f"{nodes.name}/indices")], **attrs)
        plane = nodes.ints([shape[2] * shape[3]], "plane")
        flat = nodes.node("Mod", [index, plane])
        nodes.node("Cast", [flat], mask, to=1)                        # FLOAT
        return top
    divisor = np.outer(*(ave_pool_divisor(size, k, s, p, o) for size, k, s, p, o in
                         zip(geom.input, geom.kernel, geom.stride, geom.pad, geom.output)))
    kernel_area = geom.kernel[0] * geom.kernel[1]
    if np.all(divisor == kernel_area):
        return nodes.node("AveragePool", [x], out, count_include_pad=1, **attrs)
    mean = nodes.node("AveragePool", [x], count_include_pad=1, **attrs)
    total = nodes.node("Mul", [mean, nodes.scalar(kernel_area, "kernel_area")])
    return nodes.node("Div", [total, nodes.const(divisor.astype(np.float32), "divisor")], out)


@register_converter("Pooling")
def pooling(nodes) -> None:
    shape = nodes.bottom_shapes[0]
    geom = pool_geometry(nodes.layer, shape)
    with_mask = geom.method == "MAX" and len(nodes.tops) > 1
    emit_pool(nodes, nodes.bottoms[0], geom, shape, nodes.tops[0],
              nodes.tops[1] if with_mask else None)


@register_converter("SPP")
def spp(nodes) -> None:
    """Each pyramid level is a pooling; several are flattened to (N, -1) and concatenated."""
    from bnlint.caffe.layers.pooling import spp_levels

    shape = nodes.bottom_shapes[0]
    levels = spp_levels(nodes.layer, shape)
    if len(levels) == 1:
        emit_pool(nodes, nodes.bottoms[0], levels[0], shape, nodes.tops[0])
        return
    flat = [nodes.node("Flatten", [emit_pool(nodes, nodes.bottoms[0], geom, shape, None)],
                       axis=1) for geom in levels]
    nodes.node("Concat", flat, nodes.tops[0], axis=1)
