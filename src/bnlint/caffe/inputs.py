"""The input blobs of a net and their shapes, as a deploy net or a forward run needs them.

A train net reads its inputs from data layers whose shape comes from a dataset, so
the shape has to be pieced together from what the prototxt does say:

- declared: Input (`input_param.shape`), DummyData (`dummy_data_param.shape` or the
  legacy num/channels/height/width), MemoryData (batch_size, channels, height, width),
  net-level `input` with `input_shape`/`input_dim`;
- inferred, for Data, ImageData, WindowData, AnnotatedData (SSD), DenseImageData
  (SegNet) and VideoData: channels from `force_gray`/`force_color` (SSD), ImageData's
  and DenseImageData's `is_color`, the colour readers (WindowData, AnnotatedData,
  VideoData: 3), else the number of `mean_value`s when it is more than one (a single
  mean_value is broadcast, so it says nothing); height and width from
  `transform_param.crop_size`, ImageData's `new_height`/`new_width`, SSD's
  `resize_param` height/width;
- `--input-shape NAME=N,C,H,W` (`overrides`) wins over both.

Labels are not inputs of a deploy net: the tops after the first of a data layer
(Data, ImageData, HDF5Data, ...: the second top is the label), and any top whose name
contains "label", unless an override names it. Everything here is pure Python: the
forward executor and the linter import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bnlint.caffe.net import (DATA_LAYER_TYPES, LayerView, NetGraph, NetState, NetView,
                              is_data_layer)
from bnlint.caffe.limits import check_blob_shape, shape_problem
from bnlint.errors import BnlintError
from bnlint.syntax import values
from bnlint.syntax.nodes import Scalar

Shape = tuple[int, ...]

# Layer types whose every top is an input (no positional label), and those whose
# shape the prototxt declares.
_DECLARING_TYPES = frozenset({"Input", "DummyData", "MemoryData"})
_ALL_TOPS_TYPES = frozenset({"Input", "DummyData"})
# Readers that decode images in colour unless told otherwise.
_COLOR_READERS = frozenset({"WindowData", "AnnotatedData", "VideoData"})
_LABEL_NAME = re.compile("label", re.IGNORECASE)
_DIMS = re.compile(r"\d+(?:\s*[,x]\s*\d+)*")

SOURCE_OVERRIDE = "--input-shape"
SOURCE_DECLARED = "declared"
SOURCE_INFERRED = "inferred"


@dataclass
class InputBlob:
    """One input of the net: a data layer's top, an Input top or a net-level input.

    `shape` is None when it cannot be known; `missing` then says what is missing,
    for the error message.
    """

    name: str
    layer: LayerView | None          # None: a net-level `input:` field
    shape: Shape | None
    source: str = ""                 # SOURCE_OVERRIDE, SOURCE_DECLARED or SOURCE_INFERRED
    missing: str = ""


def parse_shape_option(text: str) -> tuple[str, Shape]:
    """`data=1,3,224,224` (also `data:1x3x224x224`) -> ("data", (1, 3, 224, 224))."""
    name, sep, dims = text.partition("=")
    if not sep:
        name, sep, dims = text.rpartition(":")
    name = name.strip()
    if not sep or not name:
        raise BnlintError(f"--input-shape {text!r}: expected NAME=N,C,H,W (e.g. "
                          f"data=1,3,224,224)")
    if not _DIMS.fullmatch(dims.strip()):
        raise BnlintError(f"--input-shape {text!r}: dimensions must be non-negative "
                          f"integers separated by commas, e.g. {name}=1,3,224,224")
    shape = tuple(int(d) for d in re.split(r"\s*[,x]\s*", dims.strip()))
    problem = shape_problem(shape)
    if problem is not None:
        raise BnlintError(f"--input-shape for '{name}': {problem}")
    return name, shape


def is_label_top(layer: LayerView, index: int, overrides=()) -> bool:
    """Whether a data layer's top `index` is a label rather than an input."""
    name = layer.tops[index]
    if name in overrides:
        return False
    if _LABEL_NAME.search(name):
        return True
    return index > 0 and layer.type not in _ALL_TOPS_TYPES


