"""One schema from several forks' schemas, for nets written for a fork of a fork.

Forks are BVLC's caffe.proto plus their own fields and messages, so two of them
combine by adding to the first what only the second has. Where the two give one field
number two meanings, one must go, and the choice is recorded (`FieldConflict`, shown
by rule D002): a fork's own field wins over BVLC's field at that number, since the net
was read with that fork for its fields (a ceil-mode fork's `ceil_mode` takes the
number of BVLC's `round_mode`, whichever order the forks are named in); between two
forks' own fields, the first-named fork keeps its field.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Why a conflict went one way (`FieldConflict.reason`).
FORK_OVER_BVLC = "fork-field-over-bvlc"
FIRST_FORK = "first-fork"


@dataclass(frozen=True)
class FieldConflict:
    """One field number two of the combined forks use for different fields."""

    message: str          # the message's full name without the package, "PoolingParameter"
    number: int
    kept: str             # the field the combined schema has at that number
    kept_by: int          # index of the fork it comes from
    dropped: str
    dropped_by: int
    reason: str           # FORK_OVER_BVLC or FIRST_FORK


def merged_descriptor_set(sets: list[bytes],
                          bvlc: set[tuple[str, str, int]] = frozenset()
                          ) -> tuple[bytes, list[FieldConflict]]:
    """A serialized FileDescriptorSet whose last file is the first set's last file
    (the schema itself; earlier files are its imports) with the others' additions,
    and the field numbers that had two meanings. `bvlc` holds BVLC's fields as
    (message, field name, number)."""
    from google.protobuf import descriptor_pb2

    parsed = [descriptor_pb2.FileDescriptorSet.FromString(data) for data in sets]
    base = parsed[0]
    target = base.file[-1]
    conflicts: list[FieldConflict] = []
    origin: dict[tuple[str, str], int] = {}      # (message, field) -> fork index, if not 0
    for index, other in enumerate(parsed[1:], start=1):
        source = other.file[-1]
        if source.package != target.package:
            raise ValueError(f"cannot combine package {source.package!r} with "
                             f"{target.package!r}")
        merger = _Merger(index, bvlc, origin, conflicts)
        merger.types("", target.message_type, source.message_type, target.enum_type,
                     source.enum_type)
    return base.SerializeToString(), conflicts


@dataclass
class _Merger:
    index: int
    bvlc: set[tuple[str, str, int]]
    origin: dict[tuple[str, str], int]
    conflicts: list[FieldConflict]

    def types(self, prefix, messages, other_messages, enums, other_enums) -> None:
        by_name = {m.name: m for m in messages}
        for message in other_messages:
            mine = by_name.get(message.name)
            if mine is None:
                messages.add().CopyFrom(message)
            else:
                self.message(f"{prefix}{message.name}", mine, message)
        enum_names = {e.name for e in enums}
        for enum in other_enums:
            if enum.name not in enum_names:
                enums.add().CopyFrom(enum)

    def message(self, name: str, mine, other) -> None:
        names = {f.name for f in mine.field}
        for f in other.field:
            if f.name in names:
                continue
            taken = [i for i, g in enumerate(mine.field) if g.number == f.number]
            if not taken:
                mine.field.add().CopyFrom(f)
                self.origin[(name, f.name)] = self.index
                continue
            old = mine.field[taken[0]]
            old_by = self.origin.get((name, old.name), 0)
            if (name, old.name, old.number) in self.bvlc and \
                    (name, f.name, f.number) not in self.bvlc:
                del mine.field[taken[0]]
                mine.field.add().CopyFrom(f)
                self.origin[(name, f.name)] = self.index
                self.conflicts.append(FieldConflict(name, f.number, f.name, self.index,
                                                    old.name, old_by, FORK_OVER_BVLC))
            else:
                reason = (FORK_OVER_BVLC if (name, f.name, f.number) in self.bvlc
                          else FIRST_FORK)
                self.conflicts.append(FieldConflict(name, f.number, old.name, old_by,
                                                    f.name, self.index, reason))
        self.types(f"{name}.", mine.nested_type, other.nested_type, mine.enum_type,
                   other.enum_type)


def bvlc_fields() -> set[tuple[str, str, int]]:
    """BVLC's fields as (message, field name, number), nested messages dotted."""
    from bnlint.caffe import caffe_pb2

    out: set[tuple[str, str, int]] = set()

    def walk(descriptor, prefix: str) -> None:
        name = f"{prefix}{descriptor.name}"
        for f in descriptor.fields:
            out.add((name, f.name, f.number))
        for nested in descriptor.nested_types:
            walk(nested, f"{name}.")

    for descriptor in caffe_pb2.DESCRIPTOR.message_types_by_name.values():
        walk(descriptor, "")
    return out
