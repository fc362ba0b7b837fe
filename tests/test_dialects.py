"""Caffe dialects: the fork schemas are facts, detection picks the right one for every
real fork net, and conversion, weights and the BatchNorm rules follow the dialect.

The fork schemas are proto/caffe.proto plus each fork's fields; a field number that
is wrong decodes a fork's files into the wrong field without any error, so the
numbers that differ from BVLC are pinned here, and every difference from BVLC's
schema must be one the fork's .proto header documents.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from fnmatch import fnmatch

import pytest
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor

from bnlint.caffe import known
from bnlint.caffe.dialects import (DIALECTS, FORKS, PORTABLE, detect_dialect, dialect_names,
                                   get_dialect, load_user_proto, unknown_fields,
                                   unknown_fields_each)
from bnlint.caffe.load import parse_binary, parse_text
from bnlint.caffe.messages import UNKNOWN_FIELD
from bnlint.caffe.schema import default_schema
from bnlint.errors import BnlintError
from bnlint.lint.config import LintConfig, config_from_table
from bnlint.lint.diagnostics import Severity
from bnlint.lint.runner import lint_source
from bnlint.source import SourceFile
from bnlint.syntax import parse
from conftest import CORPUS, REPO, corpus_files, corpus_id, needs_shared

BINPB = REPO / "src" / "bnlint" / "caffe" / "dialects"
PROTOS = REPO / "proto" / "dialects"
needs_protoc = pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None,
                                  reason="grpcio-tools is not installed (pip install "
                                         "'bnlint[proto]'), so protoc is not available")


def fork(name: str):
    return get_dialect(name).schema()


def number(schema, message: str, field: str) -> int:
    return schema.descriptor(message).fields_by_name[field].number


# --- (a) the committed descriptor sets are what protoc makes of the committed protos ---

@needs_protoc
@pytest.mark.parametrize("name", [d.name for d in FORKS])
def test_descriptor_set_matches_proto(name, tmp_path):
    out = tmp_path / f"{name}.binpb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}",
                    f"--descriptor_set_out={out}", f"{name}.proto"],
                   cwd=REPO, check=True, capture_output=True, text=True)
    assert out.read_bytes() == (BINPB / f"{name}.binpb").read_bytes(), (
        f"src/bnlint/caffe/dialects/{name}.binpb is stale; regenerate from the repo root: "
        f"python -m grpc_tools.protoc -Iproto/dialects "
        f"--descriptor_set_out=src/bnlint/caffe/dialects/{name}.binpb {name}.proto")


def test_registry():
    assert dialect_names() == ("portable", "bvlc", "legacy", "ssd", "segnet", "shufflenet",
                               "frcnn", "ceil", "nvcaffe")
    assert [d.name for d in FORKS] == list(dialect_names())[3:]
    for d in DIALECTS.values():
        assert d.schema().descriptor("NetParameter").full_name == "caffe.NetParameter"
        assert d.schema() is d.schema()      # loaded once
    assert {d.name: d.bn_stats_masked for d in DIALECTS.values()} == {
        "portable": None, "bvlc": True, "legacy": False, "ssd": False, "segnet": None,
        "shufflenet": None, "frcnn": None, "ceil": None, "nvcaffe": True}
    assert {d.name for d in DIALECTS.values() if d.pooling == "ceil_mode"} == {"ceil"}
    with pytest.raises(BnlintError, match="unknown dialect 'caffe2'"):
        get_dialect("caffe2")


# --- (b) each fork's facts, and nothing else differs from BVLC ---------------------------

def _field_facts(f: FieldDescriptor):
    typed = f.message_type or f.enum_type
    default = f.default_value if f.has_default_value else None
    return (f.number, f.type, f.is_repeated, f.is_required, typed.full_name if typed else "",
            default)


def _bvlc_differences(schema) -> dict[str, str]:
    """Every BVLC field or enum value the dialect lacks or defines differently."""
    bvlc = default_schema()
    out = {}

    def walk(desc, other):
        for f in desc.fields:
            mine = other.fields_by_name.get(f.name) if other else None
            if mine is None:
                out[f"{desc.name}.{f.name}"] = "missing"
            elif _field_facts(mine) != _field_facts(f):
                changed = [k for k, a, b in zip(("number", "type", "repeated", "required",
                                                 "type_name", "default"),
                                                _field_facts(f), _field_facts(mine)) if a != b]
                out[f"{desc.name}.{f.name}"] = ",".join(changed)
        for e in desc.enum_types:
            theirs = other.enum_types_by_name.get(e.name) if other else None
            for v in e.values:
                mine = theirs.values_by_name.get(v.name) if theirs else None
                if mine is None or mine.number != v.number:
                    out[f"{desc.name}.{e.name}.{v.name}"] = "missing" if mine is None else \
                        "number"
        for nested in desc.nested_types:
            walk(nested, other.nested_types_by_name.get(nested.name) if other else None)

    for name in bvlc.message_names():
        try:
            other = schema.descriptor(name)
        except KeyError:
            other = None
        walk(bvlc.descriptor(name), other)
    return out


EXPECTED_DIFFERENCES = {
    "ssd": {"SolverParameter.layer_wise_reduce": "number", "SolverParameter.weights": "missing"},
    "segnet": {"LayerParameter.embed_param": "missing", "LayerParameter.tile_param": "missing",
               "LossParameter.normalization": "missing", "LossParameter.normalize": "default",
               "LossParameter.NormalizationMode.FULL": "missing",
               "LossParameter.NormalizationMode.VALID": "missing",
               "LossParameter.NormalizationMode.BATCH_SIZE": "missing",
               "LossParameter.NormalizationMode.NONE": "missing"},
    "shufflenet": {},
    "frcnn": {"LossParameter.NormalizationMode.NONE": "number"},
    "ceil": {"PoolingParameter.round_mode": "missing",
             "PoolingParameter.RoundMode.CEIL": "missing",
             "PoolingParameter.RoundMode.FLOOR": "missing"},
    "nvcaffe": {"LayerParameter.parameter_param": "missing",
                "LayerParameter.recurrent_param": "missing",
                "LayerParameter.swish_param": "missing", "LayerParameter.clip_param": "missing",
                "SolverParameter.layer_wise_reduce": "missing",
                "SolverParameter.weights": "missing",
                "BatchNormParameter.use_global_stats": "default",
                "DataParameter.prefetch": "default"},
}


@pytest.mark.parametrize("name", [d.name for d in FORKS])
def test_only_documented_differences_from_bvlc(name):
    got = _bvlc_differences(fork(name))
    assert got == EXPECTED_DIFFERENCES[name]
    # each replaced field is named in the proto's header
    header = (PROTOS / f"{name}.proto").read_text().split('syntax = "proto2";')[0]
    for key, kind in got.items():
        if kind in ("missing", "number") and key.count(".") == 1:
            assert key.split(".")[1] in header, key


def test_ssd_facts():
    s = fork("ssd")
    assert {n: number(s, "LayerParameter", n) for n in (
        "annotated_data_param", "multibox_loss_param", "permute_param", "prior_box_param",
        "detection_output_param", "detection_evaluate_param", "norm_param",
        "video_data_param")} == {
        "annotated_data_param": 200, "multibox_loss_param": 201, "permute_param": 202,
        "prior_box_param": 203, "detection_output_param": 204, "detection_evaluate_param": 205,
        "norm_param": 206, "video_data_param": 207}
    assert {n: number(s, "SolverParameter", n) for n in (
        "eval_type", "ap_version", "plateau_winsize", "show_per_class_result",
        "layer_wise_reduce")} == {"eval_type": 41, "ap_version": 42, "plateau_winsize": 43,
                                  "show_per_class_result": 44, "layer_wise_reduce": 47}
    assert {n: number(s, "TransformationParameter", n) for n in (
        "resize_param", "noise_param", "emit_constraint", "crop_h", "crop_w", "distort_param",
        "expand_param")} == {"resize_param": 8, "noise_param": 9, "emit_constraint": 10,
                             "crop_h": 11, "crop_w": 12, "distort_param": 13,
                             "expand_param": 14}
    code = s.enum_descriptor("PriorBoxParameter.CodeType")
    assert {v.name: v.number for v in code.values} == {"CORNER": 1, "CENTER_SIZE": 2,
                                                       "CORNER_SIZE": 3}
    offset = s.descriptor("PriorBoxParameter").fields_by_name["offset"]
    assert (offset.number, offset.default_value) == (13, 0.5)


def test_ceil_mode_fact():
    f = fork("ceil").descriptor("PoolingParameter").fields_by_name["ceil_mode"]
    assert (f.number, f.type, f.default_value) == (13, FieldDescriptor.TYPE_BOOL, True)


def test_segnet_facts():
    s = fork("segnet")
    assert {n: number(s, "LayerParameter", n) for n in (
        "bn_param", "upsample_param", "dense_image_data_param")} == {
        "bn_param": 45, "upsample_param": 137, "dense_image_data_param": 138}
    mode = s.descriptor("BNParameter").fields_by_name["bn_mode"]
    assert (mode.number, mode.enum_type.values_by_name["INFERENCE"].number) == (3, 1)
    assert number(s, "LossParameter", "weight_by_label_freqs") == 3
    assert number(s, "DropoutParameter", "sample_weights_test") == 2


def test_shufflenet_frcnn_nvcaffe_facts():
    assert number(fork("shufflenet"), "LayerParameter", "shuffle_channel_param") == 164
    f = fork("frcnn")
    assert {n: number(f, "LayerParameter", n) for n in (
        "roi_pooling_param", "smooth_l1_loss_param", "box_annotator_ohem_param",
        "psroi_pooling_param")} == {
        "roi_pooling_param": 8266711, "smooth_l1_loss_param": 8266712,
        "box_annotator_ohem_param": 10000, "psroi_pooling_param": 10001}
    assert all(fd.is_required for fd in f.descriptor("PSROIPoolingParameter").fields)
    n = fork("nvcaffe")
    bn = n.descriptor("BatchNormParameter").fields_by_name
    assert {k: bn[k].number for k in ("scale_filler", "bias_filler", "scale_bias", "engine")} == {
        "scale_filler": 5, "bias_filler": 6, "scale_bias": 7, "engine": 15}
    assert number(n, "LayerParameter", "forward_type") == 145
    assert number(n, "SolverParameter", "eval_type") == 241   # SSD's, renumbered
    assert number(n, "TransformationParameter", "resize_param") == 208
    assert number(n, "BlobProto", "raw_data") == 12


def test_known_fork_fields_are_in_their_dialect():
    by_fork = {d.fork: d for d in FORKS}
    for (container, name), which in known.FORK_FIELDS.items():
        if which in by_fork:
            fields = by_fork[which].schema().descriptor(container).fields_by_name
            assert name in fields, (container, name, which)
    for type_name, which in known.FORK_LAYER_TYPES.items():
        if which in by_fork:
            assert by_fork[which].knows_layer_type(type_name), type_name


# --- (c) detection ----------------------------------------------------------------------

def _detect(text: str):
    return detect_dialect(parse(text))


def test_detection_picks_the_fork_that_knows_the_fields():
    d = _detect('layer { name: "p" type: "Pooling" pooling_param { ceil_mode: false } }')
    assert (d.dialect.name, d.evidence_paths()) == ("ceil", ["layer.pooling_param.ceil_mode"])
    assert d.evidence[0][1] == 50 and not d.unknown
    assert _detect('layer { batch_norm_param { scale_bias: true } }').dialect.name == "nvcaffe"
    # SSD's layers are in NVCaffe too: the narrower fork wins the tie
    assert _detect('layer { prior_box_param { min_size: 30 } }').dialect.name == "ssd"


def test_one_walk_for_all_forks_finds_what_a_walk_per_fork_finds():
    """unknown_fields_each walks blocks of the same shape once for several forks: the
    fields it reports must be each fork's own walk's, in order, at every depth."""
    text = ('name: "n" input: "data" force_backward: true\n'
            'layer { name: "p" type: "Pooling" pooling_param { round_mode: FLOOR '
            'ceil_mode: false } }\n'
            'layer { name: "b" type: "BatchNorm" batch_norm_param { scale_bias: true '
            'scale_filler { type: "constant" value: 1 } } forward_type: FLOAT16 }\n'
            'layer { name: "r" roi_pooling_param { pooled_h: 7 } embed_param { num_output: 2 '
            'weight_filler { type: "xavier" } } bn_param { frob: 1 } }\n'
            'layer { name: "s" prior_box_param { min_size: 30 } shuffle_channel_param { group: 3 } '
            'convolution_param { num_output: 8 weight_filler { type: "msra" } } }\n'
            'layer: [{ name: "l" upsample_param { scale: 2 } }, { tile_param { tiles: 2 } }]\n'
            'layers { name: "v1" type: CONVOLUTION convolution_param { num_output: 4 } '
            'param: "w" blobs_lr: 1 }\n')
    tree = parse(text)
    for kind in ("NetParameter", "SolverParameter"):
        descriptors = [d.schema().descriptor(kind) for d in FORKS + (PORTABLE,)]
        each = unknown_fields_each(tree, descriptors)
        assert each == [unknown_fields(tree, d) for d in descriptors]
        if kind == "NetParameter":    # forks differ: some fields known to some only
            assert len({tuple(found) for found in each}) == len(descriptors)


def test_no_fork_fields_is_portable_and_unknown_fields_stay_unknown():
    d = _detect('layer { name: "c" type: "Convolution" convolution_param { num_output: 2 } }')
    assert d.dialect is PORTABLE and not d.detected and not d.unknown
    d = _detect('layer { name: "c" frobnicate_param { x: 1 } }')
    assert d.dialect is PORTABLE and not d.detected
    assert d.unknown == (("layer.frobnicate_param", 18),)


def test_mixed_forks_combine_the_one_knowing_most_first():
    d = _detect('layer { roi_pooling_param { pooled_h: 7 } }\n'
                'layer { smooth_l1_loss_param { sigma: 3 } }\n'
                'layer { pooling_param { ceil_mode: false } }')
    assert d.dialect.name == "frcnn+ceil" and d.dialect.parts == ("frcnn", "ceil")
    assert not d.unknown and len(d.evidence) == 3 and d.strong
    assert d.dialect.pooling == "ceil_mode"
    assert {"ROIPooling", "ConvolutionDepthwise"} <= d.dialect.layer_types
    # the combined schema has both forks' fields; ceil_mode takes round_mode's number
    pooling = d.dialect.schema().descriptor("PoolingParameter").fields_by_name
    assert pooling["ceil_mode"].number == 13 and "round_mode" not in pooling
    assert "roi_pooling_param" in d.dialect.schema().descriptor("LayerParameter").fields_by_name
    doc = parse_text(SourceFile("n", 'layer { roi_pooling_param { pooled_h: 7 } }\n'
                                     'layer { pooling_param { ceil_mode: false } }'))
    assert doc.dialect is get_dialect("frcnn+ceil") and not doc.problems
    assert doc.message.layer[1].pooling_param.ceil_mode is False
    assert doc.message.layer[0].roi_pooling_param.pooled_h == 7


@pytest.mark.parametrize("text, name, strong", [
    # one incidental field: weak (GoogLeNet-BN's data_param.shuffle, BVLC's first
    # BatchNorm example's bn_param in a BatchNorm layer)
    ('layer { type: "Data" data_param { shuffle: true } }', "nvcaffe", False),
    ('layer { type: "BatchNorm" bn_param { scale_filler { value: 1 } } }', "segnet", False),
    ('layer { type: "Data" transform_param { resize_param { height: 300 } } }', "ssd", False),
    # a layer type of the fork, several of its fields, or a field that changes what
    # a BVLC layer computes: strong
    ('layer { type: "BN" bn_param { bn_mode: INFERENCE } }', "segnet", True),
    ('layer { type: "Data" transform_param { resize_param { height: 300 } '
     'emit_constraint { emit_type: CENTER } } }', "ssd", True),
    ('layer { type: "Pooling" pooling_param { ceil_mode: false } }', "ceil", True),
    ('layer { type: "BatchNorm" batch_norm_param { scale_bias: true } }', "nvcaffe", True),
    ('layer { type: "ShuffleChannel" shuffle_channel_param { group: 3 } }', "shufflenet",
     True),
])
def test_detection_weighs_its_evidence(text, name, strong):
    d = _detect(text)
    assert (d.dialect.name, d.strong) == (name, strong)


def test_parse_text_records_the_dialect():
    src = SourceFile("n", 'layer { name: "p" pooling_param { ceil_mode: false } }')
    doc = parse_text(src)
    assert doc.dialect.name == "ceil" and doc.detection.detected and not doc.problems
    assert doc.message.layer[0].pooling_param.ceil_mode is False
    forced = parse_text(src, dialect="bvlc")
    assert forced.detection is None and forced.dialect.name == "bvlc"
    assert [p.field for p in forced.problems] == ["ceil_mode"]


# --- (d) the corpus: every net BVLC's schema rejects ------------------------------------

# (glob, dialect, fields left unknown (E002) because no bundled dialect knows them with
# the others). soeaver's Faster R-CNN nets mix a ceil-mode fork with ROI pooling.
CORPUS_TABLE = [
    ("DenseNet-Caffe/DenseNet_*.prototxt", "ceil", []),
    ("caffe-model/cls__*.prototxt", "ceil", []),
    ("MobileNet-SSD/*", "ssd", []),
    ("opencv_extra/ssd_vgg16.prototxt", "ssd", []),
    ("SegNet-Tutorial/*", "segnet", []),
    # BVLC's own first BatchNorm example (Oct 2015) used a bn_param with
    # scale_filler / shift_filler that never shipped; SegNet's BNParameter has both
    ("caffe/cifar10__cifar10_full_sigmoid_train_test_bn@2f05b03_v2015-10-20.prototxt",
     "segnet", []),
    ("ShuffleNet/*", "shufflenet", []),
    ("caffe-model/det__faster_rcnn__*mobilenet*", "frcnn", []),
    ("caffe-model/det__faster_rcnn__*resnet18*", "frcnn+ceil", []),
]


def _corpus_rejected():
    out = []
    for path in corpus_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        bvlc = parse_text(SourceFile(str(path), text), dialect="bvlc")
        if any(p.kind == UNKNOWN_FIELD for p in bvlc.problems):
            out.append((path, text))
    return out


@needs_shared
def test_corpus_forks_parse_in_their_dialect(capsys):
    rejected = _corpus_rejected()
    table = []
    for path, text in rejected:
        doc = parse_text(SourceFile(str(path), text))
        left = sorted({p.path for p in doc.problems if p.kind == UNKNOWN_FIELD})
        table.append((corpus_id(path), doc.dialect.name, left))
    with capsys.disabled():
        print(f"\n{len(table)} corpus files BVLC's schema rejects:")
        for rel, name, left in table:
            print(f"  {name:10} {rel}" + (f"  E002: {', '.join(left)}" if left else ""))
    for rel, name, left in table:
        rows = [(d, u) for pattern, d, u in CORPUS_TABLE if fnmatch(rel, pattern)]
        assert len(rows) == 1, f"{rel}: {len(rows)} table rows match"
        assert (name, left) == rows[0], rel
    assert len(table) == 38 and len(table) / len(corpus_files()) > 0.25


@needs_shared
def test_d001_exactly_when_a_fork_is_detected():
    config = LintConfig(select=("D001", "E002"))
    for path in corpus_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        source = SourceFile(str(path), text)
        detected = parse_text(source).detection.detected
        codes = [d.code for d in lint_source(source, config).diagnostics]
        assert codes.count("D001") == int(detected), corpus_id(path)
        d001 = [d for d in lint_source(source, config).diagnostics if d.code == "D001"]
        if d001:
            assert d001[0].severity == Severity.INFO


@needs_shared
def test_forcing_bvlc_gives_e002_as_before(run_cli):
    net = CORPUS / "MobileNet-SSD" / "deploy.prototxt"
    code, out, _ = run_cli("check", "--dialect", "bvlc", "--select", "E002,D001,N008",
                           "--format", "json", str(net))
    rows = json.loads(out)["findings"]
    assert code == 1 and {r["code"] for r in rows} == {"E002", "N008"}
    assert any("the SSD fork" in r["message"] for r in rows if r["code"] == "E002")
    code, out, _ = run_cli("check", "--select", "E002,D001,N008", "--format", "json", str(net))
    rows = json.loads(out)["findings"]
    assert code == 0 and [r["code"] for r in rows] == ["D001"]
    assert "'ssd' dialect" in rows[0]["message"] and rows[0]["severity"] == "info"


# --- (e) conversion in the net's dialect ------------------------------------------------

@needs_shared
@pytest.mark.parametrize("rel, name", [("MobileNet-SSD/deploy.prototxt", "ssd"),
                                       ("DenseNet-Caffe/DenseNet_121.prototxt", "ceil"),
                                       ("SegNet-Tutorial/Models__segnet_train.prototxt",
                                        "segnet")])
def test_fork_net_converts_to_binary_and_back(rel, name, tmp_path, run_cli):
    src = CORPUS / rel
    out = tmp_path / "net.pb"
    code, _, err = run_cli("convert", str(src), "-o", str(out))
    assert code == 0, err
    assert f"read as the '{name}' dialect" in err
    expected = parse_text(SourceFile(str(src), src.read_text())).message
    decoded = parse_binary(out.read_bytes(), str(out), dialect=name).message
    assert decoded == expected
    code, text, err = run_cli("convert", str(out), "--dialect", name)
    assert code == 0, err
    again = get_dialect(name).schema().message_class("NetParameter")()
    text_format.Parse(text, again)
    assert again == expected
    # read in BVLC's schema, the fork's fields cannot be shown: a note says so, except
    # for ceil_mode, which BVLC decodes as round_mode (see the trap below)
    code, text, err = run_cli("convert", str(out))
    assert code == 0 and ("unknown to BVLC's schema" in err) == (name != "ceil")


def test_ceil_mode_round_mode_trap(tmp_path, run_cli):
    """`ceil_mode: false` (floor) is 0 at field 13, which BVLC reads as round_mode CEIL.

    The same bytes mean opposite roundings in the two dialects: a ceil-mode fork's
    binary net or .caffemodel read in BVLC's schema silently rounds up, which is
    why binary files are read in the dialect the user names.
    """
    f = tmp_path / "pool.prototxt"
    f.write_text('layer { name: "p" type: "Pooling" bottom: "x" top: "y"\n'
                 '  pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false } }\n')
    out = tmp_path / "pool.pb"
    assert run_cli("convert", str(f), "-o", str(out))[0] == 0
    data = out.read_bytes()
    pooling = parse_binary(data, str(out), dialect="ceil").message.layer[0].pooling_param
    raw = pooling.SerializeToString()
    assert b"\x68\x00" in raw                 # tag (13 << 3 | varint) = 0x68, value 0
    assert pooling.ceil_mode is False         # ceil dialect: floor rounding
    bvlc = parse_binary(data, str(out)).message.layer[0].pooling_param
    assert bvlc.HasField("round_mode")
    assert bvlc.round_mode == bvlc.CEIL       # BVLC: the opposite
    assert pooling.ceil_mode is not (bvlc.round_mode == bvlc.CEIL)


# --- (f) --proto: a user's own schema ---------------------------------------------------

# A fork's schema as users have it: BVLC's caffe.proto with one more layer.
USER_PROTO = (REPO / "proto" / "caffe.proto").read_text().replace(
    "  optional WindowDataParameter window_data_param = 129;\n}",
    "  optional WindowDataParameter window_data_param = 129;\n"
    "  optional WarpParameter warp_param = 5000;\n}\n"
    "message WarpParameter {\n  optional int32 strength = 1 [default = 2];\n}")
WARP_NET = 'name: "w"\nlayer { name: "w" type: "Warp" warp_param { strength: 5 } }\n'


@needs_protoc
def test_user_proto_check_and_convert(tmp_path, run_cli):
    proto = tmp_path / "my_caffe.proto"
    proto.write_text(USER_PROTO)
    net = tmp_path / "warp.prototxt"
    net.write_text(WARP_NET)
    code, out, _ = run_cli("check", "--select", "E002", "--format", "concise", str(net))
    assert code == 1 and "E002" in out
    code, out, err = run_cli("check", "--select", "E002", "--format", "concise",
                             "--proto", str(proto), str(net))
    assert code == 0 and out.strip() == "", err
    pb = tmp_path / "warp.pb"
    assert run_cli("convert", str(net), "--proto", str(proto), "-o", str(pb))[0] == 0
    code, text, _ = run_cli("convert", str(pb), "--proto", str(proto))
    assert code == 0 and "strength: 5" in text
    dialect = load_user_proto(str(proto))
    assert dialect.name == str(proto) and dialect.bn_stats_masked is None
    assert dialect.schema().descriptor("LayerParameter").fields_by_name["warp_param"].number \
        == 5000


@needs_protoc
def test_user_proto_errors(tmp_path, run_cli):
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto2";\nmessage NetParameter { optional strin name = 1; }\n')
    net = tmp_path / "n.prototxt"
    net.write_text('name: "n"\n')
    code, _, err = run_cli("check", "--proto", str(bad), str(net))
    assert code == 2 and str(bad) in err and "protoc could not compile" in err
    assert "strin" in err
    notcaffe = tmp_path / "other.proto"
    notcaffe.write_text('syntax = "proto2";\nmessage Foo { optional int32 x = 1; }\n')
    code, _, err = run_cli("check", "--proto", str(notcaffe), str(net))
    assert code == 2 and "no NetParameter message" in err
    partial = tmp_path / "partial.proto"
    partial.write_text('syntax = "proto2";\npackage caffe;\n'
                       'message NetParameter { optional string name = 1; }\n')
    code, _, err = run_cli("check", "--proto", str(partial), str(net))
    assert code == 2 and "lacks fields every Caffe has (NetParameter.input" in err
    code, _, err = run_cli("check", "--proto", str(bad), "--dialect", "ssd", str(net))
    assert code == 2 and "mutually exclusive" in err
    code, _, err = run_cli("check", "--proto", str(tmp_path / "nope.proto"), str(net))
    assert code == 2 and "no such .proto file" in err


def test_user_proto_without_grpc_tools(tmp_path, monkeypatch):
    proto = tmp_path / "needs_protoc.proto"
    proto.write_text(USER_PROTO)
    monkeypatch.setitem(sys.modules, "grpc_tools", None)
    with pytest.raises(BnlintError, match=r"pip install 'bnlint\[proto\]'"):
        load_user_proto(str(proto))


# --- (g) configuration and the rules that follow the dialect ----------------------------

TRAIN_BN = """layer { name: "data" type: "DummyData" top: "data" top: "label"
        dummy_data_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "conv1" bottom: "label" top: "loss" }
