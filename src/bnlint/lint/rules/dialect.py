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
        yield self.diag(ctx, f"read as the '{dialect.name}' dialect, {dialect.fork}: only its "
                        f"schema has {shown}", start=offset,
                        end=offset + len(path.rsplit(".", 1)[-1]), dialect=dialect.name,
                        fields=paths)
