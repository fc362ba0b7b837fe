"""The SSD fork's deploy-time layers (weiliu89/caffe): Permute, Normalize, PriorBox,
DetectionOutput.

Each follows the fork's CPU code (permute_layer.cpp, normalize_layer.cpp,
prior_box_layer.cpp, detection_output_layer.cpp and util/bbox_util.cpp) operation by
operation in float32, with double where the C++ computes in double (a float divided by
`2.`, `sqrt` of an int) and one rounding where it stores into a float. Parameters are
read by field name (`bnlint.caffe.layers.base.fork_field`), so a message from any SSD-derived schema
works. Flatten with axis/end_axis is BVLC's op.
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe.layers import base, detection, structure
from bnlint.errors import BnlintError, ForwardError
from bnlint.forward.ops.base import layer_error
from bnlint.forward.ops.opencv_prior import OpenCVPriors, priors_top
from bnlint.forward.registry import Op, register_op

F32 = np.float32
FLT_MAX = np.finfo(F32).max


def _checked(op: Op, fn, *args):
    """Run a layer-table reader while building an op, naming the layer in its errors."""
    try:
        return fn(*args)
    except BnlintError as err:
        raise layer_error(op, err.message) from err


@register_op("Permute")
class Permute(Op):
    """Axes reordered by permute_param.order (missing axes follow in their order).

    The identity order shares the bottom's data, as Caffe does.
    """

    def _forward(self, bottoms):
        x = bottoms[0]
        order = structure.permute_order(self.layer, x.ndim)
        if order == list(range(x.ndim)):
            return [x]
        return [np.ascontiguousarray(np.transpose(x, order))]


@register_op("Normalize")
class Normalize(Op):
    """L2 normalisation, then a learned scale (one value, or one per channel).

    across_spatial (default): per image, x * float(1.0 / sqrt(sum(x^2) + eps)), the
    reciprocal taken in double as Caffe's caffe_cpu_scale argument is. Otherwise per
    pixel: x / sqrt(eps + sum over channels of x^2). The sums are BLAS calls in Caffe
    (asum, gemv); here the per-image sum is taken in double and rounded once, the
    channel sum in float32 in channel order, so they match to a few ulps.
    """

    def setup(self, layer) -> None:
        param = base.fork_param(layer, "norm_param")
        self.across_spatial = bool(base.fork_field(param, "across_spatial", True))
        self.channel_shared = bool(base.fork_field(param, "channel_shared", True))
        self.eps = F32(base.fork_field(param, "eps", 1e-10))
        if len(self.blobs) != 1:
            raise layer_error(self, f"Normalize has 1 blob (the scale), got {len(self.blobs)}")
        self.scale = np.asarray(self.blobs[0], dtype=F32).reshape(-1)
        if self.channel_shared and self.scale.size != 1:
            raise layer_error(self, f"a channel-shared scale has 1 value, the blob has "
                                    f"{self.scale.size}")

    def _forward(self, bottoms):
        x = bottoms[0]
        if not 2 <= x.ndim <= 4:
            raise ForwardError(f"Normalize uses Caffe's 4-axis accessors and needs 2 to 4 "
                               f"axes, got shape {list(x.shape)}")
        num, channels = x.shape[0], x.shape[1]
        if not self.channel_shared and self.scale.size != channels:
            raise ForwardError(f"the scale blob has {self.scale.size} values for "
                               f"{channels} channels")
        planes = x.reshape(num, channels, -1)
        if self.across_spatial:
            sums = np.square(planes.reshape(num, -1), dtype=np.float64).sum(axis=1)
            norm = np.sqrt(sums.astype(F32) + self.eps)
            inverse = (1.0 / norm.astype(np.float64)).astype(F32)
            y = planes * inverse[:, None, None]
        else:
            norm = np.full((num, planes.shape[2]), self.eps, dtype=F32)
            sums = np.add.reduce(np.square(planes), axis=1, dtype=F32)
            norm = np.sqrt(sums + norm)
            y = planes / norm[:, None, :]
        if self.channel_shared:
            y *= self.scale[0]
        else:
            y *= self.scale[None, :, None]
        return [y.reshape(x.shape)]


@register_op("PriorBox")
class PriorBox(Op):
    """Default boxes for every cell of bottom[0], normalised by the image size.

    Per cell (row-major) and per min_size: the min_size square, the sqrt(min*max)
    square when max sizes are given, then min_size * sqrt(ar) by min_size / sqrt(ar)
    for each aspect ratio other than 1 (the fork's master; an older revision used
    sqrt(min*max) there, the golden MobileNet-SSD priors rule that out). As in
    prior_box_layer.cpp, min and max sizes are truncated to ints, the centre is
    float (w + offset) * step, and each coordinate is (centre -/+ size / 2.) / image
    computed in double and stored as float. Top: (1, 2, cells * priors * 4), the
    boxes then their variances.
    """

    bottoms = (2, 2)

    def setup(self, layer) -> None:
        param = base.fork_param(layer, "prior_box_param")
        self.opencv = None
        if detection.opencv_priors(param):     # OpenCV dnn's fields: its PriorBox
            self.opencv = _checked(self, OpenCVPriors, param)
            return
        self.min_sizes, self.max_sizes = _checked(self, detection.prior_sizes, param)
        self.aspect_ratios = detection.prior_aspect_ratios(param)
        self.variances = _checked(self, detection.prior_variances, param)
        (self.image, self.step) = _checked(self, detection.prior_image_and_step, param)
        self.clip = bool(base.fork_field(param, "clip", False))
        self.offset = F32(base.fork_field(param, "offset", 0.5))

    def _box_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """Width and height (float32) of each prior of one cell, in Caffe's order."""
        widths, heights = [], []
        for s, min_value in enumerate(self.min_sizes):
            min_size = int(min_value)
            widths.append(F32(min_size))
            heights.append(F32(min_size))
            if self.max_sizes:
                side = F32(np.sqrt(np.float64(min_size * int(self.max_sizes[s]))))
                widths.append(side)
                heights.append(side)
            for ar in self.aspect_ratios:
                if abs(ar - 1.0) < 1e-6:
                    continue
                # min_size * sqrt(ar) with the float sqrt, the product rounded to float.
                root = np.sqrt(F32(ar))
                widths.append(F32(np.float64(min_size) * np.float64(root)))
                heights.append(F32(np.float64(min_size) / np.float64(root)))
        return np.array(widths, dtype=F32), np.array(heights, dtype=F32)

    def _forward(self, bottoms):
        feature, image = bottoms
        if feature.ndim > 4 or image.ndim > 4:
            raise ForwardError("PriorBox uses Caffe's 4-axis accessors (height, width)")
        if self.opencv is not None:
            return [self.opencv.top(feature, image)]
        layer_h, layer_w = (base.legacy_dim(feature.shape, 2), base.legacy_dim(feature.shape, 3))
        if self.image[0] == 0 or self.image[1] == 0:
            img_h, img_w = base.legacy_dim(image.shape, 2), base.legacy_dim(image.shape, 3)
        else:
            img_h, img_w = self.image
        if self.step[0] == 0 or self.step[1] == 0:
            step_h, step_w = F32(F32(img_h) / F32(layer_h)), F32(F32(img_w) / F32(layer_w))
        else:
            step_h, step_w = F32(self.step[0]), F32(self.step[1])
        center_x = (np.arange(layer_w, dtype=F32) + self.offset) * step_w
        center_y = (np.arange(layer_h, dtype=F32) + self.offset) * step_h
        widths, heights = self._box_sizes()
        priors = widths.size
        half_w = widths.astype(np.float64) / 2.0
        half_h = heights.astype(np.float64) / 2.0
        cx = np.broadcast_to(center_x.astype(np.float64)[None, :, None],
                             (layer_h, layer_w, priors))
        cy = np.broadcast_to(center_y.astype(np.float64)[:, None, None],
                             (layer_h, layer_w, priors))
        boxes = np.empty((layer_h, layer_w, priors, 4), dtype=F32)
        boxes[..., 0] = (cx - half_w) / img_w
        boxes[..., 1] = (cy - half_h) / img_h
        boxes[..., 2] = (cx + half_w) / img_w
        boxes[..., 3] = (cy + half_h) / img_h
        return [priors_top(boxes, self.variances, self.clip)]


