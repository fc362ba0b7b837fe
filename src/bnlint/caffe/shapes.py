"""Shape inference for Caffe layers, following BVLC Caffe's own `Reshape` code.

Pure Python on purpose (no NumPy): the linter imports this and must start fast. The
forward ops use the same geometry helpers (`conv_geometry`, `pool_geometry`) so a
layer's output size has one definition only.

`infer(layer, bottom_shapes)` takes a `caffe_pb2.LayerParameter` (only read through
attributes, so any message with BVLC's field names works) and the bottom shapes, and
returns a `LayerShapes`: the top shapes and the shapes of the learnable blobs the
layer implies, in Caffe's blob order. Shapes are tuples of ints; `()` is Caffe's
0-axis blob (one element: a loss, a channel-shared PReLU slope, a Reduction to a
scalar).

Errors, all `ShapeError` and all naming the layer:
- `UnknownLayerTypeError`: no rule for the type (a fork layer, Python, a typo); a
  caller reports "unknown layer type" and stops inferring below that layer.
- `DataDependentShapeError`: a data layer whose shape comes from the dataset.
- plain `ShapeError`: shapes or parameters Caffe would reject (or would accept only
  to build an empty blob).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from bnlint.caffe.limits import check_blob_shape
from bnlint.errors import ShapeError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerShapes:
    """The top shapes of one layer and the shapes of its learnable blobs."""

    tops: list[Shape]
    params: list[Shape] = field(default_factory=list)

    @property
    def param_count(self) -> int:
        return sum(count(shape) for shape in self.params)


class UnknownLayerTypeError(ShapeError):
    """The layer type has no shape rule (not a BVLC layer bnlint knows)."""


class DataDependentShapeError(ShapeError):
    """A data layer whose top shape depends on the dataset, not on the prototxt."""


ShapeRule = Callable[["object", list[Shape]], LayerShapes]
RULES: dict[str, ShapeRule] = {}


def shape_rule(*type_names: str) -> Callable[[ShapeRule], ShapeRule]:
    """Register a shape rule for one or more Caffe layer types."""

    def deco(fn: ShapeRule) -> ShapeRule:
        for name in type_names:
            if name in RULES:
                raise RuntimeError(f"shape rule for {name!r} registered twice")
            RULES[name] = fn
        return fn

    return deco


def known_types() -> list[str]:
    return sorted(RULES)


def infer(layer, bottom_shapes: Sequence[Sequence[int]]) -> LayerShapes:
    """Top and parameter shapes of `layer` fed with `bottom_shapes`.

    Raises UnknownLayerTypeError for a type without a rule, DataDependentShapeError
    for a data layer whose shape the prototxt does not fix, ShapeError otherwise.
    """
    rule = RULES.get(layer.type)
    if rule is None:
        raise UnknownLayerTypeError(
            f"layer '{layer.name}': unknown layer type '{layer.type}'")
    bottoms = [tuple(int(d) for d in shape) for shape in bottom_shapes]
    try:
        result = rule(layer, bottoms)
        if len(layer.top) and len(layer.top) != len(result.tops):
            raise ShapeError(f"declares {len(layer.top)} tops; with these bottoms a "
                             f"{layer.type} layer makes {len(result.tops)}")
        for index, top in enumerate(result.tops):
            check_blob_shape(top, layer.name, layer.top[index] if len(layer.top) else index)
        for index, param in enumerate(result.params):
            check_blob_shape(param, layer.name, index)
        return result
    except ShapeError as err:
        if f"layer '{layer.name}'" in err.message:
            raise
        raise type(err)(f"layer '{layer.name}' ({layer.type}): {err.message}") from err


# ---------------------------------------------------------------- helpers


def count(shape: Sequence[int], start: int = 0, end: int | None = None) -> int:
    """Blob::count(start, end): the product of the dims in [start, end)."""
    result = 1
    for dim in shape[start:end]:
        result *= dim
    return result


def canonical_axis(axis: int, shape: Sequence[int]) -> int:
    """Blob::CanonicalAxisIndex: -1 is the last axis; out of range is an error."""
    num_axes = len(shape)
    if not -num_axes <= axis < num_axes:
        raise ShapeError(f"axis {axis} is out of range for a {num_axes}-D blob "
                         f"of shape {tuple(shape)}")
    return axis + num_axes if axis < 0 else axis


def enum_name(message, field_name: str) -> str:
    """The enum value name of `message.field_name`, independent of enum numbering."""
    value = getattr(message, field_name)
    enum_type = message.DESCRIPTOR.fields_by_name[field_name].enum_type
    named = enum_type.values_by_number.get(value)
    return named.name if named is not None else str(value)


ANY_NUMBER = -1


def _expect_bottoms(bottoms: list[Shape], low: int, high: int | None = None) -> None:
    """Between `low` and `high` bottoms; `high` None means exactly `low`, ANY_NUMBER
    means no upper bound."""
    high = low if high is None else high
    if len(bottoms) < low or (high != ANY_NUMBER and len(bottoms) > high):
        want = (str(low) if high == low else
                f"at least {low}" if high == ANY_NUMBER else f"{low} to {high}")
        raise ShapeError(f"takes {want} bottom(s), got {len(bottoms)}")


def _num_tops(layer) -> int:
    """The number of tops, at least 1 (a layer written without tops still computes one)."""
    return max(1, len(layer.top))


def _blob_shape(blob_shape, what: str) -> Shape:
    dims = tuple(int(d) for d in blob_shape.dim)
    if any(d < 0 for d in dims):
        raise ShapeError(f"{what} has a negative dimension: {dims}")
    return dims


# ---------------------------------------------------------------- inputs and data


@shape_rule("Input")
def _input(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 0)
    given = layer.input_param.shape
    num_tops = len(layer.top)
    if len(given) == 0:
        raise ShapeError("input_param has no shape")
    if len(given) not in (1, num_tops):
        raise ShapeError(f"input_param gives {len(given)} shapes for {num_tops} tops; "
                         "give one shape, or one per top")
    return LayerShapes(tops=[
        _blob_shape(given[0 if len(given) == 1 else i], "input shape")
        for i in range(num_tops)])


@shape_rule("DummyData")
def _dummy_data(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 0)
    param = layer.dummy_data_param
    num_tops = len(layer.top)
    legacy = (param.num, param.channels, param.height, param.width)
    if any(len(values) for values in legacy):
        if len(param.shape):
            raise ShapeError("dummy_data_param gives both shape and num/channels/height/width")
        for name, values in zip(("num", "channels", "height", "width"), legacy):
            if len(values) not in (1, num_tops):
                raise ShapeError(f"dummy_data_param '{name}' must be given once or once "
                                 f"per top ({num_tops}), got {len(values)}")
        return LayerShapes(tops=[
            tuple(int(values[0 if len(values) == 1 else i]) for values in legacy)
            for i in range(num_tops)])
    if len(param.shape) not in (1, num_tops):
        raise ShapeError(f"dummy_data_param gives {len(param.shape)} shapes for "
                         f"{num_tops} tops")
    return LayerShapes(tops=[
        _blob_shape(param.shape[0 if len(param.shape) == 1 else i], "dummy data shape")
        for i in range(num_tops)])


@shape_rule("MemoryData")
def _memory_data(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 0)
    param = layer.memory_data_param
    data = (param.batch_size, param.channels, param.height, param.width)
    if count(data) <= 0:
        raise ShapeError("memory_data_param batch_size, channels, height and width "
                         "must all be positive")
    tops = [data, (param.batch_size,)]
    return LayerShapes(tops=tops[:_num_tops(layer)])


@shape_rule("ImageData")
def _image_data(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 0)
    param = layer.image_data_param
    crop = layer.transform_param.crop_size
    if crop > 0:
        height = width = crop
    elif param.new_height > 0 and param.new_width > 0:
        height, width = param.new_height, param.new_width
    else:
        raise DataDependentShapeError(
            "ImageData's height and width come from the first image (set "
            "transform_param.crop_size or new_height/new_width to fix them)")
    batch = param.batch_size
    tops = [(batch, 3 if param.is_color else 1, height, width), (batch,)]
    return LayerShapes(tops=tops[:_num_tops(layer)])


@shape_rule("Data", "HDF5Data", "WindowData", "AnnotatedData", "VideoData")
def _dataset(layer, bottoms: list[Shape]) -> LayerShapes:
    raise DataDependentShapeError(f"{layer.type}'s top shapes come from the dataset")


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
    _expect_bottoms(bottoms, 1, ANY_NUMBER)
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
    _expect_bottoms(bottoms, 1)
    geom = pool_geometry(layer, bottoms[0])
    top = bottoms[0][:2] + geom.output
    # MAX pooling may have a second top: the argmax mask, shaped like the output.
    num_tops = min(_num_tops(layer), 2 if geom.method == "MAX" else 1)
    return LayerShapes(tops=[top] * num_tops)


# ---------------------------------------------------------------- dense


@shape_rule("InnerProduct")
def _inner_product(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
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
    _expect_bottoms(bottoms, 1)
    param = layer.embed_param
    if param.num_output <= 0 or param.input_dim <= 0:
        raise ShapeError("embed_param.num_output and input_dim must be positive")
    params = [(param.input_dim, param.num_output)]
    if param.bias_term:
        params.append((param.num_output,))
    return LayerShapes(tops=[bottoms[0] + (param.num_output,)], params=params)


# ---------------------------------------------------------------- normalisation, affine


def nvcaffe_batch_norm(layer) -> bool:
    """Whether the layer's schema is NVIDIA Caffe's: its BatchNormParameter has
    `scale_bias`. NVCaffe's BatchNorm differs at TEST whatever its fields say (stored
    statistics as they are, eps at least 1e-5), so the schema decides, not the text."""
    fields = layer.batch_norm_param.DESCRIPTOR.fields_by_name
    return "scale_bias" in fields


def nvcaffe_scale_bias(layer) -> bool:
    """NVCaffe's `scale_bias_`: the field, or implied by a scale or bias filler
    (NVIDIA/caffe batch_norm_layer.cpp LayerSetUp). False outside NVCaffe's schema."""
    if not nvcaffe_batch_norm(layer):
        return False
    param = layer.batch_norm_param
    return bool(param.scale_bias or param.HasField("scale_filler")
                or param.HasField("bias_filler"))


