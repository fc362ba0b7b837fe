"""Fork layers' ops (SSD, SegNet/ENet, ShuffleNet, ReLU6, Interp) and ceil-mode pooling,
against slow references ported loop by loop from the forks' C++ (Python loops over
float32 scalars, double where the C++ computes in double).

Layer messages come from bnlint's dialect schemas (ssd, segnet, shufflenet, ceil). No
dialect carries Interp or the TSN/PSPNet-style BN, so `extra_schema` adds those two
messages to a copy of BVLC's descriptor, in memory.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from hypothesis import given, settings
from hypothesis import strategies as st

import bnlint.forward.ops  # noqa: F401  (registers the ops)
from bnlint.caffe import caffe_pb2, shapes
from bnlint.caffe.dialects import get_dialect
from bnlint.caffe.phase import Phase
from bnlint.caffe.schema import Schema, default_schema
from bnlint.errors import BnlintError, ForwardError, ShapeError
from bnlint.forward.registry import op_for
from conftest import GOLDEN, needs_shared

F32 = np.float32
SETTINGS = settings(max_examples=30, deadline=None)


@functools.cache
def extra_schema() -> Schema:
    """BVLC's schema plus PSPNet/DeepLab's InterpParameter and yjxiong's BNParameter."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto()
    caffe_pb2.DESCRIPTOR.CopyToProto(fdp)
    fdp.name = "bnlint_test_extra.proto"

    def message(name, fields):
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, default in fields:
            f = m.field.add(name=fname, number=number, label=F.LABEL_OPTIONAL)
            if ftype == "filler":
                f.type, f.type_name = F.TYPE_MESSAGE, ".caffe.FillerParameter"
            else:
                f.type = {"int32": F.TYPE_INT32, "float": F.TYPE_FLOAT,
                          "bool": F.TYPE_BOOL}[ftype]
            if default is not None:
                f.default_value = default

    message("InterpParameter", [("height", 1, "int32", "0"), ("width", 2, "int32", "0"),
                                ("zoom_factor", 3, "int32", "1"),
                                ("shrink_factor", 4, "int32", "1"),
                                ("pad_beg", 5, "int32", "0"), ("pad_end", 6, "int32", "0")])
    message("BNParameter", [("slope_filler", 1, "filler", None),
                            ("bias_filler", 2, "filler", None),
                            ("momentum", 3, "float", "0.9"), ("eps", 4, "float", "1e-5"),
                            ("frozen", 5, "bool", "false")])
    layer = next(m for m in fdp.message_type if m.name == "LayerParameter")
    for number, (fname, tname) in enumerate([("interp_param", "InterpParameter"),
                                             ("bn_param", "BNParameter")], start=5001):
        layer.field.add(name=fname, number=number, label=F.LABEL_OPTIONAL,
                        type=F.TYPE_MESSAGE, type_name=f".caffe.{tname}")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(fdp.SerializeToString())
    return Schema(pool.FindFileByName(fdp.name), "test-extra")


def schema_for(dialect: str) -> Schema:
    if dialect == "extra":
        return extra_schema()
    if dialect == "bvlc":
        return default_schema()
    return get_dialect(dialect).schema()


def make_layer(dialect: str, text: str, bottoms: int = 1, tops: int = 1):
    layer = text_format.Parse(text, schema_for(dialect).message_class("LayerParameter")())
    layer.name = layer.name or "probe"
    layer.bottom.extend(f"b{i}" for i in range(bottoms))
    layer.top.extend(f"t{i}" for i in range(tops))
    return layer


def run_layer(dialect, text, bottoms, blobs=(), phase=Phase.TEST, tops=1):
    """Run the op and check that the shape rule predicts its top shapes."""
    layer = make_layer(dialect, text, len(bottoms), tops)
    bottoms = [np.asarray(b, dtype=F32) for b in bottoms]
    out = op_for(layer, [np.asarray(b, dtype=F32) for b in blobs], phase).run(bottoms)
    inferred = shapes.infer(layer, [b.shape for b in bottoms])
    if layer.type == "DetectionOutput":      # rows are known only after the forward
        assert inferred.tops == [(1, 1, 1, 7)] and out[0].shape[3] == 7
    else:
        assert [tuple(t.shape) for t in out] == inferred.tops
    assert [tuple(np.shape(b)) for b in blobs] == [tuple(p) for p in inferred.params]
    assert all(t.dtype == F32 for t in out)
    return out


def rand(rng, *shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, shape).astype(F32)


# ---------------------------------------------------------------- Permute