@register_op("DetectionOutput")
class DetectionOutput(Op):
    """Decode the location predictions against the priors, per-class NMS, keep_top_k.

    Bottoms: locations (num, priors*loc_classes*4), confidences (num, priors*classes,
    already softmaxed), priors (1, 2, priors*4). Top (1, 1, kept, 7): rows
    [image, label, score, xmin, ymin, xmax, ymax], boxes decoded but not clipped.

    Order of the rows, as the fork's CPU code writes them: per image, labels ascending
    (a std::map), within a label in NMS order (score descending; equal scores keep the
    prior order, std::stable_sort). When more than keep_top_k survive, Caffe sorts all
    (score, label, prior) with std::sort, which is not stable: among equal scores its
    pick and order are unspecified; here they stay in label then NMS order (a stable
    sort). With no detection at all the top is (1, 1, num, 7) of -1, image ids in
    column 0. Only TEST matters: the layer has no TRAIN behaviour of its own.
    """

    bottoms = (3, 3)

    def setup(self, layer) -> None:
        param = base.fork_param(layer, "detection_output_param")
        if not base.fork_has(param, "num_classes"):
            raise layer_error(self, "detection_output_param must specify num_classes")
        self.num_classes = int(base.fork_field(param, "num_classes", 0))
        self.share_location = bool(base.fork_field(param, "share_location", True))
        self.background = int(base.fork_field(param, "background_label_id", 0))
        self.code_type = base.fork_enum(param, "code_type", "CORNER")
        if self.code_type not in ("CORNER", "CENTER_SIZE", "CORNER_SIZE"):
            raise layer_error(self, f"unknown code_type {self.code_type}")
        self.variance_in_target = bool(base.fork_field(param, "variance_encoded_in_target",
                                                     False))
        self.keep_top_k = int(base.fork_field(param, "keep_top_k", -1))
        self.confidence_threshold = (F32(base.fork_field(param, "confidence_threshold", 0.0))
                                     if base.fork_has(param, "confidence_threshold")
                                     else -FLT_MAX)
        nms = base.fork_field(param, "nms_param", None)
        self.nms_threshold = F32(base.fork_field(nms, "nms_threshold", 0.3))
        self.eta = F32(base.fork_field(nms, "eta", 1.0))
        self.top_k = int(base.fork_field(nms, "top_k", -1)) if base.fork_has(nms, "top_k") else -1
        if not self.nms_threshold >= 0:
            raise layer_error(self, "nms_threshold must be non negative")
        if not (0 < self.eta <= 1):
            raise layer_error(self, f"nms eta must be in (0, 1], got {self.eta}")
        if self.share_location and self.background == -1:
            # DecodeBBoxesAll skips the shared label -1 as "background", and the forward
            # then aborts: "Could not find location predictions for label -1".
            raise layer_error(self, "share_location with background_label_id -1: the SSD "
                                    "fork skips decoding the shared boxes (label -1 equals "
                                    "the background id) and aborts at the forward")

    def _forward(self, bottoms):
        loc, conf, prior = bottoms
        priors, classes, loc_classes = detection.detection_geometry(
            self.layer, [loc.shape, conf.shape, prior.shape])
        num = loc.shape[0]
        loc = np.asarray(loc, dtype=F32).reshape(num, priors, loc_classes, 4)
        conf = np.asarray(conf, dtype=F32).reshape(num, priors, classes)
        prior_flat = np.asarray(prior, dtype=F32).reshape(-1)
        prior_boxes = prior_flat[:priors * 4].reshape(priors, 4)
        prior_vars = prior_flat[priors * 4:priors * 8].reshape(priors, 4)
        rows = []
        for i in range(num):
            decoded = {}
            for c in range(loc_classes):
                label = -1 if self.share_location else c
                if label == self.background:
                    continue
                decoded[label] = decode_boxes(prior_boxes, prior_vars, loc[i, :, c],
                                              self.code_type, self.variance_in_target)
            labels = [c for c in range(classes) if c != self.background]
            kept = self._nms(decoded, conf[i], labels)
            kept = self._keep_top_k(kept, conf[i])
            for label in sorted(kept):
                boxes, _ = decoded[-1 if self.share_location else label]
                idx = kept[label]
                part = np.empty((len(idx), 7), dtype=F32)
                part[:, 0] = i
                part[:, 1] = label
                part[:, 2] = conf[i, idx, label]
                part[:, 3:] = boxes[idx]
                rows.append(part)
        rows = [part for part in rows if len(part)]
        if not rows:
            top = np.full((1, 1, num, 7), -1, dtype=F32)
            top[0, 0, :, 0] = np.arange(num, dtype=F32)
            return [top]
        stacked = np.concatenate(rows)
        return [stacked.reshape(1, 1, len(stacked), 7)]

    def _nms(self, decoded: dict, scores: np.ndarray, labels: list[int]) -> dict:
        """{label: kept prior indices} of ApplyNMSFast for each label, all labels at once
        when eta is 1 and the candidate lists are short enough for overlap matrices."""
        def boxes_of(c):
            return decoded[-1 if self.share_location else c]

        if self.eta >= 1 and labels:
            orders = [candidates(scores[:, c], self.confidence_threshold, self.top_k)
                      for c in labels]
            if max(len(o) for o in orders) <= BATCHED_NMS_MAX:
                return nms_batched(labels, orders, boxes_of, self.nms_threshold)
        return {c: nms_fast(*boxes_of(c), scores[:, c], self.confidence_threshold,
                            self.nms_threshold, self.eta, self.top_k) for c in labels}

    def _keep_top_k(self, kept: dict[int, np.ndarray], scores: np.ndarray) -> dict:
        total = sum(len(v) for v in kept.values())
        if self.keep_top_k <= -1 or total <= self.keep_top_k:
            return kept
        labels = np.concatenate([np.full(len(kept[c]), c) for c in sorted(kept)])
        indices = np.concatenate([kept[c] for c in sorted(kept)]).astype(np.int64)
        values = scores[indices, labels]
        order = np.argsort(-values, kind="stable")[:self.keep_top_k]
        result: dict[int, list[int]] = {}
        for j in order:
            result.setdefault(int(labels[j]), []).append(int(indices[j]))
        return {c: np.array(v, dtype=np.int64) for c, v in result.items()}