"""


@pytest.mark.parametrize("dialect, severity", [
    ("bvlc", None), ("nvcaffe", None), ("legacy", Severity.ERROR), ("ssd", Severity.ERROR),
    ("portable", Severity.WARNING), ("auto", Severity.WARNING), ("ceil", Severity.WARNING),
    ("frcnn", Severity.WARNING)])
def test_bn001_follows_the_dialect(dialect, severity):
    result = lint_source(SourceFile("t.prototxt", TRAIN_BN),
                         LintConfig(select=("BN001",), dialect=dialect))
    got = [d.severity for d in result.diagnostics]
    assert got == ([severity] if severity else [])


def test_config_dialect_ssd(tmp_path, run_cli):
    (tmp_path / "pyproject.toml").write_text('[tool.bnlint]\ndialect = "ssd"\n')
    net = tmp_path / "train.prototxt"
    net.write_text(TRAIN_BN)
    code, out, _ = run_cli("check", "--select", "BN001,D001", "--format", "json", str(net))
    rows = json.loads(out)["findings"]
    assert code == 1 and [(r["code"], r["severity"]) for r in rows] == [("BN001", "error")]
    code, out, _ = run_cli("check", "--dialect", "bvlc", "--select", "BN001", str(net))
    assert code == 0


def test_config_choices(tmp_path):
    assert config_from_table({}, str(tmp_path / "x.toml")).dialect == "auto"
    cfg = config_from_table({"proto": "schemas/caffe.proto"}, str(tmp_path / "pyproject.toml"))
    assert cfg.proto == str(tmp_path.resolve() / "schemas" / "caffe.proto")
    assert cfg.merged(dialect="ssd").proto is None     # the command line wins
    with pytest.raises(BnlintError, match="not both"):
        config_from_table({"proto": "a.proto", "dialect": "ssd"}, "x.toml")
    with pytest.raises(BnlintError, match="unknown dialect 'bvcl'"):
        config_from_table({"dialect": "bvcl"}, "x.toml")


SEGNET_NET = """layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "bn" type: "BN" bottom: "data" top: "bn" bn_param { bn_mode: INFERENCE } }
layer { name: "up" type: "Upsample" bottom: "bn" top: "up" upsample_param { scale: 2 } }
"""


def test_n008_knows_the_dialects_layer_types():
    def codes(dialect):
        result = lint_source(SourceFile("s.prototxt", SEGNET_NET),
                             LintConfig(select=("N008", "E002", "D001"), dialect=dialect))
        return sorted(d.code for d in result.diagnostics)

    assert codes("auto") == ["D001"]
    assert codes("segnet") == []
    assert codes("portable") == ["E002", "E002", "N008", "N008"]


# --- combined dialects: one field number, two meanings ----------------------------------

COMBINED_NET = ('layer { name: "p" type: "Pooling" bottom: "d" top: "p"\n'
                '  pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false } }\n'
                'layer { name: "p2" type: "Pooling" bottom: "p" top: "p2"\n'
                '  pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: true } }\n'
                'layer { name: "r" type: "ROIPooling" bottom: "p2" bottom: "rois" top: "r"\n'
                '  roi_pooling_param { pooled_h: 2 pooled_w: 2 } }\n')


@pytest.mark.parametrize("names", [("frcnn", "ceil"), ("ceil", "frcnn")])
def test_a_fork_field_wins_its_number_over_bvlcs_in_either_order(names):
    from bnlint.caffe.combine import FORK_OVER_BVLC
    from bnlint.caffe.dialects import combine, field_conflicts

    dialect = combine(names)
    pooling = dialect.schema().descriptor("PoolingParameter").fields_by_name
    assert pooling["ceil_mode"].number == 13 and "round_mode" not in pooling
    conflict = next(c for c in field_conflicts(dialect) if c.message == "PoolingParameter")
    assert (conflict.number, conflict.kept, conflict.dropped, conflict.reason) == \
        (13, "ceil_mode", "round_mode", FORK_OVER_BVLC)
    assert dialect.parts[conflict.kept_by] == "ceil"
    assert dialect.parts[conflict.dropped_by] == "frcnn"


def test_two_forks_own_fields_at_one_number_go_to_the_first_named():
    from bnlint.caffe.combine import FIRST_FORK
    from bnlint.caffe.dialects import combine, field_conflicts

    # LossParameter 4: SegNet's class_weighting, R-FCN's pre_fixed_normalizer
    for names, kept in ((("segnet", "frcnn"), "class_weighting"),
                        (("frcnn", "segnet"), "pre_fixed_normalizer")):
        conflict = next(c for c in field_conflicts(combine(names))
                        if (c.message, c.number) == ("LossParameter", 4))
        assert (conflict.kept, conflict.reason) == (kept, FIRST_FORK)


def test_a_combined_net_names_both_dialects_and_the_meaning_chosen():
    """Two ceil_mode fields and one ROI pooling field: ceil knows more of the net and
    comes first (ceil+frcnn); ceil_mode still keeps number 13 (it used to lose it to
    frcnn's round_mode, leaving both ceil_mode fields unknown)."""
    result = lint_source(SourceFile("n.prototxt", COMBINED_NET),
                         LintConfig(select=("D001", "D002", "E002")))
    by_code = {d.code: d for d in result.diagnostics}
    assert sorted(by_code) == ["D001", "D002"]
    d001, d002 = by_code["D001"], by_code["D002"]
    assert d001.extra["dialect"] == "ceil+frcnn"
    assert "'ceil+frcnn'" in d001.message
    assert known.CEIL in d001.message and known.FRCNN in d001.message
    assert (d002.extra["message_type"], d002.extra["number"], d002.extra["kept"],
            d002.extra["dropped"], d002.extra["reason"]) == \
        ("PoolingParameter", 13, "ceil_mode", "round_mode", "fork-field-over-bvlc")
    assert d002.start == COMBINED_NET.index("ceil_mode")      # the first site only


def test_no_conflict_finding_for_a_single_dialect_or_unused_fields():
    ceil_only = COMBINED_NET.split('layer { name: "r"')[0]
    result = lint_source(SourceFile("n.prototxt", ceil_only), LintConfig(select=("D002",)))
    assert not result.diagnostics
    # frcnn+ceil with no field of a conflicting number written: nothing to say
    roi_only = ('layer { name: "r" type: "ROIPooling" roi_pooling_param { pooled_h: 2 } }\n'
                'layer { name: "p" type: "Pooling" pooling_param { pool: MAX kernel_size: 2 '
                '} }\n')
    result = lint_source(SourceFile("n.prototxt", roi_only),
                         LintConfig(select=("D002",), dialect="frcnn+ceil"))
    assert not result.diagnostics


# --- combinations wherever a dialect is named -------------------------------------------

@pytest.mark.parametrize("name", ["frcnn+ceil", "ceil+frcnn", "shufflenet+frcnn+ceil",
                                  "ssd+ceil"])
def test_non_clashing_combinations_are_accepted(name, tmp_path):
    from bnlint.caffe.dialects import check_dialect_name

    assert check_dialect_name(name) == name
    assert get_dialect(name).parts == tuple(name.split("+"))
    assert config_from_table({"dialect": name}, str(tmp_path / "pyproject.toml")).dialect \
        == name


@pytest.mark.parametrize("name,message", [
    ("frcn+ceil", r"unknown dialect 'frcn' in 'frcn\+ceil'; did you mean 'frcnn\+ceil'\?"),
    ("frcnn+ceill", r"unknown dialect 'ceill' in 'frcnn\+ceill'; did you mean 'frcnn\+ceil'"),
    ("bvcl", r"unknown dialect 'bvcl'; did you mean 'bvlc'\?"),
    ("bvlc+ceil", r"'bvlc' in 'bvlc\+ceil' is BVLC's schema"),
    ("ceil+ceil", r"names a fork twice; did you mean 'ceil'\?"),
    ("frcnn+", r"unknown dialect 'frcnn\+'; did you mean 'frcnn'\?"),
    # R-FCN's pre_fixed_normalizer and SegNet's class_weighting are both LossParameter 4
    ("segnet+frcnn", r"segnet and frcnn give field 4 of LossParameter two meanings .* "
                     r"the nearest: 'segnet'"),
    ("frcnn+segnet+ceil", r"the nearest: 'frcnn\+ceil'"),
])
def test_unknown_or_clashing_combinations_are_refused_naming_the_nearest(name, message):
    from bnlint.caffe.dialects import check_dialect_name

    with pytest.raises(BnlintError, match=message):
        check_dialect_name(name)
    with pytest.raises(BnlintError, match=message):
        config_from_table({"dialect": name}, "pyproject.toml")


def test_the_cli_takes_a_combination_and_refuses_a_clash(tmp_path, run_cli):
    net = tmp_path / "n.prototxt"
    net.write_text(COMBINED_NET)
    code, out, err = run_cli("check", "--dialect", "frcnn+ceil", "--select", "D002,E002",
                             "--format", "json", str(net))
    rows = json.loads(out)["findings"]
    assert code == 0 and [r["code"] for r in rows] == ["D002"], err
    code, _, err = run_cli("check", "--dialect", "segnet+frcnn", str(net))
    assert code == 2 and "the nearest: 'segnet'" in err and "Traceback" not in err
    (tmp_path / "pyproject.toml").write_text('[tool.bnlint]\ndialect = "frcnn+ceill"\n')
    code, _, err = run_cli("check", str(net))
    assert code == 2 and "did you mean 'frcnn+ceil'?" in err