def find_inputs(view: NetView, state: NetState, overrides: dict[str, Shape] | None = None,
                batch: int | None = None) -> list[InputBlob]:
    """Every input blob of the net under `state`, in file order, with its shape if known.

    `batch` replaces the first dimension of every shape not given by an override;
    None keeps a declared batch and uses 1 for an inferred one.
    """
    overrides = dict(overrides or {})
    found: list[InputBlob] = []
    for inp in view.inputs:
        found.append(_finish(InputBlob(inp.name, None, inp.shape, SOURCE_DECLARED,
                                       "" if inp.shape else "no input_shape or input_dim"),
                             overrides, batch))
    graph = NetGraph(view, state)
    for layer in graph.layers:
        if not (is_data_layer(layer) or layer.type == "Input"):
            continue
        declared = _declared_shapes(layer)
        for index, name in enumerate(layer.tops):
            if is_label_top(layer, index, overrides):
                continue
            if declared is not None:
                shape = declared[index] if index < len(declared) else None
                blob = InputBlob(name, layer, shape, SOURCE_DECLARED,
                                 "" if shape else f"{layer.type} declares no shape for it")
            else:
                shape, missing = _inferred_shape(layer)
                blob = InputBlob(name, layer, shape, SOURCE_INFERRED, missing)
            found.append(_finish(blob, overrides, batch))
    return found


def with_inferred_inputs(view: NetView, state: NetState,
                         given: dict[str, Shape] | None) -> dict[str, Shape]:
    """`given` plus the shapes the data layers imply where they can be inferred (for a
    forward run or `info` of a train net); the rest stay unset, for the caller to ask
    for --input-shape."""
    shapes = {name: tuple(int(d) for d in shape) for name, shape in (given or {}).items()}
    for blob in find_inputs(view, state, shapes):
        if blob.source == SOURCE_INFERRED and blob.shape is not None:
            shapes.setdefault(blob.name, blob.shape)
    return shapes


def infer_input_shapes(view: NetView, state: NetState,
                       overrides: dict[str, Shape] | None = None,
                       batch: int | None = None) -> dict[str, Shape]:
    """`{input name: shape}` for the net under `state`; BnlintError if one is unknown.

    The error names every input whose shape is missing and what would have told it,
    and asks for `--input-shape NAME=N,C,H,W`. Overrides naming no input are an
    error too (a typo would otherwise be ignored silently).
    """
    overrides = dict(overrides or {})
    blobs = find_inputs(view, state, overrides, batch)
    names = {b.name for b in blobs}
    unknown = [name for name in overrides if name not in names]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown)
        have = ", ".join(repr(n) for n in names) or "none"
        raise BnlintError(f"--input-shape names {shown}, which is not an input of the net "
                          f"under {state} (inputs: {have})")
    return shapes_or_error(blobs)


def shapes_or_error(blobs: list[InputBlob]) -> dict[str, Shape]:
    """`{name: shape}`, or one BnlintError naming every blob whose shape is unknown."""
    missing = [b for b in blobs if b.shape is None]
    if missing:
        lines = [f"'{b.name}'" + (f" (layer '{b.layer.name}', {b.layer.type})" if b.layer
                                  else "") + f": {b.missing}" for b in missing]
        example = missing[0].name
        raise BnlintError("cannot infer the input shape of " + "; ".join(lines) +
                          f". Give it with --input-shape {example}=N,C,H,W "
                          f"(e.g. {example}=1,3,224,224)")
    return {b.name: b.shape for b in blobs}


def _finish(blob: InputBlob, overrides: dict[str, Shape], batch: int | None) -> InputBlob:
    if blob.name in overrides:
        blob.shape, blob.source, blob.missing = tuple(overrides[blob.name]), SOURCE_OVERRIDE, ""
    elif blob.shape is not None and batch is not None and len(blob.shape):
        blob.shape = (batch,) + tuple(blob.shape[1:])
    if blob.shape is not None:
        check_blob_shape(blob.shape, blob.layer.name if blob.layer else None, blob.name)
    return blob


# --- declared shapes ------------------------------------------------------------------

def _declared_shapes(layer: LayerView) -> list[Shape | None] | None:
    """Per-top shapes an Input/DummyData/MemoryData layer declares (None: not such a layer).

    Caffe takes one shape for all tops or one per top.
    """
    msg = layer.message
    tops = len(layer.tops)
    if layer.type == "Input":
        shapes = [tuple(int(d) for d in s.dim) for s in msg.input_param.shape]
        return _per_top(shapes, tops)
    if layer.type == "DummyData":
        p = msg.dummy_data_param
        if len(p.shape):
            return _per_top([tuple(int(d) for d in s.dim) for s in p.shape], tops)
        legacy = [list(p.num), list(p.channels), list(p.height), list(p.width)]
        if all(legacy):
            n = max(len(v) for v in legacy)
            if all(len(v) in (1, n) for v in legacy):
                shapes = [tuple(int(v[i] if len(v) > 1 else v[0]) for v in legacy)
                          for i in range(n)]
                return _per_top(shapes, tops)
        return [None] * tops
    if layer.type == "MemoryData":
        p = msg.memory_data_param
        dims = (p.batch_size, p.channels, p.height, p.width)
        return [tuple(int(d) for d in dims) if all(dims) else None]
    return None


