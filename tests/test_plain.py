"""bnlint.plain prints what rich prints, character for character, or says it cannot."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from bnlint import plain
from bnlint.cli import forward
from bnlint.lint.config import LintConfig
from bnlint.lint.runner import lint_source
from bnlint.report import text as text_report
from bnlint.report.registry import ReportOptions
from bnlint.source import SourceFile


def rich_print(*renderables, width: int = plain.PIPE_WIDTH, **kwargs) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width)
    for r in renderables:
        console.print(r, **kwargs)
    return out.getvalue()


cell = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=30)
RIGHT = (False, False, True, True, True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cell, min_size=5, max_size=5), min_size=1, max_size=6))
def test_table_is_riches_or_none(rows):
    got = plain.heavy_head_table(forward.BLOB_COLUMNS, RIGHT, rows, plain.PIPE_WIDTH)
    if got is not None:
        assert got == rich_print(forward.blob_table(rows))


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(min_codepoint=1, max_codepoint=0x3000), max_size=200))
def test_line_is_riches_or_none(text):
    got = plain.line(text, plain.PIPE_WIDTH)
    if got is not None:
        assert got == rich_print(text, highlight=False)
    unwrapped = plain.line(text, plain.PIPE_WIDTH, wrap=False)
    if unwrapped is not None:
        assert unwrapped == rich_print(text, highlight=False, soft_wrap=True)


def test_plain_covers_the_usual_cases():
    rows = [["prob", "1x1000x1x1", "6.01819e-19", "0.334368", "0.001"],
            ["conv1/bn", "1x32x112x112", "-3.5", "4.25", "0"]]
    assert plain.heavy_head_table(forward.BLOB_COLUMNS, RIGHT, rows, 160) is not None
    assert plain.line("net.prototxt: outputs (TEST)", 160) is not None
    assert plain.heavy_head_table(forward.BLOB_COLUMNS, RIGHT, [], 160) is None
    assert plain.heavy_head_table(forward.BLOB_COLUMNS, RIGHT, [["x" * 200] * 5], 160) is None
    assert plain.line("a [bold]b[/bold]", 160) is None
    assert plain.line("caf\u00e9", 160) is None
    assert plain.line("net.prototxt: outputs (TEST)", 160) is not None


@pytest.mark.parametrize("name", [":fire:", "a:smile-text:b", "x::y"])
def test_emoji_codes_are_left_to_rich(name):
    """forward's console has rich's emoji codes on: `:fire:` prints as a flame there."""
    rows = [[name, "1x2", "0", "1", "0.5"]]
    assert plain.heavy_head_table(forward.BLOB_COLUMNS, RIGHT, rows, 160) is None
    assert plain.line(f"loss {name} = 1", 160) is None


@pytest.mark.parametrize("color, env, expected", [
    (False, {}, True), (True, {}, False),
    (None, {}, True),                          # a StringIO is no terminal
    (None, {"FORCE_COLOR": "1"}, False), (None, {"FORCE_COLOR": ""}, True),
    (None, {"TTY_COMPATIBLE": "1"}, False), (None, {"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"},
                                               True),
])
def test_colourless_follows_riches_rules(monkeypatch, color, env, expected):
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    assert plain.colourless(out, color) is expected
    console = Console(file=out, force_terminal=color)
    assert (console.is_terminal is False) is expected


NET = '''name: "n"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv"
\tbatch_norm_param { use_global_stats: false eps: 1e-9 } }
layer { name: "bn2" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "caf\u00e9 [x]" type: "BatchNorm" bottom: "conv" top: "conv" }
'''


@pytest.mark.parametrize("show_all", [False, True])
def test_text_report_without_rich_is_the_rich_report(monkeypatch, show_all):
    result = lint_source(SourceFile("nets/n.prototxt", NET), LintConfig())
    assert len(result.diagnostics) >= 3
    options = ReportOptions(show_fixes=True, show_all=show_all)
    plain_out = io.StringIO()
    text_report.TextFormat().write([result], plain_out, options)
    monkeypatch.setattr(text_report, "colourless", lambda out, color: False)
    rich_out = io.StringIO()
    text_report.TextFormat().write([result], rich_out, options)
    assert plain_out.getvalue() == rich_out.getvalue()
