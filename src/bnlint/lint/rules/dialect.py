"""Rules about the Caffe dialect a file is read in."""

from __future__ import annotations

from bnlint.lint.diagnostics import Severity
from bnlint.lint.registry import Rule, register_rule

SHOWN_FIELDS = 4


@register_rule
class DialectDetected(Rule):
    """The net uses a Caffe fork's fields, so it is read in that fork's dialect.

    With `--dialect auto` (the default) a net whose fields only a fork's caffe.proto
    knows is read with that fork's schema, instead of failing on those fields
    (E002). The finding names the fork and the fields that gave it away; it points
    at the first of them. Such a net runs only on that fork, and its binary form
    and weights use the fork's field numbers. Name the dialect (`--dialect NAME`,
    or `dialect = "NAME"` in [tool.bnlint]) to make the choice explicit, or give
    your fork's schema with `--proto`.

    A fork of a fork is read with both schemas: a Faster R-CNN net with ROI
    pooling and ceil-mode pooling is read as `frcnn+ceil`.

    The evidence is weighed: a layer type of the fork, several of its fields, or
    one field that changes what a BVLC layer computes (`ceil_mode`, NVCaffe's
    `scale_bias`) show a net written for the fork, and the rules follow the fork
    (no BN001 where its BatchNorm freezes the statistics itself, no BN030 or N008
    for its own layers). One incidental field (`data_param.shuffle`, which NVCaffe
    has) is weak evidence: the finding says so, the field is read with the fork's
    schema, and the rules stay those of `portable`.

    Example (read as the `ceil` dialect):
        pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false }
    """

    code = "D001"
    name = "dialect-detected"
    severity = Severity.INFO

    def check_net(self, ctx):
        detection = ctx.text_file.detection
        if detection is None or not detection.detected:
            return
        dialect = detection.dialect
        paths = detection.evidence_paths()
        shown = ", ".join(f"'{p}'" for p in paths[:SHOWN_FIELDS])
        if len(paths) > SHOWN_FIELDS:
            shown += f" and {len(paths) - SHOWN_FIELDS} more"
        path, offset = detection.evidence[0]
        if detection.strong:
            schema = "their schemas have" if dialect.parts else "only its schema has"
            message = f"read as the '{dialect.name}' dialect, {dialect.fork}: {schema} {shown}"
        else:
            message = (f"{shown} exists only in {dialect.fork}: read with the "
                       f"'{dialect.name}' schema, but one incidental field does not make "
                       f"a {dialect.name} net, so the portable rules apply (give "
                       f"--dialect {dialect.name} if the net is for that fork)")
        yield self.diag(ctx, message, start=offset,
                        end=offset + len(path.rsplit(".", 1)[-1]), dialect=dialect.name,
                        fields=paths, strong=detection.strong)


@register_rule
class DialectFieldConflict(Rule):
    """The net's dialects give one field number two meanings: which one bnlint reads, and why.

    A net read as a combination of forks (`frcnn+ceil`, detected or given with
    `--dialect`) is read with one schema holding both forks' fields. Where the forks
    number two different fields alike, the schema can hold only one: field 13 of
    PoolingParameter is BVLC's `round_mode` (enum, kept by py-faster-rcnn's fork) in
    one and `ceil_mode` (bool) in a ceil-mode fork. A fork's own field wins over
    BVLC's at that number (the fork was joined for such fields); between two forks'
    own fields (a clash `--dialect` refuses, which detection may still meet) the first
    fork's wins. The finding points at the first field of
    the net with that number; the other meaning is then an unknown field (E002), and
    binary files and weights are read with the chosen one.

    Example (read as `frcnn+ceil`; `ceil_mode` takes number 13 from `round_mode`):
        pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false }
    """

    code = "D002"
    name = "dialect-field-conflict"
    severity = Severity.INFO

    def check_net(self, ctx):
        dialect = ctx.text_file.dialect
        if dialect is None or not dialect.parts:
            return
        from bnlint.caffe.combine import FIRST_FORK     # combined dialects only
        from bnlint.caffe.dialects import field_conflicts

        conflicts = field_conflicts(dialect)
        if not conflicts:
            return
        by_field = {}
        for conflict in conflicts:
            by_field[(conflict.message, conflict.kept)] = conflict
            by_field[(conflict.message, conflict.dropped)] = conflict
        sites = _first_sites(ctx.text_file.tree, dialect.schema().descriptor("NetParameter"),
                             set(by_field))
        shown = set()
        for (message, name), (path, offset) in sites.items():
            conflict = by_field[(message, name)]
            if conflict in shown:
                continue
            shown.add(conflict)
            kept, dropped = (dialect.parts[conflict.kept_by], dialect.parts[conflict.dropped_by])
            why = ("the first fork's, as detected; both are forks' own fields, so "
                   "--dialect refuses this pair: give your fork's caffe.proto with --proto"
                   if conflict.reason == FIRST_FORK
                   else f"{kept}'s own field wins over BVLC's, which {dropped} keeps")
            text = (f"field {conflict.number} of {message} is '{conflict.dropped}' in "
                    f"{dropped} and '{conflict.kept}' in {kept}: read as "
                    f"'{conflict.kept}' ({why})")
            yield self.diag(ctx, text, start=offset, end=offset + len(name),
                            dialect=dialect.name, message_type=message,
                            number=conflict.number,
                            kept=conflict.kept, dropped=conflict.dropped,
                            reason=conflict.reason)


def _first_sites(node, descriptor, wanted: set, path: str = "", sites=None) -> dict:
    """(message, field) -> (path, offset of the first field of that name there), for
    the wanted pairs, depth first in file order (unknown fields are not entered)."""
    from bnlint.syntax.nodes import ListValue, Message

    sites = {} if sites is None else sites
    message = descriptor.full_name.split(".", 1)[-1]
    for f in node.fields:
        fpath = f"{path}.{f.name}" if path else f.name
        key = (message, f.name)
        if key in wanted and key not in sites:
            sites[key] = (fpath, f.name_token.offset)
        fd = descriptor.fields_by_name.get(f.name)
        if fd is None or fd.message_type is None:
            continue
        items = f.value.items if isinstance(f.value, ListValue) else [f.value]
        for item in items:
            if isinstance(item, Message):
                _first_sites(item, fd.message_type, wanted, fpath, sites)
    return sites