def batch_norm_blob_count(layer) -> int:
    """3 (mean, variance, BVLC's scale factor or NVCaffe's variance correction), or 5
    with NVCaffe's scale and bias: the count LayerSetUp creates, which
    CopyTrainedLayersFrom then requires of the weights."""
    return 5 if nvcaffe_scale_bias(layer) else 3


@shape_rule("BatchNorm")
def _batch_norm(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    if not shape:       # Caffe's bottom[0]->shape(1) fails on a 0-axis blob
        raise ShapeError("needs a bottom with at least 1 axis, got a 0-axis blob")
    channels = 1 if len(shape) == 1 else shape[1]
    params = [(channels,), (channels,), (1,)]
    if batch_norm_blob_count(layer) == 5:
        params += [(channels,), (channels,)]
    return LayerShapes(tops=[shape], params=params)


def _broadcast_blob_shape(shape: Shape, axis: int, num_axes: int, what: str) -> Shape:
    """shape[axis : axis+num_axes] (num_axes -1: to the end) as Scale/Bias read it."""
    start = canonical_axis(axis, shape)
    if num_axes < -1:
        raise ShapeError(f"{what} num_axes must be -1 or more, got {num_axes}")
    if num_axes >= 0 and start + num_axes > len(shape):
        raise ShapeError(f"{what} blob would extend past the bottom shape {shape} "
                         f"(axis {start}, num_axes {num_axes})")
    return shape[start:] if num_axes == -1 else shape[start:start + num_axes]


def _check_broadcast_bottom(shape: Shape, operand: Shape, axis: int, what: str) -> None:
    start = 0 if len(operand) == 0 else canonical_axis(axis, shape)
    if shape[start:start + len(operand)] != operand or start + len(operand) > len(shape):
        raise ShapeError(f"{what} bottom 1 has shape {operand}, which does not match "
                         f"bottom 0 {shape} from axis {start}")


@shape_rule("Scale")
def _scale(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1, 2)
    param = layer.scale_param
    shape = bottoms[0]
    if len(bottoms) == 2:
        _check_broadcast_bottom(shape, bottoms[1], param.axis, "Scale")
        params = [bottoms[1]] if param.bias_term else []
    else:
        scale = _broadcast_blob_shape(shape, param.axis, param.num_axes, "scale")
        params = [scale, scale] if param.bias_term else [scale]
    return LayerShapes(tops=[shape], params=params)


@shape_rule("Bias")
def _bias(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1, 2)
    param = layer.bias_param
    shape = bottoms[0]
    if len(bottoms) == 2:
        _check_broadcast_bottom(shape, bottoms[1], param.axis, "Bias")
        return LayerShapes(tops=[shape])
    bias = _broadcast_blob_shape(shape, param.axis, param.num_axes, "bias")
    return LayerShapes(tops=[shape], params=[bias])


@shape_rule("LRN")
def _lrn(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    if len(bottoms[0]) != 4:
        raise ShapeError(f"LRN needs a 4-D bottom, got shape {bottoms[0]}")
    if layer.lrn_param.local_size % 2 == 0:
        raise ShapeError(f"LRN local_size must be odd, got {layer.lrn_param.local_size}")
    return LayerShapes(tops=[bottoms[0]])


@shape_rule("Softmax")
def _softmax(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    canonical_axis(layer.softmax_param.axis, bottoms[0])
    return LayerShapes(tops=[bottoms[0]])


# ---------------------------------------------------------------- element-wise


@shape_rule("ReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log",
            "Threshold", "Clip", "Swish", "Dropout", "MVN")
def _same_shape(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    return LayerShapes(tops=[bottoms[0]])


@shape_rule("PReLU")
def _prelu(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    if len(shape) < 2:
        raise ShapeError(f"PReLU needs a bottom with at least 2 axes, got shape {shape}")
    # prelu_layer.cpp: a channel-shared slope is a 0-axis blob, not shape (1,).
    slope = () if layer.prelu_param.channel_shared else (shape[1],)
    return LayerShapes(tops=[shape], params=[slope])


@shape_rule("Eltwise")
def _eltwise(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 2, ANY_NUMBER)
    param = layer.eltwise_param
    for i, shape in enumerate(bottoms[1:], start=1):
        if shape != bottoms[0]:
            raise ShapeError(f"Eltwise bottoms must all have the same shape: bottom {i} "
                             f"'{layer.bottom[i] if i < len(layer.bottom) else i}' is "
                             f"{shape}, bottom 0 is {bottoms[0]}")
    if len(param.coeff):
        if enum_name(param, "operation") != "SUM":
            raise ShapeError("Eltwise takes coefficients only for SUM")
        if len(param.coeff) != len(bottoms):
            raise ShapeError(f"Eltwise has {len(param.coeff)} coefficients for "
                             f"{len(bottoms)} bottoms")
    return LayerShapes(tops=[bottoms[0]])


# ---------------------------------------------------------------- structural


def concat_axis(layer, shape: Shape) -> int:
    """The Concat axis: the deprecated concat_dim if set, else the canonical axis."""
    param = layer.concat_param
    if param.HasField("concat_dim"):
        if param.HasField("axis"):
            raise ShapeError("give either axis or concat_dim, not both")
        if param.concat_dim >= len(shape):
            raise ShapeError(f"concat_dim {param.concat_dim} is out of range for "
                             f"shape {shape}")
        return int(param.concat_dim)
    return canonical_axis(param.axis, shape)


@shape_rule("Concat")
def _concat(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1, ANY_NUMBER)
    first = bottoms[0]
    axis = concat_axis(layer, first)
    total = first[axis]
    for i, shape in enumerate(bottoms[1:], start=1):
        same_rank = len(shape) == len(first)
        if not same_rank or any(a != b for j, (a, b) in enumerate(zip(shape, first))
                                if j != axis):
            raise ShapeError(f"Concat on axis {axis}: bottom {i} has shape {shape}, "
                             f"bottom 0 has {first}; all axes but {axis} must match")
        total += shape[axis]
    return LayerShapes(tops=[first[:axis] + (total,) + first[axis + 1:]])


def slice_axis(layer, shape: Shape) -> int:
    param = layer.slice_param
    if param.HasField("slice_dim"):
        if param.HasField("axis"):
            raise ShapeError("give either axis or slice_dim, not both")
        if param.slice_dim >= len(shape):
            raise ShapeError(f"slice_dim {param.slice_dim} is out of range for shape {shape}")
        return int(param.slice_dim)
    return canonical_axis(param.axis, shape)


def slice_sizes(layer, shape: Shape) -> list[int]:
    """Sizes of the Slice tops along the slice axis.

    Slice points must rise strictly and stay inside the axis; Caffe does not check
    the last one, and a point at or past the axis size gives an empty or negative
    last top, which is refused here.
    """
    axis = slice_axis(layer, shape)
    size = shape[axis]
    num_tops = _num_tops(layer)
    points = [int(p) for p in layer.slice_param.slice_point]
    if points:
        if len(points) != num_tops - 1:
            raise ShapeError(f"{len(points)} slice points need {len(points) + 1} tops, "
                             f"the layer has {num_tops}")
        if num_tops > size:
            raise ShapeError(f"{num_tops} tops cannot slice an axis of size {size}")
        previous = 0
        sizes = []
        for point in points:
            if point <= previous or point >= size:
                raise ShapeError(f"slice points {points} must rise strictly inside "
                                 f"(0, {size}) on axis {axis} of shape {shape}")
            sizes.append(point - previous)
            previous = point
        sizes.append(size - previous)
        return sizes
    if size % num_tops:
        raise ShapeError(f"{num_tops} tops do not evenly divide axis {axis} of size {size}")
    return [size // num_tops] * num_tops


@shape_rule("Slice")
def _slice(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    axis = slice_axis(layer, shape)
    return LayerShapes(tops=[shape[:axis] + (size,) + shape[axis + 1:]
                             for size in slice_sizes(layer, shape)])


@shape_rule("Split")
def _split(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    return LayerShapes(tops=[bottoms[0]] * _num_tops(layer))


@shape_rule("Silence")
def _silence(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1, ANY_NUMBER)
    return LayerShapes(tops=[])


@shape_rule("Flatten")
def _flatten(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    start = canonical_axis(layer.flatten_param.axis, shape)
    end = canonical_axis(layer.flatten_param.end_axis, shape)
    if end < start:
        raise ShapeError(f"Flatten end_axis {end} comes before axis {start}")
    return LayerShapes(tops=[shape[:start] + (count(shape, start, end + 1),)
                             + shape[end + 1:]])


def reshape_top_shape(layer, shape: Shape) -> Shape:
    """ReshapeLayer::Reshape: 0 copies the bottom dim, one -1 is inferred."""
    param = layer.reshape_param
    dims = [int(d) for d in param.shape.dim]
    num_axes_in = len(shape)
    start = param.axis if param.axis >= 0 else num_axes_in + param.axis + 1
    if not 0 <= start <= num_axes_in:
        raise ShapeError(f"Reshape axis {param.axis} is out of range for shape {shape}")
    if param.num_axes < -1:
        raise ShapeError(f"Reshape num_axes must be -1 or more, got {param.num_axes}")
    end = num_axes_in if param.num_axes == -1 else start + param.num_axes
    if end > num_axes_in:
        raise ShapeError(f"Reshape axis {start} + num_axes {param.num_axes} goes past "
                         f"the {num_axes_in} axes of shape {shape}")
    if dims.count(-1) > 1:
        raise ShapeError(f"Reshape shape {tuple(dims)} has more than one -1")
    if any(d < -1 for d in dims):
        raise ShapeError(f"Reshape shape {tuple(dims)} has a dimension below -1")
    new = list(dims)
    for i, dim in enumerate(dims):
        if dim == 0:
            if start + i >= num_axes_in:
                raise ShapeError(f"Reshape dim {i} is 0 but the bottom {shape} has no "
                                 f"axis {start + i} to copy")
            new[i] = shape[start + i]
    if -1 in dims:
        known = count(shape, 0, start) * count(shape, end) * count(
            [d for d in new if d != -1])
        total = count(shape)
        if known == 0 or total % known:
            raise ShapeError(f"Reshape cannot infer the -1 of {tuple(dims)}: the bottom "
                             f"count {total} is not divisible by {known}")
        new[dims.index(-1)] = total // known
    top = shape[:start] + tuple(new) + shape[end:]
    if count(top) != count(shape):
        raise ShapeError(f"Reshape to {top} changes the element count: {count(shape)} "
                         f"in, {count(top)} out (bottom {shape})")
    return top


@shape_rule("Reshape")
def _reshape(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    return LayerShapes(tops=[reshape_top_shape(layer, bottoms[0])])


def crop_offsets(layer, shape: Shape, reference: Shape) -> list[int]:
    """Per-axis offsets of Crop (crop_layer.cpp), checking that the crop fits."""
    param = layer.crop_param
    start = canonical_axis(param.axis, shape)
    offsets_given = [int(o) for o in param.offset]
    if len(offsets_given) > 1 and start + len(offsets_given) != len(shape):
        raise ShapeError(f"Crop gives {len(offsets_given)} offsets; it needs one, or one "
                         f"per axis from {start} ({len(shape) - start})")
    if len(reference) < len(shape):
        raise ShapeError(f"Crop reference {reference} has fewer axes than the data {shape}")
    offsets = []
    for i, size in enumerate(shape):
        offset = 0
        if i >= start:
            if len(offsets_given) == 1:
                offset = offsets_given[0]
            elif offsets_given:
                offset = offsets_given[i - start]
            if size - offset < reference[i]:
                raise ShapeError(f"Crop on axis {i}: size {reference[i]} at offset {offset} "
                                 f"does not fit in {size} (data {shape}, reference "
                                 f"{reference})")
        offsets.append(offset)
    return offsets


@shape_rule("Crop")
def _crop(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 2)
    shape, reference = bottoms
    start = canonical_axis(layer.crop_param.axis, shape)
    crop_offsets(layer, shape, reference)
    return LayerShapes(tops=[shape[:start] + reference[start:len(shape)]])


@shape_rule("Tile")
def _tile(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    param = layer.tile_param
    shape = bottoms[0]
    axis = canonical_axis(param.axis, shape)
    if not param.HasField("tiles") or param.tiles <= 0:
        raise ShapeError("tile_param.tiles must be given and positive")
    return LayerShapes(tops=[shape[:axis] + (shape[axis] * param.tiles,) + shape[axis + 1:]])


@shape_rule("ArgMax")
def _argmax(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    param = layer.argmax_param
    shape = bottoms[0]
    if not shape:       # Caffe's bottom[0]->count(1) fails on a 0-axis blob
        raise ShapeError("needs a bottom with at least 1 axis, got a 0-axis blob")
    top_k = int(param.top_k)
    if top_k < 1:
        raise ShapeError("argmax_param.top_k must be at least 1")
    if param.HasField("axis"):
        axis = canonical_axis(param.axis, shape)
        if top_k > shape[axis]:
            raise ShapeError(f"top_k {top_k} is larger than axis {axis} of shape {shape}")
        return LayerShapes(tops=[shape[:axis] + (top_k,) + shape[axis + 1:]])
    if top_k > count(shape, 1):
        raise ShapeError(f"top_k {top_k} is larger than the {count(shape, 1)} values "
                         f"per item of shape {shape}")
    # (num, 1 or 2, top_k), padded with 1s to the bottom's number of axes.
    top = [1] * max(len(shape), 3)
    top[0] = shape[0]
    top[1] = 2 if param.out_max_val else 1
    top[2] = top_k
    return LayerShapes(tops=[tuple(top)])


@shape_rule("Reduction")
def _reduction(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    axis = canonical_axis(layer.reduction_param.axis, shape)
    return LayerShapes(tops=[shape[:axis]])


# ---------------------------------------------------------------- losses (train nets)


@shape_rule("SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
            "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss")
def _loss(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 2, 3)
    if bottoms[0][:1] != bottoms[1][:1]:
        raise ShapeError(f"the data {bottoms[0]} and label {bottoms[1]} must have the "
                         "same first dimension")
    tops: list[Shape] = [()]
    if layer.type == "SoftmaxWithLoss" and len(layer.top) > 1:
        tops.append(bottoms[0])
    return LayerShapes(tops=tops)


@shape_rule("Accuracy")
def _accuracy(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 2)
    tops: list[Shape] = [()]
    if len(layer.top) > 1:
        axis = canonical_axis(layer.accuracy_param.axis, bottoms[0])
        tops.append((bottoms[0][axis],))
    return LayerShapes(tops=tops)


# Fork layers' rules register themselves with the same decorator.
from bnlint.caffe import fork_shapes  # noqa: E402,F401
