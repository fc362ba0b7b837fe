"""Losses and Accuracy against loop references written from BVLC Caffe's CPU forwards
(softmax_loss_layer.cpp, infogain_loss_layer.cpp, euclidean_loss_layer.cpp,
sigmoid_cross_entropy_loss_layer.cpp, hinge_loss_layer.cpp,
multinomial_logistic_loss_layer.cpp, contrastive_loss_layer.cpp, accuracy_layer.cpp),
float by float; and which losses a forward runs (labels given or not).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bnlint.caffe.load import parse_text
from bnlint.caffe.net import NetState, net_view
from bnlint.caffe.phase import Phase
from bnlint.errors import ForwardError
from bnlint.forward import ops as _ops  # noqa: F401
from bnlint.forward.executor import load_network
from bnlint.forward.registry import op_for
from bnlint.source import SourceFile

F32 = np.float32
FLT_MIN = F32(np.finfo(F32).tiny)


def _layer(text: str):
    parsed = parse_text(SourceFile("<net>", f"layer {{ {text} }}"))
    assert not parsed.problems, parsed.problems
    return net_view(parsed).layers[0].message


def _run(text: str, *bottoms):
    return op_for(_layer(text), [], Phase.TEST).run([np.asarray(b, F32) for b in bottoms])


def _log(x) -> F32:
    return F32(math.log(float(x)))           # glibc's logf: correctly rounded


def _exp(x) -> F32:
    return F32(math.exp(float(x)))


def _softmax_ref(x: np.ndarray, axis: int) -> np.ndarray:
    x = np.moveaxis(x.astype(F32), axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        row = x[idx]
        top = max(row)
        e = [_exp(F32(v - top)) for v in row]
        total = F32(0)
        for v in e:
            total = F32(total + v)
        out[idx] = [F32(v / total) for v in e]
    return np.moveaxis(out, -1, axis)


def _normalizer(mode: str, outer: int, inner: int, valid: int) -> F32:
    value = {"FULL": outer * inner, "VALID": valid, "BATCH_SIZE": outer, "NONE": 1}[mode]
    return max(F32(1), F32(value))


def _softmax_loss_ref(x, label, axis=1, ignore=None, mode="VALID"):
    prob = _softmax_ref(x, axis)
    outer = int(np.prod(x.shape[:axis]))
    inner = int(np.prod(x.shape[axis + 1:]))
    dim = x.size // outer
    p = prob.reshape(-1)
    lab = label.reshape(-1)
    loss, count = F32(0), 0
    for i in range(outer):
        for j in range(inner):
            value = int(lab[i * inner + j])
            if ignore is not None and value == ignore:
                continue
            loss = F32(loss - _log(max(p[i * dim + value * inner + j], FLT_MIN)))
            count += 1
    return F32(loss / _normalizer(mode, outer, inner, count)), prob


RNG = np.random.default_rng(7)
SCORES = RNG.normal(0, 2, (3, 4, 2, 5)).astype(F32)          # N, C, H, W
LABELS = RNG.integers(0, 4, (3, 1, 2, 5)).astype(F32)
LABELS[0, 0, 0, :3] = 255                                    # ignored


@pytest.mark.parametrize("loss_param,ignore,mode", [
    ("ignore_label: 255", 255, "VALID"),
    ("ignore_label: 255 normalization: FULL", 255, "FULL"),
    ("ignore_label: 255 normalization: BATCH_SIZE", 255, "BATCH_SIZE"),
    ("ignore_label: 255 normalization: NONE", 255, "NONE"),
    ("ignore_label: 255 normalize: false", 255, "BATCH_SIZE"),
    ("ignore_label: 255 normalize: true", 255, "VALID"),
    ("ignore_label: 255 normalize: false normalization: FULL", 255, "FULL"),
])
def test_softmax_with_loss_modes(loss_param: str, ignore, mode: str):
    text = (f'name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" '
            f'top: "prob" loss_weight: 1 loss_weight: 0 loss_param {{ {loss_param} }}')
    loss, prob = _run(text, SCORES, LABELS)
    want_loss, want_prob = _softmax_loss_ref(SCORES, LABELS, ignore=ignore, mode=mode)
    assert loss.shape == () and loss.dtype == F32
    assert loss == want_loss
    np.testing.assert_allclose(prob, want_prob, rtol=2e-7, atol=1e-9)


def test_softmax_with_loss_axis_and_label_errors():
    x = SCORES.reshape(3, 4, 10).transpose(0, 2, 1).copy()      # classes on axis 2
    y = LABELS.reshape(3, 10).copy()
    y[y == 255] = 1
    (loss,) = _run('name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" '
                   'softmax_param { axis: 2 }', x, y)
    assert loss == _softmax_loss_ref(x, y, axis=2)[0]
    with pytest.raises(ForwardError, match=r"'l'.*label value 4 .*outside \[0, 4\)"):
        _run('name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss"',
             SCORES, np.full((3, 1, 2, 5), 4, F32))
    with pytest.raises(ForwardError, match=r"10 labels for 30 predictions"):
        _run('name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss"',
             SCORES, np.zeros(10, F32))


def test_a_two_top_softmax_loss_needs_its_loss_weights_written():
    """LossLayer adds loss_weight 1 for the first top; SetLossWeights then wants one per
    top, so Caffe refuses a two-top SoftmaxWithLoss without them."""
    with pytest.raises(ForwardError, match=r"'l'.*loss_weight must be unspecified or "
                                           r"specified once per top blob \(1 for 2 tops"):
        op_for(_layer('name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" '
                      'top: "loss" top: "prob"'), [], Phase.TEST)


def test_infogain_loss_with_a_matrix_bottom_and_a_source_file(tmp_path):
    from bnlint.caffe import caffe_pb2

    x = SCORES[:, :, 0, :].copy()                   # (3, 4, 5)
    y = np.where(LABELS[:, 0, 0, :] == 255, 7, LABELS[:, 0, 0, :]).astype(F32)
    h = RNG.uniform(0, 1, (4, 4)).astype(F32)
    prob = _softmax_ref(x, 1)
    loss, count = F32(0), 0
    for i in range(3):
        for j in range(5):
            value = int(y[i, j])
            if value == 7:
                continue
            for c in range(4):
                loss = F32(loss - F32(h[value, c] * _log(max(prob[i, c, j], F32(1e-20)))))
            count += 1
    want = F32(loss / F32(count))
    text = ('name: "l" type: "InfogainLoss" bottom: "x" bottom: "y" {} top: "loss" '
            'loss_param {{ ignore_label: 7 }} {}')
    (got,) = _run(text.format('bottom: "h"', ""), x, y, h)
    assert got == want
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([1, 1, 4, 4])
    blob.data.extend(h.reshape(-1).tolist())
    (tmp_path / "h.binaryproto").write_bytes(blob.SerializeToString())
    source = f'infogain_loss_param {{ source: "{tmp_path / "h.binaryproto"}" }}'
    (got,) = _run(text.format("", source), x, y)
    assert got == want
    with pytest.raises(ForwardError, match="normalize is deprecated"):
        _run(text.format('bottom: "h"', "").replace("ignore_label: 7", "normalize: true"),
             x, y, h)


def test_euclidean_loss():
    a = RNG.normal(size=(4, 3, 2)).astype(F32)
    b = RNG.normal(size=(4, 6)).astype(F32)
    diff = (a.reshape(4, 6) - b).reshape(-1)
    want = F32(F32(np.dot(diff.astype(np.float64), diff)) / F32(4) / F32(2))
    (got,) = _run('name: "l" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss"', a, b)
    assert got == pytest.approx(want, rel=1e-6)


def _sce_ref(x, t, ignore=None, mode="BATCH_SIZE"):
    loss, valid = F32(0), 0
    for xi, ti in zip(x.reshape(-1), t.reshape(-1)):
        if ignore is not None and int(ti) == ignore:
            continue
        ge = F32(xi >= 0)
        term = F32(F32(xi * F32(ti - ge))
                   - _log(F32(F32(1) + _exp(F32(xi - F32(F32(2) * xi) * ge)))))
        loss = F32(loss - term)
        valid += 1
    return F32(loss / _normalizer(mode, x.shape[0], x.size // x.shape[0], valid))


@pytest.mark.parametrize("loss_param,ignore,mode", [
    ("", None, "BATCH_SIZE"),
    ("ignore_label: -1", -1, "BATCH_SIZE"),
    ("ignore_label: -1 normalization: VALID", -1, "VALID"),
    ("normalize: true", None, "VALID"),
    ("normalization: FULL", None, "FULL"),
])
def test_sigmoid_cross_entropy_loss(loss_param: str, ignore, mode: str):
    x = RNG.normal(0, 3, (3, 7)).astype(F32)
    t = (RNG.uniform(size=(3, 7)) > 0.5).astype(F32)
    t[1, :4] = -1
    (got,) = _run(f'name: "l" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" '
                  f'top: "loss" loss_param {{ {loss_param} }}', x, t)
    assert got == _sce_ref(x, t, ignore, mode)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_loss(norm: str):
    x = RNG.normal(size=(5, 6)).astype(F32)
    y = RNG.integers(0, 6, 5).astype(F32)
    diff = x.copy()
    for i in range(5):
        diff[i, int(y[i])] *= F32(-1)
    diff = np.maximum(F32(0), F32(1) + diff).astype(np.float64)
    total = (diff * diff).sum() if norm == "L2" else diff.sum()
    (got,) = _run(f'name: "l" type: "HingeLoss" bottom: "x" bottom: "y" top: "loss" '
                  f'hinge_loss_param {{ norm: {norm} }}', x, y)
    assert got == pytest.approx(F32(total) / F32(5), rel=1e-6)


def test_multinomial_logistic_loss():
    prob = RNG.uniform(0, 1, (4, 5, 1, 1)).astype(F32)
    prob[2, 3] = 0                                   # floored at 1e-20
    y = np.array([1, 0, 3, 4], F32).reshape(4, 1, 1, 1)
    loss = F32(0)
    for i in range(4):
        loss = F32(loss - _log(max(prob[i, int(y[i, 0, 0, 0]), 0, 0], F32(1e-20))))
    (got,) = _run('name: "l" type: "MultinomialLogisticLoss" bottom: "p" bottom: "y" '
                  'top: "loss"', prob, y)
    assert got == F32(loss / F32(4))


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss(legacy: bool):
    a = RNG.normal(0, 0.4, (6, 3, 1, 1)).astype(F32)
    b = RNG.normal(0, 0.4, (6, 3, 1, 1)).astype(F32)
    sim = np.array([1, 0, 0, 1, 0, 0], F32).reshape(6, 1, 1, 1)
    margin = F32(1.5)
    loss = F32(0)
    for i in range(6):
        d = (a[i].reshape(-1) - b[i].reshape(-1)).astype(np.float64)
        dist_sq = F32(np.dot(d, d))
        if int(sim[i, 0, 0, 0]):
            loss = F32(loss + dist_sq)
        elif legacy:
            loss = F32(loss + max(F32(margin - dist_sq), F32(0)))
        else:
            dist = max(F32(margin - F32(math.sqrt(dist_sq))), F32(0))
            loss = F32(loss + F32(dist * dist))
    want = F32(F32(loss / F32(6)) / F32(2))
    (got,) = _run(f'name: "l" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "s" '
                  f'top: "loss" contrastive_loss_param {{ margin: 1.5 '
                  f'legacy_version: {str(legacy).lower()} }}', a, b, sim)
    assert got == pytest.approx(want, rel=1e-6)


def _accuracy_ref(x, label, top_k, axis=1, ignore=None):
    outer = int(np.prod(x.shape[:axis]))
    inner = int(np.prod(x.shape[axis + 1:]))
    classes = x.shape[axis]
    dim = x.size // outer
    data, lab = x.reshape(-1), label.reshape(-1)
    accuracy, count = F32(0), 0
    per_class, seen = np.zeros(classes, F32), np.zeros(classes, F32)
    for i in range(outer):
        for j in range(inner):
            value = int(lab[i * inner + j])
            if ignore is not None and value == ignore:
                continue
            seen[value] += 1
            true = data[i * dim + value * inner + j]
            better = -1
            k = 0
            while k < classes and better < top_k:
                better += data[i * dim + k * inner + j] >= true
                k += 1
            if better < top_k:
                accuracy += 1
                per_class[value] += 1
            count += 1
    per_class = np.array([0 if seen[c] == 0 else per_class[c] / seen[c]
                          for c in range(classes)], F32)
    return (F32(0) if count == 0 else F32(accuracy / F32(count))), per_class


@pytest.mark.parametrize("param,top_k,ignore", [
    ("", 1, None), ("top_k: 2", 2, None), ("top_k: 3 ignore_label: 255", 3, 255)])
def test_accuracy(param: str, top_k: int, ignore):
    x = np.round(SCORES, 0)                  # ties: a tie counts as a better score
    y = LABELS if ignore else np.where(LABELS == 255, 0, LABELS).astype(F32)
    acc, per_class = _run(f'name: "a" type: "Accuracy" bottom: "x" bottom: "y" top: "acc" '
                          f'top: "per_class" accuracy_param {{ {param} }}', x, y)
    want, want_per_class = _accuracy_ref(x, y, top_k, ignore=ignore)
    assert acc.shape == () and acc == want
    np.testing.assert_array_equal(per_class, want_per_class)


# ------------------------------------------------------------ which losses run


TRAIN_NET = """
layer { name: "targets" type: "Input" top: "target" input_param { shape { dim: 4 dim: 5 } } }
layer { name: "data" type: "Data" top: "data" top: "label"
        data_param { source: "db" batch_size: 4 } }
