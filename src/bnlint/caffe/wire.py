"""A .caffemodel's blobs read straight from the protobuf wire format into NumPy views.

Building protobuf messages for a big model costs hundreds of milliseconds and a second
copy of every weight; here only the bytes outside the blobs (names, types, layer
parameters, small) go through protobuf, which checks them as before, while each blob's
packed floats become an `np.frombuffer` view of the file's own buffer. A view whose
bytes do not start on a 4-byte boundary is moved back over its own (already read)
field header, so that BLAS gets aligned arrays without a copy.

Anything this scanner does not expect (legacy V1 `layers`, groups, a known field with
an unusual wire type, a length that runs past its message) raises `Unusual`, and the
caller reads the file through protobuf messages instead: the two paths give the same
weights and the same errors, the scanner is only faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bnlint.caffe.wireformat import Unusual, skip as _skip, varint as _varint


_LAYER = 100            # NetParameter.layer
_V1_LAYERS = 2          # NetParameter.layers: legacy, left to protobuf
_BLOBS = 7              # LayerParameter.blobs
# BlobProto: num, channels, height, width = 1..4; data 5; diff 6; shape 7; double_data 8;
# double_diff 9. BlobShape: dim 1.


@dataclass
class BlobSpans:
    """Where one BlobProto's parts lie in the buffer (offsets, not copies)."""

    legacy: dict[int, int] = field(default_factory=dict)     # field number -> int32 value
    dims: list[int] = field(default_factory=list)
    data: list[tuple[int, int, int]] = field(default_factory=list)    # (start, end, header)
    double_data: list[tuple[int, int]] = field(default_factory=list)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def scan(buf) -> tuple[bytes, list[list[BlobSpans]]]:
    """The NetParameter without its layers' blobs (for protobuf), and each layer's blobs."""
    skeleton = bytearray()
    layers: list[list[BlobSpans]] = []
    pos, end = 0, len(buf)
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == _V1_LAYERS or number == 0:
            raise Unusual
        if number == _LAYER and wire_type == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise Unusual
            kept, blobs = _scan_layer(buf, pos, pos + length)
            skeleton += buf[start:start + 2]            # the tag of field 100 is two bytes
            skeleton += _encode_varint(len(kept))
            skeleton += kept
            layers.append(blobs)
            pos += length
        else:
            pos = _skip(buf, pos, wire_type, end)
            skeleton += buf[start:pos]
    return bytes(skeleton), layers


def _scan_layer(buf, pos: int, end: int) -> tuple[bytearray, list[BlobSpans]]:
    kept = bytearray()
    blobs: list[BlobSpans] = []
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos, end)
        if key >> 3 == _BLOBS:
            if key & 7 != 2:
                raise Unusual
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise Unusual
            blobs.append(_scan_blob(buf, pos, pos + length))
            pos += length
        else:
            if key >> 3 == 0:
                raise Unusual
            pos = _skip(buf, pos, key & 7, end)
            kept += buf[start:pos]
    return kept, blobs


def _scan_blob(buf, pos: int, end: int) -> BlobSpans:
    spans = BlobSpans()
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise Unusual
        if 1 <= number <= 4:                            # legacy dims, int32
            if wire_type != 0:
                raise Unusual
            value, pos = _varint(buf, pos, end)
            value &= 0xFFFFFFFF
            spans.legacy[number] = value - (1 << 32) if value >= 1 << 31 else value
        elif number in (5, 6, 8, 9):                     # float / double arrays
            size = 4 if number in (5, 6) else 8
            if wire_type != 2:
                raise Unusual                           # unpacked values: rare, left to protobuf
            length, pos = _varint(buf, pos, end)
            if pos + length > end or length % size:
                raise Unusual
            if number == 5:
                spans.data.append((pos, pos + length, pos - start))
            elif number == 8:
                spans.double_data.append((pos, pos + length))
            pos += length
        elif number == 7:                               # BlobShape; repeated dims merge
            if wire_type != 2:
                raise Unusual
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise Unusual
            spans.dims.extend(_scan_shape(buf, pos, pos + length))
            pos += length
        else:
            pos = _skip(buf, pos, wire_type, end)
    return spans


def _scan_shape(buf, pos: int, end: int) -> list[int]:
    dims: list[int] = []
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise Unusual
        if number != 1:
            pos = _skip(buf, pos, wire_type, end)
        elif wire_type == 0:
            value, pos = _varint(buf, pos, end)
            dims.append(_int64(value))
        elif wire_type == 2:
            length, pos = _varint(buf, pos, end)
            stop = pos + length
            if stop > end:
                raise Unusual
            while pos < stop:
                value, pos = _varint(buf, pos, stop)
                dims.append(_int64(value))
        else:
            raise Unusual
    return dims


def _int64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def values(buf, spans: BlobSpans) -> np.ndarray:
    """The blob's values as a flat float32 array: double_data when it has any, else data.

    A single aligned `data` run is a view of `buf` (a bytearray or a mapping: writable);
    an unaligned one is first moved back over its field header when that is long enough.
    """
    if spans.double_data:
        parts = [np.frombuffer(buf, "<f8", (e - s) // 8, s) for s, e in spans.double_data]
        doubles = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if doubles.size:
            return doubles.astype(np.float32)
    if not spans.data:
        return np.zeros(0, np.float32)
    if len(spans.data) > 1:
        return np.concatenate([np.frombuffer(buf, "<f4", (e - s) // 4, s)
                               for s, e, _ in spans.data])
    start, stop, header = spans.data[0]
    count = (stop - start) // 4
    if not count:
        return np.zeros(0, np.float32)
    view = np.frombuffer(buf, np.uint8)
    misaligned = (view.ctypes.data + start) % 4
    if misaligned:
        if misaligned > header:
            return np.frombuffer(buf, "<f4", count, start).copy()
        memoryview(buf)[start - misaligned:stop - misaligned] = memoryview(buf)[start:stop]
        start -= misaligned
    return np.frombuffer(buf, "<f4", count, start)
