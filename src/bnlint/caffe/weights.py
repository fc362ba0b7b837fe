"""Trained weights: a .caffemodel read into float32 arrays by layer name, and written back.

Caffe matches weights to layers by name only (`Net::CopyTrainedLayersFrom`), so a
weights file is read as `{layer name: [blob arrays]}`; which layer of which net
they fit is decided later, by the executor, with Caffe's own shape rule. Each
layer's list remembers whether a blob's shape was written in the legacy 4-D
num/channels/height/width fields, because Caffe accepts such a blob for any shape
that pads to the same four dimensions (`Blob::ShapeEquals`), and only those.

Every problem is a WeightsError naming the file, the layer and the blob: a file
that is empty, truncated, not protobuf, a prototxt without weights, a blob whose
values do not fill its shape, or values that are NaN or infinite.

NumPy is imported here at the top: this module is not on the linter's start-up path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from bnlint.caffe.limits import check_blob_shape
from bnlint.caffe.schema import Schema, default_schema
from bnlint.errors import BnlintError, WeightsError
from bnlint.files import read_bytes, shown_path, write_atomic

_LEGACY_DIMS = ("num", "channels", "height", "width")


class LayerBlobs(list):
    """One layer's blobs (float32 arrays, in Caffe's blob order).

    `legacy[i]` is True when blob i's shape came from the legacy 4-D fields;
    `layer_type` is the type the weights file gives the layer ("" if none).
    """

    def __init__(self, arrays: Iterable[np.ndarray] = (), legacy: Iterable[bool] = (),
                 layer_type: str = "") -> None:
        super().__init__(arrays)
        self.legacy = tuple(legacy)
        self.layer_type = layer_type


class Weights(dict):
    """`{layer name: LayerBlobs}` read from one file; `path` is kept for messages.

    When a name occurs twice the later entry wins, as in Caffe, where each source
    layer is copied in turn into the first net layer of that name.
    """

    def __init__(self, path: str = "", entries: Mapping[str, LayerBlobs] | None = None) -> None:
        super().__init__(entries or {})
        self.path = path

    def parameter_count(self) -> int:
        return sum(int(a.size) for blobs in self.values() for a in blobs)


@dataclass(frozen=True)
class _RawLayer:
    name: str
    type: str
    blobs: Sequence[object]     # BlobProto messages


def read_weights(path: str, schema: Schema | None = None) -> Weights:
    """The weights in a binary .caffemodel, or in a text net that carries blobs."""
    data = read_bytes(path, mutable=True)
    shown = shown_path(path)
    if not data:
        raise WeightsError("empty file: a .caffemodel holds a binary NetParameter with the "
                           "trained blobs", path=shown)
    schema = schema or default_schema()
    if _is_text(data):
        net = _parse_text_net(bytes(data), shown, schema)
    else:
        fast = _read_wire(data, shown, schema)
        if fast is not None:
            return fast
        net = _parse_binary_net(bytes(data), shown, schema)
    del data          # the raw bytes are as big as the weights: drop them before converting
    return weights_from_net(net, shown)


def weights_from_net(net, path: str = "") -> Weights:
    """The blobs of a parsed NetParameter, by layer name (see `read_weights`)."""
    if len(net.layer) and len(net.layers):
        raise WeightsError("the weights file has both 'layer' and legacy 'layers' entries; "
                           "Caffe refuses to upgrade such a NetParameter", path=path)
    weights = Weights(path)
    for raw in _raw_layers(net, path):
        weights[raw.name] = _layer_blobs(raw, path)
    return weights


def _read_wire(data, path: str, schema: Schema) -> Weights | None:
    """The weights as views of `data` (see bnlint.caffe.wire), or None when the file needs
    protobuf's reader (legacy layers, unusual encodings, any decode error)."""
    from google.protobuf.message import DecodeError

    from bnlint.caffe import wire

    try:
        skeleton, blob_spans = wire.scan(data)
        net = schema.message_class("NetParameter")()
        net.ParseFromString(skeleton)
    except (wire.Unusual, DecodeError):
        return None
    if not len(net.layer) or len(net.layers) or len(net.layer) != len(blob_spans):
        return None
    weights = Weights(path)
    for layer, spans in zip(net.layer, blob_spans):
        name = _text(layer.name)
        arrays, legacy = [], []
        for index, blob in enumerate(spans):
            is_legacy = bool(blob.legacy)
            shape = (tuple(blob.legacy.get(n, 0) for n in (1, 2, 3, 4)) if is_legacy
                     else tuple(blob.dims))
            check_blob_shape(shape, name, index, error=WeightsError, path=path)
            expected = _count_values(shape)
            arrays.append(_checked(wire.values(data, blob), shape, expected, name, index,
                                   path))
            legacy.append(is_legacy)
        weights[name] = LayerBlobs(arrays, legacy, _text(layer.type))
    return weights


