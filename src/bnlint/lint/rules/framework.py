"""Rules the runner itself reports (documented here like every other rule)."""

from __future__ import annotations

from bnlint.lint.diagnostics import Severity
from bnlint.lint.registry import Rule, register_rule


@register_rule
class SyntaxError_(Rule):
    """Text that is not valid protobuf text format.

    Caffe refuses the whole file, so nothing else can be checked. The finding points
    at the offending token.

    Bad:
        layer { name: "conv1" type: "Convolution"

    Good:
        layer { name: "conv1" type: "Convolution" }
    """

    code = "E001"
    name = "syntax-error"
    severity = Severity.ERROR


@register_rule
class UnusedSuppression(Rule):
    """A `# bnlint: disable=CODE` comment that suppressed nothing.

    Stale suppressions hide the next real finding of that code; delete them.

    Bad:
        layer {  # bnlint: disable=BN010
          name: "bn1" type: "BatchNorm" bottom: "x" top: "x"
        }
        layer { name: "s1" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true } }

    Good: the same net without the comment.
    """

    code = "S001"
    name = "unused-suppression"
    severity = Severity.WARNING


@register_rule
class InvalidSuppression(Rule):
    """A `# bnlint:` comment that cannot suppress anything: a misspelt directive or a
    code no rule has.

    A typo in a suppression would otherwise pass silently, and the finding it was meant
    for would stay (or, worse, the comment would be read as meant and forgotten). The
    message names the nearest directive or code. A rule's name is not a code.

    Bad:
        layer { name: "bn1" type: "BatchNorm" bottom: "x" top: "x" }  # bnlint: disabel=BN010
        layer { name: "bn2" type: "BatchNorm" bottom: "x" top: "x" }  # bnlint: disable=BN999

    Good:
        layer { name: "bn1" type: "BatchNorm" bottom: "x" top: "x" }  # bnlint: disable=BN010
    """

    code = "S002"
    name = "invalid-suppression"
    severity = Severity.WARNING
