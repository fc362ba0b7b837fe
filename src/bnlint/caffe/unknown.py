"""The fields of a text tree that a schema does not know: what `detect_dialect` reads.

Name lookups only, no conversion, and the fields inside an unknown field are not
visited (the schema cannot say what they are). A fork net is walked for all six
forks at once (`unknown_fields_each`): the forks share most message types, and a
block is walked once per distinct type, not once per fork.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bnlint.syntax.nodes import Document, Message

Found = tuple[str, int]        # (dotted field path, offset of the field name)


def unknown_fields(node: Document | Message, descriptor, path: str = "") -> list[Found]:
    """Every field of the tree the descriptor does not know, depth first. It reads
    plain dicts (`_field_types`), not descriptors: a walk asks for every field."""
    from bnlint.syntax.nodes import ListValue, Message

    found: list[Found] = []
    types = _field_types(descriptor)
    for f in node.fields:
        name = f.name
        if name not in types:
            found.append((f"{path}.{name}" if path else name, f.name_token.offset))
            continue
        sub = types[name]
        if sub is None:
            continue
        fpath = f"{path}.{name}" if path else name
        value = f.value
        if isinstance(value, Message):
            found.extend(unknown_fields(value, sub, fpath))
        elif isinstance(value, ListValue):
            for item in value.items:
                if isinstance(item, Message):
                    found.extend(unknown_fields(item, sub, fpath))
    return found


def unknown_fields_each(node: Document | Message, descriptors) -> list[list[Found]]:
    """`unknown_fields` of each of several message types (one per fork) in one walk.

    The forks share most message types, field for field: where several of them
    have the same `_shape`, the block is walked once for all of them."""
    groups: dict[int, list[int]] = {}
    for i, descriptor in enumerate(descriptors):
        groups.setdefault(_shape(descriptor), []).append(i)
    found: list[list[Found]] = [[] for _ in descriptors]
    shared = _unknown_fields_of_shapes(node, tuple(descriptors[g[0]] for g in groups.values()),
                                       "")
    for members, left in zip(groups.values(), shared):
        for i in members:
            found[i] = list(left)
    return found


def _unknown_fields_of_shapes(node, descriptors: tuple, path: str) -> list[list[Found]]:
    """`unknown_fields` of each descriptor; no two of them have the same shape."""
    from bnlint.syntax.nodes import ListValue, Message

    if len(descriptors) == 1:
        return [unknown_fields(node, descriptors[0], path)]
    found: list[list[Found]] = [[] for _ in descriptors]
    plans = _field_plans(descriptors)
    for f in node.fields:
        name = f.name
        plan = plans.get(name)
        if plan is None:
            plan = plans[name] = _field_plan(descriptors, name)
        unknown_to, subs, members = plan
        fpath = f"{path}.{name}" if path else name
        for i in unknown_to:
            found[i].append((fpath, f.name_token.offset))
        if not subs:
            continue
        value = f.value
        items = [value] if isinstance(value, Message) else \
            [item for item in value.items if isinstance(item, Message)] \
            if isinstance(value, ListValue) else []
        for item in items:
            for positions, left in zip(members, _unknown_fields_of_shapes(item, subs, fpath)):
                for i in positions:
                    found[i].extend(left)
    return found


_PLANS: dict = {}        # descriptors -> {field name: _field_plan}


def _field_plans(descriptors: tuple) -> dict:
    plans = _PLANS.get(descriptors)
    if plans is None:
        plans = _PLANS[descriptors] = {}
    return plans


def _field_plan(descriptors: tuple, name: str) -> tuple:
    """For a field name: the positions of the types that do not know it, and its
    message types one per shape, with the positions each stands for."""
    unknown_to = []
    groups: dict[int, tuple] = {}
    for i, descriptor in enumerate(descriptors):
        types = _field_types(descriptor)
        if name not in types:
            unknown_to.append(i)
        elif types[name] is not None:
            groups.setdefault(_shape(types[name]), (types[name], []))[1].append(i)
    return (tuple(unknown_to), tuple(sub for sub, _ in groups.values()),
            tuple(tuple(positions) for _, positions in groups.values()))


_SHAPES: dict = {}       # message descriptor -> the id of its shape
_SHAPE_IDS: dict = {}    # shape -> id


def _shape(descriptor, visiting: frozenset = frozenset()) -> int:
    """An id equal for message types with the same field names, each a message (of
    the same shape) or not in both: `unknown_fields` cannot tell such types apart.
    A type met again inside itself gets an id of its own (never wrongly shared)."""
    known = _SHAPES.get(descriptor)
    if known is not None:
        return known
    if descriptor in visiting:
        return _SHAPE_IDS.setdefault(("recursive", id(descriptor)), len(_SHAPE_IDS))
    inner = visiting | {descriptor}
    key = tuple(sorted((name, None if sub is None else _shape(sub, inner))
                       for name, sub in _field_types(descriptor).items()))
    shape = _SHAPES[descriptor] = _SHAPE_IDS.setdefault(key, len(_SHAPE_IDS))
    return shape


_FIELD_TYPES: dict = {}


def _field_types(descriptor) -> dict:
    """A message type's field names -> their message type (None for scalars)."""
    types = _FIELD_TYPES.get(descriptor)
    if types is None:
        types = _FIELD_TYPES[descriptor] = {fd.name: fd.message_type
                                            for fd in descriptor.fields}
    return types
