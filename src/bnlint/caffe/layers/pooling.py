"""Pooling and unpooling: window geometry shared with the forward ops."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    LayerShapes,
    Shape,
    count,
    enum_name,
    expect_bottoms,
    fork_field,
    fork_has,
    fork_param,
    declared_tops,
)
from bnlint.caffe.layers.table import (
    POOLING,
    declare,
    shape_rule,
)
from bnlint.errors import ShapeError

declare("Pooling", POOLING, param="pooling_param", doc="max, average or stochastic windows")
declare("SPP", POOLING, param="spp_param", doc="spatial pyramid pooling")
declare("Upsample", POOLING, dialect=forks.SEGNET, param="upsample_param",
        doc="max-unpooling by the pooling's argmax mask (SegNet)")


# ---------------------------------------------------------------- pooling


@dataclass(frozen=True)
class PoolGeometry:
    """Pooling parameters as pooling_layer.cpp resolves them for one bottom shape."""

    method: str                 # "MAX", "AVE" or "STOCHASTIC"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    output: tuple[int, int]
    global_pooling: bool
    input: tuple[int, int]

    @property
    def has_empty_windows(self) -> bool:
        """True when the last window starts at or past the input's end.

        Caffe drops such a window only when there is padding. Without padding it
        happens with ceil rounding and stride > kernel (e.g. 1x1/2 pooling on an even
        size): Caffe then outputs -FLT_MAX (MAX) or 0/0 = NaN (AVE) there.
        """
        return any((out - 1) * s - p >= size for out, s, p, size in
                   zip(self.output, self.stride, self.pad, self.input))


def _pooled_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool,
                 axis_name: str) -> int:
    span = size + 2 * pad - kernel
    pooled = (-(-span // stride) if ceil_mode else span // stride) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        # The last window would start in the padding: Caffe drops it.
        pooled -= 1
    if pad and (pooled - 1) * stride >= size + pad:
        raise ShapeError(f"pooling {axis_name}: the last window starts in the padding "
                         f"(size {size}, kernel {kernel}, stride {stride}, pad {pad})")
    if pooled <= 0:
        raise ShapeError(f"pooling {axis_name}: kernel {kernel} with stride {stride} "
                         f"and pad {pad} gives no output on an input of size {size}")
    return pooled


def pool_ceil_mode(param) -> bool:
    """Whether the output size rounds up: BVLC's `round_mode` or a ceil-mode fork's
    `ceil_mode` (a bool, default true, at the same field number 13).

    A schema with `ceil_mode` decides by it (`false` is floor rounding, as in those
    forks' pooling_layer.cpp); if a schema has both fields, a set `ceil_mode` wins.
    Either way the "last window starts in the padding" correction still applies (it
    can only fire under ceil rounding).
    """
    fields = param.DESCRIPTOR.fields_by_name
    if "ceil_mode" in fields and (param.HasField("ceil_mode") or "round_mode" not in fields):
        return bool(param.ceil_mode)
    if "round_mode" in fields:
        return enum_name(param, "round_mode") != "FLOOR"
    return True


def pool_geometry(layer, bottom_shape: Shape) -> PoolGeometry:
    """Read pooling_param against a 4-D bottom, checking what Caffe checks."""
    param = layer.pooling_param
    if len(bottom_shape) != 4:
        raise ShapeError(f"pooling needs a 4-D bottom (num, channels, height, width), "
                         f"got shape {bottom_shape}")
    height, width = bottom_shape[2], bottom_shape[3]
    method = enum_name(param, "pool")
    has = param.HasField
    if param.global_pooling:
        if has("kernel_size") or has("kernel_h") or has("kernel_w"):
            raise ShapeError("global_pooling takes no kernel size")
        kernel = (height, width)
    else:
        if has("kernel_size") == (has("kernel_h") and has("kernel_w")):
            raise ShapeError("give either kernel_size or both kernel_h and kernel_w")
        kernel = ((param.kernel_size, param.kernel_size) if has("kernel_size")
                  else (param.kernel_h, param.kernel_w))
    if has("pad_h") or has("pad_w"):
        if has("pad") or not (has("pad_h") and has("pad_w")):
            raise ShapeError("give either pad or both pad_h and pad_w")
        pad = (param.pad_h, param.pad_w)
    else:
        pad = (param.pad, param.pad)
    if has("stride_h") or has("stride_w"):
        if has("stride") or not (has("stride_h") and has("stride_w")):
            raise ShapeError("give either stride or both stride_h and stride_w")
        stride = (param.stride_h, param.stride_w)
    else:
        stride = (param.stride, param.stride)
    if kernel[0] <= 0 or kernel[1] <= 0:
        raise ShapeError(f"pooling kernel must be positive, got {kernel}")
    if stride[0] <= 0 or stride[1] <= 0:
        raise ShapeError(f"pooling stride must be positive, got {stride}")
    if param.global_pooling and (pad != (0, 0) or stride != (1, 1)):
        raise ShapeError("global_pooling allows only pad 0 and stride 1")
    if pad != (0, 0):
        if method not in ("MAX", "AVE"):
            raise ShapeError(f"padding is implemented only for MAX and AVE pooling, "
                             f"not {method}")
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise ShapeError(f"pooling pad {pad} must be smaller than the kernel {kernel}")
    ceil_mode = pool_ceil_mode(param)
    output = (_pooled_size(height, kernel[0], stride[0], pad[0], ceil_mode, "height"),
              _pooled_size(width, kernel[1], stride[1], pad[1], ceil_mode, "width"))
    return PoolGeometry(method, kernel, stride, pad, output, bool(param.global_pooling),
                        (height, width))


@shape_rule("Pooling")
def _pooling(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    geom = pool_geometry(layer, bottoms[0])
    top = bottoms[0][:2] + geom.output
    # MAX pooling may have a second top: the argmax mask, shaped like the output.
    num_tops = min(declared_tops(layer), 2 if geom.method == "MAX" else 1)
    return LayerShapes(tops=[top] * num_tops)

# ---------------------------------------------------------------- SegNet / ENet


def upsample_size(layer, shape: Shape, with_mask: bool) -> tuple[int, int]:
    """Output (height, width) of Upsample.

    With a mask bottom (SegNet): upsample_h/upsample_w, else (deprecated) scale or
    scale_h/scale_w, each > 1, times the input size minus pad_out_h/pad_out_w (which
    need a scale of 2). One bottom (the YOLOv3 ports' nearest-neighbour Upsample):
    the input size times scale.
    """
    param = fork_param(layer, "upsample_param")
    height, width = shape[2], shape[3]
    if not with_mask:
        scale = int(fork_field(param, "scale", 2))
        if scale <= 0:
            raise ShapeError(f"upsample scale must be positive, got {scale}")
        return height * scale, width * scale
    if fork_has(param, "upsample_h") and fork_has(param, "upsample_w"):
        out = (int(fork_field(param, "upsample_h", 0)), int(fork_field(param, "upsample_w", 0)))
        if out[0] <= 1 or out[1] <= 1:
            raise ShapeError(f"upsample_h and upsample_w must be greater than 1, got {out}")
        return out
    has_scale_hw = fork_has(param, "scale_h") or fork_has(param, "scale_w")
    if has_scale_hw and (fork_has(param, "scale") or not (fork_has(param, "scale_h")
                                                          and fork_has(param, "scale_w"))):
        raise ShapeError("give upsample_h and upsample_w, or (deprecated) scale or both "
                         "scale_h and scale_w")
    if has_scale_hw:
        scale_h, scale_w = (int(fork_field(param, "scale_h", 0)),
                            int(fork_field(param, "scale_w", 0)))
    else:
        scale_h = scale_w = int(fork_field(param, "scale", 2))
    if scale_h <= 1 or scale_w <= 1:
        raise ShapeError(f"upsample scale must be greater than 1, got {scale_h}x{scale_w}")
    pad_h = bool(fork_field(param, "pad_out_h", False))
    pad_w = bool(fork_field(param, "pad_out_w", False))
    if (pad_h and scale_h != 2) or (pad_w and scale_w != 2):
        raise ShapeError("pad_out_h/pad_out_w need a scale of 2 on that axis")
    return height * scale_h - int(pad_h), width * scale_w - int(pad_w)


@shape_rule("Upsample")
def _upsample(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1, 2)
    shape = bottoms[0]
    for i, bottom in enumerate(bottoms):
        if len(bottom) != 4:
            raise ShapeError(f"Upsample bottom {i} must have 4 axes (num, channels, "
                             f"height, width), got {bottom}")
    if len(bottoms) == 2 and bottoms[1] != shape:
        raise ShapeError(f"the mask bottom {bottoms[1]} must have the data's shape {shape}")
    return LayerShapes(tops=[shape[:2] + upsample_size(layer, shape, len(bottoms) == 2)])



# ---------------------------------------------------------------- SPP


def spp_levels(layer, bottom_shape: Shape) -> list[PoolGeometry]:
    """One pooling per pyramid level, as spp_layer.cpp's GetPoolingParam sets it up:
    2^level bins per axis, kernel ceil(size / bins), stride = kernel, and padding
    (kernel * bins - size + 1) / 2 on each side; the pooling layer then rounds its
    output as Caffe's PoolingLayer does (ceil, dropping a window that starts in the
    padding), and checks pad < kernel."""
    if len(bottom_shape) != 4:
        raise ShapeError(f"SPP needs a 4-axis bottom (num, channels, height, width), got "
                         f"shape {tuple(bottom_shape)}")
    param = layer.spp_param
    height, width = bottom_shape[2], bottom_shape[3]
    if height <= 0 or width <= 0:
        raise ShapeError("SPP input dimensions cannot be zero")
    pyramid_height = int(param.pyramid_height)
    if pyramid_height <= 0:
        raise ShapeError("spp_param.pyramid_height must be set and positive")
    method = enum_name(param, "pool")
    levels = []
    for level in range(pyramid_height):
        bins = 2 ** level
        kernel = (math.ceil(height / bins), math.ceil(width / bins))
        pad = ((kernel[0] * bins - height + 1) // 2, (kernel[1] * bins - width + 1) // 2)
        if (pad[0] or pad[1]) and method not in ("MAX", "AVE"):
            raise ShapeError(f"SPP level {level}: padding is implemented only for MAX and "
                             f"AVE pooling, not {method}")
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise ShapeError(f"SPP level {level} ({bins}x{bins} bins on {height}x{width}): "
                             f"the pooling pad {pad} is not smaller than the kernel {kernel}")
        output = tuple(_pooled_size(size, k, k, p, True, axis)
                       for size, k, p, axis in zip((height, width), kernel, pad,
                                                   ("height", "width")))
        levels.append(PoolGeometry(method, kernel, kernel, pad, output, False,
                                   (height, width)))
    return levels


def spp_top_shape(layer, bottom_shape: Shape) -> Shape:
    """(N, C, 1, 1) for one level (the pooling's own top); else the levels' outputs
    flattened and concatenated: (N, C * sum of bins)."""
    levels = spp_levels(layer, bottom_shape)
    num, channels = bottom_shape[:2]
    if len(levels) == 1:
        return (num, channels) + levels[0].output
    return (num, channels * sum(count(geom.output) for geom in levels))


@shape_rule("SPP")
def _spp(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    return LayerShapes(tops=[spp_top_shape(layer, bottoms[0])])
