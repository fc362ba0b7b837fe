"""Detection layers: SSD's PriorBox and DetectionOutput, the R-CNN family's RoI
pooling and proposals."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    LayerShapes,
    Shape,
    count,
    expect_bottoms,
    float32,
    fork_field,
    fork_has,
    fork_list,
    fork_param,
    legacy_dim,
)
from bnlint.caffe.layers.table import (
    DETECTION,
    ROLE_SELECTION,
    declare,
    shape_rule,
)
from bnlint.errors import ShapeError

declare("PriorBox", DETECTION, dialect=forks.SSD, param="prior_box_param",
        doc="default boxes of one feature map (SSD)")
declare("DetectionOutput", DETECTION, dialect=forks.SSD, param="detection_output_param",
        roles=[ROLE_SELECTION], doc="decode boxes and keep the best (NMS, SSD)")
declare("ROIPooling", DETECTION, dialect=forks.FRCNN, param="roi_pooling_param",
        doc="max pooling of regions of interest")
declare("PSROIPooling", DETECTION, dialect=forks.FRCNN, param="psroi_pooling_param",
        doc="position-sensitive RoI pooling (R-FCN)")
declare("BoxAnnotatorOHEM", DETECTION, dialect=forks.FRCNN, param="box_annotator_ohem_param",
        doc="online hard example mining (R-FCN)")
declare("Proposal", DETECTION, dialect=forks.PROPOSAL, param="proposal_param",
        doc="region proposals from anchors (Faster R-CNN)")


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


# ---------------------------------------------- OpenCV dnn's PriorBox (fields 14-17)

OPENCV_PRIOR_FIELDS = ("offset_h", "offset_w", "width", "height")


def opencv_priors(param) -> bool:
    """Whether the PriorBox uses OpenCV dnn's fields (several centres per cell, boxes of
    explicit sizes): then OpenCV's prior_box_layer.cpp decides its boxes, not the SSD
    fork's (single min_size kept as float, float arithmetic, `clip` true unless written,
    img_size/img_h/img_w ignored: the image bottom gives the size)."""
    return any(fork_has(param, name) for name in OPENCV_PRIOR_FIELDS)


def prior_offsets(param) -> list[tuple[float, float]]:
    """(offset_w, offset_h) pairs: each cell has one centre per pair, in this order."""
    if fork_has(param, "offset_h") or fork_has(param, "offset_w"):
        if fork_has(param, "offset"):
            raise ShapeError("give either offset or offset_h/offset_w, not both")
        ys, xs = fork_list(param, "offset_h"), fork_list(param, "offset_w")
        if len(xs) != len(ys):
            raise ShapeError(f"prior_box_param has {len(ys)} offset_h but {len(xs)} "
                             f"offset_w values; give them in pairs")
        if len(xs) > 2:
            raise ShapeError(f"{len(xs)} offset_h/offset_w pairs: OpenCV sizes the top for "
                             f"2*(n-1) centres per box but writes n, so only 1 or 2 pairs "
                             f"are well defined")
        return [(float32(x), float32(y)) for x, y in zip(xs, ys)]
    offset = float32(fork_field(param, "offset", 0.5))
    return [(offset, offset)]


def opencv_box_sizes(param) -> tuple[list[float], list[float]]:
    """OpenCV's box widths and heights (float32) of one centre, in its order: the
    explicit width/height lists, or min_size, sqrt(min*max), then min*sqrt(ar) by
    min/sqrt(ar) for each aspect ratio other than 1. OpenCV's float sqrt, product and
    quotient are Python's double ones rounded once to float32 (the same values: double
    has more than twice float's precision), so the check path needs no NumPy."""
    widths, heights = fork_list(param, "width"), fork_list(param, "height")
    if len(widths) != len(heights):
        raise ShapeError(f"prior_box_param has {len(widths)} width but {len(heights)} "
                         f"height values; give them in pairs")
    ratios = prior_aspect_ratios(param)[1:]
    if widths:
        if ratios or fork_has(param, "min_size") or fork_has(param, "max_size"):
            raise ShapeError("explicit width/height take no min_size, max_size or "
                             "aspect_ratio (OpenCV asserts it)")
        return [float32(w) for w in widths], [float32(h) for h in heights]
    min_sizes, max_sizes = prior_sizes(param)
    if len(min_sizes) != 1 or len(max_sizes) > 1:
        raise ShapeError("OpenCV's PriorBox takes one min_size (and at most one max_size)")
    low = float32(min_sizes[0])
    out_w, out_h = [low], [low]
    if max_sizes:
        side = float32(math.sqrt(float32(low * float32(max_sizes[0]))))
        out_w.append(side)
        out_h.append(side)
    for ar in ratios:
        root = float32(math.sqrt(float32(ar)))
        out_w.append(float32(low * root))
        out_h.append(float32(low / root))
    return out_w, out_h


def priors_per_cell(param) -> int:
    """The boxes of one feature-map cell, SSD's way or OpenCV's."""
    if opencv_priors(param):
        return len(opencv_box_sizes(param)[0]) * len(prior_offsets(param))
    return num_priors(param)


@shape_rule("PriorBox")
def _prior_box(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 2)
    param = fork_param(layer, "prior_box_param")
    prior_image_and_step(param)
    prior_variances(param)
    feature = bottoms[0]
    size = legacy_dim(feature, 2) * legacy_dim(feature, 3) * priors_per_cell(param) * 4
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
    expect_bottoms(bottoms, 3)
    detection_geometry(layer, bottoms)
    return LayerShapes(tops=[(1, 1, 1, 7)])




# ---------------------------------------------------------------- RoI pooling


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
        param = fork_param(layer, "psroi_pooling_param")
        output_dim = int(fork_field(param, "output_dim", 0))
        group = int(fork_field(param, "group_size", 0))
        if output_dim <= 0 or group <= 0:
            raise ShapeError("psroi_pooling_param output_dim and group_size must be > 0")
        if data[1] != output_dim * group * group:
            raise ShapeError(f"input channel number {data[1]} does not match layer "
                             f"parameters: output_dim {output_dim} * group_size^2 "
                             f"{group * group}")
        return RoiPooling(True, (group, group),
                          float(fork_field(param, "spatial_scale", 1.0)), output_dim)
    param = fork_param(layer, "roi_pooling_param")
    pooled = (int(fork_field(param, "pooled_h", 0)), int(fork_field(param, "pooled_w", 0)))
    if min(pooled) <= 0:
        raise ShapeError("roi_pooling_param pooled_h and pooled_w must be > 0")
    return RoiPooling(False, pooled, float(fork_field(param, "spatial_scale", 1.0)), 0)


@shape_rule("ROIPooling", "PSROIPooling")
def _roi_pooling(layer, bottoms: list[Shape]) -> LayerShapes:
    geom = roi_pooling(layer, bottoms)
    return LayerShapes(tops=[geom.top_shape(bottoms[0], bottoms[1])])
