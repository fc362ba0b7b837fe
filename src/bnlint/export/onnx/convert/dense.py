"""Convolution, Deconvolution, InnerProduct and Embed.

Caffe's convolution output size is ONNX's with explicit symmetric pads; Deconvolution's
weights (C_in, O/group, *kernel) are ConvTranspose's layout, and its output size
s*(in-1) + extent - 2*pad is ConvTranspose's without output_padding. InnerProduct
flattens the axes from `axis` on (a batch of any size, leading axes kept) and
multiplies by W^T, or by W with `transpose: true`.
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe import shapes
from bnlint.caffe.layers.convolution import conv_geometry
from bnlint.export.onnx.registry import register_converter
from bnlint.forward.ops.base import caffe_blob


def _conv_attrs(geom) -> dict:
    return {"kernel_shape": list(geom.kernel), "strides": list(geom.stride),
            "pads": list(geom.pad) * 2, "dilations": list(geom.dilation), "group": geom.group}


def _check_channel_axis(nodes, geom) -> None:
    if geom.channel_axis != 1:
        raise nodes.refuse(f"channels on axis {geom.channel_axis}: ONNX convolutions take "
                           f"them on axis 1 only")


@register_converter("Convolution", "Deconvolution", "ConvolutionDepthwise")
def convolution(nodes) -> None:
    """ConvolutionDepthwise (conv_dw_layer.cpp) is a Conv with group = channels."""
    if len(nodes.bottoms) != 1:
        raise nodes.refuse("several bottoms sharing one set of weights are not exported",
                           unfaithful=False)
    shape = nodes.bottom_shapes[0]
    geom = nodes.op._geometry(shape) if nodes.type == "ConvolutionDepthwise" \
        else conv_geometry(nodes.layer, shape)
    _check_channel_axis(nodes, geom)
    channels = shape[geom.channel_axis]
    if nodes.type != "Deconvolution":
        weight_shape = (geom.num_output, channels // geom.group) + geom.kernel
    else:
        weight_shape = (channels, geom.num_output // geom.group) + geom.kernel
    weights = caffe_blob(nodes.blobs, 0, weight_shape, "weight")
    bias = caffe_blob(nodes.blobs, 1, (geom.num_output,), "bias") if geom.bias_term else None
    inputs = [nodes.bottoms[0], nodes.const(weights, "weight")]
    if bias is not None:
        inputs.append(nodes.const(bias, "bias"))
    op_type = "ConvTranspose" if nodes.type == "Deconvolution" else "Conv"
    nodes.node(op_type, inputs, nodes.tops[0], **_conv_attrs(geom))


@register_converter("InnerProduct")
def inner_product(nodes) -> None:
    shape = nodes.bottom_shapes[0]
    axis = shapes.canonical_axis(nodes.op.axis, shape)
    result = shapes.infer(nodes.layer, [shape])
    weights = np.asarray(nodes.blobs[0], dtype=np.float32).reshape(result.params[0])
    matrix = weights if nodes.op.transpose else weights.T           # (K, N)
    bias = (np.asarray(nodes.blobs[1], dtype=np.float32).reshape(-1)
            if nodes.op.bias_term else None)
    x = nodes.bottoms[0]
    if axis == 1:
        flat = x if len(shape) == 2 else nodes.node("Flatten", [x], axis=1)
        inputs = [flat, nodes.const(matrix, "weight")]
        if bias is not None:
            inputs.append(nodes.const(bias, "bias"))
        nodes.node("Gemm", inputs, nodes.tops[0])
        return
    rows = nodes.node("Reshape", [x, nodes.ints([0] * axis + [-1])])
    if bias is None:
        nodes.node("MatMul", [rows, nodes.const(matrix, "weight")], nodes.tops[0])
        return
    product = nodes.node("MatMul", [rows, nodes.const(matrix, "weight")])
    nodes.node("Add", [product, nodes.const(bias, "bias")], nodes.tops[0])


@register_converter("Embed")
def embed(nodes) -> None:
    index = nodes.node("Cast", [nodes.bottoms[0]], to=7)             # INT64
    table = nodes.const(nodes.op.table, "weight")
    if nodes.op.bias is None:
        nodes.node("Gather", [table, index], nodes.tops[0], axis=0)
        return
    rows = nodes.node("Gather", [table, index], axis=0)
    nodes.node("Add", [rows, nodes.const(nodes.op.bias, "bias")], nodes.tops[0])
