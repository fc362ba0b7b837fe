"""One schema from several forks' schemas, for nets written for a fork of a fork.

Forks are BVLC's caffe.proto plus their own fields and messages, so two of them
combine by adding to the first what only the second has. A field of the second
that takes a number the first uses for another field replaces that field: the
net uses it (that is why the second fork was added), e.g. a ceil-mode fork's
`ceil_mode` takes the number of BVLC's `round_mode`.
"""

from __future__ import annotations


def merged_descriptor_set(sets: list[bytes]) -> bytes:
    """A serialized FileDescriptorSet whose last file is the first set's last file
    (the schema itself; earlier files are its imports) with the others' additions."""
    from google.protobuf import descriptor_pb2

    parsed = [descriptor_pb2.FileDescriptorSet.FromString(data) for data in sets]
    base = parsed[0]
    target = base.file[-1]
    for other in parsed[1:]:
        source = other.file[-1]
        if source.package != target.package:
            raise ValueError(f"cannot combine package {source.package!r} with "
                             f"{target.package!r}")
        _merge_types(target.message_type, source.message_type, target.enum_type,
                     source.enum_type)
    return base.SerializeToString()


def _merge_types(messages, other_messages, enums, other_enums) -> None:
    by_name = {m.name: m for m in messages}
    for message in other_messages:
        mine = by_name.get(message.name)
        if mine is None:
            messages.add().CopyFrom(message)
        else:
            _merge_message(mine, message)
    enum_names = {e.name for e in enums}
    for enum in other_enums:
        if enum.name not in enum_names:
            enums.add().CopyFrom(enum)


def _merge_message(mine, other) -> None:
    names = {f.name for f in mine.field}
    for f in other.field:
        if f.name in names:
            continue
        taken = [i for i, g in enumerate(mine.field) if g.number == f.number]
        for i in reversed(taken):
            del mine.field[i]
        mine.field.add().CopyFrom(f)
    _merge_types(mine.nested_type, other.nested_type, mine.enum_type, other.enum_type)
