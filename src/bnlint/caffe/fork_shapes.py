"""Shape rules for the fork layers bnlint can run: SSD (Permute, Normalize, PriorBox,
DetectionOutput), SegNet/ENet (Upsample, BN), ShuffleNet (ShuffleChannel), ReLU6 and
PSPNet/DeepLab's Interp.

Pure Python, like `shapes`. The same layer type can arrive in a message from different
schemas (a fork's own caffe.proto, bnlint's dialects, the user's `--proto`), so fields
are read by name (`fork_field`, `fork_list`, `fork_has`), and a field the schema lacks
takes the fork's default: a layer whose schema has no such field cannot have set it.

The geometry helpers here (`permute_order`, `prior_aspect_ratios`, `num_priors`,
`upsample_size`, `interp_size`, `bn_variant`) are shared with the forward ops, so each
size has one definition.
"""

from __future__ import annotations

import struct
from typing import Any

from bnlint.caffe.shapes import (
    LayerShapes,
    Shape,
    _expect_bottoms,
    shape_rule,
)
from bnlint.errors import ShapeError

# ---------------------------------------------------------------- reading fork fields


def fork_param(layer, name: str):
    """The sub-message `name` of the layer (e.g. "permute_param"), or None when the
    layer's schema has no such field."""
    if layer is None or name not in layer.DESCRIPTOR.fields_by_name:
        return None
    return getattr(layer, name)


def fork_field(msg, name: str, default: Any) -> Any:
    """`msg.name`, or `default` (the fork's default) when the schema has no such field."""
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name:
        return default
    return getattr(msg, name)


def fork_has(msg, name: str) -> bool:
    """Whether the field is set: HasField for a singular field, non-empty if repeated."""
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name:
        return False
    fd = msg.DESCRIPTOR.fields_by_name[name]
    if _is_repeated(fd):
        return len(getattr(msg, name)) > 0
    return msg.HasField(name)


def fork_list(msg, name: str) -> list:
    """A field as a list: repeated values, [value] for a set singular field, else []
    (the SSD fork's min_size/max_size were singular before they became repeated)."""
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name:
        return []
    fd = msg.DESCRIPTOR.fields_by_name[name]
    if _is_repeated(fd):
        return list(getattr(msg, name))
    return [getattr(msg, name)] if msg.HasField(name) else []


def fork_enum(msg, name: str, default: str) -> str:
    """The enum value name of a field, or `default` when the schema lacks it."""
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name:
        return default
    fd = msg.DESCRIPTOR.fields_by_name[name]
    value = getattr(msg, name)
    if fd.enum_type is None:
        return str(value)
    named = fd.enum_type.values_by_number.get(value)
    return named.name if named is not None else str(value)


