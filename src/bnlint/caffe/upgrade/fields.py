"""Field access on messages of any schema (a fork's too), shared by the upgrade steps."""

from __future__ import annotations

from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor

from bnlint.errors import BnlintError


def name_label(name: str, fallback: str) -> str:
    return repr(name) if name else fallback


def v0_label(connection, index: int) -> str:
    return name_label(connection.layer.name, f"layers[{index}]")


def is_set(message, name: str) -> bool:
    fd = message.DESCRIPTOR.fields_by_name[name]
    return len(getattr(message, name)) > 0 if fd.is_repeated else message.HasField(name)


def field_value(message, name: str):
    """A scalar, or a repeated field as a plain list (safe to keep across Clear())."""
    value = getattr(message, name)
    return list(value) if message.DESCRIPTOR.fields_by_name[name].is_repeated else value


def enum_value_name(message, name: str) -> str | None:
    """The enum value's name ("DATA"), or None when the number has no name."""
    enum_type = message.DESCRIPTOR.fields_by_name[name].enum_type
    value = enum_type.values_by_number.get(getattr(message, name))
    return value.name if value is not None else None


def enum_number(message, name: str, value_name: str) -> int:
    return message.DESCRIPTOR.fields_by_name[name].enum_type.values_by_name[value_name].number


def message_class(message, short_name: str) -> type:
    """A sibling message class from the same schema file as `message`."""
    desc = message.DESCRIPTOR.file.message_types_by_name[short_name]
    return message_factory.GetMessageClass(desc)


def copy_field(source, source_name: str, target, path: str, label: str) -> None:
    """Copy one V0 field to a dotted path in a V1 layer: set, append or merge by type."""
    *parents, leaf = path.split(".")
    for part in parents:
        target = getattr(target, part)
    value = getattr(source, source_name)
    fd = target.DESCRIPTOR.fields_by_name[leaf]
    if fd.type == FieldDescriptor.TYPE_ENUM:
        source_enum = source.DESCRIPTOR.fields_by_name[source_name].enum_type
        value = enum_number(target, leaf, source_enum.values_by_number[value].name)
    try:
        if fd.message_type is not None:
            getattr(target, leaf).CopyFrom(value)
        elif fd.is_repeated:
            getattr(target, leaf).append(value)
        else:
            setattr(target, leaf, value)
    except (TypeError, ValueError) as err:
        raise BnlintError(f"V0 layer {label}: {source_name} {value!r} cannot become "
                          f"{path} ({err})") from None
