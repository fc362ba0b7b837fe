"""`bnlint convert`: text, binary and JSON, checked against protoc and protobuf itself."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from google.protobuf import text_format

from bnlint.caffe.load import parse_text
from bnlint.caffe.schema import default_schema
from bnlint.source import SourceFile
from conftest import GOLDEN, REPO, corpus_files, corpus_id, needs_shared

NET = default_schema().message_class("NetParameter")


def _protoc_encode(path) -> bytes | None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the test extra) provides protoc")
    with open(path, "rb") as fh:
        proc = subprocess.run([sys.executable, "-m", "grpc_tools.protoc",
                               f"-I{REPO / 'proto'}", "--encode=caffe.NetParameter",
                               str(REPO / "proto" / "caffe.proto")], stdin=fh,
                              capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


def _bvlc_nets():
    out = []
    for p in corpus_files():
        doc = parse_text(SourceFile(str(p), p.read_text()))
        if doc.kind == "NetParameter" and not doc.problems and not doc.detection.detected:
            out.append(p)
    return out


@needs_shared
@pytest.mark.parametrize("path", _bvlc_nets()[::3], ids=corpus_id)
def test_text_to_binary_equals_protoc_encode(path, tmp_path, run_cli):
    expected = _protoc_encode(path)
    assert expected is not None, "protoc refused a file bnlint accepts"
    out = tmp_path / "net.pb"
    code, _, err = run_cli("convert", str(path), "-o", str(out), "--to", "binary")
    assert code == 0, err
    assert out.read_bytes() == expected


@needs_shared
def test_binary_round_trips_to_the_same_net(tmp_path, run_cli):
    src = next(p for p in _bvlc_nets() if "googlenet" in p.name)
    pb = tmp_path / "g.caffemodel"
    assert run_cli("convert", str(src), "-o", str(pb))[0] == 0  # extension -> binary
    code, text, _ = run_cli("convert", str(pb))
    assert code == 0
    again = NET()
    text_format.Parse(text, again)
    ref = NET()
    text_format.Parse(src.read_text(), ref)
    assert again == ref


@needs_shared
def test_caffemodel_architecture_with_strip_weights(tmp_path, run_cli):
    model = GOLDEN / "bn_variants" / "weights.caffemodel"
    code, text, err = run_cli("convert", str(model), "--strip-weights")
    assert code == 0, err
    net = NET()
    text_format.Parse(text, net)
    blobs = [b for layer in net.layer for b in layer.blobs]
    assert blobs and all(len(b.data) == 0 and len(b.shape.dim) for b in blobs)
    code, js, _ = run_cli("convert", str(model), "--strip-weights", "--to", "json")
    assert code == 0 and json.loads(js)["layer"]


def test_kind_is_detected_from_content_not_extension(tmp_path, run_cli):
    text = 'name: "t" layer { name: "d" type: "Input" top: "d" }\n'
    weird = tmp_path / "net.caffemodel.txt"
    weird.write_text(text)
    binary = tmp_path / "net.prototxt"  # binary content behind a text name
    assert run_cli("convert", str(weird), "-o", str(binary), "--to", "binary")[0] == 0
    code, out, _ = run_cli("convert", str(binary))
    assert code == 0 and 'name: "t"' in out
    code, out, _ = run_cli("convert", str(weird), "--to", "json")
    assert json.loads(out)["layer"][0]["type"] == "Input"


def test_binary_needs_an_output_file(tmp_path, run_cli):
    f = tmp_path / "n.prototxt"
    f.write_text('name: "x"')
    code, _, err = run_cli("convert", str(f), "--to", "binary")
    assert code == 2 and "-o" in err


def test_fork_fields_stop_a_faithful_conversion(tmp_path, run_cli):
    f = tmp_path / "fork.prototxt"
    f.write_text('layer {\n  name: "p"\n  pooling_param { ceil_mode: false }\n}\n')
    # in BVLC's schema; without --dialect the `ceil` dialect converts it (test_dialects)
    code, out, err = run_cli("convert", str(f), "--dialect", "bvlc", "-o", str(tmp_path / "x.pb"))
    assert code == 2
    assert f"{f}:3:19: unknown field 'ceil_mode'" in err
    assert not (tmp_path / "x.pb").exists()


def test_convert_refuses_to_overwrite_its_input(tmp_path, run_cli):
    f = tmp_path / "n.prototxt"
    f.write_text('name: "x"\n')
    code, _, err = run_cli("convert", str(f), "-o", str(f))
    assert code == 2 and "overwrite the input" in err
    assert f.read_text() == 'name: "x"\n'


def test_syntax_error_is_path_line_col(tmp_path, run_cli):
    f = tmp_path / "bad.prototxt"
    f.write_text('layer {\n  name: "a"\n  type: @\n}\n')
    code, _, err = run_cli("convert", str(f))
    assert code == 2
    assert err.strip() == f"{f}:3:9: unexpected character '@'"