def _count_values(shape: tuple[int, ...]) -> int:
    expected = 1
    for d in shape:
        expected *= d
    return expected


def _is_text(data) -> bool:
    from bnlint.caffe.load import looks_binary

    if b"\x00" in data[:4096]:         # nearly every .caffemodel: no copy of a mapping
        return False
    return not looks_binary(bytes(data))


def _parse_binary_net(data: bytes, path: str, schema: Schema):
    from google.protobuf.message import DecodeError

    net = schema.message_class("NetParameter")()
    try:
        net.ParseFromString(data)
    except DecodeError as err:
        raise WeightsError(f"not a readable .caffemodel: the protobuf data is truncated or "
                           f"corrupt ({err}; {len(data)} bytes)", path=path) from None
    if not len(net.layer) and not len(net.layers):
        raise WeightsError(f"not a .caffemodel: the file ({len(data)} bytes) holds no layers; "
                           f"is it a mean file (.binaryproto), a solver state or another "
                           f"protobuf file?", path=path)
    return net


def _parse_text_net(data: bytes, path: str, schema: Schema):
    from google.protobuf import text_format

    net = schema.message_class("NetParameter")()
    try:
        text_format.Parse(data.decode("utf-8"), net)
    except (text_format.ParseError, UnicodeDecodeError) as err:
        raise WeightsError(f"a text file, not a binary .caffemodel, and not a text net with "
                           f"blobs either ({err})", path=path) from None
    if not any(len(layer.blobs) for layer in list(net.layer) + list(net.layers)):
        raise WeightsError("a text net definition (prototxt) without weights, not a "
                           ".caffemodel; pass the trained .caffemodel", path=path)
    return net


