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