def permute_loop(x, orders):
    """permute_layer.cpp: for each top index, walk new_steps to build the old index."""
    num_axes = x.ndim
    top_shape = [x.shape[o] for o in orders]
    old_steps = [int(np.prod(x.shape[i + 1:])) for i in range(num_axes)]
    new_steps = [int(np.prod(top_shape[i + 1:])) for i in range(num_axes)]
    flat, top = x.reshape(-1), np.empty(int(np.prod(top_shape)), dtype=F32)
    for i in range(top.size):
        old_idx, idx = 0, i
        for j in range(num_axes):
            old_idx += (idx // new_steps[j]) * old_steps[orders[j]]
            idx %= new_steps[j]
        top[i] = flat[old_idx]
    return top.reshape(top_shape)


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=1, max_size=5), st.data())
def test_permute_matches_caffes_index_walk(shape, data):
    order = data.draw(st.permutations(range(len(shape))))
    given_order = order[:data.draw(st.integers(0, len(shape)))]
    x = rand(np.random.default_rng(len(shape)), *shape)
    text = 'type: "Permute" permute_param { %s }' % " ".join(f"order: {o}" for o in given_order)
    out = run_layer("ssd", text, [x])[0]
    full = list(given_order) + [a for a in range(len(shape)) if a not in given_order]
    np.testing.assert_array_equal(out, permute_loop(x, full))


def test_permute_identity_shares_and_bad_orders_fail():
    x = rand(np.random.default_rng(0), 2, 3, 4)
    assert run_layer("ssd", 'type: "Permute" permute_param { order: 0 order: 1 }', [x])[0] is x
    for bad in ("order: 3", "order: 1 order: 1"):
        layer = make_layer("ssd", 'type: "Permute" permute_param { %s }' % bad)
        with pytest.raises(ShapeError):
            shapes.infer(layer, [x.shape])
        with pytest.raises(ForwardError):
            op_for(layer, [], Phase.TEST).run([x])


# ---------------------------------------------------------------- Normalize


def normalize_loop(x, scale, across_spatial, channel_shared, eps):
    """normalize_layer.cpp in double: per image (or per pixel) the L2 norm with eps."""
    x64 = x.astype(np.float64)
    num, channels = x.shape[:2]
    planes = x64.reshape(num, channels, -1)
    out = np.empty_like(planes)
    for n in range(num):
        for c in range(channels):
            for s in range(planes.shape[2]):
                if across_spatial:
                    norm = math.sqrt(sum(v * v for v in planes[n].reshape(-1)) + eps)
                else:
                    norm = math.sqrt(sum(planes[n, k, s] ** 2 for k in range(channels)) + eps)
                factor = scale[0] if channel_shared else scale[c]
                out[n, c, s] = planes[n, c, s] / norm * factor
    return out.reshape(x.shape)


@pytest.mark.parametrize("across_spatial", [True, False])
@pytest.mark.parametrize("channel_shared", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 6)])
def test_normalize(across_spatial, channel_shared, shape):
    rng = np.random.default_rng(7)
    x = rand(rng, *shape)
    scale = rand(rng, 1 if channel_shared else shape[1], low=0.5, high=20)
    text = ('type: "Normalize" norm_param { across_spatial: %s channel_shared: %s eps: 1e-3 }'
            % (str(across_spatial).lower(), str(channel_shared).lower()))
    blob = scale.reshape(()) if channel_shared else scale
    out = run_layer("ssd", text, [x], [blob])[0]
    ref = normalize_loop(x, scale.astype(np.float64), across_spatial, channel_shared, 1e-3)
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=1e-7)


def test_normalize_checks_its_scale_blob():
    layer = make_layer("ssd", 'type: "Normalize" norm_param { channel_shared: true }')
    with pytest.raises(ForwardError):
        op_for(layer, [np.ones(3, F32)], Phase.TEST)


# ---------------------------------------------------------------- PriorBox


def f32(value):
    return float(F32(value))


def prior_box_loop(param, layer_h, layer_w, image_h, image_w):
    """prior_box_layer.cpp (weiliu89 master), cell by cell, prior by prior."""
    ratios = [1.0]
    for ar in param.aspect_ratio:
        ar = f32(ar)
        if any(abs(ar - r) < 1e-6 for r in ratios):
            continue
        ratios.append(ar)
        if param.flip:
            ratios.append(f32(1.0 / ar))
    img_h = param.img_h or param.img_size or image_h
    img_w = param.img_w or param.img_size or image_w
    step_h = param.step_h or param.step or f32(f32(img_h) / layer_h)
    step_w = param.step_w or param.step or f32(f32(img_w) / layer_w)
    boxes = []

    def add(cx, cy, bw, bh):
        boxes.extend([f32((cx - bw / 2.0) / img_w), f32((cy - bh / 2.0) / img_h),
                      f32((cx + bw / 2.0) / img_w), f32((cy + bh / 2.0) / img_h)])

    for h in range(layer_h):
        for w in range(layer_w):
            cx = f32(f32(w + f32(param.offset)) * f32(step_w))
            cy = f32(f32(h + f32(param.offset)) * f32(step_h))
            for s, min_size in enumerate(param.min_size):
                min_size = int(min_size)
                add(cx, cy, float(min_size), float(min_size))
                if len(param.max_size):
                    side = f32(math.sqrt(min_size * int(param.max_size[s])))
                    add(cx, cy, side, side)
                for ar in ratios:
                    if abs(ar - 1.0) < 1e-6:
                        continue
                    root = f32(math.sqrt(ar))
                    add(cx, cy, f32(min_size * root), f32(min_size / root))
    if param.clip:
        boxes = [min(max(b, 0.0), 1.0) for b in boxes]
    variances = list(param.variance) or [0.1]
    return np.array([[boxes, [variances[i % len(variances)] for i in range(len(boxes))]]],
                    dtype=F32)


