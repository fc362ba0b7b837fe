"""`bnlint draw`: what is drawn (blocks, edges, findings), the SVG, --diff, the layout,
and every corpus net that `check` reads."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import FIXTURES, REPO, corpus_files, corpus_id, needs_shared

from bnlint.draw import picture_of, render
from bnlint.draw.layout import layered_layout

EXAMPLES = FIXTURES / "examples"
TRAIN = EXAMPLES / "tiny_resnet_train_val.prototxt"
DEPLOY = EXAMPLES / "tiny_resnet_deploy_by_hand.prototxt"
SVG = "{http://www.w3.org/2000/svg}"


def _layer_names_in_svg(text: str) -> list[str]:
    root = ET.fromstring(text)
    return [g.get("data-name") for g in root.iter(f"{SVG}g")
            if "layer" in (g.get("class") or "").split()]


def test_in_place_chain_is_one_block():
    picture = picture_of(str(DEPLOY))
    blocks = [[m.name for m in b.members] for b in picture.blocks]
    assert ["conv1", "conv1/bn", "conv1/scale", "conv1/relu"] in blocks
    assert ["res2a", "res2a/bn"] in blocks
    assert ["res2", "res2/relu"] in blocks
    assert ["data"] in blocks                      # the net-level input


def test_layers_are_styled_by_their_family_in_the_layer_table():
    from bnlint.caffe.layers import FAMILIES
    from bnlint.draw.svg import FAMILY_COLOURS

    assert set(FAMILIES) <= set(FAMILY_COLOURS)
    picture = picture_of(str(DEPLOY))
    families = {m.name: m.family for m in picture.members()}
    assert (families["conv1"], families["conv1/bn"], families["conv1/relu"], families["pool"],
            families["res2"], families["data"]) == (
        "convolution", "normalisation", "activation", "pooling", "elementwise", "data")
    assert 'class="block fam-convolution' in render(picture, "svg")


def test_edges_carry_blob_names_and_shapes():
    picture = picture_of(str(DEPLOY))
    first = {b.members[0].name: b.index for b in picture.blocks}
    edges = {(e.src, e.dst, e.blob): e.shape for e in picture.edges}
    assert edges[(first["conv1"], first["res2a"], "conv1")] == (1, 16, 32, 32)
    assert edges[(first["conv1"], first["res2"], "conv1")] == (1, 16, 32, 32)
    assert edges[(first["pool"], first["fc10"], "pool")] == (1, 16, 1, 1)


def test_findings_are_on_their_layers():
    picture = picture_of(str(DEPLOY))
    codes = {m.name: [f.code for f in m.findings] for m in picture.members() if m.findings}
    # N005 is on the net-level `input:` field: the input's node carries it
    assert codes == {"conv1/bn": ["BN021"], "res2a/bn": ["BN010"], "data": ["N005"]}
    assert [f for f in picture.findings if f.layer is None] == []
    assert set(picture.rules) == {"BN010", "BN021", "N005"}
    fc = next(m for m in picture.members() if m.name == "fc10")
    assert (fc.params, fc.macs) == (16 * 10 + 10, 160)


def test_svg_is_xml_with_every_layer(run_cli, tmp_path):
    out = tmp_path / "net.svg"
    code, _, err = run_cli("draw", str(DEPLOY), "-o", str(out))
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    names = [m.name for m in picture_of(str(DEPLOY)).members() if m.kind == "layer"]
    assert sorted(_layer_names_in_svg(text)) == sorted(names)
    assert "BN010" in text and "BN021" in text
    assert "phase TEST" in text


def test_svg_same_bytes_every_run(tmp_path):
    """Two processes with different hash seeds write identical bytes."""
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"net{seed}.svg"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-m", "bnlint", "draw", str(TRAIN), "-o", str(out)],
                       check=True, env=env, cwd=REPO)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_readme_picture_is_current(run_cli):
    """docs/draw_tiny_resnet_deploy.svg is what the README's command writes today."""
    code, out, err = run_cli("draw", str(DEPLOY))
    assert code == 0, err
    committed = (REPO / "docs" / "draw_tiny_resnet_deploy.svg").read_text(encoding="utf-8")
    assert out == committed, "regenerate with the command in the README's `bnlint draw`"


def test_phase_and_stage_choose_what_is_drawn(run_cli):
    train = picture_of(str(TRAIN), phase="train")
    test = picture_of(str(TRAIN), phase="test")
    assert train.state == "TRAIN" and test.state == "TEST"
    assert "phase TRAIN" in train.title and "no stage" in train.title
    staged = picture_of(str(TRAIN), phase="test", stages=("deploy",))
    assert staged.state == "TEST+deploy" and "stages: deploy" in staged.title


