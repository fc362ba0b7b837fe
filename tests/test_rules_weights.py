"""The W rules: a net checked against a .caffemodel (`bnlint check --weights`)."""

from __future__ import annotations

import numpy as np
import pytest

from bnlint.caffe.weights import read_weights, write_caffemodel
from bnlint.lint.config import LintConfig
from bnlint.lint.runner import lint_source
from bnlint.source import SourceFile

NET = """name: "w"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "c"
        convolution_param { num_output: 2 kernel_size: 1 bias_term: false } }
layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }
layer { name: "scale" type: "Scale" bottom: "c" top: "c" scale_param { bias_term: true } }
layer { name: "fc" type: "InnerProduct" bottom: "c" top: "fc" inner_product_param { num_output: 3 } }
"""


def good_arrays():
    f = np.float32
    return {"conv": [np.ones((2, 3, 1, 1), f)],
            "bn": [np.zeros(2, f), np.ones(2, f), np.array([999.98], f)],
            "scale": [np.ones(2, f), np.zeros(2, f)],
            "fc": [np.ones((3, 32), f), np.zeros(3, f)]}


def lint_with(tmp_path, arrays):
    path = tmp_path / "w.caffemodel"
    write_caffemodel(str(path), None, arrays)
    result = lint_source(SourceFile("net.prototxt", NET), LintConfig(select=("W",)),
                         read_weights(str(path)))
    return sorted((d.code, d.layer) for d in result.diagnostics)


def test_matching_weights_are_clean(tmp_path):
    assert lint_with(tmp_path, good_arrays()) == []


@pytest.mark.parametrize("change, expected", [
    (lambda a: a["bn"].extend([np.ones(2, np.float32)] * 2), [("W001", "bn")]),
    (lambda a: a["bn"].__setitem__(2, np.zeros(1, np.float32)), [("W002", "bn")]),
    (lambda a: a["bn"].__setitem__(1, np.array([1, -1], np.float32)), [("W003", "bn")]),
    (lambda a: a.pop("fc"), [("W004", "fc")]),
    (lambda a: a["fc"].__setitem__(0, np.ones((3, 16), np.float32)), [("W005", "fc")]),
])
def test_each_weights_mistake(tmp_path, change, expected):
    arrays = good_arrays()
    change(arrays)
    assert lint_with(tmp_path, arrays) == expected


def test_weights_rules_need_weights():
    result = lint_source(SourceFile("net.prototxt", NET), LintConfig(select=("W",)))
    assert result.diagnostics == []


def test_cli_weights_option(tmp_path, run_cli):
    net = tmp_path / "net.prototxt"
    net.write_text(NET)
    arrays = good_arrays()
    arrays["bn"][2] = np.zeros(1, np.float32)
    model = tmp_path / "w.caffemodel"
    write_caffemodel(str(model), None, arrays)
    code, out, _ = run_cli("check", "--format", "concise", "--select", "W",
                           "--weights", str(model), str(net))
    assert "W002" in out
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\x0a\xff\xff")
    code, _, err = run_cli("check", "--weights", str(bad), str(net))
    assert code == 2 and str(bad) in err
