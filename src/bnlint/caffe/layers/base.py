"""What every layer module shares: shapes, errors, checks, and reading fork fields.

Pure Python (no NumPy). Shapes are tuples of ints; `()` is Caffe's 0-axis blob (one
element: a loss, a channel-shared PReLU slope, a Reduction to a scalar).

The same layer type can arrive in a message from different schemas (a fork's own
caffe.proto, bnlint's dialects, the user's `--proto`), so fork fields are read by name
(`fork_field`, `fork_list`, `fork_has`), and a field the schema lacks takes the fork's
default: a layer whose schema has no such field cannot have set it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Sequence

from bnlint.errors import ShapeError

Shape = tuple[int, ...]


Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerShapes:
    """The top shapes of one layer and the shapes of its learnable blobs."""

    tops: list[Shape]
    params: list[Shape] = field(default_factory=list)

    @property
    def param_count(self) -> int:
        return sum(count(shape) for shape in self.params)


class UnknownLayerTypeError(ShapeError):
    """The layer type has no shape rule (not a BVLC layer bnlint knows)."""


class DataDependentShapeError(ShapeError):
    """A data layer whose top shape depends on the dataset, not on the prototxt."""



# ---------------------------------------------------------------- helpers


def count(shape: Sequence[int], start: int = 0, end: int | None = None) -> int:
    """Blob::count(start, end): the product of the dims in [start, end)."""
    result = 1
    for dim in shape[start:end]:
        result *= dim
    return result


def canonical_axis(axis: int, shape: Sequence[int]) -> int:
    """Blob::CanonicalAxisIndex: -1 is the last axis; out of range is an error."""
    num_axes = len(shape)
    if not -num_axes <= axis < num_axes:
        raise ShapeError(f"axis {axis} is out of range for a {num_axes}-D blob "
                         f"of shape {tuple(shape)}")
    return axis + num_axes if axis < 0 else axis


def enum_name(message, field_name: str) -> str:
    """The enum value name of `message.field_name`, independent of enum numbering."""
    value = getattr(message, field_name)
    enum_type = message.DESCRIPTOR.fields_by_name[field_name].enum_type
    named = enum_type.values_by_number.get(value)
    return named.name if named is not None else str(value)


ANY_NUMBER = -1


def expect_bottoms(bottoms: list[Shape], low: int, high: int | None = None) -> None:
    """Between `low` and `high` bottoms; `high` None means exactly `low`, ANY_NUMBER
    means no upper bound."""
    high = low if high is None else high
    if len(bottoms) < low or (high != ANY_NUMBER and len(bottoms) > high):
        want = (str(low) if high == low else
                f"at least {low}" if high == ANY_NUMBER else f"{low} to {high}")
        raise ShapeError(f"takes {want} bottom(s), got {len(bottoms)}")


def declared_tops(layer) -> int:
    """The number of tops, at least 1 (a layer written without tops still computes one)."""
    return max(1, len(layer.top))


def blob_shape(message, what: str) -> Shape:
    dims = tuple(int(d) for d in message.dim)
    if any(d < 0 for d in dims):
        raise ShapeError(f"{what} has a negative dimension: {dims}")
    return dims

# ---------------------------------------------------------------- reading fork fields


def fork_param(layer, name: str):
    """The sub-message `name` of the layer (e.g. "permute_param"), or None when the
    layer's schema has no such field."""
    if layer is None or name not in layer.DESCRIPTOR.fields_by_name:
        return None
    return getattr(layer, name)


def fork_field(msg, name: str, default: Any) -> Any:
    """`msg.name`, or `default` (the fork's default) when the schema has no such field."""
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name:
        return default
    return getattr(msg, name)


def fork_has(msg, name: str) -> bool:
    """Whether the field is set: HasField for a singular field, non-empty if repeated."""
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name:
        return False
    fd = msg.DESCRIPTOR.fields_by_name[name]
    if _is_repeated(fd):
        return len(getattr(msg, name)) > 0
    return msg.HasField(name)


def fork_list(msg, name: str) -> list:
    """A field as a list: repeated values, [value] for a set singular field, else []
    (the SSD fork's min_size/max_size were singular before they became repeated)."""
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name:
        return []
    fd = msg.DESCRIPTOR.fields_by_name[name]
    if _is_repeated(fd):
        return list(getattr(msg, name))
    return [getattr(msg, name)] if msg.HasField(name) else []


def fork_enum(msg, name: str, default: str) -> str:
    """The enum value name of a field, or `default` when the schema lacks it."""
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name:
        return default
    fd = msg.DESCRIPTOR.fields_by_name[name]
    value = getattr(msg, name)
    if fd.enum_type is None:
        return str(value)
    named = fd.enum_type.values_by_number.get(value)
    return named.name if named is not None else str(value)


def _is_repeated(fd) -> bool:
    repeated = getattr(fd, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return fd.label == fd.LABEL_REPEATED


def float32(value: float) -> float:
    """`value` rounded to float32, as a Python float (Caffe keeps these in floats)."""
    return struct.unpack("f", struct.pack("f", value))[0]


def legacy_dim(shape: Shape, index: int) -> int:
    """Blob::LegacyShape(index): a missing trailing axis counts as 1 (at most 4 axes)."""
    if len(shape) > 4:
        raise ShapeError(f"the layer uses Caffe's 4-axis accessors; shape {shape} has "
                         f"more than 4 axes")
    return shape[index] if index < len(shape) else 1



def same_shape(layer, bottoms: list[Shape]) -> LayerShapes:
    """The shape rule of a one-bottom layer whose top is shaped like its bottom."""
    expect_bottoms(bottoms, 1)
    return LayerShapes(tops=[bottoms[0]])