def test_html_is_self_contained(run_cli, tmp_path):
    out = tmp_path / "net.html"
    code, _, err = run_cli("draw", str(DEPLOY), "-o", str(out))
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    for remote in ("http://", "https://", "//cdn", "src=", "@import"):
        # the SVG namespace URI is a name, not something fetched
        assert text.replace('xmlns="http://www.w3.org/2000/svg"', "").count(remote) == 0, remote
    assert 'id="bnlint-data"' in text


def test_diff_marks_added_removed_changed(run_cli, tmp_path):
    out = tmp_path / "diff.svg"
    code, _, err = run_cli("draw", str(TRAIN), "--diff", str(DEPLOY), "-o", str(out))
    assert code == 0, err
    picture = picture_of(str(DEPLOY))
    from bnlint.draw.diff import mark_changes

    mark_changes(picture_of(str(TRAIN)), picture)
    status = {m.name: m.status for m in picture.members() if m.status}
    assert status["prob"] == "added"
    assert status["data"] == "changed"       # a Data layer became a net-level input
    assert {m.name for m in picture.removed} == {"loss", "accuracy"}
    res2a = next(b for b in picture.blocks if b.members[0].name == "res2a")
    assert [(m.name, m.status) for m in res2a.members] == [
        ("res2a", "changed"), ("res2a/bn", "changed"), ("res2a/scale", "removed")]
    bn = next(m for m in picture.members() if m.name == "conv1/bn")
    assert any(c.startswith("batch_norm_param.use_global_stats") for c in bn.changes)
    text = out.read_text(encoding="utf-8")
    assert "status-added" in text and "res2a/scale" in text


@pytest.mark.parametrize("content, where", [
    ("layer { name: 'a' type: 'ReLU' \n", ":1:7"),
    ("layer { name: 'a' type: 'ReLU' } }\n", ":1:34"),
])
def test_unreadable_input_exits_2(run_cli, tmp_path, content, where):
    net = tmp_path / "bad.prototxt"
    net.write_text(content)
    out = tmp_path / "out.svg"
    code, _, err = run_cli("draw", str(net), "-o", str(out))
    assert code == 2
    assert f"bad.prototxt{where}" in err
    assert not out.exists()


def test_missing_file_and_findings_exit_codes(run_cli, tmp_path):
    assert run_cli("draw", str(tmp_path / "nope.prototxt"))[0] == 2
    code, out, _ = run_cli("draw", str(DEPLOY))          # findings: still 0, SVG on stdout
    assert code == 0 and out.startswith("<svg")
    code, _, err = run_cli("draw", str(DEPLOY), "-o", str(DEPLOY), "--format", "svg")
    assert code == 2 and "overwrite the input" in err
    assert run_cli("draw", str(DEPLOY), "-o", str(tmp_path / "net.png"))[0] == 2
    code, _, _ = run_cli("draw", str(DEPLOY), "-o", str(tmp_path / "net.page"), "--format", "html")
    assert code == 0 and (tmp_path / "net.page").read_text().startswith("<!DOCTYPE html>")


def _check_layout(sizes, edges):
    layout = layered_layout(sizes, edges)
    for src, dst in edges:
        assert layout.y[dst] >= layout.y[src] + sizes[src][1]
    rows: dict[float, list[int]] = {}
    for v, y in enumerate(layout.y):
        rows.setdefault(y, []).append(v)
    for row in rows.values():
        spans = sorted((layout.x[v] - sizes[v][0] / 2, layout.x[v] + sizes[v][0] / 2)
                       for v in row)
        for (_, right), (left, _) in zip(spans, spans[1:]):
            assert left >= right - 1e-6
    for route, (src, dst) in zip(layout.routes, edges):
        assert route[0][0] == pytest.approx(layout.x[src])
        assert route[-1] == (pytest.approx(layout.x[dst]), pytest.approx(layout.y[dst]))
    return layout


def test_layout_random_dags_and_same_result_twice():
    rng = random.Random(7)
    for _ in range(30):
        n = rng.randint(1, 60)
        sizes = [(rng.uniform(20, 200), rng.choice([18.0, 36.0, 72.0])) for _ in range(n)]
        edges = sorted({(a, b) for a, b in ((rng.randrange(n), rng.randrange(n))
                                            for _ in range(rng.randint(0, 2 * n))) if a < b})
        first = _check_layout(sizes, edges)
        second = layered_layout(sizes, edges)
        assert (first.x, first.y, first.routes) == (second.x, second.y, second.routes)


def test_layout_keeps_a_chain_straight():
    layout = layered_layout([(100.0, 20.0)] * 5, [(0, 1), (1, 2), (2, 3), (3, 4)])
    assert len(set(layout.x)) == 1


