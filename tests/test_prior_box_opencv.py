"""PriorBox with OpenCV dnn's fields (PriorBoxParameter 14-17: offset_h, offset_w,
width, height): read by the ssd dialect without E002, shaped and computed as
OpenCV's prior_box_layer.cpp does (loop reference written from it, float by float).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bnlint.caffe import shapes
from bnlint.caffe.load import parse_text
from bnlint.caffe.net import net_view
from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError
from bnlint.forward import ops as _ops  # noqa: F401
from bnlint.forward.registry import op_for
from bnlint.lint.config import LintConfig
from bnlint.lint.runner import lint_source
from bnlint.source import SourceFile

F32 = np.float32


def _net(param: str) -> str:
    return ('layer { name: "data" type: "Input" top: "data" top: "feat"\n'
            '  input_param { shape { dim: 1 dim: 3 dim: 30 dim: 40 } '
            'shape { dim: 1 dim: 8 dim: 3 dim: 4 } } }\n'
            'layer { name: "prior" type: "PriorBox" bottom: "feat" bottom: "data" '
            f'top: "prior"\n  prior_box_param {{ {param} }} }}\n')


def _layer(param: str):
    parsed = parse_text(SourceFile("net.prototxt", _net(param)))
    assert not parsed.problems, parsed.problems
    assert parsed.dialect.name == "ssd"
    return net_view(parsed).layers[1].message


def _run(param: str):
    feature = np.zeros((1, 8, 3, 4), F32)
    image = np.zeros((1, 3, 30, 40), F32)
    layer = _layer(param)
    inferred = shapes.infer(layer, [feature.shape, image.shape])
    (top,) = op_for(layer, [], Phase.TEST).run([feature, image])
    assert top.shape == inferred.tops[0]
    return top


def _opencv_reference(widths, heights, offsets, clip=True, variances=(0.1,),
                      img=(30, 40), layer=(3, 4), step=None):
    """prior_box_layer.cpp's forward, written out."""
    img_h, img_w = img
    layer_h, layer_w = layer
    step_y = F32(F32(img_h) / F32(layer_h)) if step is None else F32(step[0])
    step_x = F32(F32(img_w) / F32(layer_w)) if step is None else F32(step[1])
    out = []
    for h in range(layer_h):
        for w in range(layer_w):
            for bw, bh in zip(widths, heights):
                for ox, oy in offsets:
                    cx = F32(F32(F32(w) + F32(ox)) * step_x)
                    cy = F32(F32(F32(h) + F32(oy)) * step_y)
                    half_w, half_h = F32(F32(bw) * F32(0.5)), F32(F32(bh) * F32(0.5))
                    out += [F32(F32(cx - half_w) / F32(img_w)), F32(F32(cy - half_h) / F32(img_h)),
                            F32(F32(cx + half_w) / F32(img_w)), F32(F32(cy + half_h) / F32(img_h))]
    boxes = np.array(out, F32)
    if clip:
        boxes = np.clip(boxes, F32(0), F32(1))
    variance = np.resize(np.array(variances, F32), boxes.size)
    return np.stack([boxes, variance])[None]


def test_the_fields_parse_in_the_ssd_dialect_without_e002():
    text = _net("min_size: 12 offset_h: 0.25 offset_h: 0.75 offset_w: 0.5 offset_w: 0.5")
    result = lint_source(SourceFile("net.prototxt", text), LintConfig(select=("E002", "D001")))
    assert [d.code for d in result.diagnostics] == ["D001"]
    assert result.diagnostics[0].extra["dialect"] == "ssd"


def test_two_centres_per_cell_with_min_max_and_ratios():
    top = _run("min_size: 10 max_size: 21 aspect_ratio: 2 variance: 0.1 variance: 0.1 "
               "variance: 0.2 variance: 0.2 offset_h: 0.25 offset_h: 0.75 "
               "offset_w: 0.5 offset_w: 0.5")
    side = F32(math.sqrt(F32(F32(10) * F32(21))))
    root2, root_half = F32(math.sqrt(F32(2))), F32(math.sqrt(F32(1.0 / F32(2))))
    widths = [F32(10), side, F32(F32(10) * root2), F32(F32(10) * root_half)]
    heights = [F32(10), side, F32(F32(10) / root2), F32(F32(10) / root_half)]
    want = _opencv_reference(widths, heights, [(0.5, 0.25), (0.5, 0.75)],
                             variances=(0.1, 0.1, 0.2, 0.2))
    assert top.shape == (1, 2, 3 * 4 * 4 * 2 * 4)
    np.testing.assert_array_equal(top, want)


def test_explicit_sizes_and_clip_written_off():
    top = _run("width: 20 width: 33.5 height: 14 height: 41 clip: false step: 9")
    want = _opencv_reference([20, 33.5], [14, 41], [(0.5, 0.5)], clip=False, step=(9, 9))
    np.testing.assert_array_equal(top, want)
    assert top.min() < 0          # not clipped


def test_without_opencv_fields_the_ssd_forks_prior_box_is_unchanged():
    # SSD: min_size truncated to int, double arithmetic, clip off by default
    top = _run("min_size: 14.7")
    assert top.shape == (1, 2, 3 * 4 * 1 * 4)
    assert top[0, 0, 0] == F32(-2 / 40) and top[0, 0, 2] == F32(12 / 40)   # 14, unclipped


@pytest.mark.parametrize("param,message", [
    ("min_size: 10 offset: 0.5 offset_h: 0.2 offset_w: 0.2", "either offset or offset_h"),
    ("min_size: 10 offset_h: 0.2 offset_h: 0.4", "1 offset_w|2 offset_h but 0 offset_w"),
    ("min_size: 10 offset_h: 0.1 offset_h: 0.2 offset_h: 0.3 offset_w: 0.1 offset_w: 0.2 "
     "offset_w: 0.3", "only 1 or 2 pairs"),
    ("width: 10 height: 10 aspect_ratio: 2", "take no min_size, max_size or aspect_ratio"),
    ("width: 10 width: 12 height: 10", "2 width but 1 height"),
    ("min_size: 10 min_size: 20 offset_h: 0.5 offset_w: 0.5", "takes one min_size"),
])
def test_what_opencv_asserts_is_refused(param, message):
    layer = _layer(param)
    with pytest.raises(BnlintError, match=message):
        shapes.infer(layer, [(1, 8, 3, 4), (1, 3, 30, 40)])


def test_the_ssd_schema_numbers_them_as_opencv_does():
    from bnlint.caffe.dialects import get_dialect

    fields = get_dialect("ssd").schema().descriptor("PriorBoxParameter").fields_by_name
    assert {name: (fields[name].number, fields[name].is_repeated) for name in
            ("offset_h", "offset_w", "width", "height")} == {
        "offset_h": (14, True), "offset_w": (15, True), "width": (16, True),
        "height": (17, True)}