def decode_boxes(prior_boxes: np.ndarray, prior_vars: np.ndarray, loc: np.ndarray,
                 code_type: str, variance_in_target: bool) -> tuple[np.ndarray, np.ndarray]:
    """bbox_util.cpp DecodeBBox for every prior: (boxes (P, 4) float32, sizes (P,)).

    Sizes are BBoxSize of each decoded box (0 when xmax < xmin or ymax < ymin), the
    value NMS uses. CENTER_SIZE's exp is taken in double and multiplied in double
    (C's exp on a float argument), then rounded once.
    """
    p = prior_boxes
    v = np.ones_like(prior_vars) if variance_in_target else prior_vars
    out = np.empty_like(loc)
    if code_type == "CORNER":
        if variance_in_target:
            out[:] = p + loc
        else:
            out[:] = p + v * loc
    else:
        width = p[:, 2] - p[:, 0]
        height = p[:, 3] - p[:, 1]
        if not (np.all(width > 0) and np.all(height > 0)):
            raise ForwardError(f"{code_type} decoding needs priors of positive width and "
                               f"height (Caffe checks prior_width > 0)")
        if code_type == "CENTER_SIZE":
            center_x = (p[:, 0] + p[:, 2]) * F32(0.5)
            center_y = (p[:, 1] + p[:, 3]) * F32(0.5)
            if variance_in_target:
                cx = loc[:, 0] * width + center_x
                cy = loc[:, 1] * height + center_y
                arg_w, arg_h = loc[:, 2], loc[:, 3]
            else:
                cx = v[:, 0] * loc[:, 0] * width + center_x
                cy = v[:, 1] * loc[:, 1] * height + center_y
                arg_w, arg_h = v[:, 2] * loc[:, 2], v[:, 3] * loc[:, 3]
            with np.errstate(over="ignore"):
                box_w = (np.exp(arg_w.astype(np.float64)) * width).astype(F32)
                box_h = (np.exp(arg_h.astype(np.float64)) * height).astype(F32)
            out[:, 0] = cx - box_w * F32(0.5)
            out[:, 1] = cy - box_h * F32(0.5)
            out[:, 2] = cx + box_w * F32(0.5)
            out[:, 3] = cy + box_h * F32(0.5)
        else:   # CORNER_SIZE
            scale = np.stack([width, height, width, height], axis=1)
            if variance_in_target:
                out[:] = p + loc * scale
            else:
                out[:] = p + v * loc * scale
    return out, box_sizes(out)