PRIOR_BOX_CASES = [
    "min_size: 30",
    "min_size: 30 max_size: 60 aspect_ratio: 2 flip: true variance: 0.1 variance: 0.1 "
    "variance: 0.2 variance: 0.2 offset: 0.5",
    "min_size: 21.7 min_size: 45 max_size: 45 max_size: 99.5 aspect_ratio: 2 aspect_ratio: 3 "
    "aspect_ratio: 0.5 aspect_ratio: 1 flip: true clip: true variance: 0.2",
    "min_size: 40 aspect_ratio: 3 flip: false step: 8 offset: 0.25 img_size: 64",
    "min_size: 40 aspect_ratio: 1.5 step_h: 7 step_w: 9 img_h: 50 img_w: 70 clip: true",
]


@pytest.mark.parametrize("text", PRIOR_BOX_CASES)
@pytest.mark.parametrize("feature", [(3, 4), (1, 1), (5, 2)])
def test_prior_box_is_bit_exact(text, feature):
    layer_h, layer_w = feature
    image = np.zeros((1, 3, 61, 83), F32)
    out = run_layer("ssd", 'type: "PriorBox" prior_box_param { %s }' % text,
                    [np.zeros((2, 8, layer_h, layer_w), F32), image])[0]
    param = make_layer("ssd", 'type: "PriorBox" prior_box_param { %s }' % text).prior_box_param
    np.testing.assert_array_equal(out, prior_box_loop(param, layer_h, layer_w, 61, 83))


@pytest.mark.parametrize("text", ["", "min_size: 10 max_size: 5", "min_size: 10 max_size: 20 "
                                  "max_size: 30", "min_size: 10 variance: 1 variance: 2",
                                  "min_size: 10 step: 2 step_h: 3 step_w: 3",
                                  "min_size: 10 img_size: 3 img_h: 3 img_w: 3"])
def test_prior_box_refuses_what_caffe_refuses(text):
    layer = make_layer("ssd", 'type: "PriorBox" prior_box_param { %s }' % text, bottoms=2)
    with pytest.raises(BnlintError):
        shapes.infer(layer, [(1, 8, 3, 3), (1, 3, 30, 30)])
    with pytest.raises(BnlintError):
        op_for(layer, [], Phase.TEST)


@needs_shared
def test_prior_box_reproduces_the_golden_mobilenet_ssd_priors():
    from bnlint.caffe.load import parse_text
    from bnlint.files import read_text

    text = parse_text(read_text(str(GOLDEN / "mobilenet_ssd" / "net.prototxt")), dialect="ssd")
    layers = {layer.name: layer for layer in text.message.layer}
    sizes = {"conv11": 19, "conv13": 10, "conv14_2": 5, "conv15_2": 3, "conv16_2": 2,
             "conv17_2": 1}
    image = np.zeros((1, 3, 300, 300), F32)
    outs = [op_for(layers[f"{name}_mbox_priorbox"], [], Phase.TEST).run(
        [np.zeros((1, 1, size, size), F32), image])[0] for name, size in sizes.items()]
    golden = np.load(GOLDEN / "mobilenet_ssd" / "blobs.npz")["mbox_priorbox"]
    np.testing.assert_array_equal(np.concatenate(outs, axis=2), golden)


# ---------------------------------------------------------------- DetectionOutput


def jaccard_loop(b1, s1, b2, s2):
    """bbox_util.cpp JaccardOverlap with IntersectBBox, float32 scalars."""
    if b2[0] > b1[2] or b2[2] < b1[0] or b2[1] > b1[3] or b2[3] < b1[1]:
        return F32(0)
    width = F32(min(b1[2], b2[2]) - max(b1[0], b2[0]))
    height = F32(min(b1[3], b2[3]) - max(b1[1], b2[1]))
    if width > 0 and height > 0:
        inter = F32(width * height)
        return F32(inter / F32(F32(s1 + s2) - inter))
    return F32(0)


def decode_loop(prior, var, loc, code_type, in_target):
    """bbox_util.cpp DecodeBBox for one box, float32 scalars (exp and /2. in double)."""
    p = [F32(v) for v in prior]
    v = [F32(1)] * 4 if in_target else [F32(x) for x in var]
    lx = [F32(x) for x in loc]
    if code_type == "CORNER":
        box = [F32(p[k] + (lx[k] if in_target else F32(v[k] * lx[k]))) for k in range(4)]
    elif code_type == "CENTER_SIZE":
        pw, ph = F32(p[2] - p[0]), F32(p[3] - p[1])
        pcx, pcy = F32(F32(p[0] + p[2]) / 2.0), F32(F32(p[1] + p[3]) / 2.0)
        cx = F32(F32(F32(v[0] * lx[0]) * pw) + pcx)
        cy = F32(F32(F32(v[1] * lx[1]) * ph) + pcy)
        bw = F32(math.exp(float(F32(v[2] * lx[2]))) * float(pw))
        bh = F32(math.exp(float(F32(v[3] * lx[3]))) * float(ph))
        box = [F32(float(cx) - float(bw) / 2.0), F32(float(cy) - float(bh) / 2.0),
               F32(float(cx) + float(bw) / 2.0), F32(float(cy) + float(bh) / 2.0)]
    else:
        pw, ph = F32(p[2] - p[0]), F32(p[3] - p[1])
        size = [pw, ph, pw, ph]
        box = [F32(p[k] + F32(F32(v[k] * lx[k]) * size[k])) for k in range(4)]
    valid = not (box[2] < box[0] or box[3] < box[1])
    return box, (F32(F32(box[2] - box[0]) * F32(box[3] - box[1])) if valid else F32(0))


