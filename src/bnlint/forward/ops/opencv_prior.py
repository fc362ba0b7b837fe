"""OpenCV dnn's PriorBox (prior_box_layer.cpp), for a PriorBox written with OpenCV's
fields (offset_h/offset_w, width/height): its order and its float arithmetic.

Per cell (row-major), per box size, per (offset_w, offset_h) pair: the centre
(w + offset_w) * step_x, (h + offset_h) * step_y, and (centre -/+ size * 0.5) / image
in float. The image size is always the second bottom's (OpenCV reads no img_size);
`clip` is on unless written off (OpenCV's schema default). Top: (1, 2, cells *
priors * 4), the boxes then their variances, as SSD's.
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe.layers import detection
from bnlint.caffe.layers.base import fork_has, legacy_dim

F32 = np.float32


class OpenCVPriors:
    """What OpenCV's PriorBoxLayerImpl reads at construction."""

    def __init__(self, param) -> None:
        widths, heights = detection.opencv_box_sizes(param)
        self.widths = np.array(widths, dtype=F32)
        self.heights = np.array(heights, dtype=F32)
        offsets = detection.prior_offsets(param)
        self.offsets_x = np.array([x for x, _ in offsets], dtype=F32)
        self.offsets_y = np.array([y for _, y in offsets], dtype=F32)
        self.variances = detection.prior_variances(param)
        self.step = detection.prior_image_and_step(param)[1]
        self.clip = bool(param.clip) if fork_has(param, "clip") else True

    def top(self, feature: np.ndarray, image: np.ndarray) -> np.ndarray:
        layer_h, layer_w = legacy_dim(feature.shape, 2), legacy_dim(feature.shape, 3)
        img_h, img_w = legacy_dim(image.shape, 2), legacy_dim(image.shape, 3)
        if self.step[0] == 0 or self.step[1] == 0:
            step_y, step_x = F32(F32(img_h) / F32(layer_h)), F32(F32(img_w) / F32(layer_w))
        else:
            step_y, step_x = F32(self.step[0]), F32(self.step[1])
        # (w + offset) * step in float: (W, offsets) and (H, offsets)
        cx = (np.arange(layer_w, dtype=F32)[:, None] + self.offsets_x[None, :]) * step_x
        cy = (np.arange(layer_h, dtype=F32)[:, None] + self.offsets_y[None, :]) * step_y
        half_w = self.widths * F32(0.5)
        half_h = self.heights * F32(0.5)
        shape = (layer_h, layer_w, self.widths.size, self.offsets_x.size)
        x = np.broadcast_to(cx[None, :, None, :], shape)
        y = np.broadcast_to(cy[:, None, None, :], shape)
        hw = np.broadcast_to(half_w[None, None, :, None], shape)
        hh = np.broadcast_to(half_h[None, None, :, None], shape)
        boxes = np.empty(shape + (4,), dtype=F32)
        boxes[..., 0] = (x - hw) / F32(img_w)
        boxes[..., 1] = (y - hh) / F32(img_h)
        boxes[..., 2] = (x + hw) / F32(img_w)
        boxes[..., 3] = (y + hh) / F32(img_h)
        return priors_top(boxes, self.variances, self.clip)


def priors_top(boxes: np.ndarray, variances, clip: bool) -> np.ndarray:
    """The PriorBox top both forms write, (1, 2, values): the boxes' corners (clipped
    to [0, 1] when asked), then the variances repeated once per box."""
    boxes = boxes.reshape(-1)
    if clip:
        np.clip(boxes, F32(0), F32(1), out=boxes)
    top = np.empty((1, 2, boxes.size), dtype=F32)
    top[0, 0] = boxes
    top[0, 1] = np.resize(np.array(variances, dtype=F32), boxes.size)
    return top
