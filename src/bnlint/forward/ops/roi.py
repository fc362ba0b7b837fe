"""Region-of-interest pooling of the Faster R-CNN and R-FCN forks: ROIPooling and
PSROIPooling. They run when the ROIs are given as an input blob (R rows of
[batch index, x1, y1, x2, y2] in image coordinates), since the proposal layers that
make them at deploy time are Python.

Bin edges follow the forks' code in float32 (`floor`/`ceil` of float products, C's
`round` half away from zero); the loop over bins is Python, the reduction inside a bin
NumPy's.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from bnlint.caffe.layers import detection
from bnlint.errors import ForwardError
from bnlint.forward.ops.base import FreshTops
from bnlint.forward.registry import Op, register_op

F32 = np.float32
FLT_MAX = np.finfo(F32).max
INT_MAX = np.iinfo(np.int32).max


def _c_round(values: np.ndarray) -> np.ndarray:
    """C's round(): halves away from zero (NumPy's round goes to even)."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def _batch_indices(rois: np.ndarray, batch_size: int) -> np.ndarray:
    column = rois[:, 0]
    if not np.all(np.isfinite(column)) or np.any(np.abs(column) > INT_MAX):
        raise ForwardError("the ROIs' batch indices are not numbers in int range")
    index = np.trunc(column).astype(np.int64)
    bad = (index < 0) | (index >= batch_size)
    if np.any(bad):
        raise ForwardError(f"ROI {int(np.argmax(bad))} has batch index {int(index[bad][0])}, "
                           f"outside the data's batch of {batch_size}")
    return index


class _RoiOp(FreshTops, Op):
    bottoms = (2, 2)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        data, rois = (np.asarray(b, dtype=F32) for b in bottoms)
        geom = detection.roi_pooling(self.layer, [data.shape, rois.shape])
        rois = rois.reshape(rois.shape[0], 5)
        batch = _batch_indices(rois, data.shape[0])
        top = np.zeros(geom.top_shape(data.shape, rois.shape), dtype=F32)
        for r in range(rois.shape[0]):
            self._pool_roi(data[batch[r]], rois[r], geom, top[r])
        return [top]

    @abstractmethod
    def _pool_roi(self, image: np.ndarray, roi: np.ndarray,
                  geom: detection.RoiPooling, out: np.ndarray) -> None:
        """Pool one ROI of its (C, H, W) image into `out` (channels, *pooled)."""


@register_op("ROIPooling")
class ROIPooling(_RoiOp):
    """roi_pooling_layer.cpp (rbgirshick/caffe-fast-rcnn): the ROI's corners scaled and
    rounded, its size at least 1 x 1, bin (ph, pw) = [floor(ph * bin_h),
    ceil((ph + 1) * bin_h)) shifted by the ROI's start and clipped to the map; the max
    over the bin, starting from -FLT_MAX (a NaN never wins), 0 for an empty bin."""

    def _pool_roi(self, image, roi, geom, out):
        scale = F32(geom.spatial_scale)
        start_w, start_h, end_w, end_h = (int(v) for v in _c_round(roi[1:] * scale))
        height, width = image.shape[1:]
        roi_h = max(end_h - start_h + 1, 1)
        roi_w = max(end_w - start_w + 1, 1)
        bin_h = F32(roi_h) / F32(geom.pooled[0])
        bin_w = F32(roi_w) / F32(geom.pooled[1])
        for ph in range(geom.pooled[0]):
            h0 = min(max(int(np.floor(F32(ph) * bin_h)) + start_h, 0), height)
            h1 = min(max(int(np.ceil(F32(ph + 1) * bin_h)) + start_h, 0), height)
            for pw in range(geom.pooled[1]):
                w0 = min(max(int(np.floor(F32(pw) * bin_w)) + start_w, 0), width)
                w1 = min(max(int(np.ceil(F32(pw + 1) * bin_w)) + start_w, 0), width)
                if h1 <= h0 or w1 <= w0:
                    out[:, ph, pw] = 0
                    continue
                window = image[:, h0:h1, w0:w1].reshape(image.shape[0], -1)
                out[:, ph, pw] = np.fmax(np.fmax.reduce(window, axis=1), -FLT_MAX)


@register_op("PSROIPooling")
class PSROIPooling(_RoiOp):
    """psroi_pooling_layer.cu (daijifeng001/caffe-rfcn; its CPU code is not implemented,
    so this follows the GPU kernel): the ROI's rounded corners times spatial_scale (the
    end + 1), its size at least 0.1; bin (ph, pw) = [floor(ph * bin_h + start),
    ceil((ph + 1) * bin_h + start)) clipped to the map; top channel c averages input
    channel (c * k + ph) * k + pw over the bin (row by row), 0 for an empty bin."""

    def _pool_roi(self, image, roi, geom, out):
        scale = F32(geom.spatial_scale)
        rounded = _c_round(roi[1:].astype(np.float64))
        start_w, start_h = (F32(v) * scale for v in rounded[:2])
        end_w, end_h = (F32(v + 1.0) * scale for v in rounded[2:])
        roi_w = F32(max(float(end_w - start_w), 0.1))
        roi_h = F32(max(float(end_h - start_h), 0.1))
        group = geom.pooled[0]
        bin_h, bin_w = roi_h / F32(group), roi_w / F32(group)
        height, width = image.shape[1:]
        channels = np.arange(geom.output_dim) * group * group
        for ph in range(group):
            h0 = min(max(int(np.floor(F32(ph) * bin_h + start_h)), 0), height)
            h1 = min(max(int(np.ceil(F32(ph + 1) * bin_h + start_h)), 0), height)
            for pw in range(group):
                w0 = min(max(int(np.floor(F32(pw) * bin_w + start_w)), 0), width)
                w1 = min(max(int(np.ceil(F32(pw + 1) * bin_w + start_w)), 0), width)
                if h1 <= h0 or w1 <= w0:
                    out[:, ph, pw] = 0
                    continue
                window = image[channels + ph * group + pw, h0:h1, w0:w1]
                total = window.reshape(geom.output_dim, -1).sum(axis=1, dtype=F32)
                out[:, ph, pw] = total / F32((h1 - h0) * (w1 - w0))
