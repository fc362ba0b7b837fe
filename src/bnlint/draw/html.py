"""The picture as one self-contained HTML page: the SVG, its data as JSON, and a small
viewer (pan, zoom, search by layer or blob, details and findings). Nothing is loaded
from the network: the page works from disk, offline.
"""

from __future__ import annotations

import json
from importlib.resources import files

from bnlint.draw.model import Finding, Member
from bnlint.draw.svg import Drawing, esc, render_svg, summary_line


def _member(m: Member, finding_ids: dict[int, int]) -> dict:
    return {"name": m.name, "type": m.type, "family": m.family, "kind": m.kind, "doc": m.doc,
            "text": m.text, "line": m.line, "bottoms": [list(b) for b in m.bottoms],
            "tops": [list(t) for t in m.tops], "params": m.params, "macs": m.macs,
            "findings": [finding_ids[id(f)] for f in m.findings if id(f) in finding_ids],
            "status": m.status,
            "changes": m.changes}


def page_data(drawing: Drawing) -> dict:
    picture = drawing.picture
    members = picture.members()
    finding_ids = {id(f): i for i, f in enumerate(picture.findings)}
    member_of: dict[int, int] = {}
    for i, m in enumerate(members):
        for f in m.findings:
            member_of[id(f)] = i
    blobs: dict[str, list[int]] = {}
    for i, m in enumerate(members):
        for name, _ in m.tops:
            if i not in blobs.setdefault(name, []):
                blobs[name].append(i)

    def finding(f: Finding) -> dict:
        return {"code": f.code, "severity": f.severity, "message": f.message, "line": f.line,
                "col": f.col, "layer": f.layer, "phases": list(f.phases),
                "member": member_of.get(id(f))}

    return {"title": picture.title, "state": picture.state, "width": drawing.width,
            "height": drawing.height, "members": [_member(m, finding_ids) for m in members],
            "findings": [finding(f) for f in picture.findings], "rules": picture.rules,
            "blobs": blobs, "removed": [_member(m, finding_ids) for m in picture.removed]}


def _script_json(value) -> str:
    """JSON that cannot end its <script> element early."""
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render_html(drawing: Drawing) -> str:
    here = files("bnlint.draw")
    css = here.joinpath("viewer.css").read_text(encoding="utf-8")
    js = here.joinpath("viewer.js").read_text(encoding="utf-8")
    picture = drawing.picture
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(picture.title)} - bnlint draw</title>",
        f"<style>{css}</style></head><body>",
        '<header id="bar">',
        f"<h1 title=\"{esc(picture.path)}\">{esc(picture.title)}</h1>",
        '<input id="search" type="search" placeholder="search a layer or blob ( / )" '
        'autocomplete="off" aria-label="search a layer or blob">',
        '<button id="zoom-out" title="zoom out">-</button>'
        '<button id="zoom-in" title="zoom in">+</button>'
        '<button id="fit" title="fit the net in the window">fit</button>'
        '<button id="home" title="back to the top of the net">top</button>',
        f'<span id="counts">{esc(summary_line(picture))}</span>',
        '<ul id="results"></ul>',
        "</header><main>",
        f'<div id="canvas">{render_svg(drawing)}</div>',
        '<aside><section id="details" hidden></section>',
        '<section id="findings"><h2>Findings</h2><ol id="finding-list"></ol></section>'
        "</aside></main>",
        f'<script type="application/json" id="bnlint-data">{_script_json(page_data(drawing))}'
        "</script>",
        f"<script>{js}</script>",
        "</body></html>",
        ""])
