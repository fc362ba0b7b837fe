"""Geometry of fork layers: ConvolutionDepthwise, Axpy, EltwiseAffine, ROIPooling and
PSROIPooling.

Pure Python (no NumPy), shared by the shape rules and the forward ops. Each helper
follows the fork's own source (named per function) and raises `ShapeError` where that
code's CHECKs abort. Fork parameters are read by field name (`fork_param`,
`fork_field`), since the same layer type arrives in messages from different schemas.
"""

from __future__ import annotations

from dataclasses import dataclass

from bnlint.caffe.layers.convolution import ConvGeometry
from bnlint.caffe.shapes import Shape, count
from bnlint.errors import ShapeError


def _param(layer, name: str):
    if name not in layer.DESCRIPTOR.fields_by_name:
        return None
    return getattr(layer, name)


def _field(msg, name: str, default):
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name:
        return default
    return getattr(msg, name)


def _has(msg, name: str) -> bool:
    return msg is not None and name in msg.DESCRIPTOR.fields_by_name and msg.HasField(name)


# ---------------------------------------------------------------- ConvolutionDepthwise


def _pair(param, name: str, repeated: str, default: int | None) -> tuple[int, int]:
    """conv_dw_layer.cpp: `<name>_h`/`<name>_w` when both are set, else the repeated
    field's first value for both axes, or its first two (h, w)."""
    if _has(param, f"{name}_h") and _has(param, f"{name}_w"):
        return int(getattr(param, f"{name}_h")), int(getattr(param, f"{name}_w"))
    values = list(getattr(param, repeated))
    if not values:
        if default is None:
            raise ShapeError(f"ConvolutionDepthwise reads {repeated}[0], which is not set "
                             f"(the fork's code would read past the end)")
        return default, default
    return (int(values[0]), int(values[0])) if len(values) == 1 \
        else (int(values[0]), int(values[1]))


def depthwise_geometry(layer, bottom_shape: Shape) -> ConvGeometry:
    """ConvolutionDepthwise (yonghenglh6/DepthwiseConvolution's conv_dw_layer.cpp, used by
    ShuffleNet and MobileNet forks): one k_h x k_w filter per input channel, so the top
    has the bottom's channel count whatever num_output says; weights (C, 1, k_h, k_w),
    bias (C). Stride and pad come as kernel_size does; dilation defaults to 1. The code
    reads stride[0] and pad[0] even when they are absent (past the end of the field);
    bnlint takes Caffe's defaults (1 and 0) there."""
    if len(bottom_shape) != 4:
        raise ShapeError(f"ConvolutionDepthwise uses 4-axis accessors; got shape "
                         f"{tuple(bottom_shape)}")
    param = layer.convolution_param
    kernel = _pair(param, "kernel", "kernel_size", None)
    stride = _pair(param, "stride", "stride", 1)
    pad = _pair(param, "pad", "pad", 0)
    dilation = _pair(param, "dilation", "dilation", 1)
    if min(kernel) <= 0 or min(stride) <= 0 or min(dilation) <= 0:
        raise ShapeError(f"kernel {kernel}, stride {stride} and dilation {dilation} must be "
                         f"positive")
    channels = bottom_shape[1]
    return ConvGeometry(1, kernel, stride, pad, dilation, channels, channels,
                        bool(param.bias_term))


