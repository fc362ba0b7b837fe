"""Protobuf wire-format primitives, without NumPy or protobuf: read by the weights
scanner (bnlint.caffe.wire) and by the schema loader, which splits a descriptor set
into its files without importing descriptor_pb2 (~2 ms of a fork net's start)."""

from __future__ import annotations


class Unusual(Exception):
    """Bytes these readers do not handle; the caller goes through protobuf instead."""


def varint(buf, pos: int, end: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it."""
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise Unusual
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def skip(buf, pos: int, wire_type: int, end: int) -> int:
    """The position after a field's value of `wire_type` starting at `pos`."""
    if wire_type == 0:
        return varint(buf, pos, end)[1]
    if wire_type == 1:
        pos += 8
    elif wire_type == 2:
        length, pos = varint(buf, pos, end)
        pos += length
    elif wire_type == 5:
        pos += 4
    else:                               # groups (3, 4) and invalid types
        raise Unusual
    if pos > end:
        raise Unusual
    return pos


def length_delimited(buf: bytes, number: int) -> list[bytes]:
    """The values of the top-level length-delimited fields `number` (strings, bytes,
    sub-messages), in order."""
    values = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = varint(buf, pos, end)
        wire_type = key & 7
        if key >> 3 == number and wire_type == 2:
            length, pos = varint(buf, pos, end)
            if pos + length > end:
                raise Unusual
            values.append(buf[pos:pos + length])
            pos += length
        else:
            pos = skip(buf, pos, wire_type, end)
    return values
