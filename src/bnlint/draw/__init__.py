"""`bnlint draw`: a picture of a net with its findings (SVG or one self-contained HTML
page), and of what changed between two nets.

model.py decides what is drawn (blocks, edges, findings), layout.py where, svg.py
and html.py how; diff.py marks what changed against another net.
"""

from __future__ import annotations

from bnlint.draw.model import Picture, build_picture, default_state, lint_findings

FORMATS = ("svg", "html")


def picture_of(path: str, *, config=None, phase: str | None = None,
               stages: tuple[str, ...] = (), weights: str | None = None,
               input_shapes: dict | None = None, source=None) -> Picture:
    """Read, lint and describe one net file (BnlintError when it cannot be read).

    `config` is the file's lint config (its dialect or proto is the one the net is
    read in)."""
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import net_view
    from bnlint.files import read_text
    from bnlint.lint.config import LintConfig

    source = source if source is not None else read_text(path)
    config = config if config is not None else LintConfig()
    text_file = parse_text(source, dialect=config.dialect_choice())
    reader = None
    if weights:
        from bnlint.caffe.weights import read_weights

        cache: dict = {}

        def reader(net_dialect):
            if net_dialect.name not in cache:
                cache[net_dialect.name] = read_weights(weights, net_dialect.schema())
            return cache[net_dialect.name]

    findings = lint_findings(source, config, reader)
    state = default_state(net_view(text_file), phase, stages)
    return build_picture(text_file, state, findings, input_shapes)


def change_picture(before_path: str, after_text: str, after_label: str, *, config=None,
                   phase: str | None = None, stages: tuple[str, ...] = ()) -> Picture:
    """The picture of a transform's output (`after_text`, not yet written) with what
    it changed against the net it was made from (`to-deploy --draw`, `fold --draw`)."""
    from bnlint.draw.diff import mark_changes
    from bnlint.source import SourceFile

    before = picture_of(before_path, config=config, phase=phase, stages=stages)
    after = picture_of(after_label, config=config, source=SourceFile(after_label, after_text))
    mark_changes(before, after)
    return after


def format_for(path: str) -> str:
    """svg for OUT.svg, else html (the page with search and details)."""
    return "svg" if path.lower().endswith(".svg") else "html"


def render(picture: Picture, fmt: str) -> str:
    from bnlint.draw.svg import lay_out, render_svg

    drawing = lay_out(picture)
    if fmt == "svg":
        return render_svg(drawing)
    from bnlint.draw.html import render_html

    return render_html(drawing)
