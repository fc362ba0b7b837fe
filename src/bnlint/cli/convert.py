"""`bnlint convert`: text, binary and JSON forms of nets, weights and blobs."""

from __future__ import annotations

import click

from bnlint.caffe.load import schema_problems_error
from bnlint.cli.options import check_dialect_options, dialect_options

FORMATS = ("text", "binary", "json")
_BINARY_SUFFIXES = (".caffemodel", ".binaryproto", ".pb", ".bin", ".solverstate")


def _default_format(output: str | None, input_is_binary: bool) -> str:
    if output and output != "-":
        lower = output.lower()
        if lower.endswith(_BINARY_SUFFIXES):
            return "binary"
        if lower.endswith(".json"):
            return "json"
        return "text"
    return "text"


@click.command()
@click.argument("input_path", metavar="IN")
@click.option("-o", "--output", metavar="OUT", help="Output file ('-' for stdout).")
@click.option("--to", "to_format", type=click.Choice(FORMATS),
              help="Output form (default: from OUT's extension, else text).")
@click.option("--strip-weights", is_flag=True,
              help="Drop blob data, keep shapes: a .caffemodel's architecture as text.")
@dialect_options
def command(input_path: str, output: str | None, to_format: str | None,
            strip_weights: bool, dialect: str | None, proto: str | None) -> None:
    """Convert a net prototxt, a .caffemodel or a .binaryproto, in any direction.

    The input's form is detected from its content. Text and JSON go to stdout
    without -o; binary needs -o. Field numbers are the dialect's: a text net is
    read in the fork its fields show (or --dialect / --proto), a binary file in
    BVLC's schema unless --dialect / --proto names its fork.
    """
    from bnlint.caffe.load import BinaryFile, read_any
    from bnlint.files import write_atomic

    choice = check_dialect_options(dialect, proto) or "auto"
    doc = read_any(input_path, dialect=choice)
    is_binary = isinstance(doc, BinaryFile)
    detection = getattr(doc, "detection", None)
    if detection is not None and detection.detected:
        fields = ", ".join(detection.evidence_paths()[:3])
        click.echo(f"bnlint: {doc.path}: read as the '{detection.dialect.name}' dialect "
                   f"({detection.dialect.fork}; from {fields}); pass --dialect to choose",
                   err=True)
    unknown = unknown_field_count(doc.message) if is_binary and choice == "auto" else 0
    if unknown:
        click.echo(f"bnlint: {doc.path}: {unknown} field(s) unknown to BVLC's schema (a "
                   f"fork's file?); read it with --dialect NAME or --proto FILE", err=True)
    if not is_binary and doc.problems:
        raise schema_problems_error(doc)
    fmt = to_format or _default_format(output, is_binary)
    message = doc.message
    if strip_weights:
        message = strip_blob_data(message)
    if fmt == "binary":
        if not output or output == "-":
            raise click.UsageError("--to binary needs -o OUT (binary does not go to a "
                                   "terminal)")
        data: bytes | str = message.SerializeToString()
    elif fmt == "json":
        from bnlint.caffe.json_out import message_to_json

        data = message_to_json(message)
    else:
        from google.protobuf import text_format

        data = text_format.MessageToString(message)
    write_atomic(output or "-", data, inputs=(input_path,))


def unknown_field_count(message) -> int:
    """Fields the schema could not name, anywhere in the message: what a binary file
    written by a fork leaves when it is read in another dialect."""
    from google.protobuf import unknown_fields

    count = len(unknown_fields.UnknownFieldSet(message))
    for fd, value in message.ListFields():
        if fd.message_type is not None:
            for item in (value if fd.is_repeated else (value,)):
                count += unknown_field_count(item)
    return count


def strip_blob_data(message):
    """A copy with every blob's values dropped and its shape kept (as BlobShape)."""
    out = type(message)()
    out.CopyFrom(message)
    layers = list(getattr(out, "layer", [])) + list(getattr(out, "layers", []))
    blobs = [b for layer in layers for b in layer.blobs]
    if out.DESCRIPTOR.name == "BlobProto":
        blobs.append(out)
    for blob in blobs:
        if not blob.HasField("shape") and (blob.num or blob.channels or blob.height
                                           or blob.width):
            blob.shape.dim.extend([blob.num, blob.channels, blob.height, blob.width])
            for legacy in ("num", "channels", "height", "width"):
                blob.ClearField(legacy)
        blob.ClearField("data")
        blob.ClearField("double_data")
        blob.ClearField("diff")
        blob.ClearField("double_diff")
    return out