def depthwise_output(geom: ConvGeometry, spatial: Shape) -> tuple[int, ...]:
    """conv_dw_layer.cpp Reshape: (in + 2p - extent) / s + 1 in C ints; a non-positive
    size is refused (Caffe would build an empty or negative blob)."""
    out = []
    for size, extent, s, p in zip(spatial, geom.extent, geom.stride, geom.pad):
        span = size + 2 * p - extent
        if span < 0:
            raise ShapeError(f"kernel extent {extent} is larger than the padded input "
                             f"{size} + 2*{p}")
        out.append(span // s + 1)
    return tuple(out)


# ---------------------------------------------------------------- Axpy, EltwiseAffine


def axpy_top_shape(bottoms: list[Shape]) -> Shape:
    """axpy_layer.cpp (SENet's fork): bottoms a (N, C[, 1, 1]), x and y of one shape
    (N, C, ...); the top is shaped like x."""
    scale, x, y = bottoms
    if len(scale) < 2 or len(x) < 2 or scale[:2] != x[:2]:
        raise ShapeError(f"the scale bottom {scale} must share N and C with x {x}")
    if len(scale) == 4 and scale[2:] != (1, 1):
        raise ShapeError(f"a 4-axis scale bottom must be (N, C, 1, 1), got {scale}")
    if count(scale) != x[0] * x[1]:
        raise ShapeError(f"the scale bottom {scale} must hold one value per (n, c) of x")
    if x != y:
        raise ShapeError(f"x {x} and y {y} must have the same shape")
    return x


def eltwise_affine_channel_shared(layer) -> bool:
    return bool(_field(_param(layer, "eltwise_affine_param"), "channel_shared", False))


def eltwise_affine_param_shapes(layer, bottom_shape: Shape) -> list[Shape]:
    """eltwise_affine_layer.cpp (ducha-aiki's caffenet-benchmark fork): slope and bias,
    one per channel (axis 1), or 0-axis scalars with channel_shared."""
    if len(bottom_shape) < 2:
        raise ShapeError(f"EltwiseAffine needs at least 2 axes, got shape {bottom_shape}")
    shape: Shape = () if eltwise_affine_channel_shared(layer) else (bottom_shape[1],)
    return [shape, shape]


# ---------------------------------------------------------------- ROI pooling


@dataclass(frozen=True)
class RoiPooling:
    """ROIPooling (max, pooled_h x pooled_w bins) or PSROIPooling (average, group_size
    bins, output_dim channels) and the spatial scale from image to feature map."""

    position_sensitive: bool
    pooled: tuple[int, int]
    spatial_scale: float
    output_dim: int          # top channels (PSROIPooling); 0 for ROIPooling

    def top_shape(self, data: Shape, rois: Shape) -> Shape:
        channels = self.output_dim if self.position_sensitive else data[1]
        return (rois[0], channels) + self.pooled


def roi_pooling(layer, bottoms: list[Shape]) -> RoiPooling:
    """ROIPooling (rbgirshick/caffe-fast-rcnn roi_pooling_layer.cpp): pooled_h, pooled_w
    > 0. PSROIPooling (daijifeng001/caffe-rfcn psroi_pooling_layer.cpp): output_dim and
    group_size > 0, and bottom channels == output_dim * group_size^2. Both: data (N, C,
    H, W) and ROIs with 5 values each ([batch index, x1, y1, x2, y2])."""
    if len(bottoms) != 2:
        raise ShapeError(f"takes 2 bottoms (the data and the ROIs), got {len(bottoms)}")
    data, rois = bottoms
    if len(data) != 4:
        raise ShapeError(f"the data bottom must have 4 axes, got shape {data}")
    if len(rois) < 1 or count(rois, 1) != 5:
        raise ShapeError(f"each ROI must hold 5 values (batch index, x1, y1, x2, y2); got "
                         f"shape {rois}")
    if layer.type == "PSROIPooling":
        param = _param(layer, "psroi_pooling_param")
        output_dim = int(_field(param, "output_dim", 0))
        group = int(_field(param, "group_size", 0))
        if output_dim <= 0 or group <= 0:
            raise ShapeError("psroi_pooling_param output_dim and group_size must be > 0")
        if data[1] != output_dim * group * group:
            raise ShapeError(f"input channel number {data[1]} does not match layer "
                             f"parameters: output_dim {output_dim} * group_size^2 "
                             f"{group * group}")
        return RoiPooling(True, (group, group),
                          float(_field(param, "spatial_scale", 1.0)), output_dim)
    param = _param(layer, "roi_pooling_param")
    pooled = (int(_field(param, "pooled_h", 0)), int(_field(param, "pooled_w", 0)))
    if min(pooled) <= 0:
        raise ShapeError("roi_pooling_param pooled_h and pooled_w must be > 0")
    return RoiPooling(False, pooled, float(_field(param, "spatial_scale", 1.0)), 0)