def _text(value) -> str:
    """A string field as text: protobuf hands over the bytes of one that is not UTF-8
    (a bit flip in a layer name), shown with backslash escapes."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def _raw_layers(net, path: str) -> list[_RawLayer]:
    if len(net.layer):
        return [_RawLayer(_text(layer.name), _text(layer.type), layer.blobs)
                for layer in net.layer]
    from bnlint.caffe.upgrade import v1_layer_type

    out = []
    for v1 in net.layers:
        if v1.HasField("layer"):                       # V0: `layers { layer { ... } }`
            out.append(_RawLayer(_text(v1.layer.name), _text(v1.layer.type),
                                 v1.layer.blobs))
            continue
        try:
            layer_type = v1_layer_type(v1)
        except BnlintError:                            # an unknown enum value: keep the name
            layer_type = ""
        out.append(_RawLayer(_text(v1.name), layer_type, v1.blobs))
    return out


def _layer_blobs(raw: _RawLayer, path: str) -> LayerBlobs:
    arrays, legacy = [], []
    for index, blob in enumerate(raw.blobs):
        array, is_legacy = blob_array(blob, raw.name, index, path)
        arrays.append(array)
        legacy.append(is_legacy)
    return LayerBlobs(arrays, legacy, raw.type)


def blob_array(blob, layer_name: str = "", index: int = 0,
               path: str = "") -> tuple[np.ndarray, bool]:
    """A BlobProto as a float32 array, and whether its shape is the legacy 4-D one.

    As `Blob::FromProto` with reshape: the legacy num/channels/height/width when any
    of them is set (all four kept, 1s included), else BlobShape's dims; values from
    double_data if it has any, else data, rounded to float32.
    """
    where = f"layer '{layer_name}', blob {index}"
    is_legacy = any(blob.HasField(name) for name in _LEGACY_DIMS)
    if is_legacy:
        shape = tuple(int(getattr(blob, name)) for name in _LEGACY_DIMS)
    else:
        shape = tuple(int(d) for d in blob.shape.dim)
    check_blob_shape(shape, layer_name, index, error=WeightsError, path=path)
    values = blob.double_data if len(blob.double_data) else blob.data
    expected = _count_values(shape)
    if len(values) != expected:
        _missing_values(len(values), shape, expected, where, path)
    array = np.array(values, dtype=np.float32).reshape(shape)
    return _checked(array, shape, expected, layer_name, index, path), is_legacy


def _missing_values(count: int, shape: tuple[int, ...], expected: int, where: str,
                    path: str) -> None:
    if not count and expected:
        raise WeightsError(f"{where}: no values for shape {list(shape)} ({expected} "
                           f"expected); were the weights stripped?", path=path)
    raise WeightsError(f"{where}: {count} values do not fill the declared shape "
                       f"{list(shape)} ({expected} values)", path=path)


def _checked(values: np.ndarray, shape: tuple[int, ...], expected: int, layer_name: str,
             index: int, path: str) -> np.ndarray:
    """`values` shaped, once their count fits and none is NaN or infinite."""
    where = f"layer '{layer_name}', blob {index}"
    if values.size != expected:
        _missing_values(values.size, shape, expected, where, path)
    array = values.reshape(shape)
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(values.reshape(-1), dtype=np.float32)
    if np.isfinite(total):        # no NaN or inf inside (one pass, no mask); an overflow
        return array              # of finite values is told apart below
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.flatnonzero(~finite.reshape(-1))
        first = tuple(int(i) for i in np.unravel_index(bad[0], shape)) if shape else ()
        raise WeightsError(f"{where}: {bad.size} of {array.size} values are NaN or infinite "
                           f"(the first, {array.reshape(-1)[bad[0]]}, at index "
                           f"{list(first)}); the weights are corrupt or training diverged",
                           path=path)
    return array


# --- writing ------------------------------------------------------------------------------

def _layer_entries(net) -> list[tuple[str, str, list[str], list[str]]]:
    """(name, type, bottoms, tops) of each layer of a NetParameter, NetView or layer list."""
    if net is None:
        return []
    if hasattr(net, "layers") and hasattr(net, "inputs"):        # a NetView
        layers = [lv.message for lv in net.layers]
    elif hasattr(net, "DESCRIPTOR") and net.DESCRIPTOR.name == "NetParameter":
        from bnlint.caffe.upgrade import upgrade_v1_layer

        layers = list(net.layer) + [upgrade_v1_layer(v1) for v1 in net.layers
                                    if not v1.HasField("layer")]
    else:
        layers = [getattr(item, "message", item) for item in net]
    return [(m.name, m.type, list(m.bottom), list(m.top)) for m in layers]


def _fill_blob(blob, array: np.ndarray) -> None:
    """BlobShape dims plus the packed float32 data, built from raw bytes (fast for big blobs)."""
    shape = np.shape(array)  # before ascontiguousarray, which turns 0-d into 1-d
    array = np.ascontiguousarray(array, dtype="<f4")
    blob.shape.SetInParent()  # a 0-axis blob (channel-shared PReLU) is `shape {}`
    blob.shape.dim.extend(int(d) for d in shape)
    payload = array.tobytes()
    # Field 5 (data), wire type 2 (packed): tag, varint length, little-endian floats.
    header = bytearray([(5 << 3) | 2])
    length = len(payload)
    while True:
        byte = length & 0x7F
        length >>= 7
        header.append(byte | (0x80 if length else 0))
        if not length:
            break
    blob.MergeFromString(bytes(header) + payload)


def caffemodel_bytes(net, arrays: Mapping[str, Sequence[np.ndarray]],
                     schema: Schema | None = None) -> bytes:
    """A serialized NetParameter holding `arrays` by layer name (see write_caffemodel)."""
    schema = schema or default_schema()
    out = schema.message_class("NetParameter")()
    out.name = getattr(net, "name", "") or ""
    entries = _layer_entries(net)
    written: set[str] = set()
    for name, layer_type, bottoms, tops in entries:
        if name not in arrays or name in written:
            continue
        _add_layer(out, name, layer_type, bottoms, tops, arrays[name])
        written.add(name)
    for name, blobs in arrays.items():
        if name not in written:
            _add_layer(out, name, getattr(blobs, "layer_type", ""), [], [], blobs)
            written.add(name)
    return out.SerializeToString()


def _add_layer(out, name: str, layer_type: str, bottoms: list[str], tops: list[str],
               blobs: Sequence[np.ndarray]) -> None:
    layer = out.layer.add()
    layer.name = name
    if layer_type:
        layer.type = layer_type
    layer.bottom.extend(bottoms)
    layer.top.extend(tops)
    for array in blobs:
        _fill_blob(layer.blobs.add(), np.asarray(array))


def write_caffemodel(path: str, net, arrays: Mapping[str, Sequence[np.ndarray]],
                     schema: Schema | None = None) -> None:
    """Write `arrays` ({layer name: blobs}) as a binary .caffemodel, atomically.

    `net` (a NetParameter, a NetView, a list of LayerParameters, or None) gives the
    order, types, bottoms and tops of the layers written; only layers named in
    `arrays` are written, so Caffe fills the others from their fillers instead of
    refusing a blob-count mismatch. Names in `arrays` the net lacks come last.
    Shapes are written as BlobShape, as current Caffe does.
    """
    write_atomic(path, caffemodel_bytes(net, arrays, schema))