CORPUS_NETS = corpus_files()


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("path", CORPUS_NETS, ids=[corpus_id(p) for p in CORPUS_NETS])
def test_corpus_net_draws(path):
    """Every corpus net `check` reads is drawn, every layer in the SVG; nets that do not
    parse are refused as bad input, like `check`'s E001."""
    from bnlint.caffe.load import parse_text
    from bnlint.errors import ParseError
    from bnlint.files import read_text

    try:
        parse_text(read_text(str(path)))
    except ParseError:
        with pytest.raises(ParseError):
            picture_of(str(path))
        return
    picture = picture_of(str(path))
    svg = render(picture, "svg")
    names = [m.name for m in picture.members() if m.kind == "layer"]
    assert sorted(_layer_names_in_svg(svg)) == sorted(names)
    html = render(picture, "html")
    assert html.count('class="layer') == svg.count('class="layer')


def _statuses(svg_text: str) -> dict[str, str]:
    root = ET.fromstring(svg_text)
    out = {}
    for g in root.iter(f"{SVG}g"):
        classes = (g.get("class") or "").split()
        for c in classes:
            if c.startswith("status-"):
                out[g.get("data-name")] = c[len("status-"):]
        if "removed-layer" in classes:
            out[g.get("data-name")] = "removed"
    return out


def test_to_deploy_draws_its_change(run_cli, tmp_path):
    deploy, picture = tmp_path / "deploy.prototxt", tmp_path / "change.svg"
    code, _, err = run_cli("to-deploy", str(TRAIN), "-o", str(deploy), "--draw", str(picture))
    assert code == 0, err
    status = _statuses(picture.read_text(encoding="utf-8"))
    assert status["prob"] == "added"
    assert status["loss"] == status["accuracy"] == "removed"
    assert status["conv1/bn"] == "changed"          # use_global_stats: true
    assert run_cli("to-deploy", str(TRAIN), "--draw", str(TRAIN))[0] == 2   # never the input


def test_fold_draws_its_change(run_cli, tmp_path):
    from test_fold import FOLD, seeded_weights, write_weights

    net = FOLD / "inplace_chain.prototxt"
    weights = write_weights(tmp_path / "w.caffemodel", net, seeded_weights(net))
    page = tmp_path / "fold.html"
    code, out, err = run_cli("fold", str(net), "--weights", str(weights), "-o",
                             str(tmp_path / "folded.prototxt"), "--draw", str(page))
    assert code == 0, out + err
    from bnlint.draw import change_picture
    from bnlint.source import SourceFile  # noqa: F401  (the page is built from the text)

    picture = change_picture(str(net), (tmp_path / "folded.prototxt").read_text(), "folded")
    conv1 = next(b for b in picture.blocks if b.members[0].name == "conv1")
    assert [(m.name, m.status) for m in conv1.members] == [
        ("conv1", "changed"), ("bn1", "removed"), ("scale1", "removed"), ("relu1", "")]
    assert next(m for m in picture.members() if m.name == "conv1").status == "changed"
    assert '"status":"removed"' in page.read_text(encoding="utf-8")


def test_findings_of_layers_outside_the_state_are_listed(tmp_path):
    net = tmp_path / "net.prototxt"
    net.write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 '
        'dim: 8 dim: 8 } } }\n'
        'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
        'convolution_param { num_output: 4 kernel_size: 3 } }\n'
        'layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" '
        'include { phase: TRAIN } }\n')
    picture = picture_of(str(net), phase="test")
    assert picture.hidden == ["bn"]
    hidden = [f for f in picture.findings if f.layer == "bn"]
    assert hidden, "the TRAIN-only BatchNorm has findings (no Scale after it)"
    svg = render(picture, "svg")
    assert f"{hidden[0].code} line 3 (layer 'bn', not in this state)" in svg


def test_layout_keeps_a_residual_trunk_straight():
    """Blocks E -> a -> b -> c -> E' with E -> E' (or a projection E -> p -> E' at each
    stage start): every E sits on one vertical line whatever the branch widths."""
    sizes, edges, trunk = [(90.0, 18.0)], [], [0]
    for block in range(12):
        shortcut = trunk[-1]
        if block % 4 == 0:                      # a projection shortcut
            sizes.append((228.0, 54.0))
            edges.append((trunk[-1], len(sizes) - 1))
            shortcut = len(sizes) - 1
        a, b, c, e = (len(sizes) + i for i in range(4))
        sizes += [(241.0, 72.0), (195.0, 72.0), (255.0, 54.0), (140.0, 36.0)]
        edges += [(trunk[-1], a), (a, b), (b, c), (c, e), (shortcut, e)]
        trunk.append(e)
    layout = _check_layout(sizes, edges)
    xs = [layout.x[e] for e in trunk]
    assert max(xs) - min(xs) < 0.5, xs