def _is_repeated(fd) -> bool:
    repeated = getattr(fd, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return fd.label == fd.LABEL_REPEATED


def float32(value: float) -> float:
    """`value` rounded to float32, as a Python float (Caffe keeps these in floats)."""
    return struct.unpack("f", struct.pack("f", value))[0]


def legacy_dim(shape: Shape, index: int) -> int:
    """Blob::LegacyShape(index): a missing trailing axis counts as 1 (at most 4 axes)."""
    if len(shape) > 4:
        raise ShapeError(f"the layer uses Caffe's 4-axis accessors; shape {shape} has "
                         f"more than 4 axes")
    return shape[index] if index < len(shape) else 1


# ---------------------------------------------------------------- SSD


def permute_order(layer, num_axes: int) -> list[int]:
    """PermuteLayer::LayerSetUp: the given order, then the missing axes in order."""
    given = [int(o) for o in fork_list(fork_param(layer, "permute_param"), "order")]
    for axis in given:
        if not 0 <= axis < num_axes:
            raise ShapeError(f"permute order {axis} must be less than the bottom's "
                             f"{num_axes} axes")
    if len(set(given)) != len(given):
        raise ShapeError(f"permute order {given} has duplicate axes")
    return given + [axis for axis in range(num_axes) if axis not in given]


@shape_rule("Permute")
def _permute(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    return LayerShapes(tops=[tuple(shape[axis] for axis in permute_order(layer, len(shape)))])


@shape_rule("Normalize")
def _normalize(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    if not 2 <= len(shape) <= 4:
        raise ShapeError(f"Normalize needs a bottom with 2 to 4 axes, got shape {shape}")
    shared = bool(fork_field(fork_param(layer, "norm_param"), "channel_shared", True))
    # normalize_layer.cpp: a channel-shared scale is a 0-axis blob, else one per channel.
    return LayerShapes(tops=[shape], params=[() if shared else (shape[1],)])


def prior_aspect_ratios(param) -> list[float]:
    """PriorBoxLayer's aspect_ratios_: 1, then each new ratio (and 1/ratio with flip).

    A ratio within 1e-6 of one already listed is skipped; 1/ratio is computed in double
    and stored as float, as in prior_box_layer.cpp.
    """
    ratios = [1.0]
    flip = bool(fork_field(param, "flip", True))
    for value in fork_list(param, "aspect_ratio"):
        ar = float32(value)
        if any(abs(ar - existing) < 1e-6 for existing in ratios):
            continue
        ratios.append(ar)
        if flip:
            ratios.append(float32(1.0 / ar))
    return ratios


def prior_sizes(param) -> tuple[list[float], list[float]]:
    """min_size and max_size values, checked as PriorBoxLayer::LayerSetUp checks them."""
    min_sizes = [float(v) for v in fork_list(param, "min_size")]
    max_sizes = [float(v) for v in fork_list(param, "max_size")]
    if not min_sizes:
        raise ShapeError("prior_box_param must provide min_size")
    if any(not v > 0 for v in min_sizes):
        raise ShapeError(f"prior_box_param min_size must be positive, got {min_sizes}")
    if max_sizes:
        if len(max_sizes) != len(min_sizes):
            raise ShapeError(f"prior_box_param has {len(min_sizes)} min_size but "
                             f"{len(max_sizes)} max_size values; give one max per min")
        for low, high in zip(min_sizes, max_sizes):
            if not high > low:
                raise ShapeError(f"prior_box_param max_size {high} must be greater than "
                                 f"min_size {low}")
    return min_sizes, max_sizes


def num_priors(param) -> int:
    """Priors per feature-map cell: aspect ratios times min sizes, plus one per max size."""
    min_sizes, max_sizes = prior_sizes(param)
    return len(prior_aspect_ratios(param)) * len(min_sizes) + len(max_sizes)


def prior_variances(param) -> list[float]:
    """The variance values: 4 given, 1 given, or Caffe's default 0.1."""
    values = [float(v) for v in fork_list(param, "variance")]
    if len(values) > 1 and len(values) != 4:
        raise ShapeError(f"prior_box_param needs exactly 4 variance values (or 1), "
                         f"got {len(values)}")
    if any(not v > 0 for v in values):
        raise ShapeError(f"prior_box_param variance must be positive, got {values}")
    return values or [0.1]


def prior_image_and_step(param) -> tuple[tuple[int, int], tuple[float, float]]:
    """(img_h, img_w) and (step_h, step_w) as given; 0 means "from the bottoms"."""
    if fork_has(param, "img_h") or fork_has(param, "img_w"):
        if fork_has(param, "img_size"):
            raise ShapeError("give either img_size or img_h/img_w, not both")
        image = (int(fork_field(param, "img_h", 0)), int(fork_field(param, "img_w", 0)))
        if image[0] <= 0 or image[1] <= 0:
            raise ShapeError(f"img_h and img_w must both be positive, got {image}")
    elif fork_has(param, "img_size"):
        size = int(fork_field(param, "img_size", 0))
        if size <= 0:
            raise ShapeError("img_size must be positive")
        image = (size, size)
    else:
        image = (0, 0)
    if fork_has(param, "step_h") or fork_has(param, "step_w"):
        if fork_has(param, "step"):
            raise ShapeError("give either step or step_h/step_w, not both")
        step = (float32(fork_field(param, "step_h", 0.0)),
                float32(fork_field(param, "step_w", 0.0)))
        if not (step[0] > 0 and step[1] > 0):
            raise ShapeError(f"step_h and step_w must both be positive, got {step}")
    elif fork_has(param, "step"):
        value = float32(fork_field(param, "step", 0.0))
        if not value > 0:
            raise ShapeError("step must be positive")
        step = (value, value)
    else:
        step = (0.0, 0.0)
    return image, step


@shape_rule("PriorBox")
def _prior_box(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 2)
    param = fork_param(layer, "prior_box_param")
    prior_image_and_step(param)
    prior_variances(param)
    feature = bottoms[0]
    size = legacy_dim(feature, 2) * legacy_dim(feature, 3) * num_priors(param) * 4
    if size <= 0:
        raise ShapeError(f"PriorBox makes no priors for a feature map of shape {feature}")
    # One set of priors for the whole batch: channel 0 the boxes, channel 1 the variances.
    return LayerShapes(tops=[(1, 2, size)])


def detection_geometry(layer, bottoms: list[Shape]) -> tuple[int, int, int]:
    """(num_priors, num_classes, num_loc_classes), checked against the three bottoms
    as DetectionOutputLayer::Reshape checks them."""
    param = fork_param(layer, "detection_output_param")
    if not fork_has(param, "num_classes"):
        raise ShapeError("detection_output_param must specify num_classes")
    num_classes = int(fork_field(param, "num_classes", 0))
    share_location = bool(fork_field(param, "share_location", True))
    num_loc_classes = 1 if share_location else num_classes
    loc, conf, prior = bottoms[:3]
    if legacy_dim(loc, 0) != legacy_dim(conf, 0):
        raise ShapeError(f"the location bottom {loc} and the confidence bottom {conf} "
                         f"have different batch sizes")
    priors = legacy_dim(prior, 2) // 4
    if priors * num_loc_classes * 4 != legacy_dim(loc, 1):
        raise ShapeError(f"{priors} priors x {num_loc_classes} location classes x 4 do not "
                         f"match the {legacy_dim(loc, 1)} location predictions (bottom 0 "
                         f"{loc}, priors {prior})")
    if priors * num_classes != legacy_dim(conf, 1):
        raise ShapeError(f"{priors} priors x {num_classes} classes do not match the "
                         f"{legacy_dim(conf, 1)} confidence predictions (bottom 1 {conf})")
    return priors, num_classes, num_loc_classes


@shape_rule("DetectionOutput")
def _detection_output(layer, bottoms: list[Shape]) -> LayerShapes:
    """(1, 1, 1, 7) as Caffe's Reshape declares it: the number of rows (detections) is
    only known after the forward, which reshapes the top to (1, 1, kept, 7)."""
    _expect_bottoms(bottoms, 3)
    detection_geometry(layer, bottoms)
    return LayerShapes(tops=[(1, 1, 1, 7)])


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
    _expect_bottoms(bottoms, 1, 2)
    shape = bottoms[0]
    for i, bottom in enumerate(bottoms):
        if len(bottom) != 4:
            raise ShapeError(f"Upsample bottom {i} must have 4 axes (num, channels, "
                             f"height, width), got {bottom}")
    if len(bottoms) == 2 and bottoms[1] != shape:
        raise ShapeError(f"the mask bottom {bottoms[1]} must have the data's shape {shape}")
    return LayerShapes(tops=[shape[:2] + upsample_size(layer, shape, len(bottoms) == 2)])


def bn_variant(layer) -> str:
    """Which fork's "BN" the message is, from its bn_param fields.

    - "segnet" (alexgkendall/caffe-segnet, ENet): bn_mode; blobs scale, shift (1,C,1,1).
    - "pspnet" (hszhao/PSPNet's own): var_eps/moving_average; four (1,C,1,1) blobs
      scale, shift, mean, variance (channels on `axis`).
    - "tsn" (yjxiong's caffe, used by PSPNet's released models and others): slope and
      bias fillers, frozen, eps; four (1,C) blobs scale, shift, mean, variance.
    """
    param = fork_param(layer, "bn_param")
    if param is None:
        raise ShapeError("the layer's schema has no bn_param, so bnlint cannot tell which "
                         "fork's BN layer this is; parse the net with the fork's dialect")
    fields = param.DESCRIPTOR.fields_by_name
    if "bn_mode" in fields:
        return "segnet"
    if "var_eps" in fields or "moving_average" in fields:
        return "pspnet"
    return "tsn"


def bn_channel_axis(layer, variant: str) -> int:
    if variant == "pspnet":
        axis = int(fork_field(fork_param(layer, "bn_param"), "axis", 1))
        if axis not in (1, 2):
            raise ShapeError(f"BN axis must be 1 or 2, got {axis}")
        return axis
    return 1


@shape_rule("BN")
def _bn(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    shape = bottoms[0]
    variant = bn_variant(layer)
    axis = bn_channel_axis(layer, variant)
    channels = legacy_dim(shape, axis)
    if variant == "segnet":
        return LayerShapes(tops=[shape] + [(1, channels, 1, 1)] * (_num_extra_tops(layer)),
                           params=[(1, channels, 1, 1)] * 2)
    if variant == "pspnet":
        blob = tuple(channels if i == axis else 1 for i in range(4))
        return LayerShapes(tops=[shape], params=[blob] * 4)
    return LayerShapes(tops=[shape], params=[(1, channels)] * 4)


def _num_extra_tops(layer) -> int:
    """SegNet's BN may output the batch mean and variance as tops 1 and 2."""
    return min(2, max(0, len(layer.top) - 1))


# ---------------------------------------------------------------- ShuffleNet, ReLU6


def shuffle_groups(layer, shape: Shape) -> int:
    group = int(fork_field(fork_param(layer, "shuffle_channel_param"), "group", 1))
    if group <= 0:
        raise ShapeError(f"shuffle group must be greater than 0, got {group}")
    if len(shape) < 2 or shape[1] % group:
        raise ShapeError(f"shuffle group {group} must divide the channels of {shape}")
    return group


@shape_rule("ShuffleChannel")
def _shuffle_channel(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    shuffle_groups(layer, bottoms[0])
    return LayerShapes(tops=[bottoms[0]])


@shape_rule("ReLU6")
def _relu6(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1)
    return LayerShapes(tops=[bottoms[0]])


# ---------------------------------------------------------------- Interp


def interp_size(layer, bottoms: list[Shape]) -> tuple[int, int, int, int]:
    """(pad_beg, pad_end, height_out, width_out) of InterpLayer::Reshape.

    The size comes from the second bottom (PSPNet's variant), else, in DeepLab's order:
    shrink_factor alone, zoom_factor alone, height and width, shrink then zoom. Only
    non-positive padding (cropping) is supported, as in Caffe.
    """
    param = fork_param(layer, "interp_param")
    pad_beg = int(fork_field(param, "pad_beg", 0))
    pad_end = int(fork_field(param, "pad_end", 0))
    if pad_beg > 0 or pad_end > 0:
        raise ShapeError(f"Interp supports only non-positive padding (cropping), got "
                         f"pad_beg {pad_beg}, pad_end {pad_end}")
    shape = bottoms[0]
    height_eff = shape[2] + pad_beg + pad_end
    width_eff = shape[3] + pad_beg + pad_end
    shrink, zoom = fork_has(param, "shrink_factor"), fork_has(param, "zoom_factor")
    shrink_factor = int(fork_field(param, "shrink_factor", 1))
    zoom_factor = int(fork_field(param, "zoom_factor", 1))
    if (shrink and shrink_factor < 1) or (zoom and zoom_factor < 1):
        raise ShapeError("Interp shrink_factor and zoom_factor must be positive")
    if len(bottoms) == 2:
        out = (legacy_dim(bottoms[1], 2), legacy_dim(bottoms[1], 3))
    elif shrink and not zoom:
        out = ((height_eff - 1) // shrink_factor + 1, (width_eff - 1) // shrink_factor + 1)
    elif zoom and not shrink:
        out = (height_eff + (height_eff - 1) * (zoom_factor - 1),
               width_eff + (width_eff - 1) * (zoom_factor - 1))
    elif fork_has(param, "height") and fork_has(param, "width"):
        out = (int(fork_field(param, "height", 0)), int(fork_field(param, "width", 0)))
    elif shrink and zoom:
        shrunk = ((height_eff - 1) // shrink_factor + 1, (width_eff - 1) // shrink_factor + 1)
        out = tuple(size + (size - 1) * (zoom_factor - 1) for size in shrunk)
    else:
        raise ShapeError("Interp needs its output size: zoom_factor, shrink_factor, "
                         "height and width, or a second bottom")
    if height_eff <= 0 or width_eff <= 0:
        raise ShapeError(f"Interp padding {pad_beg}/{pad_end} leaves nothing of the input "
                         f"{shape}")
    if out[0] <= 0 or out[1] <= 0:
        raise ShapeError(f"Interp output size {out} must be positive")
    return pad_beg, pad_end, int(out[0]), int(out[1])


@shape_rule("Interp")
def _interp(layer, bottoms: list[Shape]) -> LayerShapes:
    _expect_bottoms(bottoms, 1, 2)
    shape = bottoms[0]
    if len(shape) != 4:
        raise ShapeError(f"Interp needs a 4-axis bottom (num, channels, height, width), "
                         f"got {shape}")
    _, _, height, width = interp_size(layer, bottoms)
    return LayerShapes(tops=[shape[:2] + (height, width)])

