"""Big and deep inputs: no recursion error, no crash, a clear message at a limit.

A net of 20,000 layers and a text nested 10,000 deep go through the parser, `check`
and `convert`. Nothing here asserts on time: CI machines vary too much for that;
`benchmarks/resources.py` shows that time grows linearly (1k to 20k layers, 50 MB,
nesting 10k and 50k deep).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_fuzz import assert_clean_exit, invoke

from bnlint.errors import ParseError
from bnlint.syntax import parse, render
from bnlint.syntax.parser import MAX_DEPTH

HEADER = ('name: "big"\nlayer { name: "data" type: "Input" top: "l0" '
          'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n')


def chain(n_layers: int) -> str:
    """An Input layer and n-1 3x3 convolutions in a chain: valid, shapes stay 8x8."""
    return HEADER + "".join(
        f'layer {{ name: "conv{i}" type: "Convolution" bottom: "l{i}" top: "l{i + 1}" '
        f'convolution_param {{ num_output: 3 kernel_size: 3 pad: 1 }} }}\n'
        for i in range(n_layers - 1))


def nested(depth: int, closed: bool = True) -> str:
    """A valid net whose last layer holds an unknown (fork) parameter `depth` deep."""
    return (HEADER + 'layer { name: "deep" type: "ReLU" bottom: "l0" top: "deep" fork_param '
            + "{ a " * depth + "{ }" + (" }" * depth if closed else "") + " }\n")


@pytest.fixture(scope="module")
def big_net(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resources") / "net_20000.prototxt"
    path.write_text(chain(20_000), encoding="utf-8")
    return path


def test_20000_layers_parse(big_net):
    text = big_net.read_text(encoding="utf-8")
    doc = parse(text, str(big_net))
    assert len(doc.get_all("layer")) == 20_000
    assert render(doc) == text


def test_20000_layers_check(big_net):
    argv = ["check", "--format", "concise", str(big_net)]
    code, out, err = invoke(argv)
    assert_clean_exit(argv, code, out, err)
    assert code == 0, out[-2000:]


def test_20000_layers_convert(big_net, tmp_path):
    from bnlint.caffe.schema import default_schema

    out_path = tmp_path / "net.caffemodel"
    argv = ["convert", str(big_net), "-o", str(out_path)]
    code, out, err = invoke(argv)
    assert_clean_exit(argv, code, out, err)
    assert code == 0
    net = default_schema().message_class("NetParameter")()
    net.ParseFromString(out_path.read_bytes())
    assert len(net.layer) == 20_000 and net.layer[-1].top == ["l19999"]


@pytest.mark.parametrize("depth", [10_000])
def test_deep_nesting_parses(depth):
    text = nested(depth)
    assert render(parse(text)) == text


@pytest.mark.parametrize("command", [["check"], ["check", "--format", "json"],
                                     ["check", "--fix", "--unsafe-fixes"], ["convert"]])
def test_deep_nesting_through_the_cli(tmp_path, command):
    """10,000 levels: the fork parameter is reported, nothing overflows the stack."""
    path = tmp_path / "deep.prototxt"
    path.write_text(nested(10_000), encoding="utf-8")
    argv = command + [str(path)]
    code, out, err = invoke(argv)
    assert_clean_exit(argv, code, out, err)
    assert "RecursionError" not in out + err and "nested too deeply" not in err
    assert "fork_param" in out + err


@pytest.mark.parametrize("command", ["check", "convert"])
def test_deep_nesting_never_closed(tmp_path, command):
    path = tmp_path / "open.prototxt"
    path.write_text(nested(10_000, closed=False), encoding="utf-8")
    argv = [command, str(path)]
    code, out, err = invoke(argv)
    assert_clean_exit(argv, code, out, err)
    assert "is never closed" in out + err


def test_nesting_past_the_limit_is_a_clear_message(tmp_path, monkeypatch):
    """The parser's depth limit is a ParseError at the level that passes it.

    Run with the limit lowered to 1,000: the path is the same as at MAX_DEPTH
    (100,000 levels), at a hundredth of the cost.
    """
    import bnlint.syntax.parser

    assert MAX_DEPTH >= 50_000                  # what the benchmark and the README promise
    monkeypatch.setattr(bnlint.syntax.parser, "MAX_DEPTH", 1_000)
    for opener, closer in (("a { ", "} "), ("a: [{ ", "}] "), ("a < ", "> ")):
        text = opener * 1_001 + closer * 1_001
        with pytest.raises(ParseError, match="nesting deeper than 1000 levels"):
            parse(text)
    path = tmp_path / "too_deep.prototxt"
    path.write_text("a { " * 1_001 + "} " * 1_001, encoding="utf-8")
    code, out, err = invoke(["convert", str(path)])
    assert code == 2 and f"{path}:1:4003: nesting deeper than 1000 levels" in err
    code, out, err = invoke(["check", "--format", "concise", str(path)])
    assert code == 1 and "E001 [error] nesting deeper than 1000 levels" in out


def test_deep_lists_of_messages(tmp_path):
    path = tmp_path / "lists.prototxt"
    depth = 10_000
    path.write_text(HEADER + "fork_list: " + "[{ a: " * depth + "1" + " }]" * depth + "\n",
                    encoding="utf-8")
    for argv in (["check", str(path)], ["convert", str(path)]):
        code, out, err = invoke(argv)
        assert_clean_exit(argv, code, out, err)


@pytest.mark.slow
def test_large_prototxt_parses(tmp_path):
    """About 8 MB (the benchmark runs 50 MB): parses and renders back, no time asserted."""
    parts = [HEADER]
    size = len(HEADER)
    i = 0
    while size < 8_000_000:
        layer = (f'layer {{\n  name: "conv{i}"\n  type: "Convolution"\n  bottom: "l{i}"\n'
                 f'  top: "l{i + 1}"\n  # a comment to make the file look written by hand\n'
                 f'  convolution_param {{ num_output: 3 kernel_size: 3 pad: 1 }}\n}}\n')
        parts.append(layer)
        size += len(layer)
        i += 1
    text = "".join(parts)
    doc = parse(text)
    assert len(doc.get_all("layer")) == i + 1
    assert render(doc) == text


def test_report_on_a_one_line_net_stays_proportionate(tmp_path):
    """A minified prototxt (everything on one line) with a finding per layer."""
    n = 300
    path = tmp_path / "one_line.prototxt"
    path.write_text('layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 1 '
                    'dim: 2 dim: 4 dim: 4 } } } ' + " ".join(
                        f'layer {{ name: "bn{i}" type: "BatchNorm" bottom: "x" top: "x" }}'
                        for i in range(n)) + "\n", encoding="utf-8")
    code, out, err = invoke(["check", "--show-all", str(path)])
    assert code == 0 and out.count("BN010") >= n - 1   # warnings only: exit 0
    assert len(out) < 20 * path.stat().st_size, f"{len(out):,} bytes of report"
