"""Caffe files in, whatever their form: text nets and solvers, binary nets and blobs.

The kind of a file is read from its content (top-level field names, or whether
the bytes are text at all), because people name files loosely: a "deploy.txt", a
".pb" caffemodel, a solver with the net inside it.

So is a text file's dialect, by default ("auto"): a net with fields that only a
fork's schema knows is read with that schema. Binary files carry no field names,
so they are read in the dialect the caller names (BVLC's unless told otherwise):
the same bytes mean different things to different forks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bnlint.caffe.dialects import (AUTO, PORTABLE, Detection, Dialect, detect_dialect,
                                   dialect_for_schema, get_dialect, resolve_dialect)
from bnlint.caffe.messages import SchemaProblem, to_message
from bnlint.caffe.schema import Schema, default_schema
from bnlint.errors import BnlintError, SchemaError
from bnlint.files import decode_text, read_bytes, shown_path
from bnlint.source import SourceFile
from bnlint.syntax import Document, parse_source

NET = "NetParameter"
SOLVER = "SolverParameter"
BLOB = "BlobProto"
BLOB_VECTOR = "BlobProtoVector"


@dataclass
class TextFile:
    """A parsed text file: the lossless tree and the message the schema makes of it."""

    source: SourceFile
    tree: Document
    kind: str                       # NET or SOLVER
    message: object
    problems: list[SchemaProblem] = field(default_factory=list)
    dialect: Dialect | None = None      # the dialect the message was read in
    detection: Detection | None = None  # how "auto" chose it (None when forced)

    @property
    def path(self) -> str:
        return self.source.path


@dataclass
class BinaryFile:
    """A parsed binary file: the message, read in the dialect the caller named."""

    path: str
    kind: str                       # NET, BLOB or BLOB_VECTOR
    message: object
    dialect: Dialect | None = None


def detect_text_kind(tree: Document, schema: Schema) -> str:
    """NET unless the top-level fields are a solver's (a solver may embed a net)."""
    net_fields = schema.descriptor(NET).fields_by_name
    solver_fields = schema.descriptor(SOLVER).fields_by_name
    net_score = solver_score = 0
    for f in tree.fields:
        net_score += f.name in net_fields
        solver_score += f.name in solver_fields and f.name not in net_fields
    return SOLVER if solver_score > net_score else NET


def parse_text(source: SourceFile, schema: Schema | None = None,
               kind: str | None = None, dialect: str | Dialect = AUTO) -> TextFile:
    """Parse and convert; ParseError on broken syntax, schema problems collected.

    `dialect` is a dialect name, a Dialect, or "auto" (detected from the fields);
    an explicit `schema` wins over both.
    """
    tree = parse_source(source)
    chosen = dialect_for_schema(schema) if schema is not None else resolve_dialect(dialect)
    kind = kind or detect_text_kind(tree, (chosen.schema() if chosen else default_schema()))
    detection = None
    if chosen is None:
        # Most nets have no fork field: convert under BVLC's schema first, and look
        # for a fork only when that meets an unknown field (the conversion stops
        # there: a fork net is converted again, whole, in its fork's schema).
        from bnlint.caffe.messages import UnknownFieldMet

        message = PORTABLE.schema().message_class(kind)()
        try:
            problems = to_message(tree, message, stop_at_unknown=True)
        except UnknownFieldMet:
            detection = detect_dialect(tree, kind)
            chosen = detection.dialect
        else:
            return TextFile(source, tree, kind, message, problems, PORTABLE,
                            Detection(PORTABLE))
    schema = chosen.schema()
    message = schema.message_class(kind)()
    problems = to_message(tree, message)
    return TextFile(source, tree, kind, message, problems, chosen, detection)


def looks_binary(data: bytes) -> bool:
    """Protobuf wire data almost always holds control bytes or invalid UTF-8; text never."""
    if b"\x00" in data[:4096]:
        return True
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return any(ord(c) < 32 and c not in "\t\n\r\f\v" for c in text[:4096])


def parse_binary(data: bytes, path: str, schema: Schema | None = None,
                 kind: str | None = None, dialect: str | Dialect = "bvlc") -> BinaryFile:
    """A binary NetParameter (.caffemodel) or BlobProto (.binaryproto, mean files).

    Read in `dialect` ("auto" means BVLC's: bytes cannot tell a fork apart).
    """
    chosen = dialect_for_schema(schema) if schema is not None else \
        (resolve_dialect(dialect) or get_dialect("bvlc"))
    schema = chosen.schema()
    if kind is None:
        kind = BLOB if path.endswith(".binaryproto") else NET
    candidates = [kind] + [k for k in (NET, BLOB) if k != kind]
    from google.protobuf.message import DecodeError

    first_error = None
    for candidate in candidates:
        msg = schema.message_class(candidate)()
        try:
            msg.ParseFromString(data)
        except DecodeError as err:
            first_error = first_error or err
            continue
        if _plausible(msg, candidate):
            return BinaryFile(path, candidate, msg, chosen)
    why = f" ({first_error})" if first_error else ""
    raise BnlintError(f"not a Caffe binary file: neither a net (.caffemodel) nor a blob "
                      f"(.binaryproto) could be read from it{why}", path=path)


def _plausible(msg, kind: str) -> bool:
    if kind == NET:
        return bool(len(msg.layer) or len(msg.layers) or msg.name or len(msg.input))
    if kind == BLOB:
        return bool(len(msg.data) or len(msg.double_data) or msg.HasField("shape")
                    or msg.num or msg.channels)
    return True


def read_any(path: str, schema: Schema | None = None,
             dialect: str | Dialect = AUTO) -> TextFile | BinaryFile:
    """Text or binary, detected from the bytes; ParseError for broken text.

    Text is read in `dialect` (or the detected one for "auto"); binary in `dialect`,
    BVLC's for "auto".
    """
    data = read_bytes(path)
    shown = shown_path(path)
    if looks_binary(data):
        try:
            return parse_binary(data, shown, schema, dialect=dialect)
        except BnlintError:
            if _text_but_for_its_encoding(data):
                decode_text(data, shown)     # the text's own error, at its line and column
            raise
    return parse_text(decode_text(data, shown), schema, dialect=dialect)


def _text_but_for_its_encoding(data: bytes) -> bool:
    """Not protobuf wire data, yet not UTF-8: text in another encoding (a Latin-1 name).
    Wire data nearly always has NUL or control bytes once decoded leniently."""
    if b"\x00" in data:
        return False
    text = data[:65536].decode("utf-8", errors="replace")
    return not any(ord(c) < 32 and c not in "\t\n\r\f\v" for c in text)


def schema_problems_error(doc, cannot: str = "cannot convert faithfully") -> SchemaError:
    """All of a file's schema problems in one error, located at the first; `cannot`
    says what the command cannot do because of them."""
    first = doc.problems[0]
    lines = [first.message]
    for p in doc.problems[1:]:
        line, col = doc.source.line_col(p.start)
        lines.append(f"{doc.path}:{line}:{col}: {p.message}")
    more = len(doc.problems)
    return SchemaError("\n".join(lines) + (f"\n({more} problems; the net does not fit "
                                           f"the schema, so bnlint {cannot})" if more > 1
                                           else f" ({cannot})"),
                       source=doc.source, offset=first.start)
