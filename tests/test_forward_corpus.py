"""Every deploy and test net of ../shared/corpus builds for the forward, given the input
shapes a data layer cannot know; the few it refuses are listed here with the reason,
and the list may only shrink (a net that starts working must leave it too).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import CORPUS, needs_shared
from bnlint.caffe.net import NetState
from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError
from bnlint.forward.executor import load_network

pytestmark = needs_shared

# Shapes a reader (or a Python layer's top) cannot declare, as a user passes them.
GIVEN_SHAPES = {
    "DenseNetCaffe/test_densenet.prototxt": {"Data1": (1, 3, 32, 32)},
    "caffe/hdf5_classification__nonlinear_auto_test.prototxt": {"data": (10, 4)},
    "SegNet-Tutorial/Models__bayesian_segnet_basic_inference.prototxt": {"data": (1, 3, 360, 480)},
    "SegNet-Tutorial/Models__segnet_basic_inference.prototxt": {"data": (1, 3, 360, 480)},
    "SegNet-Tutorial/Models__segnet_inference.prototxt": {"data": (1, 3, 360, 480)},
    # py-faster-rcnn's proposal layer is Python: the ROIs are given as an input.
    "caffe-model/det__faster_rcnn__models__pascal_voc__mobilenet__deploy_faster_voc_mobilenet-dw"
    ".prototxt": {"rois": (4, 5)},
    "caffe-model/det__faster_rcnn__models__pascal_voc__resnet18__deploy_faster_voc_resnet18-priv"
    "-merge.prototxt": {"rois": (4, 5)},
    "../golden/opencv_layers/reshape_and_slice_routines.prototxt": {"input": (2, 6, 75, 113)},
}

# file -> (why it is refused, a piece of the message)
REFUSED = {
    "MobileNet-SSD/MobileNetSSD_test@7e29b6c_2017-06-08.prototxt":
        ("its only data layer is TRAIN-only: Caffe cannot build it in TEST either",
         "unknown bottom blob 'data'"),
    "MobileNet-SSD/template__MobileNetSSD_deploy_bn_template@923b312.prototxt":
        ("a template with placeholders, not a net", "expected an integer"),
    "MobileNet-SSD/template__MobileNetSSD_deploy_template.prototxt":
        ("a template with placeholders, not a net", "expected an integer"),
    "MobileNet-SSD/template__MobileNetSSD_test_template.prototxt":
        ("a template with placeholders, not a net", "expected an integer"),
    "caffe/pycaffe__linreg.prototxt":
        ("its loss is a Python layer", "'Python'"),
}


def _runnable_nets() -> list[str]:
    if not (CORPUS / "MANIFEST.tsv").is_file():
        return []
    with open(CORPUS / "MANIFEST.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [row["local_path"] for row in rows
            if row["kind"].startswith(("deploy", "test", "layer-test"))
            and row["local_path"].endswith(".prototxt")]


def _build(name: str):
    return load_network(str(CORPUS / name), state=NetState(Phase.TEST), drop_losses=True,
                        input_shapes=GIVEN_SHAPES.get(name))


@pytest.mark.parametrize("name", _runnable_nets())
def test_corpus_net_builds_or_is_listed_as_refused(name: str):
    if name in REFUSED:
        _, message = REFUSED[name]
        with pytest.raises(BnlintError, match=message):
            _build(name)
        return
    net = _build(name)
    assert net.output_names


def test_the_refused_list_names_corpus_nets_only():
    assert set(REFUSED) <= set(_runnable_nets())
    assert set(GIVEN_SHAPES) <= set(_runnable_nets())


@pytest.mark.parametrize("name,outputs", [
    ("ShuffleNet/shufflenet_v2_1x_deploy.prototxt", {"fc1000": (1, 1000, 1, 1)}),
    ("SENet/SE-ResNet-50.prototxt", {"prob": (1, 1000)}),
    ("caffe-model/det__faster_rcnn__models__pascal_voc__mobilenet__deploy_faster_voc_mobilenet-dw"
     ".prototxt", {"cls_prob": (4, 21), "bbox_pred": (4, 84)}),
])
@pytest.mark.filterwarnings("ignore")   # filler-made weights overflow in deep nets
def test_fork_nets_run(name: str, outputs: dict):
    """ConvolutionDepthwise, Axpy, and ROIPooling on given ROIs, in whole nets."""
    net = _build(name)
    rng = np.random.default_rng(0)
    inputs = {}
    for blob, shape in net.input_shapes().items():
        if blob == "rois":
            inputs[blob] = np.array([[0, 0, 0, 160, 120], [0, 32, 48, 300, 280],
                                     [0, 0, 0, 15, 15], [0, 100, 20, 599, 599]], np.float32)
        else:
            inputs[blob] = rng.uniform(-1, 1, shape).astype(np.float32)
    with np.errstate(all="ignore"):
        got = net.run(inputs)
    for blob, shape in outputs.items():
        assert got[blob].shape == shape


def test_info_totals_for_shufflenet_v2_count_its_depthwise_convolutions():
    from bnlint.caffe import cost, shapes

    net = _build("ShuffleNet/shufflenet_v2_1x_deploy.prototxt")
    params = macs = 0
    for step in net.steps:
        if step.op is None:
            continue
        bottoms = [net.slots[s].shape for s in step.bottoms]
        inferred = shapes.infer(step.layer.message, bottoms)
        params += inferred.param_count
        macs += cost.macs(step.layer.message, bottoms, inferred)
    # Published: 2.3 M parameters, 146 M FLOPs (multiply-adds) for ShuffleNet v2 1x.
    assert params == 2_294_840
    assert 140e6 < macs < 150e6


def test_readme_lists_every_layer_type_the_forward_runs():
    import re

    from conftest import REPO
    from bnlint.forward.registry import OPS

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("Layer types the forward runs:"):readme.index("Not run:")]
    listed = set(re.findall(r"\b[A-Z][A-Za-z0-9]+\b", section)) - {
        "BVLC", "Forks", "SSD", "SegNet", "ENet", "ShuffleNet", "PSPNet", "DeepLab", "SENet",
        "Faster", "CNN", "FCN", "R", "DummyData", "Layer", "ROIs", "OpenCV"}
    assert set(OPS) <= listed, sorted(set(OPS) - listed)
    assert listed <= set(OPS), sorted(listed - set(OPS))


def test_a_python_layer_asks_for_its_tops_as_inputs():
    name = ("caffe-model/det__faster_rcnn__models__pascal_voc__resnet18__deploy_faster_voc_"
            "resnet18-priv-merge.prototxt")
    with pytest.raises(BnlintError, match=r"'proposal' \(Python\).*--input-shape rois="):
        load_network(str(CORPUS / name), state=NetState(Phase.TEST), drop_losses=True)


@pytest.mark.parametrize("name,phase,given,wanted,losses", [
    ("caffe/mnist__lenet_train_test.prototxt", Phase.TEST,
     {"data": (4, 1, 28, 28), "label": (4,)}, (), {"loss", "accuracy"}),
    ("caffe/hdf5_classification__nonlinear_train_val.prototxt", Phase.TEST,
     {"data": (4, 4), "label": (4,)}, (), {"loss", "accuracy"}),
    ("caffe/siamese__mnist_siamese_train_test.prototxt", Phase.TRAIN,
     {"pair_data": (4, 2, 28, 28), "sim": (4,)}, (), {"loss"}),
    # its targets are its own data: no label to give, the tops are asked for
    ("caffe/mnist__mnist_autoencoder.prototxt", Phase.TRAIN,
     {"data": (4, 1, 28, 28)}, ("cross_entropy_loss", "l2_error"),
     {"cross_entropy_loss", "l2_error"}),
])
def test_corpus_train_nets_run_their_losses_given_labels(name, phase, given, wanted, losses):
    net = load_network(str(CORPUS / name), state=NetState(phase), drop_losses=True,
                       input_shapes=given, given=given, wanted=wanted)
    rng = np.random.default_rng(0)
    inputs = {blob: (rng.integers(0, 2, shape) if blob in ("label", "sim")
                     else rng.uniform(0, 1, shape)).astype(np.float32)
              for blob, shape in net.input_shapes().items()}
    got = net.run(inputs, keep=set(wanted) if wanted else "outputs")
    assert set(got) == losses
    assert all(value.shape == () and np.isfinite(value) for value in got.values())


def test_segnet_train_net_builds_its_class_weighted_loss():
    """caffe-segnet's SoftmaxWithLoss (class_weighting over 11 classes, ignore_label 11)."""
    name = "SegNet-Tutorial/Models__segnet_basic_train.prototxt"
    net = load_network(str(CORPUS / name), state=NetState(Phase.TRAIN), drop_losses=True,
                       input_shapes={"data": (1, 3, 360, 480), "label": (1, 1, 360, 480)},
                       given={"data", "label"})
    loss = next(step for step in net.steps if step.layer.name == "loss")
    scores = np.zeros((1, 11, 2, 2), np.float32)          # uniform: log(1/11) each
    labels = np.array([[[[0, 1], [11, 10]]]], np.float32)  # one ignored
    (got,) = loss.op.run([scores, labels])
    weights = [float(w) for w in loss.layer.message.loss_param.class_weighting]
    want = np.log(11.0) * (weights[0] + weights[1] + weights[10]) / 3
    assert got == pytest.approx(want, rel=1e-6)
