"""The picture as SVG: static and deterministic (same picture, same bytes).

Sizes come from the text (a monospace font, so widths are known without a browser),
the layout from `layout.layered_layout`. Every layer is a `<g class="layer">` with its
name in `data-name` and a `<title>`, so the HTML viewer and tests find it; the HTML
page embeds this SVG as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bnlint.draw.layout import Layout, layered_layout
from bnlint.draw.model import Member, Picture, Shape

FONT_SIZE = 11
CHAR_WIDTH = 6.65        # DejaVu Sans Mono / Menlo at 11 px: 0.6 em, plus a little slack
ROW_HEIGHT = 18
PAD_X = 8
LABEL_HEIGHT = 12        # one edge label line under a block
LABEL_CHAR_WIDTH = 6.05  # 10 px monospace
MAX_CHARS = 64           # longer layer names are cut on screen (kept whole in data-name)
MARGIN = 20
HEADER = 46              # title and summary lines above the graph

FAMILY_COLOURS = {
    "data": ("#e4e4e4", "#222222"),
    "convolution": ("#336699", "#ffffff"),
    "normalisation": ("#4a6b7c", "#ffffff"),
    "activation": ("#7a2e26", "#ffffff"),
    "pooling": ("#33633a", "#ffffff"),
    "elementwise": ("#5a4a80", "#ffffff"),
    "shape/structure": ("#6c5647", "#ffffff"),
    "recurrent": ("#2f6b6b", "#ffffff"),
    "loss": ("#8a6d1f", "#ffffff"),
    "detection": ("#4e5f2b", "#ffffff"),
    "other": ("#555555", "#ffffff"),
}

STYLE = f"""
text {{ font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: {FONT_SIZE}px; }}
.title {{ font-size: 14px; font-weight: bold; fill: #222; }}
.summary {{ fill: #444; }}
.edge {{ fill: none; stroke: #7a7a7a; stroke-width: 1.2; }}
.edge-label {{ fill: #555; font-size: 10px; }}
.block > rect.frame {{ fill: none; stroke: #333; stroke-width: 0.8; }}
.block.sev-error > rect.frame {{ stroke: #d32f2f; stroke-width: 3; }}
.block.sev-warning > rect.frame {{ stroke: #f29900; stroke-width: 3; }}
.block.sev-info > rect.frame {{ stroke: #1e88e5; stroke-width: 2.5; }}
.layer .type {{ font-weight: bold; }}
.codes {{ font-weight: bold; }}
.badge-error {{ fill: #d32f2f; }} .badge-warning {{ fill: #f29900; }} .badge-info {{ fill: #1e88e5; }}
.st-added {{ fill: #2e9d44; }} .st-changed {{ fill: #e0a800; }} .st-removed {{ fill: #c62828; }}
.removed-box {{ fill: #fff5f5; stroke: #c62828; stroke-dasharray: 4 3; }}
"""


@dataclass
class Drawing:
    """The picture with its geometry: what both the SVG and the HTML page draw."""

    picture: Picture
    layout: Layout
    sizes: list[tuple[float, float]]       # drawn width and height of each block
    width: float
    height: float


def shape_text(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "\u00d7".join(map(str, shape)) or "scalar"


def _row_text(member: Member) -> tuple[str, str, str]:
    """(type, name, codes) as shown on one row."""
    name = member.name if len(member.name) <= MAX_CHARS else member.name[:MAX_CHARS - 1] + "\u2026"
    codes = " ".join(dict.fromkeys(f.code for f in member.findings))
    return member.type, name, codes


def _row_chars(member: Member) -> int:
    kind, name, codes = _row_text(member)
    return len(kind) + 1 + len(name) + (len(codes) + 2 if codes else 0)


def lay_out(picture: Picture) -> Drawing:
    """Sizes from the text, then the layered layout."""
    out_blobs: dict[int, list[str]] = {}
    for edge in picture.edges:
        blobs = out_blobs.setdefault(edge.src, [])
        if edge.blob not in blobs:
            blobs.append(edge.blob)
    sizes = []
    for block in picture.blocks:
        chars = max(_row_chars(m) for m in block.members)
        sizes.append((max(90.0, chars * CHAR_WIDTH + 2 * PAD_X + 6),
                      float(ROW_HEIGHT * len(block.members))))
    layout_sizes = [(w, h + LABEL_HEIGHT * len(out_blobs.get(i, [])) + 2)
                    for i, (w, h) in enumerate(sizes)]
    layout = layered_layout(layout_sizes, [(e.src, e.dst) for e in picture.edges])
    width = layout.width + 2 * MARGIN
    for edge in picture.edges:        # edge labels may reach past the rightmost node
        label = len(edge.blob) + 1 + len(shape_text(edge.shape))
        width = max(width, 2 * MARGIN + layout.x[edge.src] + 5 + label * LABEL_CHAR_WIDTH)
    if picture.removed:
        width += 60 + max(_row_chars(m) for m in picture.removed) * CHAR_WIDTH + 2 * PAD_X
    width = max(width, len(picture.title) * 8.5 + 2 * MARGIN,
                len(summary_line(picture)) * CHAR_WIDTH + 2 * MARGIN,
                *(len(_net_finding_text(f)) * CHAR_WIDTH + 2 * MARGIN
                  for f in _net_findings(picture)))
    extra = 14 * (len(_net_findings(picture)) + _more_findings(picture))
    height = layout.height + 2 * MARGIN + HEADER + extra
    if picture.removed:
        height = max(height, HEADER + extra + 2 * MARGIN + ROW_HEIGHT * (len(picture.removed) + 1))
    return Drawing(picture, layout, sizes, width, height)


NET_FINDINGS_SHOWN = 12


def _undrawn_findings(picture: Picture) -> list:
    """Findings on no drawn node: the net's own, and those of layers outside the state."""
    drawn = {id(f) for m in picture.members() for f in m.findings}
    return [f for f in picture.findings if id(f) not in drawn]


def _net_findings(picture: Picture) -> list:
    return _undrawn_findings(picture)[:NET_FINDINGS_SHOWN]


def _more_findings(picture: Picture) -> int:
    """1 when some findings off the drawn layers are not listed, else 0 (a line)."""
    return int(len(_undrawn_findings(picture)) > NET_FINDINGS_SHOWN)


def _net_finding_text(f) -> str:
    message = f.message if len(f.message) <= 120 else f.message[:119] + "\u2026"
    where = f" (layer '{f.layer}', not in this state)" if f.layer else ""
    return f"{f.code} line {f.line}{where}: {message}"


_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def esc(text: str) -> str:
    """Text for XML content and attributes (characters XML forbids become U+FFFD)."""
    text = _INVALID_XML.sub("\ufffd", text)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def summary_line(picture: Picture) -> str:
    by = {s: sum(1 for f in picture.findings if f.severity == s)
          for s in ("error", "warning", "info")}
    layers = sum(1 for m in picture.members() if m.kind == "layer")
    parts = [f"{layers} layers in {len(picture.blocks)} blocks"]
    total = sum(by.values())
    if total:
        parts.append(f"{total} findings (" + ", ".join(f"{n} {s}" for s, n in by.items() if n)
                     + ")")
    else:
        parts.append("no findings")
    if picture.hidden:
        parts.append(f"{len(picture.hidden)} layers not in this state")
    if picture.subtitle:
        parts.append(picture.subtitle)
    return "; ".join(parts)


def render_svg(drawing: Drawing) -> str:
    picture, layout = drawing.picture, drawing.layout
    out: list[str] = []
    w, h = num(drawing.width), num(drawing.height)
    out.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
               f'viewBox="0 0 {w} {h}" class="bnlint-net">')
    out.append(f"<title>{esc(picture.title)}</title>")
    out.append(f"<style>{STYLE}</style>")
    out.append('<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="8" '
               'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#7a7a7a"/>'
               '</marker></defs>')
    out.append('<rect width="100%" height="100%" fill="#ffffff" class="background"/>')
    out.append('<g id="viewport">')
    out.append(f'<text class="title" x="{MARGIN}" y="{MARGIN + 6}">{esc(picture.title)}</text>')
    out.append(f'<text class="summary" x="{MARGIN}" y="{MARGIN + 24}">'
               f'{esc(summary_line(picture))}</text>')
    y0 = HEADER + MARGIN
    for f in _net_findings(picture):
        out.append(f'<text class="net-finding badge-{f.severity}" x="{MARGIN}" y="{num(y0)}">'
                   f'{esc(_net_finding_text(f))}</text>')
        y0 += 14
    if _more_findings(picture):
        more = len(_undrawn_findings(picture)) - NET_FINDINGS_SHOWN
        out.append(f'<text class="net-finding" x="{MARGIN}" y="{num(y0)}">... and {more} more '
                   f'findings not on a drawn layer (`bnlint check` lists them)</text>')
        y0 += 14
    top = y0
    out.append(f'<g class="graph" transform="translate({MARGIN},{num(top)})">')
    out.extend(_edges(drawing))
    index = 0
    for block, (bw, bh) in zip(picture.blocks, drawing.sizes):
        x = layout.x[block.index] - bw / 2
        y = layout.y[block.index]
        sev = _worst(m.severity for m in block.members)
        cls = f"block fam-{block.family.replace('/', '-')}" + (f" sev-{sev}" if sev else "")
        out.append(f'<g class="{cls}" id="b{block.index}" transform="translate({num(x)},{num(y)})">')
        for row, member in enumerate(block.members):
            out.append(_row(member, index, row, bw))
            index += 1
        out.append(f'<rect class="frame" width="{num(bw)}" height="{num(bh)}" rx="3"/>')
        out.append("</g>")
    out.append("</g>")
    if picture.removed:
        out.extend(_removed(drawing, top))
    out.append("</g></svg>\n")
    return "\n".join(out)


def _worst(severities) -> str:
    order = ["", "info", "warning", "error"]
    return max(severities, key=order.index, default="")


def _row(member: Member, index: int, row: int, width: float) -> str:
    fill, ink = FAMILY_COLOURS.get(member.family, FAMILY_COLOURS["other"])
    kind, name, codes = _row_text(member)
    cls = {"layer": "layer", "input": "input"}.get(member.kind, "removed-member")
    if member.severity:
        cls += f" sev-{member.severity}"
    if member.status:
        cls += f" status-{member.status}"
    y = row * ROW_HEIGHT
    parts = [f'<g class="{cls}" id="L{index}" data-name="{esc(member.name)}" '
             f'data-type="{esc(member.type)}">',
             f"<title>{esc(member.type)} {esc(member.name)}</title>",
             f'<rect y="{y}" width="{num(width)}" height="{ROW_HEIGHT}" fill="{fill}"/>']
    if row:
        parts.append(f'<line x1="0" x2="{num(width)}" y1="{y}" y2="{y}" stroke="#ffffff" '
                     f'stroke-opacity="0.5"/>')
    if member.status:
        parts.append(f'<rect class="st-{member.status}" y="{y}" width="5" height="{ROW_HEIGHT}"/>')
    strike = ' text-decoration="line-through" opacity="0.75"' if member.kind == "removed" else ""
    parts.append(f'<text x="{PAD_X}" y="{y + 13}" fill="{ink}"{strike}><tspan class="type">'
                 f'{esc(kind)}</tspan> {esc(name)}</text>')
    if codes:
        parts.append(f'<rect class="badge-{member.severity}" x="{num(width - PAD_X - len(codes) * CHAR_WIDTH - 4)}" '
                     f'y="{y + 2}" width="{num(len(codes) * CHAR_WIDTH + 8)}" '
                     f'height="{ROW_HEIGHT - 4}" rx="2"/>')
        parts.append(f'<text class="codes" x="{num(width - PAD_X - len(codes) * CHAR_WIDTH)}" '
                     f'y="{y + 13}" fill="#ffffff">{esc(codes)}</text>')
    parts.append("</g>")
    return "".join(parts)


def _edges(drawing: Drawing) -> list[str]:
    picture, layout = drawing.picture, drawing.layout
    out = []
    labelled: dict[int, list[str]] = {}
    for edge, route in zip(picture.edges, layout.routes):
        drawn_h = drawing.sizes[edge.src][1]
        points = [(route[0][0], layout.y[edge.src] + drawn_h)] + route[1:]
        d = [f"M{num(points[0][0])},{num(points[0][1])}"]
        for (ax, ay), (bx, by) in zip(points, points[1:]):
            if abs(ax - bx) < 0.05:
                d.append(f"L{num(bx)},{num(by)}")
            else:
                mid = (by - ay) / 2
                d.append(f"C{num(ax)},{num(ay + mid)} {num(bx)},{num(by - mid)} "
                         f"{num(bx)},{num(by)}")
        out.append(f'<path class="edge" data-blob="{esc(edge.blob)}" d="{" ".join(d)}" '
                   f'marker-end="url(#arrow)"/>')
        names = labelled.setdefault(edge.src, [])
        if edge.blob not in names:
            names.append(edge.blob)
            x, y = points[0][0] + 5, points[0][1] + LABEL_HEIGHT * len(names) - 1
            out.append(f'<text class="edge-label" data-blob="{esc(edge.blob)}" x="{num(x)}" '
                       f'y="{num(y)}">{esc(edge.blob)} {shape_text(edge.shape)}</text>')
    return out


def _removed(drawing: Drawing, top: float) -> list[str]:
    picture = drawing.picture
    x = MARGIN + drawing.layout.width + 40
    width = max(_row_chars(m) for m in picture.removed) * CHAR_WIDTH + 2 * PAD_X + 6
    height = ROW_HEIGHT * (len(picture.removed) + 1) + 4
    out = [f'<g class="removed" transform="translate({num(x)},{num(top)})">',
           f'<rect class="removed-box" width="{num(width)}" height="{height}" rx="3"/>',
           f'<text x="{PAD_X}" y="13" class="st-removed">removed ({len(picture.removed)})</text>']
    for i, member in enumerate(picture.removed):
        y = ROW_HEIGHT * (i + 1)
        out.append(f'<g class="removed-layer" id="R{i}" data-name="{esc(member.name)}">'
                   f'<text x="{PAD_X}" y="{y + 13}" text-decoration="line-through">'
                   f'<tspan class="type">{esc(member.type)}</tspan> {esc(member.name)}</text></g>')
    out.append("</g>")
    return out