def box_sizes(boxes: np.ndarray) -> np.ndarray:
    """BBoxSize (normalised): width * height, 0 for an inverted box."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    valid = ~((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    with np.errstate(over="ignore", invalid="ignore"):  # Caffe gives the same inf
        return np.where(valid, width * height, F32(0)).astype(F32)


def jaccard(box: np.ndarray, size: F32, others: np.ndarray, other_sizes: np.ndarray
            ) -> np.ndarray:
    """JaccardOverlap(box, other) for each other box, in float32 as bbox_util.cpp."""
    disjoint = ((others[:, 0] > box[2]) | (others[:, 2] < box[0])
                | (others[:, 1] > box[3]) | (others[:, 3] < box[1]))
    inter_w = np.minimum(others[:, 2], box[2]) - np.maximum(others[:, 0], box[0])
    inter_h = np.minimum(others[:, 3], box[3]) - np.maximum(others[:, 1], box[1])
    overlapping = ~disjoint & (inter_w > 0) & (inter_h > 0)
    inter = inter_w * inter_h
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / ((size + other_sizes) - inter)
    return np.where(overlapping, iou, F32(0)).astype(F32)


def nms_fast(boxes: np.ndarray, sizes: np.ndarray, scores: np.ndarray, score_threshold,
             nms_threshold, eta, top_k: int) -> np.ndarray:
    """bbox_util.cpp ApplyNMSFast: prior indices kept for one class, in keep order.

    Candidates score > score_threshold, stable-sorted by score descending, cut to top_k;
    a candidate is kept when its overlap with every kept box is <= the threshold, which
    shrinks by eta after each keep while above 0.5. With eta 1 this is the usual
    suppression loop over kept boxes; otherwise each candidate is checked in turn.
    """
    order = candidates(scores, score_threshold, top_k)
    threshold = F32(nms_threshold)
    kept: list[int] = []
    if eta >= 1:
        alive = np.ones(order.size, dtype=bool)
        for position in range(order.size):
            if not alive[position]:
                continue
            idx = order[position]
            kept.append(int(idx))
            rest = position + 1 + np.flatnonzero(alive[position + 1:])
            others = order[rest]
            overlap = jaccard(boxes[idx], sizes[idx], boxes[others], sizes[others])
            alive[rest] = overlap <= threshold      # NaN overlaps suppress, as in Caffe
        return np.array(kept, dtype=np.int64)
    for idx in order:
        if kept:
            overlap = jaccard(boxes[idx], sizes[idx], boxes[kept], sizes[kept])
            keep = bool(np.all(overlap <= threshold))
        else:
            keep = True
        if keep:
            kept.append(int(idx))
            if threshold > 0.5:
                threshold = F32(threshold * F32(eta))
    return np.array(kept, dtype=np.int64)



# Candidate lists up to this long go through `nms_batched` (a labels x n x n overlap
# tensor); longer ones (no top_k) through the per-label loop of `nms_fast`.
BATCHED_NMS_MAX = 400


def candidates(scores: np.ndarray, score_threshold, top_k: int) -> np.ndarray:
    """Indices scoring above the threshold, by score descending (ties in index order),
    at most top_k: ApplyNMSFast's GetMaxScoreIndex."""
    above = np.flatnonzero(scores > score_threshold)
    order = above[np.argsort(-scores[above], kind="stable")]
    return order[:top_k] if top_k > -1 else order


