"""What changed from one net to another, marked on the second one's picture.

Layers are matched by name, as Caffe copies weights by name: a layer of B that A
lacks is added, one of A that B lacks is removed, one in both whose parameters,
type or blobs differ is changed, with the fields that differ listed. A removed
member of an in-place chain whose head is still there (the BatchNorm and Scale that
`fold` took into their Convolution) is drawn struck through in that block; other
removed layers are listed beside the net.
"""

from __future__ import annotations

import os

from bnlint.draw.model import Member, Picture


def mark_changes(before: Picture, after: Picture) -> None:
    """Mark `after`'s members against `before` (in place)."""
    old = {}
    for m in before.members():
        old.setdefault(m.name, m)
    seen = set()
    counts = {"added": 0, "changed": 0, "removed": 0}
    for m in after.members():
        seen.add(m.name)
        previous = old.get(m.name)
        if previous is None:
            m.status = "added"
        else:
            m.changes = member_changes(previous, m)
            m.status = "changed" if m.changes else ""
        if m.status:
            counts[m.status] += 1
    place = {m.name: (block, i) for block in after.blocks for i, m in enumerate(block.members)}
    for block in before.blocks:
        for i, m in enumerate(block.members):
            if m.name in seen:
                continue
            seen.add(m.name)
            m.status = "removed"
            m.findings = []          # they were findings of the other file
            counts["removed"] += 1
            # a member of an in-place chain whose head survived stays in its block
            anchor = next((place[p.name] for p in reversed(block.members[:i])
                           if p.name in place), None)
            if anchor is None:
                after.removed.append(m)
                continue
            host, at = anchor
            m.kind = "removed"
            host.members.insert(at + 1, m)
            place[m.name] = (host, at + 1)
            for j, other in enumerate(host.members):
                place[other.name] = (host, j)
    summary = ", ".join(f"{n} {what}" for what, n in counts.items())
    name = os.path.basename(before.path) or before.path
    after.subtitle = f"against {name}: {summary}"
    after.title = f"{after.title}, changes against {name}"


def member_changes(a: Member, b: Member) -> list[str]:
    out = []
    if a.type != b.type:
        out.append(f"type: {a.type} -> {b.type}")
    for what, x, y in (("bottoms", a.bottoms, b.bottoms), ("tops", a.tops, b.tops)):
        names_a, names_b = [n for n, _ in x], [n for n, _ in y]
        if names_a != names_b:
            out.append(f"{what}: {', '.join(names_a) or '-'} -> {', '.join(names_b) or '-'}")
    if a.message is not None and b.message is not None:
        out.extend(field_changes(a.message, b.message, skip={"name", "type", "bottom", "top"}))
    return out


def field_changes(a, b, prefix: str = "", skip: frozenset | set = frozenset()) -> list[str]:
    """Differences of two protobuf messages, field by field, as `path: old -> new`."""
    fields_a = {f.name: (f, v) for f, v in a.ListFields() if f.name not in skip}
    fields_b = {f.name: (f, v) for f, v in b.ListFields() if f.name not in skip}
    numbers = {name: fv[0].number for name, fv in {**fields_a, **fields_b}.items()}
    out = []
    for name in sorted(numbers, key=numbers.get):
        path = prefix + name
        if name not in fields_b:
            out.append(f"{path} removed (was {_short(fields_a[name][1])})")
        elif name not in fields_a:
            out.append(f"{path} added: {_short(fields_b[name][1])}")
        else:
            (fd, va), (_, vb) = fields_a[name], fields_b[name]
            if va == vb:
                continue
            if fd.message_type is not None and not _repeated(fd):
                out.extend(field_changes(va, vb, path + "."))
            else:
                out.append(f"{path}: {_short(va)} -> {_short(vb)}")
    return out


def _repeated(fd) -> bool:
    is_repeated = getattr(fd, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return fd.label == fd.LABEL_REPEATED


def _short(value) -> str:
    if hasattr(value, "ListFields"):
        text = "{ " + " ".join(str(value).split()) + " }"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:.7g}"        # float32 fields: no 0.0010000000474974513
    elif isinstance(value, (str, bytes, int)):
        text = repr(value) if isinstance(value, (str, bytes)) else str(value)
    else:
        text = "[" + ", ".join(_short(v) for v in value) + "]"
    return text if len(text) <= 80 else text[:77] + "..."
