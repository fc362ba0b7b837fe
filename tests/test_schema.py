"""The bundled Caffe schema: generated module in sync, BVLC facts bnlint relies on, real files.

Field numbers and types are what make bnlint read real .caffemodel files; a wrong one
decodes weights into the wrong field without any error, so the facts are pinned here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor

from bnlint.caffe.schema import Schema, default_schema

REPO = Path(__file__).resolve().parents[1]
PROTO = REPO / "proto" / "caffe.proto"
GENERATED = REPO / "src" / "bnlint" / "caffe" / "caffe_pb2.py"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

OPTIONAL, REPEATED, REQUIRED = "optional", "repeated", "required"
FD = FieldDescriptor
I32, U32, I64 = FD.TYPE_INT32, FD.TYPE_UINT32, FD.TYPE_INT64
FLOAT, DOUBLE = FD.TYPE_FLOAT, FD.TYPE_DOUBLE
BOOL, ENUM, MSG = FD.TYPE_BOOL, FD.TYPE_ENUM, FD.TYPE_MESSAGE


def label(f: FieldDescriptor) -> str:
    """proto2 label (protobuf 7 dropped FieldDescriptor.label)."""
    return REPEATED if f.is_repeated else REQUIRED if f.is_required else OPTIONAL


@pytest.fixture(scope="module")
def schema() -> Schema:
    return default_schema()


def field(schema: Schema, message: str, name: str) -> FieldDescriptor:
    return schema.descriptor(message).fields_by_name[name]


# --- (a) the committed module is what protoc makes of the committed .proto -------------

def test_generated_module_matches_proto(tmp_path):
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpc_tools is not installed (pip install grpcio-tools==1.85.1), "
                    "so caffe_pb2.py cannot be regenerated to compare")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iproto",
                    f"--python_out={tmp_path}", "proto/caffe.proto"],
                   cwd=REPO, check=True, capture_output=True, text=True)
    fresh = (tmp_path / "caffe_pb2.py").read_bytes()
    version = importlib.metadata.version("grpcio-tools")
    assert fresh == GENERATED.read_bytes(), (
        f"src/bnlint/caffe/caffe_pb2.py is stale or was made by another protoc (this is "
        f"grpcio-tools {version}; pyproject pins 1.85.1). Regenerate from the repo root: "
        f"python -m grpc_tools.protoc -Iproto --python_out=src/bnlint/caffe proto/caffe.proto")


# --- (b) BVLC facts ------------------------------------------------------------------------

def test_file_identity(schema):
    assert schema.file.name == "caffe.proto"
    assert schema.package == "caffe"
    assert PROTO.read_text().count('syntax = "proto2";') == 1


def test_batch_norm(schema):
    eps = field(schema, "BatchNormParameter", "eps")
    assert (eps.number, eps.type) == (3, FLOAT)
    assert eps.default_value == pytest.approx(1e-5, rel=1e-6)
    maf = field(schema, "BatchNormParameter", "moving_average_fraction")
    assert maf.number == 2
    assert maf.default_value == pytest.approx(0.999, rel=1e-6)
    ugs = field(schema, "BatchNormParameter", "use_global_stats")
    # No default on purpose: Caffe treats "unset" as "TEST phase decides".
    assert (ugs.number, ugs.type, ugs.has_default_value) == (1, BOOL, False)
    msg = schema.message_class("BatchNormParameter")()
    assert not msg.HasField("use_global_stats")


def test_layer_parameter_numbers(schema):
    expect = {"name": 1, "type": 2, "bottom": 3, "top": 4, "loss_weight": 5, "param": 6,
              "blobs": 7, "include": 8, "exclude": 9, "phase": 10, "propagate_down": 11,
              "transform_param": 100, "loss_param": 101, "convolution_param": 106,
              "pooling_param": 121, "batch_norm_param": 139, "bias_param": 141,
              "scale_param": 142, "input_param": 143, "swish_param": 147, "clip_param": 148}
    got = {n: field(schema, "LayerParameter", n).number for n in expect}
    assert got == expect
    bn = field(schema, "LayerParameter", "batch_norm_param")
    assert bn.message_type.full_name == "caffe.BatchNormParameter"
    params = [f for f in schema.descriptor("LayerParameter").fields if f.name.endswith("_param")]
    assert len(params) == 49
    assert all(label(f) == OPTIONAL and f.message_type.name.endswith("Parameter") for f in params)


def test_clip_and_swish(schema):
    # The two newest BVLC layers (2018-2019); Clip's bounds are proto2 `required`.
    assert [(f.name, f.number, label(f)) for f in schema.descriptor("ClipParameter").fields] == [
        ("min", 1, REQUIRED), ("max", 2, REQUIRED)]
    beta = field(schema, "SwishParameter", "beta")
    assert (beta.number, beta.default_value) == (1, 1.0)


def test_pooling_round_mode(schema):
    rm = field(schema, "PoolingParameter", "round_mode")
    assert rm.number == 13
    assert rm.enum_type.full_name == "caffe.PoolingParameter.RoundMode"
    assert {v.name: v.number for v in rm.enum_type.values} == {"CEIL": 0, "FLOOR": 1}
    assert rm.default_value == 0                      # CEIL: Caffe rounds output size up
    assert "ceil_mode" not in schema.descriptor("PoolingParameter").fields_by_name  # forks'
    methods = field(schema, "PoolingParameter", "pool").enum_type.values
    assert {v.name: v.number for v in methods} == {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}
    assert field(schema, "PoolingParameter", "global_pooling").number == 12


def test_scale_parameter(schema):
    got = {f.name: (f.number, f.default_value if f.has_default_value else None)
           for f in schema.descriptor("ScaleParameter").fields}
    assert got == {"axis": (1, 1), "num_axes": (2, 1), "filler": (3, None),
                   "bias_term": (4, False), "bias_filler": (5, None)}


def test_net_parameter_numbers(schema):
    got = {f.name: (f.number, label(f)) for f in schema.descriptor("NetParameter").fields}
    assert got == {"name": (1, OPTIONAL), "layers": (2, REPEATED), "input": (3, REPEATED),
                   "input_dim": (4, REPEATED), "force_backward": (5, OPTIONAL),
                   "state": (6, OPTIONAL), "debug_info": (7, OPTIONAL),
                   "input_shape": (8, REPEATED), "layer": (100, REPEATED)}
    assert field(schema, "NetParameter", "layers").message_type.name == "V1LayerParameter"


def test_convolution_parameter(schema):
    expect = {"num_output": (1, OPTIONAL, U32), "bias_term": (2, OPTIONAL, BOOL),
              "pad": (3, REPEATED, U32), "kernel_size": (4, REPEATED, U32),
              "group": (5, OPTIONAL, U32), "stride": (6, REPEATED, U32),
              "weight_filler": (7, OPTIONAL, MSG), "bias_filler": (8, OPTIONAL, MSG),
              "pad_h": (9, OPTIONAL, U32), "pad_w": (10, OPTIONAL, U32),
              "kernel_h": (11, OPTIONAL, U32), "kernel_w": (12, OPTIONAL, U32),
              "stride_h": (13, OPTIONAL, U32), "stride_w": (14, OPTIONAL, U32),
              "engine": (15, OPTIONAL, ENUM), "axis": (16, OPTIONAL, I32),
              "force_nd_im2col": (17, OPTIONAL, BOOL), "dilation": (18, REPEATED, U32)}
    conv = schema.descriptor("ConvolutionParameter")
    got = {f.name: (f.number, label(f), f.type) for f in conv.fields}
    assert got == expect
    assert field(schema, "ConvolutionParameter", "bias_term").default_value is True
    assert field(schema, "ConvolutionParameter", "group").default_value == 1


def test_blob_proto_wire_format(schema):
    # .caffemodel weights: packed repeated floats, legacy 4-D dims as int32.
    data = field(schema, "BlobProto", "data")
    assert (data.number, data.type, label(data)) == (5, FLOAT, REPEATED)
    assert data.GetOptions().packed
    dim = field(schema, "BlobShape", "dim")
    assert (dim.type, dim.GetOptions().packed) == (I64, True)
    blob = schema.descriptor("BlobProto").fields_by_name
    legacy = {n: (blob[n].number, blob[n].type)
              for n in ("num", "channels", "height", "width", "shape", "double_data")}
    assert legacy == {"num": (1, I32), "channels": (2, I32), "height": (3, I32),
                      "width": (4, I32), "shape": (7, MSG), "double_data": (8, DOUBLE)}


def test_v1_layer_type_enum(schema):
    layer_type = schema.enum_descriptor("V1LayerParameter.LayerType")
    values = {v.name: v.number for v in layer_type.values}
    assert len(values) == 40
    assert {k: values[k] for k in ("NONE", "ACCURACY", "CONVOLUTION", "DATA", "DROPOUT",
                                   "INNER_PRODUCT", "LRN", "POOLING", "RELU", "SOFTMAX",
                                   "SOFTMAX_LOSS", "SPLIT", "DECONVOLUTION", "SILENCE", "EXP")} == {
        "NONE": 0, "ACCURACY": 1, "CONVOLUTION": 4, "DATA": 5, "DROPOUT": 6, "INNER_PRODUCT": 14,
        "LRN": 15, "POOLING": 17, "RELU": 18, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22,
        "DECONVOLUTION": 39, "SILENCE": 36, "EXP": 38}
    # V1 has no BatchNorm / Scale: those nets are always in the new `layer` format.
    assert "BATCH_NORM" not in values and "SCALE" not in values
    v1 = schema.descriptor("V1LayerParameter").fields_by_name
    assert (v1["layer"].number, v1["layer"].message_type.name) == (1, "V0LayerParameter")
    numbers = (v1["blobs_lr"].number, v1["param"].number, v1["blob_share_mode"].number)
    assert numbers == (7, 1001, 1002)


def test_solver_parameter(schema):
    solver = schema.descriptor("SolverParameter")
    enums = {e.name: {v.name: v.number for v in e.values} for e in solver.enum_types}
    assert enums == {"SnapshotFormat": {"HDF5": 0, "BINARYPROTO": 1},
                     "SolverMode": {"CPU": 0, "GPU": 1},
                     "SolverType": {"SGD": 0, "NESTEROV": 1, "ADAGRAD": 2, "RMSPROP": 3,
                                    "ADADELTA": 4, "ADAM": 5}}
    nums = {f.name: f.number for f in solver.fields}
    assert {k: nums[k] for k in ("train_net", "test_net", "base_lr", "net", "type",
                                 "layer_wise_reduce", "weights")} == {
        "train_net": 1, "test_net": 2, "base_lr": 5, "net": 24, "type": 40,
        "layer_wise_reduce": 41, "weights": 42}
    assert "eval_type" not in nums  # SSD's number 41 clashes with BVLC's layer_wise_reduce


def test_schema_fingerprint(schema):
    """Every name, number, type, label, default and enum value, hashed.

    BVLC's schema is frozen, so this only changes by mistake. If you changed
    proto/caffe.proto on purpose, re-verify it field by field against BVLC Caffe
    master (9b89154) before updating the numbers here.
    """
    lines, n_fields, n_values = [], 0, 0
    for mname in sorted(schema.message_names()):
        d = schema.descriptor(mname)
        for f in sorted(d.fields, key=lambda f: f.number):
            n_fields += 1
            typed = f.message_type or f.enum_type
            target = typed.full_name if typed else ""
            default = repr(f.default_value) if f.has_default_value else "-"
            lines.append(f"{mname}.{f.name}={f.number} {f.type} {label(f)} {target} {default} "
                         f"{int(f.GetOptions().packed)}")
    enums = [e for m in schema.message_names() for e in schema.descriptor(m).enum_types]
    enums += list(schema.file.enum_types_by_name.values())
    for e in sorted(enums, key=lambda e: e.full_name):
        for v in e.values:
            n_values += 1
            lines.append(f"{e.full_name}.{v.name}={v.number}")
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert (len(schema.message_names()), n_fields, len(enums), n_values) == (63, 423, 26, 111)
    assert digest == FINGERPRINT


FINGERPRINT = "1c164759491f0d9fb7598b7d910f5bf9329a249f40909f92ccd6fe58a5c93225"


# --- (c) real nets: nothing BVLC-valid is rejected ---------------------------------------

# A file is a solver when a top-level (unindented) line sets a solver-only field.
SOLVER_LINE = re.compile(r"^(base_lr|lr_policy|max_iter|test_iter|net|train_net|test_net|net_param|"
                         r"train_net_param|solver_type|solver_mode|snapshot_prefix)\s*[:{]", re.M)
UNKNOWN = re.compile(r'(?:Message type "[\w.]+" has no field named "(\w+)"'
                     r'|Enum type "[\w.]+" has no value named (\w+))')
# Fork-only names the corpus is known to use (none is in BVLC's schema). A failure on
# any other unknown name may be a BVLC field missing from ours: check it against
# BVLC before adding it here.
FORK_NAMES = {"bn_param", "ceil_mode", "dense_image_data_param", "eval_type", "norm_param",
              "permute_param", "resize_param", "roi_pooling_param", "shuffle_channel_param",
              "smooth_l1_loss_param"}


def test_corpus_parses():
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS} (../shared beside the repo)")
    schema = default_schema()
    files = sorted(CORPUS.rglob("*.prototxt"))
    parsed, forks, other, solvers = [], {}, {}, 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        kind = "SolverParameter" if SOLVER_LINE.search(text) else "NetParameter"
        solvers += kind == "SolverParameter"
        try:
            text_format.Parse(text, schema.message_class(kind)())
            parsed.append(path)
        except text_format.ParseError as err:
            unknown = UNKNOWN.search(str(err))
            name = unknown and (unknown.group(1) or unknown.group(2))
            bucket = forks if name in FORK_NAMES else other
            bucket[str(path.relative_to(CORPUS))] = f"[{kind}] {err}"
    assert not other, ("rejected for something other than a known fork field or enum "
                       "(text_format stops at the first problem):\n"
                       + "\n".join(f"{k}: {v}" for k, v in other.items()))
    assert files and solvers and len(parsed) > len(forks), (len(parsed), solvers, forks)


def test_a_descriptor_set_is_split_into_its_files_as_protobuf_reads_it():
    """The loader splits a FileDescriptorSet on the wire (no descriptor_pb2 import)."""
    from pathlib import Path

    from google.protobuf import descriptor_pb2

    from bnlint.caffe.wireformat import length_delimited

    folder = Path(__file__).resolve().parent.parent / "src" / "bnlint" / "caffe" / "dialects"
    sets = sorted(folder.glob("*.binpb"))
    assert sets
    for path in sets:
        data = path.read_bytes()
        expected = descriptor_pb2.FileDescriptorSet.FromString(data).file
        files = length_delimited(data, 1)
        assert [descriptor_pb2.FileDescriptorProto.FromString(f) for f in files] == \
            list(expected), path.name


@pytest.mark.parametrize("data", [b"\x0a\x05ab", b"\x0f", b""])
def test_a_broken_descriptor_set_is_a_value_error(data):
    from bnlint.caffe.schema import Schema

    with pytest.raises(ValueError):
        Schema.from_descriptor_set(data, "broken")