def nms_batched(labels: list[int], orders: list[np.ndarray], boxes_of, nms_threshold
                ) -> dict[int, np.ndarray]:
    """`nms_fast` with eta 1 for every label at once: the same kept indices.

    Each label's candidates (in `orders`, padded to one length) get their float32
    Jaccard overlaps in one (labels, n, n) tensor, computed as `jaccard` does pair by
    pair; then one pass over candidate positions suppresses, in every label at once,
    the later candidates that overlap a kept one by more than the threshold (NaN too).
    """
    width = max(len(order) for order in orders)
    index = np.zeros((len(labels), width), dtype=np.int64)
    alive = np.zeros((len(labels), width), dtype=bool)
    boxes = np.zeros((len(labels), width, 4), dtype=F32)
    sizes = np.zeros((len(labels), width), dtype=F32)
    for row, (label, order) in enumerate(zip(labels, orders)):
        label_boxes, label_sizes = boxes_of(label)
        index[row, :len(order)] = order
        alive[row, :len(order)] = True
        boxes[row, :len(order)] = label_boxes[order]
        sizes[row, :len(order)] = label_sizes[order]
    kept_box = boxes[:, :, None, :]                # the kept box along axis 1
    other = boxes[:, None, :, :]                   # the later candidate along axis 2
    # `jaccard`'s disjoint test is implied: a disjoint pair has a negative width or
    # height (or a NaN one), and a zero overlap never exceeds a threshold >= 0. Pairs
    # the loop of `nms_fast` never compares (suppressed or padding) are computed too:
    # an overflow among them says nothing about the outputs.
    with np.errstate(all="ignore"):
        inter_w = (np.minimum(other[..., 2], kept_box[..., 2])
                   - np.maximum(other[..., 0], kept_box[..., 0]))
        inter_h = (np.minimum(other[..., 3], kept_box[..., 3])
                   - np.maximum(other[..., 1], kept_box[..., 1]))
        overlapping = (inter_w > 0) & (inter_h > 0)
        inter = inter_w * inter_h
        iou = inter / ((sizes[:, :, None] + sizes[:, None, :]) - inter)
        suppresses = overlapping & ~(iou <= F32(nms_threshold))
    for position in range(width - 1):
        keeping = alive[:, position]
        if keeping.any():
            later = slice(position + 1, None)
            alive[:, later] &= ~(keeping[:, None] & suppresses[:, position, later])
    return {label: index[row][alive[row]] for row, label in enumerate(labels)}