def nms_loop(boxes, sizes, scores, threshold, nms_threshold, eta, top_k):
    """ApplyNMSFast: stable sort, top_k, then each candidate against the kept ones."""
    order = sorted((i for i in range(len(scores)) if scores[i] > threshold),
                   key=lambda i: -scores[i])
    if top_k > -1:
        order = order[:top_k]
    adaptive, kept = F32(nms_threshold), []
    for idx in order:
        keep = True
        for k in kept:
            if not keep:
                break
            keep = jaccard_loop(boxes[idx], sizes[idx], boxes[k], sizes[k]) <= adaptive
        if keep:
            kept.append(idx)
        if keep and eta < 1 and adaptive > 0.5:
            adaptive = F32(adaptive * F32(eta))
    return kept


def detection_output_loop(loc, conf, prior, num_classes, share_location=True, background=0,
                          code_type="CORNER", in_target=False, keep_top_k=-1,
                          threshold=-np.finfo(F32).max, nms_threshold=0.3, eta=1.0,
                          top_k=-1):
    """detection_output_layer.cpp Forward_cpu with std::map label order."""
    num = loc.shape[0]
    priors = prior.shape[2] // 4
    loc_classes = 1 if share_location else num_classes
    loc = loc.reshape(num, priors, loc_classes, 4)
    conf = conf.reshape(num, priors, num_classes)
    prior_boxes = prior[0, 0].reshape(priors, 4)
    prior_vars = prior[0, 1].reshape(priors, 4)
    rows = []
    for i in range(num):
        decoded = {}
        for c in range(loc_classes):
            label = -1 if share_location else c
            if label == background:
                continue
            pairs = [decode_loop(prior_boxes[p], prior_vars[p], loc[i, p, c], code_type,
                                 in_target) for p in range(priors)]
            decoded[label] = ([b for b, _ in pairs], [s for _, s in pairs])
        indices = {}
        for c in range(num_classes):
            if c == background:
                continue
            boxes, sizes = decoded[-1 if share_location else c]
            indices[c] = nms_loop(boxes, sizes, list(conf[i, :, c]), threshold,
                                  nms_threshold, eta, top_k)
        total = sum(len(v) for v in indices.values())
        if keep_top_k > -1 and total > keep_top_k:
            pairs = [(conf[i, idx, c], c, idx) for c in sorted(indices) for idx in indices[c]]
            pairs = sorted(pairs, key=lambda t: -t[0])[:keep_top_k]
            indices = {}
            for _, c, idx in pairs:
                indices.setdefault(c, []).append(idx)
        for c in sorted(indices):
            boxes, _ = decoded[-1 if share_location else c]
            for idx in indices[c]:
                rows.append([i, c, conf[i, idx, c], *boxes[idx]])
    if not rows:
        top = np.full((1, 1, num, 7), -1, F32)
        top[0, 0, :, 0] = np.arange(num)
        return top
    return np.array(rows, dtype=F32).reshape(1, 1, -1, 7)


def detection_text(num_classes, share_location=True, background=0, code_type="CORNER",
                   in_target=False, keep_top_k=-1, threshold=None, nms_threshold=0.3,
                   eta=1.0, top_k=None):
    nms = f"nms_threshold: {nms_threshold} eta: {eta}" + (
        f" top_k: {top_k}" if top_k is not None else "")
    return (f'type: "DetectionOutput" detection_output_param {{ num_classes: {num_classes} '
            f"share_location: {str(share_location).lower()} background_label_id: {background} "
            f"code_type: {code_type} variance_encoded_in_target: {str(in_target).lower()} "
            f"keep_top_k: {keep_top_k} nms_param {{ {nms} }}"
            + (f" confidence_threshold: {threshold}" if threshold is not None else "") + " }")


