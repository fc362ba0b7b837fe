"""Convolution and the other matrix-product layers: geometry, shapes, MAC counts.

Only these are counted in multiply-accumulates (MACs), as published model figures
count them (ResNet-50's ~3.9 G, MobileNet v1's ~0.57 G); they are also the layers a
BatchNorm folds into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    ANY_NUMBER,
    LayerShapes,
    Shape,
    canonical_axis,
    count,
    expect_bottoms,
    fork_has,
)
from bnlint.caffe.layers.table import (
    CONVOLUTION,
    FOLD_INTO,
    ROLE_PARAMETRIC,
    declare,
    mac_rule,
    shape_rule,
)
from bnlint.errors import ShapeError

declare("Convolution", CONVOLUTION, param="convolution_param", roles=[ROLE_PARAMETRIC],
        fold=FOLD_INTO, doc="N-D convolution, grouped and dilated")
declare("Deconvolution", CONVOLUTION, param="convolution_param", roles=[ROLE_PARAMETRIC],
        fold=FOLD_INTO, doc="transposed convolution")
declare("InnerProduct", CONVOLUTION, param="inner_product_param", roles=[ROLE_PARAMETRIC],
        fold=FOLD_INTO, doc="fully connected")
declare("Embed", CONVOLUTION, param="embed_param", roles=[ROLE_PARAMETRIC],
        doc="a lookup table of learned vectors")
declare("Im2col", CONVOLUTION, param="convolution_param", doc="convolution's patches")
declare("DepthwiseConvolution", CONVOLUTION, dialect=forks.DEPTHWISE,
        param="convolution_param", roles=[ROLE_PARAMETRIC], doc="depthwise convolution")
declare("ConvolutionDepthwise", CONVOLUTION, dialect=forks.CONV_DEPTHWISE,
        param="convolution_param", roles=[ROLE_PARAMETRIC], doc="depthwise convolution")


# ---------------------------------------------------------------- convolution


@dataclass(frozen=True)
class ConvGeometry:
    """Convolution parameters as base_conv_layer.cpp resolves them."""

    channel_axis: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]
    num_output: int
    group: int
    bias_term: bool

    @property
    def extent(self) -> tuple[int, ...]:
        """Dilated kernel size per spatial axis: d*(k-1)+1."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))


def _per_axis(values: Sequence[int], name: str, num_spatial: int,
              default: int | None) -> tuple[int, ...]:
    if len(values) == 0 and default is not None:
        return (default,) * num_spatial
    if len(values) not in (1, num_spatial):
        raise ShapeError(f"{name} must be given once or once per spatial axis "
                         f"({num_spatial}), got {len(values)}")
    return tuple(int(values[0 if len(values) == 1 else i]) for i in range(num_spatial))


def _h_w_or_repeated(param, name: str, num_spatial: int,
                     default: int | None) -> tuple[int, ...]:
    """kernel/stride/pad: `<name>_h`/`<name>_w` win over the repeated field (2-D only)."""
    repeated = getattr(param, "kernel_size" if name == "kernel" else name)
    if param.HasField(f"{name}_h") or param.HasField(f"{name}_w"):
        if num_spatial != 2:
            raise ShapeError(f"{name}_h and {name}_w can only be used for 2-D convolution")
        if len(repeated):
            raise ShapeError(f"give either {'kernel_size' if name == 'kernel' else name} "
                             f"or {name}_h/{name}_w, not both")
        return (int(getattr(param, f"{name}_h")), int(getattr(param, f"{name}_w")))
    return _per_axis(repeated, "kernel_size" if name == "kernel" else name,
                     num_spatial, default)