def _per_top(shapes: list[Shape], tops: int) -> list[Shape | None]:
    if len(shapes) == 1:
        return shapes * tops
    if len(shapes) == tops:
        return list(shapes)
    return [None] * tops


# --- inferred shapes ------------------------------------------------------------------

def _inferred_shape(layer: LayerView) -> tuple[Shape | None, str]:
    """(N=1, C, H, W) from the transformation and reader parameters, or (None, why)."""
    channels, channels_why = _channels(layer)
    size, size_why = _height_width(layer)
    if channels is None or size is None:
        missing = [why for why in (channels_why, size_why) if why]
        return None, " and ".join(missing)
    return (1, channels) + size, ""


def _channels(layer: LayerView) -> tuple[int | None, str]:
    if _setting(layer, "transform_param.force_gray") is True:
        return 1, ""
    if _setting(layer, "transform_param.force_color") is True:
        return 3, ""
    if layer.type == "ImageData":
        return (1 if _setting(layer, "image_data_param.is_color") is False else 3), ""
    if layer.type == "DenseImageData":
        return (1 if _setting(layer, "dense_image_data_param.is_color") is False else 3), ""
    if layer.type in _COLOR_READERS:
        return 3, ""
    means = _mean_values(layer)
    if len(means) > 1:
        return len(means), ""
    if layer.type == "Data":
        hint = ("the channels are those of the mean_file" if _has_mean_file(layer)
                else "no mean_value per channel")
        return None, f"the number of channels is not in the prototxt ({hint})"
    return None, f"a {layer.type} layer's channels are not in the prototxt"


def _height_width(layer: LayerView) -> tuple[Shape | None, str]:
    for prefix in ("transform_param", "data_param", "image_data_param",
                   "window_data_param"):   # the last three: V1 nets before the upgrade
        crop = _setting(layer, f"{prefix}.crop_size")
        if isinstance(crop, int) and crop > 0:
            return (crop, crop), ""
    for reader in ("image_data_param", "dense_image_data_param"):
        for h_name, w_name in (("crop_height", "crop_width"), ("new_height", "new_width")):
            h = _setting(layer, f"{reader}.{h_name}")
            w = _setting(layer, f"{reader}.{w_name}")
            if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
                return (h, w), ""
    h = _setting(layer, "transform_param.resize_param.height")
    w = _setting(layer, "transform_param.resize_param.width")
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return (h, w), ""
    return None, "no crop_size, new_height/new_width or resize_param gives height and width"


def _mean_values(layer: LayerView) -> list[float]:
    msg = layer.message
    if msg.HasField("transform_param"):
        return list(msg.transform_param.mean_value)
    return []


def _has_mean_file(layer: LayerView) -> bool:
    return any(_setting(layer, f"{p}.mean_file") is not None
               for p in ("transform_param", "data_param"))


def _setting(layer: LayerView, dotted: str):
    """A scalar setting of a layer: from its message when the schema knows the path,
    else from the syntax tree (fork fields such as SSD's resize_param). None: unset."""
    msg = layer.message
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fd = msg.DESCRIPTOR.fields_by_name.get(part)
        if fd is None:
            return _tree_setting(layer, dotted)
        if i == len(parts) - 1:
            if fd.is_repeated or not msg.HasField(part):
                return None
            return getattr(msg, part)
        if fd.message_type is None or not msg.HasField(part):
            return None
        msg = getattr(msg, part)
    return None


def _tree_setting(layer: LayerView, dotted: str):
    if layer.legacy is not None:
        return None                 # old syntax: the tree's layout is not the message's
    field = layer.find(dotted)
    if field is None or not isinstance(field.value, Scalar) or values.is_string(field.value):
        return None
    text = field.value.text
    for reader in (values.parse_int, values.parse_bool, values.parse_float):
        try:
            return reader(text)
        except ValueError:
            continue
    return None