def random_detection_inputs(rng, num, priors, num_classes, loc_classes):
    centres = rng.uniform(0.1, 0.9, (priors, 2))
    sizes = rng.uniform(0.05, 0.5, (priors, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    variances = np.tile([0.1, 0.1, 0.2, 0.2], (priors, 1))
    prior = np.stack([boxes.reshape(-1), variances.reshape(-1)])[None].astype(F32)
    loc = rand(rng, num, priors * loc_classes * 4, low=-1.5, high=1.5)
    logits = rng.normal(0, 2, (num, priors, num_classes))
    conf = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    conf = np.round(conf, 2)            # equal scores: the stable order must hold
    return loc, conf.reshape(num, -1).astype(F32), prior


DETECTION_CASES = [
    dict(),
    dict(code_type="CENTER_SIZE", keep_top_k=7, threshold=0.05),
    dict(code_type="CORNER_SIZE", in_target=True, top_k=4),
    dict(code_type="CENTER_SIZE", in_target=True, nms_threshold=0.6, eta=0.8),
    dict(share_location=False, background=2, code_type="CENTER_SIZE", keep_top_k=5),
    dict(background=-1, share_location=False, threshold=0.3, top_k=3, keep_top_k=4),
    dict(threshold=1.0),                                    # nothing survives
]


@pytest.mark.parametrize("case", DETECTION_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_detection_output_matches_caffes_loops(case, seed):
    rng = np.random.default_rng(seed)
    num_classes = 4
    loc_classes = 1 if case.get("share_location", True) else num_classes
    loc, conf, prior = random_detection_inputs(rng, 2, 12, num_classes, loc_classes)
    out = run_layer("ssd", detection_text(num_classes, **case), [loc, conf, prior])[0]
    args = {k: v for k, v in case.items() if k != "threshold"}
    if "threshold" in case:
        args["threshold"] = F32(case["threshold"])
    ref = detection_output_loop(loc, conf, prior, num_classes, **args)
    np.testing.assert_array_equal(out, ref)


def hand_made_detection():
    """Five priors (corner boxes, zero variance so loc 0 decodes to the prior)."""
    boxes = np.array([[0.10, 0.10, 0.50, 0.50],     # 0
                      [0.12, 0.12, 0.52, 0.52],     # 1: IoU with 0 ~ 0.82
                      [0.60, 0.60, 0.90, 0.90],     # 2: apart
                      [0.30, 0.10, 0.70, 0.50],     # 3: IoU with 0 = 1/3
                      [0.61, 0.61, 0.91, 0.91]],    # 4: IoU with 2 ~ 0.87
                     dtype=F32)
    prior = np.stack([boxes.reshape(-1), np.full(20, 0.1, F32)])[None]
    loc = np.zeros((1, 20), F32)
    # classes: 0 background, 1 and 2
    conf = np.array([[0.1, 0.9, 0.0], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5],
                     [0.3, 0.7, 0.0], [0.2, 0.2, 0.6]], dtype=F32).reshape(1, -1)
    return loc, conf, prior


def test_detection_output_on_hand_made_boxes():
    loc, conf, prior = hand_made_detection()
    out = run_layer("ssd", detection_text(3, nms_threshold=0.45, threshold=0.25),
                    [loc, conf, prior])[0][0, 0]
    # class 1: 0 (0.9) kept, 1 (0.8) suppressed by 0, 3 (0.7) kept (IoU 1/3), 2 (0.3) kept
    # class 2: 4 (0.6) kept, 2 (0.5) suppressed by 4
    assert out[:, 1].tolist() == [1, 1, 1, 2]
    np.testing.assert_array_equal(out[:, 2], F32([0.9, 0.7, 0.3, 0.6]))
    np.testing.assert_array_equal(out[:, 3:], prior[0, 0].reshape(5, 4)[[0, 3, 2, 4]])
    assert np.all(out[:, 0] == 0)
    # keep_top_k 2: the two best over all classes, written label by label
    out = run_layer("ssd", detection_text(3, nms_threshold=0.45, threshold=0.25, keep_top_k=2),
                    [loc, conf, prior])[0][0, 0]
    assert out[:, 1].tolist() == [1, 1] and out[:, 2].tolist() == [F32(0.9), F32(0.7)]
    out = run_layer("ssd", detection_text(3, nms_threshold=0.45, threshold=0.25, keep_top_k=3),
                    [loc, conf, prior])[0][0, 0]
    assert out[:, 1].tolist() == [1, 1, 2]          # 0.9, 0.7 of class 1, then 0.6


def test_detection_output_with_nothing_left_writes_minus_one_rows():
    loc, conf, prior = hand_made_detection()
    loc = np.concatenate([loc, loc]); conf = np.concatenate([conf, conf])
    out = run_layer("ssd", detection_text(3, threshold=0.95), [loc, conf, prior])[0]
    expected = np.full((1, 1, 2, 7), -1, F32)
    expected[0, 0, :, 0] = [0, 1]
    np.testing.assert_array_equal(out, expected)


def test_detection_output_refuses_bad_setups():
    loc, conf, prior = hand_made_detection()
    with pytest.raises(ForwardError, match="label -1"):
        op_for(make_layer("ssd", detection_text(3, background=-1), 3), [], Phase.TEST)
    layer = make_layer("ssd", detection_text(4), 3)
    with pytest.raises(ShapeError):
        shapes.infer(layer, [loc.shape, conf.shape, prior.shape])
    with pytest.raises(ForwardError):
        op_for(layer, [], Phase.TEST).run([loc, conf, prior])
    with pytest.raises(ForwardError, match="num_classes"):
        op_for(make_layer("ssd", 'type: "DetectionOutput"', 3), [], Phase.TEST)


# ---------------------------------------------------------------- SegNet Upsample


def unpool_loop(x, mask, out_h, out_w):
    """upsample_layer.cpp: zero top, then top[idx] = bottom[i] plane by plane."""
    num, channels = x.shape[:2]
    top = np.zeros((num, channels, out_h * out_w), F32)
    for n in range(num):
        for c in range(channels):
            for i, (value, idx) in enumerate(zip(x[n, c].reshape(-1), mask[n, c].reshape(-1))):
                top[n, c, int(idx)] = value
    return top.reshape(num, channels, out_h, out_w)


def max_pool_with_mask(x, kernel=2, stride=2, pad=0):
    layer = make_layer("segnet", f'type: "Pooling" pooling_param {{ pool: MAX kernel_size: '
                                 f"{kernel} stride: {stride} pad: {pad} }}", tops=2)
    return op_for(layer, [], Phase.TEST).run([x])


@pytest.mark.parametrize("size,text,out", [
    ((6, 8), "scale: 2", (12, 16)),
    ((6, 8), "upsample_h: 12 upsample_w: 16", (12, 16)),
    ((5, 7), "upsample_h: 10 upsample_w: 13", (10, 13)),
    ((5, 7), "scale: 2 pad_out_h: true pad_out_w: true", (9, 13)),
    ((4, 4), "scale_h: 2 scale_w: 2", (8, 8)),
])
def test_upsample_unpools_by_the_pooling_mask(size, text, out):
    rng = np.random.default_rng(3)
    pooled_input = rand(rng, 2, 3, *out)
    pooled, mask = max_pool_with_mask(pooled_input)
    assert pooled.shape[2:] == size
    top = run_layer("segnet", 'type: "Upsample" upsample_param { %s }' % text,
                    [pooled, mask])[0]
    np.testing.assert_array_equal(top, unpool_loop(pooled, mask, *out))
    kept = top != 0
    np.testing.assert_array_equal(top[kept], pooled_input[kept])


def test_upsample_duplicate_index_keeps_the_last_write_and_checks_range():
    x = np.arange(1, 5, dtype=F32).reshape(1, 1, 2, 2)
    mask = np.array([[[[0, 0], [3, 0]]]], dtype=F32)   # 0 written thrice: last is 4
    top = run_layer("segnet", 'type: "Upsample" upsample_param { scale: 2 }', [x, mask])[0]
    np.testing.assert_array_equal(top.reshape(-1)[:4], F32([4, 0, 0, 3]))
    for bad in (16, -1, np.nan):
        with pytest.raises(ForwardError):
            run_layer("segnet", 'type: "Upsample" upsample_param { scale: 2 }',
                      [x, np.full_like(x, bad)])


def test_upsample_without_mask_is_nearest_neighbour():
    x = rand(np.random.default_rng(1), 1, 2, 3, 4)
    top = run_layer("segnet", 'type: "Upsample" upsample_param { scale: 3 }', [x])[0]
    ref = np.empty((1, 2, 9, 12), F32)
    for h in range(9):
        for w in range(12):
            ref[:, :, h, w] = x[:, :, h // 3, w // 3]
    np.testing.assert_array_equal(top, ref)


def test_upsample_refuses_bad_parameters():
    x = np.zeros((1, 1, 2, 2), F32)
    for text in ("scale: 1", "scale: 3 pad_out_h: true", "upsample_h: 1 upsample_w: 4",
                 "scale: 2 scale_h: 2 scale_w: 2"):
        with pytest.raises(ShapeError):
            shapes.infer(make_layer("segnet", 'type: "Upsample" upsample_param { %s }' % text,
                                    bottoms=2), [x.shape, x.shape])


# ---------------------------------------------------------------- BN (forks)


def test_segnet_bn_inference_is_scale_and_shift():
    rng = np.random.default_rng(5)
    x = rand(rng, 2, 3, 4, 5)
    scale, shift = rand(rng, 1, 3, 1, 1), rand(rng, 1, 3, 1, 1)
    out = run_layer("segnet", 'type: "BN" bn_param { bn_mode: INFERENCE }', [x],
                    [scale, shift])[0]
    ref = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        ref[idx] = F32(F32(x[idx] * scale[0, idx[1], 0, 0]) + shift[0, idx[1], 0, 0])
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("phase", [Phase.TEST, Phase.TRAIN])
def test_segnet_bn_learn_uses_batch_statistics_even_at_test(phase):
    rng = np.random.default_rng(6)
    x = rand(rng, 3, 2, 4, 4) + F32(1.5)
    scale, shift = rand(rng, 1, 2, 1, 1), rand(rng, 1, 2, 1, 1)
    out = run_layer("segnet", 'type: "BN"', [x], [scale, shift], phase=phase, tops=3)
    x64 = x.astype(np.float64)
    for c in range(2):
        mean = x64[:, c].mean()
        var = (x64[:, c] ** 2).mean() - mean ** 2       # E(x^2) - E(x)^2, as SegNet does
        ref = (x64[:, c] - mean) / math.sqrt(var + 1e-9) * scale[0, c, 0, 0] + shift[0, c, 0, 0]
        np.testing.assert_allclose(out[0][:, c], ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out[1][0, c, 0, 0], mean, rtol=1e-6)
        np.testing.assert_allclose(out[2][0, c, 0, 0], var, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("frozen,phase,stored", [(False, Phase.TEST, True),
                                                 (True, Phase.TRAIN, True),
                                                 (False, Phase.TRAIN, False)])
def test_tsn_bn_uses_stored_statistics_at_test_or_frozen(frozen, phase, stored):
    rng = np.random.default_rng(8)
    x = rand(rng, 2, 3, 3, 4)
    scale, shift = rand(rng, 1, 3), rand(rng, 1, 3)
    mean, var = rand(rng, 1, 3), rand(rng, 1, 3, low=0.1, high=2)
    out = run_layer("extra", 'type: "BN" bn_param { eps: 1e-3 frozen: %s }' % str(frozen).lower(),
                    [x], [scale, shift, mean, var], phase=phase)[0]
    x64 = x.astype(np.float64)
    for c in range(3):
        if stored:
            m, v = float(mean[0, c]), float(var[0, c])
        else:
            m, v = x64[:, c].mean(), ((x64[:, c] - x64[:, c].mean()) ** 2).mean()
        ref = (x64[:, c] - m) * (v + 1e-3) ** -0.5 * scale[0, c] + shift[0, c]
        np.testing.assert_allclose(out[:, c], ref, rtol=1e-5, atol=1e-6)


def test_bn_checks_its_blobs():
    layer = make_layer("segnet", 'type: "BN" bn_param { bn_mode: INFERENCE }')
    with pytest.raises(ForwardError, match="2 blobs"):
        op_for(layer, [np.ones((1, 3, 1, 1), F32)] * 4, Phase.TEST)
    with pytest.raises(ShapeError, match="bn_param"):
        shapes.infer(make_layer("bvlc", 'type: "BN"'), [(1, 3, 2, 2)])


# ---------------------------------------------------------------- ShuffleChannel, ReLU6


@pytest.mark.parametrize("group,shape", [(1, (2, 6, 3, 3)), (2, (2, 6, 3, 3)),
                                         (3, (1, 6, 2, 5)), (4, (2, 8)), (6, (1, 6, 1, 1))])
def test_shuffle_channel_matches_resize_cpu(group, shape):
    x = rand(np.random.default_rng(group), *shape)
    out = run_layer("shufflenet", f'type: "ShuffleChannel" shuffle_channel_param {{ '
                                  f"group: {group} }}", [x])[0]
    rows, columns = group, shape[1] // group
    ref = np.empty_like(x)
    for n in range(shape[0]):
        for i in range(rows):
            for j in range(columns):
                ref[n, j * rows + i] = x[n, i * columns + j]
    np.testing.assert_array_equal(out, ref)
    with pytest.raises(ShapeError):
        shapes.infer(make_layer("shufflenet", 'type: "ShuffleChannel" shuffle_channel_param '
                                              "{ group: 4 }"), [(1, 6, 2, 2)])


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_relu6(slope):
    x = F32([-np.inf, -3, -0.0, 0, 0.5, 5.999, 6, 6.5, np.inf, np.nan])
    out = run_layer("bvlc", f'type: "ReLU6" relu_param {{ negative_slope: {slope} }}', [x])[0]
    ref = []
    for v in x:
        clipped = F32(min(max(v, F32(0)), F32(6))) if not np.isnan(v) else F32(np.nan)
        with np.errstate(invalid="ignore"):
            ref.append(F32(clipped + F32(F32(slope) * F32(min(v, F32(0))))))
    np.testing.assert_array_equal(out, F32(ref))


# ---------------------------------------------------------------- Interp


def interp_loop(x, pad_beg, pad_end, height2, width2):
    """interp.cpp caffe_cpu_interp2 (not packed) on each channel, float32 scalars."""
    num, channels, big_h, big_w = x.shape
    y1 = x1 = -pad_beg
    height1, width1 = big_h + pad_beg + pad_end, big_w + pad_beg + pad_end
    out = np.empty((num, channels, height2, width2), F32)
    flat = x.reshape(num * channels, -1)
    if (height1, width1) == (height2, width2):
        for h in range(height2):
            for w in range(width2):
                out.reshape(num * channels, height2, width2)[:, h, w] = \
                    flat[:, (y1 + h) * big_w + x1 + w]
        return out
    rheight = F32(F32(height1 - 1) / F32(height2 - 1)) if height2 > 1 else F32(0)
    rwidth = F32(F32(width1 - 1) / F32(width2 - 1)) if width2 > 1 else F32(0)
    result = out.reshape(num * channels, height2, width2)
    for h2 in range(height2):
        h1r = F32(rheight * F32(h2))
        h1 = int(h1r)
        h1p = 1 if h1 < height1 - 1 else 0
        h1l = F32(h1r - F32(h1))
        h0l = F32(F32(1) - h1l)
        for w2 in range(width2):
            w1r = F32(rwidth * F32(w2))
            w1 = int(w1r)
            w1p = 1 if w1 < width1 - 1 else 0
            w1l = F32(w1r - F32(w1))
            w0l = F32(F32(1) - w1l)
            base = (y1 + h1) * big_w + (x1 + w1)
            for k in range(num * channels):
                p = flat[k]
                result[k, h2, w2] = F32(
                    F32(h0l * F32(F32(w0l * p[base]) + F32(w1l * p[base + w1p])))
                    + F32(h1l * F32(F32(w0l * p[base + h1p * big_w])
                                    + F32(w1l * p[base + h1p * big_w + w1p]))))
    return out


@pytest.mark.parametrize("text,shape,out_hw", [
    ("zoom_factor: 2", (1, 2, 5, 4), (9, 7)),
    ("zoom_factor: 8", (1, 1, 3, 3), (17, 17)),
    ("shrink_factor: 2", (2, 2, 9, 6), (5, 3)),
    ("height: 7 width: 11", (1, 3, 4, 5), (7, 11)),
    ("height: 1 width: 1", (1, 1, 4, 5), (1, 1)),
    ("height: 4 width: 5", (1, 1, 4, 5), (4, 5)),
    ("zoom_factor: 3 shrink_factor: 2", (1, 1, 7, 5), (10, 7)),
    ("zoom_factor: 2 pad_beg: -1 pad_end: -1", (1, 2, 6, 7), (7, 9)),
    ("height: 5 width: 4 pad_beg: 0 pad_end: -2", (1, 1, 6, 6), (5, 4)),
])
def test_interp_matches_caffes_loop(text, shape, out_hw):
    x = rand(np.random.default_rng(9), *shape)
    out = run_layer("extra", 'type: "Interp" interp_param { %s }' % text, [x])[0]
    assert out.shape[2:] == out_hw
    param = make_layer("extra", 'type: "Interp" interp_param { %s }' % text).interp_param
    np.testing.assert_array_equal(out, interp_loop(x, param.pad_beg, param.pad_end, *out_hw))


def test_interp_to_a_second_bottom_and_bad_setups():
    x = rand(np.random.default_rng(2), 1, 2, 3, 4)
    out = run_layer("extra", 'type: "Interp"', [x, np.zeros((1, 5, 6, 8), F32)])[0]
    np.testing.assert_array_equal(out, interp_loop(x, 0, 0, 6, 8))
    for text in ('type: "Interp"', 'type: "Interp" interp_param { pad_beg: 1 zoom_factor: 2 }',
                 'type: "Interp" interp_param { zoom_factor: 0 }'):
        with pytest.raises(ShapeError):
            shapes.infer(make_layer("extra", text), [x.shape])


# ---------------------------------------------------------------- ceil-mode pooling


@pytest.mark.parametrize("dialect,field,expected", [
    ("ceil", "", 57), ("ceil", "ceil_mode: true", 57), ("ceil", "ceil_mode: false", 56),
    ("bvlc", "", 57), ("bvlc", "round_mode: FLOOR", 56),
])
def test_pooling_rounding_follows_ceil_mode(dialect, field, expected):
    text = f'type: "Pooling" pooling_param {{ pool: MAX kernel_size: 3 stride: 2 pad: 1 {field} }}'
    x = rand(np.random.default_rng(4), 1, 2, 112, 112)
    out = run_layer(dialect, text, [x])[0]
    assert out.shape == (1, 2, expected, expected)
    # floor rounding drops the last (partial) window and keeps the others unchanged
    full = run_layer(dialect, text.replace(field, ""), [x])[0] if field else out
    np.testing.assert_array_equal(out, full[:, :, :expected, :expected])


@pytest.mark.parametrize("size,kernel,stride,pad", [(7, 3, 2, 1), (6, 2, 2, 1), (10, 3, 3, 2),
                                                    (5, 3, 2, 0), (8, 4, 3, 1)])
def test_floor_pooling_size_is_caffes_floor_formula(size, kernel, stride, pad):
    text = (f'type: "Pooling" pooling_param {{ pool: AVE kernel_size: {kernel} stride: {stride} '
            f"pad: {pad} ceil_mode: false }}")
    layer = make_layer("ceil", text)
    expected = (size + 2 * pad - kernel) // stride + 1
    if pad and (expected - 1) * stride >= size + pad:
        expected -= 1
    assert shapes.infer(layer, [(1, 1, size, size)]).tops == [(1, 1, expected, expected)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_nms_keeps_what_the_per_label_loop_keeps(seed):
    from bnlint.forward.ops.ssd import box_sizes, candidates, nms_batched, nms_fast

    rng = np.random.default_rng(seed)
    priors, labels = 300, [1, 2, 3, 5]
    corners = rng.uniform(0, 1, (len(labels), priors, 2)).astype(F32)
    extent = rng.uniform(-0.05, 0.4, (len(labels), priors, 2)).astype(F32)   # some inverted
    boxes = np.concatenate([corners, corners + extent], axis=2)
    boxes[0, :5] = np.nan                                                      # NaN boxes
    boxes[1, 10:20] = boxes[1, 20:30]                                          # duplicates
    scores = np.round(rng.uniform(0, 1, (priors, 6)), 2).astype(F32)          # ties
    decoded = {c: (boxes[k], box_sizes(boxes[k])) for k, c in enumerate(labels)}
    for top_k in (-1, 50):
        orders = [candidates(scores[:, c], F32(0.2), top_k) for c in labels]
        batched = nms_batched(labels, orders, decoded.__getitem__, F32(0.45))
        for c in labels:
            loop = nms_fast(*decoded[c], scores[:, c], F32(0.2), F32(0.45), F32(1), top_k)
            np.testing.assert_array_equal(batched[c], loop)