def conv_geometry(layer, bottom_shape: Shape) -> ConvGeometry:
    """Read convolution_param against the bottom shape, checking what Caffe checks."""
    param = layer.convolution_param
    channel_axis = canonical_axis(param.axis, bottom_shape)
    num_spatial = len(bottom_shape) - channel_axis - 1
    kernel = _h_w_or_repeated(param, "kernel", num_spatial, None)
    stride = _h_w_or_repeated(param, "stride", num_spatial, 1)
    pad = _h_w_or_repeated(param, "pad", num_spatial, 0)
    dilation = _per_axis(param.dilation, "dilation", num_spatial, 1)
    if any(k <= 0 for k in kernel):
        raise ShapeError(f"kernel size must be positive, got {kernel}")
    if any(s <= 0 for s in stride):
        raise ShapeError(f"stride must be positive, got {stride}")
    if any(d <= 0 for d in dilation):
        raise ShapeError(f"dilation must be positive, got {dilation}")
    num_output = int(param.num_output)
    group = int(param.group)
    channels = bottom_shape[channel_axis]
    if num_output <= 0:
        raise ShapeError("convolution_param.num_output must be positive")
    if group <= 0 or channels % group or num_output % group:
        raise ShapeError(f"group {group} must divide both the input channels ({channels}) "
                         f"and num_output ({num_output})")
    return ConvGeometry(channel_axis, kernel, stride, pad, dilation, num_output, group,
                        bool(param.bias_term))