layer { name: "flat" type: "Reshape" bottom: "label" top: "label_flat"
        reshape_param { shape { dim: -1 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label_flat" top: "loss"
        loss_weight: 0.5 }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label_flat" top: "acc" }
layer { name: "l2" type: "EuclideanLoss" bottom: "fc" bottom: "target" top: "l2" }
"""


@pytest.fixture
def train_net(tmp_path):
    path = tmp_path / "train.prototxt"
    path.write_text(TRAIN_NET)
    return path


def _load(path, given=(), wanted=()):
    shapes = {"data": (4, 3), "label": (4, 1)}
    if "label" not in given:
        del shapes["label"]
    return load_network(str(path), state=NetState(Phase.TRAIN), drop_losses=True,
                        input_shapes=shapes, given=given, wanted=wanted)


def test_without_labels_the_losses_are_left_out_with_a_note(train_net):
    net = _load(train_net)
    # the label's Reshape goes with them: nothing asks for the label
    assert [s.layer.name for s in net.steps] == ["targets", "data", "fc"]
    assert net.input_names == ["data"]
    assert net.notes and "label" in net.notes[0] and "target" in net.notes[0]


def test_with_every_label_the_losses_run(train_net):
    from bnlint.forward.labels import weighted_losses

    net = _load(train_net, given={"data", "label", "target"})
    label = np.array([[1], [0], [4], [2]], F32)
    data = RNG.normal(size=(4, 3)).astype(F32)
    target = RNG.normal(size=(4, 5)).astype(F32)
    got = net.run({"data": data, "label": label, "target": target}, keep="all")
    assert got["loss"] == _softmax_loss_ref(got["fc"], label.reshape(-1))[0]
    assert got["acc"] == _accuracy_ref(got["fc"], label.reshape(-1), 1)[0]
    weights = {top: weight for top, _, weight in weighted_losses(net, got)}
    assert weights == {"loss": 0.5, "l2": 1.0}


def test_a_missing_label_names_the_layer_and_the_blob(train_net):
    with pytest.raises(ForwardError, match=r"train.prototxt:\d+:\d+: layer 'l2' "
                                           r"\(EuclideanLoss\) needs its label 'target'"):
        _load(train_net, given={"data", "label"})
    with pytest.raises(ForwardError, match=r"layer 'loss' \(SoftmaxWithLoss\) needs its "
                                           r"label 'label'"):
        _load(train_net, wanted={"loss"})


# ------------------------------------------------------------ fork schemas


def _fork_layer(net: str, name: str):
    parsed = parse_text(SourceFile("<net>", net))
    assert not parsed.problems, parsed.problems
    return parsed.dialect.name, next(lv.message for lv in net_view(parsed).layers
                                     if lv.name == name)


SEGNET_LOSS = ('layer {{ name: "bn" type: "BN" bottom: "x" top: "x" '
               'bn_param {{ bn_mode: INFERENCE }} }}\n'
               'layer {{ name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" '
               'top: "loss" loss_param {{ {} }} }}\n')


@pytest.mark.parametrize("param,weighted,normalize", [
    ("ignore_label: 255 weight_by_label_freqs: true class_weighting: 0.5 "
     "class_weighting: 2 class_weighting: 1.25 class_weighting: 4", True, True),
    ("ignore_label: 255 normalize: false", False, False),
    ("ignore_label: 255 weight_by_label_freqs: true normalize: false class_weighting: 3 "
     "class_weighting: 0.25 class_weighting: 1 class_weighting: 1", True, False),
])
def test_segnet_softmax_loss_weights_classes_as_its_fork_does(param, weighted, normalize):
    """caffe-segnet's softmax_loss_layer.cpp: loss -= log(max(p, FLT_MIN)) * w[label];
    loss / count when normalize (its default), else loss / outer; no guard."""
    dialect, layer = _fork_layer(SEGNET_LOSS.format(param), "l")
    assert dialect == "segnet"
    weights = [F32(w) for w in layer.loss_param.class_weighting]
    (got,) = op_for(layer, [], Phase.TEST).run([SCORES, LABELS])
    prob = _softmax_ref(SCORES, 1).reshape(3, 4, 10)
    lab = LABELS.reshape(3, 10)
    loss, count = F32(0), 0
    for i in range(3):
        for j in range(10):
            value = int(lab[i, j])
            if value == 255:
                continue
            term = _log(max(prob[i, value, j], FLT_MIN))
            if weighted:
                term = F32(term * weights[value])
            loss = F32(loss - term)
            count += 1
    assert got == F32(loss / F32(count if normalize else 3))


def test_segnet_class_weighting_must_name_every_class():
    param = "weight_by_label_freqs: true class_weighting: 1 class_weighting: 2"
    _, layer = _fork_layer(SEGNET_LOSS.format(param), "l")
    with pytest.raises(ForwardError, match="2 class_weighting values for 4 channels"):
        op_for(layer, [], Phase.TEST).run([SCORES, np.zeros((3, 1, 2, 5), F32)])


def test_a_forks_own_normalization_mode_is_refused_by_its_name():
    # R-FCN numbers PRE_FIXED 3 (BVLC's NONE): read by the fork's enum, and refused
    net = ('layer { name: "r" type: "ROIPooling" bottom: "x" bottom: "rois" top: "r" '
           'roi_pooling_param { pooled_h: 2 pooled_w: 2 } }\n'
           'layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" '
           'loss_param { normalization: PRE_FIXED pre_fixed_normalizer: 4 } }\n')
    dialect, layer = _fork_layer(net, "l")
    assert dialect == "frcnn"
    with pytest.raises(ForwardError, match="pre_fixed_normalizer: a fork's SoftmaxWithLoss"):
        op_for(layer, [], Phase.TEST)
    dialect, layer = _fork_layer(net.replace(" pre_fixed_normalizer: 4", ""), "l")
    with pytest.raises(ForwardError, match="normalization PRE_FIXED is a fork's mode"):
        op_for(layer, [], Phase.TEST)
    dialect, layer = _fork_layer(net.replace("PRE_FIXED pre_fixed_normalizer: 4", "NONE"), "l")
    (got,) = op_for(layer, [], Phase.TEST).run([SCORES, np.where(LABELS == 255, 0, LABELS)])
    assert got == _softmax_loss_ref(SCORES, np.where(LABELS == 255, 0, LABELS), mode="NONE")[0]


SEGNET_ACCURACY = ('layer { name: "bn" type: "BN" bottom: "x" top: "x" '
                   'bn_param { bn_mode: INFERENCE } }\n'
                   'layer { name: "a" type: "Accuracy" bottom: "x" bottom: "y" top: "acc" '
                   'top: "per_class" accuracy_param { top_k: 2 ignore_label: 255 } }\n')


def test_segnet_accuracy_is_its_forks_older_layer():
    """caffe-segnet's accuracy_layer.cpp: partial_sort of (score, class) pairs, no
    guards, per-class top (C, 1, 1, 1)."""
    from bnlint.caffe import shapes as shape_rules

    dialect, layer = _fork_layer(SEGNET_ACCURACY, "a")
    assert dialect == "segnet"
    x = np.round(SCORES, 0)                             # ties
    y = LABELS.copy()
    y[y == 3] = 1                                       # class 3 never seen: NaN
    acc, per_class = op_for(layer, [], Phase.TEST).run([x, y])
    assert shape_rules.infer(layer, [x.shape, y.shape]).tops == [(), (4, 1, 1, 1)]
    accuracy, count = F32(0), 0
    hits, nums = [F32(0)] * 4, [F32(0)] * 4
    for i in range(3):
        for j in range(10):
            value = int(y.reshape(3, 10)[i, j])
            if value == 255:
                continue
            nums[value] += 1
            pairs = sorted(((x.reshape(3, 4, 10)[i, k, j], k) for k in range(4)), reverse=True)
            if value in [k for _, k in pairs[:2]]:
                accuracy += 1
                hits[value] += 1
            count += 1
    assert acc == F32(accuracy / F32(count))
    with np.errstate(invalid="ignore"):
        want = np.array([F32(h) / F32(n) for h, n in zip(hits, nums)], F32)
    np.testing.assert_array_equal(per_class.reshape(-1), want)
    assert np.isnan(per_class[3, 0, 0, 0])
