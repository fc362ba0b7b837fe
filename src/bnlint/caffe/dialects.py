"""Caffe dialects: BVLC Caffe and the forks whose nets are still around.

A dialect is a schema (the fork's caffe.proto facts: names, numbers, types and
defaults of its fields) plus the few semantics bnlint depends on: whether
BatchNorm hides its statistics from the solver, how pooling rounds, which extra
layer types exist. The fork schemas are proto/dialects/<name>.proto, compiled
into caffe/dialects/<name>.binpb and loaded into private descriptor pools on
first use, so importing this module costs nothing.

`detect_dialect` picks a net's dialect from its fields, without converting it:
the fields BVLC's schema does not know are looked up in each fork's schema.
`load_user_proto` compiles a user's own caffe.proto (`--proto`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from bnlint.caffe import known
from bnlint.caffe.schema import Schema, default_schema
from bnlint.caffe.unknown import Found, unknown_fields, unknown_fields_each
from bnlint.errors import BnlintError

if TYPE_CHECKING:
    from bnlint.syntax.nodes import Document

AUTO = "auto"
INSTALL_HINT = "pip install 'bnlint[proto]'"

SSD_LAYER_TYPES = frozenset({
    "AnnotatedData", "DetectionEvaluate", "DetectionOutput", "MultiBoxLoss", "Normalize",
    "Permute", "PriorBox", "SmoothL1Loss", "VideoData"})


@dataclass(frozen=True)
class Dialect:
    """One Caffe: its schema and the behaviour rules and forward ops must follow.

    `bn_stats_masked`: True when the fork's BatchNorm forces `lr_mult: 0` on its
    three statistics blobs itself, False when the solver trains them unless the
    net freezes them, None when it varies between the builds the dialect covers.
    `bn_eps_floor`: True when the fork's BatchNorm raises eps below 1e-5 to 1e-5
    (cuDNN's CUDNN_BN_MIN_EPSILON; NVCaffe does it on CPU too), False when any eps
    above 0 is used as written (BVLC's BatchNorm has no cuDNN path), None when it
    varies between the builds the dialect covers.
    `pooling` names the PoolingParameter field that decides the rounding:
    "round_mode" (enum, absent = CEIL) or "ceil_mode" (bool, absent = true).
    """

    name: str
    description: str
    loader: Callable[[], Schema] = field(repr=False, compare=False)
    bn_stats_masked: bool | None = None
    bn_eps_floor: bool | None = None
    pooling: str = "round_mode"
    fork: str | None = None              # human name of the fork, None for BVLC
    layer_types: frozenset[str] = frozenset()   # layer types beyond BVLC's
    source: str = ""                     # where the schema facts come from
    #: fields that alone show a net is written for the fork (they change what a
    #: BVLC layer computes), as path suffixes: strong evidence for `detect_dialect`
    defining: tuple[str, ...] = ()
    #: the bundled forks a combined dialect is made of (empty for a single one)
    parts: tuple[str, ...] = ()

    def schema(self) -> Schema:
        """The dialect's schema (loaded once, then cached)."""
        return self.loader()

    def knows_layer_type(self, type_name: str) -> bool:
        return type_name in known.BVLC_LAYER_TYPES or type_name in self.layer_types

    def __str__(self) -> str:
        return self.name


def _bundled_bytes(name: str) -> bytes:
    """A bundled fork schema's descriptor set. Read beside this module where it is a
    file: importlib.resources costs ~7 ms of imports (tempfile, zipfile, lzma, ...),
    a third of what a fork net's first schema lookup took."""
    path = Path(__file__).parent / "dialects" / f"{name}.binpb"
    try:
        return path.read_bytes()
    except OSError:                     # a zipped install
        from importlib import resources

        return resources.files("bnlint.caffe").joinpath("dialects",
                                                        f"{name}.binpb").read_bytes()


@functools.cache
def _bundled_schema(name: str) -> Schema:
    return Schema.from_descriptor_set(_bundled_bytes(name), name, f"{name}.proto")


def _bundled(name: str) -> Callable[[], Schema]:
    return functools.partial(_bundled_schema, name)


# Fixed order: the first three share BVLC's schema; the forks follow in the
# order `detect_dialect` prefers them when several fit a net equally well: forks
# with their own layers before the ceil-mode flag (which many forks carry next to
# their layers, e.g. soeaver's Faster R-CNN nets), and SSD before NVCaffe, which
# carries SSD's layers too.
_DIALECTS = (
    Dialect("portable", "any Caffe: BVLC's schema, and the rules assume as little as "
            "possible about the Caffe that runs the net", default_schema,
            source="proto/caffe.proto (BVLC Caffe master 9b89154)"),
    Dialect("bvlc", "BVLC Caffe since rc4 (Sept 2016): BatchNorm hides its statistics "
            "from the solver", default_schema, bn_stats_masked=True, bn_eps_floor=False,
            source="proto/caffe.proto; BVLC batch_norm_layer.cpp LayerSetUp sets "
                   "lr_mult 0 on blobs 0-2"),
    Dialect("legacy", "BVLC Caffe before Sept 2016: the solver trains BatchNorm's "
            "statistics unless three `param { lr_mult: 0 }` freeze them", default_schema,
            bn_stats_masked=False, bn_eps_floor=False, source="proto/caffe.proto"),
    Dialect("ssd", "the SSD fork (weiliu89/caffe, branch ssd)", _bundled("ssd"),
            bn_stats_masked=False, bn_eps_floor=False, fork=known.SSD, layer_types=SSD_LAYER_TYPES,
            source="weiliu89/caffe ssd branch caffe.proto (PriorBoxParameter 14-17: "
                   "OpenCV dnn's opencv-caffe.proto); its BatchNorm as built by "
                   "SSD users predates BVLC's masking (weiliu89/caffe "
                   "batch_norm_layer.cpp@7a6d40f), and SSD's model_libs.py freezes the "
                   "statistics with three lr_mult 0 params"),
    Dialect("segnet", "the SegNet fork (alexgkendall/caffe-segnet): BN, Upsample, "
            "DenseImageData layers", _bundled("segnet"), fork=known.SEGNET,
            layer_types=frozenset({"BN", "Upsample", "DenseImageData"}),
            source="alexgkendall/caffe-segnet@1a2cfea caffe.proto"),
    Dialect("shufflenet", "ShuffleNet's Caffe layer (farmingyard/ShuffleNet): "
            "ShuffleChannel", _bundled("shufflenet"), fork=known.SHUFFLE,
            layer_types=frozenset({"ShuffleChannel", "ConvolutionDepthwise"}),
            source="farmingyard/ShuffleNet README.md (ShuffleChannel, and the "
                   "ConvolutionDepthwise layer its nets use)"),
    Dialect("frcnn", "py-faster-rcnn and R-FCN's Caffe: ROIPooling, SmoothL1Loss, "
            "PSROIPooling, BoxAnnotatorOHEM", _bundled("frcnn"), fork=known.FRCNN,
            layer_types=frozenset({"ROIPooling", "SmoothL1Loss", "PSROIPooling",
                                   "BoxAnnotatorOHEM", "SmoothL1LossOHEM",
                                   "SoftmaxWithLossOHEM", "ConvolutionDepthwise"}),
            source="rbgirshick/caffe-fast-rcnn and daijifeng001/caffe-rfcn@a764130 "
                   "caffe.proto"),
    Dialect("ceil", "ceil-mode pooling forks: PoolingParameter.ceil_mode (bool, default "
            "true) at BVLC's round_mode number 13", _bundled("ceil"), pooling="ceil_mode",
            fork=known.CEIL, source="BVLC/caffe PR #3057; brocolli-caffe 9.0.2 caffe.proto",
            defining=("pooling_param.ceil_mode",)),
    Dialect("nvcaffe", "NVIDIA Caffe 0.17: BatchNorm with scale and bias inside (5 blobs), "
            "FP16 storage, SSD's layers", _bundled("nvcaffe"), bn_stats_masked=True,
            bn_eps_floor=True,
            fork=known.NVCAFFE, layer_types=SSD_LAYER_TYPES,
            source="NVIDIA/caffe@6e8194f caffe.proto; its batch_norm_layer.cpp LayerSetUp "
                   "forces lr_mult 0 and decay_mult 0 on blobs 0-2",
            defining=("batch_norm_param.scale_bias", "batch_norm_param.scale_filler",
                      "batch_norm_param.bias_filler", "layer.forward_type",
                      "layer.backward_type", "layer.forward_math", "layer.backward_math")),
)
DIALECTS: dict[str, Dialect] = {d.name: d for d in _DIALECTS}
PORTABLE = DIALECTS["portable"]
FORKS = tuple(d for d in _DIALECTS if d.fork)


def dialect_names() -> tuple[str, ...]:
    """Every bundled dialect, in the registry's fixed order."""
    return tuple(DIALECTS)


def get_dialect(name: str) -> Dialect:
    """A bundled dialect by name; "frcnn+ceil" combines forks (see `combine`)."""
    check_dialect_name(name)
    if name == AUTO:
        raise BnlintError(f"{AUTO!r} is no dialect: the net decides")
    if "+" in name:
        return combine(tuple(name.split("+")))
    return DIALECTS[name]


def check_dialect_name(name: str) -> str:
    """`name` when it is "auto", a bundled dialect, or bundled forks joined with `+`
    whose own fields do not take one number (frcnn+ceil: ceil_mode over BVLC's
    round_mode is a rule, not a clash); else a BnlintError naming the nearest."""
    if name == AUTO or name in DIALECTS:
        return name
    parts = name.split("+")
    if len(parts) == 1 or not all(parts):
        raise BnlintError(f"unknown dialect {name!r}{_nearest(name, (AUTO, *DIALECTS))} "
                          f"(one of {AUTO}, {', '.join(DIALECTS)}, or forks joined with "
                          f"'+', e.g. frcnn+ceil)")
    forks = [d.name for d in FORKS]
    unknown = [part for part in parts if part not in DIALECTS]
    if unknown:
        guess = "+".join(_closest(part, forks) or part for part in parts)
        hint = f"; did you mean {guess!r}?" if guess != name and guess not in unknown else ""
        raise BnlintError(f"unknown dialect {unknown[0]!r} in {name!r}{hint} (forks that "
                          f"combine: {', '.join(forks)})")
    plain = [part for part in parts if not DIALECTS[part].fork]
    if plain:
        raise BnlintError(f"{plain[0]!r} in {name!r} is BVLC's schema, which every fork "
                          f"already extends; only forks combine ({', '.join(forks)})")
    if len(set(parts)) != len(parts):
        unique = "+".join(dict.fromkeys(parts))
        raise BnlintError(f"dialect {name!r} names a fork twice; did you mean {unique!r}?")
    from bnlint.caffe.combine import FIRST_FORK

    clashes = [c for c in field_conflicts(combine(tuple(parts))) if c.reason == FIRST_FORK]
    if clashes:
        clash = clashes[0]
        first, second = parts[clash.kept_by], parts[clash.dropped_by]
        nearest = "+".join(p for p in parts if p != second)
        raise BnlintError(
            f"dialect {name!r}: {first} and {second} give field {clash.number} of "
            f"{clash.message} two meanings of their own ('{clash.kept}' and "
            f"'{clash.dropped}'), so no one schema reads both; the nearest: {nearest!r}, "
            f"or your fork's own caffe.proto with --proto")
    return name


def _closest(name: str, choices) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return found[0] if found else None


def _nearest(name: str, choices) -> str:
    found = _closest(name, choices)
    return f"; did you mean {found!r}?" if found else ""


@functools.cache
def combine(names: tuple[str, ...]) -> Dialect:
    """One dialect for a net written for several bundled forks at once (a Faster
    R-CNN fork with ceil-mode pooling): the first fork's schema plus what only the
    others have (caffe/combine.py), their layer types together, and the BatchNorm
    semantics they agree on (unknown where they differ)."""
    if len(names) == 1:
        return DIALECTS[names[0]]
    parts = [DIALECTS[n] for n in names]

    def agreed(attr: str):
        values = {getattr(p, attr) for p in parts}
        return values.pop() if len(values) == 1 else None

    return Dialect("+".join(names), "; ".join(p.description for p in parts),
                   functools.partial(_combined_schema, names),
                   bn_stats_masked=agreed("bn_stats_masked"),
                   bn_eps_floor=agreed("bn_eps_floor"),
                   pooling="ceil_mode" if any(p.pooling == "ceil_mode" for p in parts)
                   else "round_mode",
                   fork=" and ".join(p.fork for p in parts),
                   layer_types=frozenset().union(*(p.layer_types for p in parts)),
                   source="; ".join(p.source for p in parts),
                   defining=tuple(f for p in parts for f in p.defining), parts=names)


@functools.cache
def _merged(names: tuple[str, ...]):
    from bnlint.caffe.combine import bvlc_fields, merged_descriptor_set

    return merged_descriptor_set([_bundled_bytes(n) for n in names], bvlc_fields())


@functools.cache
def _combined_schema(names: tuple[str, ...]) -> Schema:
    return Schema.from_descriptor_set(_merged(names)[0], "+".join(names), f"{names[0]}.proto")


def field_conflicts(dialect: Dialect) -> tuple:
    """The field numbers a combined dialect's forks give two meanings, and which meaning
    its schema keeps (`bnlint.caffe.combine.FieldConflict`); none for a single one."""
    return tuple(_merged(dialect.parts)[1]) if dialect.parts else ()


def resolve_dialect(choice: str | Dialect | None) -> Dialect | None:
    """A Dialect for a name, None for "auto" (the net decides)."""
    if choice is None or choice == AUTO:
        return None
    if isinstance(choice, Dialect):
        return choice
    return get_dialect(choice)


def dialect_for_schema(schema: Schema) -> Dialect:
    """The bundled dialect a schema object belongs to, or a plain one around it."""
    if schema is default_schema():
        return PORTABLE
    for d in FORKS:
        if schema.name == d.name and schema is d.schema():
            return d
    parts = tuple(schema.name.split("+"))
    if len(parts) > 1 and all(p in DIALECTS and DIALECTS[p].fork for p in parts):
        combined = combine(parts)     # detected combinations may clash: no name check
        if combined.schema() is schema:
            return combined
    return Dialect(schema.name, f"the schema {schema.name}", lambda: schema)


# --- detection --------------------------------------------------------------------------

@dataclass(frozen=True)
class Detection:
    """What `detect_dialect` found.

    `evidence`: the fields BVLC's schema does not know and the chosen dialect does
    (what gave the dialect away). `unknown`: the fields the chosen dialect does not
    know either (they become E002 findings). `strong`: whether the evidence shows
    the net is written for the fork (a layer type of the fork, several of its
    fields, or one that changes what a BVLC layer computes) rather than one
    incidental field; on weak evidence the net is read with the fork's schema but
    checked with the portable rules.
    """

    dialect: Dialect
    evidence: tuple[Found, ...] = ()
    unknown: tuple[Found, ...] = ()
    strong: bool = True

    @property
    def detected(self) -> bool:
        return bool(self.evidence)

    def evidence_paths(self) -> list[str]:
        """The distinct field paths of the evidence, in order of appearance."""
        return list(dict.fromkeys(path for path, _ in self.evidence))


def detect_dialect(tree: Document, kind: str = "NetParameter",
                   base: list[Found] | None = None) -> Detection:
    """The dialect a text net (or solver) is written for, read from its fields.

    No fields outside BVLC's schema: portable. Otherwise each fork's schema is
    tried: the one leaving the fewest unknown fields wins (ties go to the earlier
    fork in the registry), provided it knows at least one field BVLC does not.
    While fields are left that another fork knows, the fork knowing most of them
    joins (`combine`): forks of forks are read with both schemas.
    """
    if base is None:  # the caller may already know them, from converting under BVLC
        base = unknown_fields(tree, default_schema().descriptor(kind))
    if not base:
        return Detection(PORTABLE)
    base_offsets = {offset for _, offset in base}
    left_by: dict[str, list[Found]] = {}
    known_by: dict[str, set[int]] = {}
    lefts = unknown_fields_each(tree, [d.schema().descriptor(kind) for d in FORKS])
    for dialect, left in zip(FORKS, lefts):
        left_by[dialect.name] = left
        known_by[dialect.name] = base_offsets - {offset for _, offset in left}
    candidates = [d.name for d in FORKS if known_by[d.name]]
    if not candidates:
        return Detection(PORTABLE, (), tuple(base))
    chosen = [min(candidates, key=lambda n: len(left_by[n]))]
    covered = set(known_by[chosen[0]])
    while True:
        rest = [n for n in candidates if n not in chosen and known_by[n] - covered]
        if not rest:
            break
        best = max(rest, key=lambda n: len(known_by[n] - covered))
        chosen.append(best)
        covered |= known_by[best]
    dialect = combine(tuple(chosen))
    left = (left_by[chosen[0]] if len(chosen) == 1
            else unknown_fields(tree, dialect.schema().descriptor(kind)))
    left_offsets = {offset for _, offset in left}
    evidence = tuple(f for f in base if f[1] not in left_offsets)
    return Detection(dialect, evidence, tuple(left), _strong(dialect, evidence, tree))


def _strong(dialect: Dialect, evidence: tuple[Found, ...], tree) -> bool:
    """A layer type of the fork, two or more of its fields, or one defining field."""
    paths = {path for path, _ in evidence}
    if len(paths) >= 2 or any(path.endswith(suffix) for path in paths
                              for suffix in dialect.defining):
        return True
    return bool(_layer_types(tree) & dialect.layer_types)


def _layer_types(tree) -> set[str]:
    """The `type` strings of a net's layers (a solver's embedded net's), from the tree."""
    from bnlint.syntax.nodes import ListValue, Message

    holder = tree.get("net_param")
    if holder is not None and isinstance(holder.value, Message):
        tree = holder.value
    types: set[str] = set()
    for f in tree.fields:
        if f.name not in ("layer", "layers"):
            continue
        items = f.value.items if isinstance(f.value, ListValue) else [f.value]
        for item in items:
            if isinstance(item, Message):
                t = item.get("type")
                if t is not None and getattr(t.value, "text", None):
                    types.add(t.value.text.strip("\"'"))
    return types


# --- a user's own caffe.proto -----------------------------------------------------------

def load_user_proto(path: str) -> Dialect:
    """A dialect from a user's caffe.proto, compiled with grpcio-tools' protoc.

    The schema is named after the path as given; its semantics are unknown, so the
    rules treat it like `portable` (BatchNorm masking unknown).
    """
    resolved = Path(path).resolve()
    if not resolved.is_file():
        # what is there, as inputs say it: a device, a directory, a pipe, nothing
        kind = ("is a directory, not a .proto file" if resolved.is_dir() else
                "no such .proto file" if not resolved.exists() else
                "is a device or pipe, not a .proto file")
        raise BnlintError(kind, path=path)
    schema = _compile_user_proto(str(resolved), resolved.stat().st_mtime_ns, path)
    pool_fields = schema.descriptor("PoolingParameter").fields_by_name \
        if _has_message(schema, "PoolingParameter") else {}
    pooling = "ceil_mode" if "ceil_mode" in pool_fields and "round_mode" not in pool_fields \
        else "round_mode"
    return Dialect(path, f"the schema in {path}", lambda: schema, pooling=pooling,
                   fork=f"the Caffe of {path}", source=path)


def _has_message(schema: Schema, name: str) -> bool:
    try:
        schema.descriptor(name)
    except KeyError:
        return False
    return True


@functools.cache
def _compile_user_proto(resolved: str, mtime_ns: int, shown: str) -> Schema:
    import subprocess
    import sys
    import tempfile

    try:
        import grpc_tools
    except ImportError:
        raise BnlintError(f"--proto needs protoc from grpcio-tools to compile the schema; "
                          f"install it with: {INSTALL_HINT}", path=shown) from None
    proto = Path(resolved)
    includes = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory(prefix="bnlint-proto-") as tmp:
        out = os.path.join(tmp, "schema.binpb")
        proc = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto.parent}", f"-I{includes}",
             "--include_imports", f"--descriptor_set_out={out}", proto.name],
            capture_output=True, text=True, cwd=proto.parent)
        if proc.returncode != 0 or not os.path.exists(out):
            detail = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
            raise BnlintError(f"protoc could not compile the schema:\n{detail}", path=shown)
        data = Path(out).read_bytes()
    try:
        schema = Schema.from_descriptor_set(data, shown, proto.name)
    except (TypeError, ValueError, KeyError) as err:
        raise BnlintError(f"cannot load the compiled schema: {err}", path=shown) from None
    if not _has_message(schema, "NetParameter"):
        raise BnlintError(f"not a Caffe schema: no NetParameter message in package "
                          f"{schema.package or '(none)'!r}", path=shown)
    missing = [f"{message}.{name}" for message, names in _CORE_FIELDS.items()
               for name in names if not _has_message(schema, message)
               or name not in schema.descriptor(message).fields_by_name]
    if missing:
        raise BnlintError(f"the schema lacks fields every Caffe has ({', '.join(missing)}); "
                          f"a fork's caffe.proto is BVLC's plus its own fields", path=shown)
    return schema


# What bnlint reads in every net; forks keep these from BVLC's caffe.proto.
_CORE_FIELDS = {
    "NetParameter": ("name", "input", "input_shape", "input_dim", "layer", "layers"),
    "LayerParameter": ("name", "type", "bottom", "top", "phase", "param", "blobs",
                       "include", "exclude"),
    "BlobProto": ("shape", "data", "num", "channels", "height", "width"),
}