def conv_spatial_output(geom: ConvGeometry, spatial: Sequence[int]) -> tuple[int, ...]:
    """ConvolutionLayer::compute_output_shape, refusing a kernel larger than the input.

    Caffe computes `(in + 2p - extent) / s + 1` in C ints, so a kernel one pixel too
    big still gives an output of 1 there (truncation towards zero) over pure padding.
    """
    out = []
    for size, k_ext, s, p in zip(spatial, geom.extent, geom.stride, geom.pad):
        if size + 2 * p < k_ext:
            raise ShapeError(f"kernel extent {k_ext} is larger than the padded input "
                             f"{size} + 2*{p} = {size + 2 * p}")
        out.append((size + 2 * p - k_ext) // s + 1)
    return tuple(out)


def deconv_spatial_output(geom: ConvGeometry, spatial: Sequence[int]) -> tuple[int, ...]:
    """DeconvolutionLayer::compute_output_shape: s*(in-1) + extent - 2p."""
    out = []
    for size, k_ext, s, p in zip(spatial, geom.extent, geom.stride, geom.pad):
        size_out = s * (size - 1) + k_ext - 2 * p
        if size_out <= 0:
            raise ShapeError(f"deconvolution output size {size_out} is not positive "
                             f"(input {size}, stride {s}, kernel extent {k_ext}, pad {p})")
        out.append(size_out)
    return tuple(out)


def _check_same_bottoms(bottoms: list[Shape], why: str) -> None:
    for i, shape in enumerate(bottoms[1:], start=1):
        if shape != bottoms[0]:
            raise ShapeError(f"{why}: bottom {i} has shape {shape}, "
                             f"bottom 0 has {bottoms[0]}")


@shape_rule("Convolution", "Deconvolution")
def _convolution(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1, ANY_NUMBER)
    _check_same_bottoms(bottoms, "all bottoms of a convolution must have the same shape")
    shape = bottoms[0]
    geom = conv_geometry(layer, shape)
    axis = geom.channel_axis
    channels = shape[axis]
    if layer.type == "Deconvolution":
        spatial = deconv_spatial_output(geom, shape[axis + 1:])
        weights = (channels, geom.num_output // geom.group) + geom.kernel
    else:
        spatial = conv_spatial_output(geom, shape[axis + 1:])
        weights = (geom.num_output, channels // geom.group) + geom.kernel
    top = shape[:axis] + (geom.num_output,) + spatial
    params = [weights] + ([(geom.num_output,)] if geom.bias_term else [])
    return LayerShapes(tops=[top] * len(bottoms), params=params)

# ---------------------------------------------------------------- dense


@shape_rule("InnerProduct")
def _inner_product(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    param = layer.inner_product_param
    shape = bottoms[0]
    axis = canonical_axis(param.axis, shape)
    num_output = int(param.num_output)
    if num_output <= 0:
        raise ShapeError("inner_product_param.num_output must be positive")
    inputs = count(shape, axis)
    weights = (inputs, num_output) if param.transpose else (num_output, inputs)
    params = [weights] + ([(num_output,)] if param.bias_term else [])
    return LayerShapes(tops=[shape[:axis] + (num_output,)], params=params)


@shape_rule("Embed")
def _embed(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    param = layer.embed_param
    if param.num_output <= 0 or param.input_dim <= 0:
        raise ShapeError("embed_param.num_output and input_dim must be positive")
    params = [(param.input_dim, param.num_output)]
    if param.bias_term:
        params.append((param.num_output,))
    return LayerShapes(tops=[bottoms[0] + (param.num_output,)], params=params)



# ---------------------------------------------------------------- Im2col


@dataclass(frozen=True)
class Im2colGeometry:
    """The im2col layout of one convolution: what the forward unfolds its input by."""

    channel_axis: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]
    output: tuple[int, ...]

    @property
    def top_channels_per_input(self) -> int:
        return count(self.kernel)


def im2col_geometry(layer, bottom_shape: Shape) -> Im2colGeometry:
    """im2col_layer.cpp: the convolution geometry without num_output (kernel_h/w or
    kernel_size, stride, pad, dilation per spatial axis after `axis`)."""
    param = layer.convolution_param
    channel_axis = canonical_axis(param.axis, bottom_shape)
    num_spatial = len(bottom_shape) - channel_axis - 1
    if num_spatial < 1:
        raise ShapeError(f"Im2col needs at least one spatial axis after the channel axis "
                         f"{channel_axis}; bottom shape {tuple(bottom_shape)}")
    kernel = _h_w_or_repeated(param, "kernel", num_spatial, None)
    stride = _h_w_or_repeated(param, "stride", num_spatial, 1)
    pad = _h_w_or_repeated(param, "pad", num_spatial, 0)
    dilation = _per_axis(param.dilation, "dilation", num_spatial, 1)
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride) \
            or any(d <= 0 for d in dilation):
        raise ShapeError(f"kernel {kernel}, stride {stride} and dilation {dilation} must be "
                         f"positive")
    spatial = bottom_shape[channel_axis + 1:]
    output = []
    for size, k, s, p, d in zip(spatial, kernel, stride, pad, dilation):
        extent = d * (k - 1) + 1
        if size + 2 * p < extent:
            raise ShapeError(f"kernel extent {extent} is larger than the padded input "
                             f"{size} + 2*{p}")
        output.append((size + 2 * p - extent) // s + 1)
    return Im2colGeometry(channel_axis, kernel, stride, pad, dilation, tuple(output))


def im2col_top_shape(layer, bottom_shape: Shape) -> Shape:
    geom = im2col_geometry(layer, bottom_shape)
    channels = bottom_shape[geom.channel_axis]
    return (tuple(bottom_shape[:geom.channel_axis])
            + (channels * geom.top_channels_per_input,) + geom.output)


@shape_rule("Im2col")
def _im2col(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    return LayerShapes(tops=[im2col_top_shape(layer, bottoms[0])])


# ---------------------------------------------------------------- ConvolutionDepthwise


def _pair(param, name: str, repeated: str, default: int | None) -> tuple[int, int]:
    """conv_dw_layer.cpp: `<name>_h`/`<name>_w` when both are set, else the repeated
    field's first value for both axes, or its first two (h, w)."""
    if fork_has(param, f"{name}_h") and fork_has(param, f"{name}_w"):
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


@shape_rule("ConvolutionDepthwise")
def _convolution_depthwise(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 1)
    geom = depthwise_geometry(layer, bottoms[0])
    top = bottoms[0][:2] + depthwise_output(geom, bottoms[0][2:])
    channels = bottoms[0][1]
    params = [(channels, 1) + geom.kernel] + ([(channels,)] if geom.bias_term else [])
    return LayerShapes(tops=[top], params=params)


# ---------------------------------------------------------------- multiply-accumulates


@mac_rule("Convolution", "ConvolutionDepthwise")
def _convolution_macs(layer, bottoms: list[Shape], shapes: LayerShapes) -> int:
    """Each output element: C/group * kernel taps."""
    per_output = count(shapes.params[0], 1)
    return sum(count(top) * per_output for top in shapes.tops)


@mac_rule("Deconvolution")
def _deconvolution_macs(layer, bottoms: list[Shape], shapes: LayerShapes) -> int:
    """Each input element is spread over num_output/group * kernel taps (weights (C, O/g, k...))."""
    per_input = count(shapes.params[0], 1)
    return sum(count(bottom) * per_input for bottom in bottoms)


@mac_rule("InnerProduct")
def _inner_product_macs(layer, bottoms: list[Shape], shapes: LayerShapes) -> int:
    """Each output element: K inputs (the bottom's axes from `axis` on)."""
    top = shapes.tops[0]
    inputs = count(shapes.params[0]) // top[-1]
    return count(top) * inputs
