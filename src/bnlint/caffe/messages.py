"""The syntax tree checked against a schema and turned into protobuf messages.

The result equals what protobuf's `text_format.Parse` builds from the same text,
but nothing stops at the first problem: unknown fields (fork nets) are skipped and
reported with their span and a "did you mean", bad values are reported and left
unset, and the caller decides whether it can go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from google.protobuf.descriptor import FieldDescriptor

from bnlint.syntax import values
from bnlint.syntax.nodes import Document, Field, ListValue, Message, Scalar

UNKNOWN_FIELD = "unknown-field"
INVALID_VALUE = "invalid-value"

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
_MESSAGES = (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP)
_TYPE_NAMES = {v: k[5:].lower() for k, v in vars(FieldDescriptor).items()
               if k.startswith("TYPE_") and isinstance(v, int)}


@dataclass(frozen=True)
class SchemaProblem:
    """One field the schema refuses. The "did you mean" of an unknown field is looked
    for only when the message is read: most problems are never shown (a fork net's
    fields under BVLC's schema, before its dialect is known), and the search is slow."""

    kind: str            # UNKNOWN_FIELD or INVALID_VALUE
    summary: str         # the message without its "did you mean"
    start: int           # character offsets of the offending text
    end: int
    path: str            # dotted field path, e.g. "layer.pooling_param.ceil_mode"
    field: str           # the field's own name
    container: str       # full name of the message type it appeared in
    suggest_from: tuple[str, ...] = ()   # the names a "did you mean" is chosen among

    @cached_property
    def message(self) -> str:
        hint = _close_match(self.field, self.suggest_from) if self.suggest_from else None
        return f"{self.summary} (did you mean '{hint}'?)" if hint else self.summary


def _close_match(word: str, names) -> str | None:
    import difflib

    hint = difflib.get_close_matches(word, list(names), n=1)
    return hint[0] if hint else None


class UnknownFieldMet(Exception):
    """`to_message(stop_at_unknown=True)` met a field the schema does not know."""


class _StopAtUnknown(list):
    """A problems list that ends the conversion at the first unknown field."""

    def append(self, problem: SchemaProblem) -> None:
        if problem.kind == UNKNOWN_FIELD:
            raise UnknownFieldMet(problem.path)
        super().append(problem)


def to_message(node: Document | Message, message, path: str = "", *,
               stop_at_unknown: bool = False) -> list[SchemaProblem]:
    """Fill `message` (an empty protobuf message) from `node`; return the problems found.

    `stop_at_unknown`: raise UnknownFieldMet at the first field the schema does not
    know, leaving `message` half filled (a fork net read first under BVLC's schema
    is read again in the fork's: the rest of the first conversion would be wasted)."""
    problems: list[SchemaProblem] = _StopAtUnknown() if stop_at_unknown else []
    _fill(node, message, path, problems)
    return list(problems) if stop_at_unknown else problems


def type_label(fd: FieldDescriptor) -> str:
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return f"enum {fd.enum_type.name}"
    if fd.type in _MESSAGES:
        return f"message {fd.message_type.name}"
    return _TYPE_NAMES.get(fd.type, "value")


def _a(noun: str) -> str:
    """The noun with its indefinite article ("an enum ...", "a float")."""
    return ("an " if noun[:1] in "aeio" else "a ") + noun   # "a uint32"


_FIELDS: dict = {}       # message descriptor -> {name: (field descriptor, repeated, type)}


def _fields(desc) -> dict:
    """A message type's fields as a plain dict: a conversion asks for them per field,
    and reading descriptors' attributes costs more than the dict."""
    fields = _FIELDS.get(desc)
    if fields is None:
        fields = _FIELDS[desc] = {fd.name: (fd, fd.is_repeated, fd.type) for fd in desc.fields}
    return fields


def _fill(node, message, path: str, problems: list[SchemaProblem]) -> None:
    desc = message.DESCRIPTOR
    fields = _fields(desc)
    seen: set[str] = set()
    for field in node.fields:
        name = field.name
        fpath = f"{path}.{name}" if path else name
        facts = fields.get(name)
        if facts is None:
            problems.append(_unknown(field, desc, fpath))
            continue
        fd, repeated, ftype = facts
        if not repeated:
            if name in seen:
                problems.append(_problem(INVALID_VALUE, field, desc, fpath,
                                         f"'{name}' is set twice but is not a repeated field "
                                         f"(Caffe refuses the file)", span=field))
                continue
            seen.add(name)
        value = field.value
        items = value.items if isinstance(value, ListValue) else [value]
        if isinstance(value, ListValue) and not repeated:
            problems.append(_problem(INVALID_VALUE, field, desc, fpath,
                                     f"'{name}' is not repeated; a [list] is not allowed",
                                     span=value))
            continue
        if ftype in _MESSAGES:
            for item in items:
                if not isinstance(item, Message):
                    problems.append(_problem(
                        INVALID_VALUE, field, desc, fpath,
                        f"'{name}' is a {fd.message_type.name} message: expected '{{', "
                        f"found {item.text!r}", span=item))
                    continue
                sub = getattr(message, name).add() if repeated else getattr(message, name)
                sub.SetInParent()
                _fill(item, sub, fpath, problems)
                _missing_required(item, sub, field, fpath, problems)
            continue
        if field.colon is None:
            problems.append(_problem(INVALID_VALUE, field, desc, fpath,
                                     f"expected ':' between '{name}' and its value "
                                     f"({type_label(fd)})", span=value))
            continue
        for item in items:
            if not isinstance(item, Scalar):
                problems.append(_problem(INVALID_VALUE, field, desc, fpath,
                                         f"'{name}' takes {_a(type_label(fd))} value, "
                                         f"not a message", span=item))
                continue
            try:
                converted = _scalar(fd, ftype, item)
            except ValueError as err:
                problems.append(_problem(INVALID_VALUE, field, desc, fpath,
                                         f"'{name}' ({type_label(fd)}): {err}", span=item))
                continue
            if repeated:
                getattr(message, name).append(converted)
            else:
                setattr(message, name, converted)


_REQUIRED: dict = {}     # message descriptor -> its required fields (few have any)


def _missing_required(item: Message, sub, field: Field, fpath: str,
                      problems: list[SchemaProblem]) -> None:
    """A proto2 `required` field that is not set (Clip's min and max): Caffe refuses the
    file, and protobuf refuses to serialise the message. A field that was written
    with a bad value has its problem already."""
    required = _REQUIRED.get(sub.DESCRIPTOR)
    if required is None:
        required = _REQUIRED[sub.DESCRIPTOR] = tuple(fd for fd in sub.DESCRIPTOR.fields
                                                     if fd.is_required)
    if not required:
        return
    written = {f.name for f in item.fields}
    for fd in required:
        if fd.name not in written:
            problems.append(_problem(INVALID_VALUE, field, sub.DESCRIPTOR, f"{fpath}.{fd.name}",
                                     f"'{field.name}' lacks '{fd.name}', a required field "
                                     f"(Caffe refuses the file)", span=field))


def _scalar(fd: FieldDescriptor, ftype: int, item: Scalar):
    is_str = values.is_string(item)
    if ftype == FieldDescriptor.TYPE_STRING:
        if not is_str:
            raise ValueError(f"expected a quoted string, found {item.text}")
        try:
            return values.string_value(item)
        except UnicodeDecodeError:
            raise ValueError("string is not valid UTF-8") from None
    if ftype == FieldDescriptor.TYPE_BYTES:
        if not is_str:
            raise ValueError(f"expected a quoted string, found {item.text}")
        return values.string_bytes(item)
    if is_str:
        raise ValueError(f"expected {_a(_TYPE_NAMES.get(ftype, 'value'))}, found a string "
                         f"{item.text}")
    text = item.text
    if ftype in _FLOATS:
        return values.parse_float(text)
    if ftype == FieldDescriptor.TYPE_BOOL:
        return values.parse_bool(text)
    if ftype == FieldDescriptor.TYPE_ENUM:
        enum = fd.enum_type
        number = _enum_numbers(enum).get(text)
        if number is not None:
            return number
        try:
            number = values.parse_int(text)
        except ValueError:
            choices = ", ".join(v.name for v in enum.values)
            hint = _close_match(text, [v.name for v in enum.values])
            also = f" (did you mean {hint}?)" if hint else ""
            raise ValueError(f"unknown value {text!r}{also}; one of: {choices}") from None
        if number not in enum.values_by_number:
            raise ValueError(f"{number} is not a value of {enum.name}")
        return number
    lo, hi = _INT_RANGES[ftype]
    number = values.parse_int(text)
    if not lo <= number <= hi:
        raise ValueError(f"{text} is out of range [{lo}, {hi}]")
    return number


_ENUM_NUMBERS: dict = {}


def _enum_numbers(enum) -> dict[str, int]:
    numbers = _ENUM_NUMBERS.get(enum)
    if numbers is None:
        numbers = _ENUM_NUMBERS[enum] = {v.name: v.number for v in enum.values}
    return numbers


def _unknown(field: Field, desc, fpath: str) -> SchemaProblem:
    return SchemaProblem(UNKNOWN_FIELD, f"unknown field '{field.name}' in {desc.name}",
                         field.name_token.offset, field.name_token.end, fpath, field.name,
                         desc.full_name, tuple(desc.fields_by_name))


def _problem(kind: str, field: Field, desc, fpath: str, message: str, span) -> SchemaProblem:
    return SchemaProblem(kind, message, span.start, span.end, fpath, field.name, desc.full_name)
