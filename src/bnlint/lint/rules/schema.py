"""Rules about the text fitting the Caffe schema (what protobuf itself would refuse)."""

from __future__ import annotations

from bnlint.caffe import known
from bnlint.caffe.messages import INVALID_VALUE, UNKNOWN_FIELD
from bnlint.lint.diagnostics import Severity
from bnlint.lint.registry import Rule, register_rule


@register_rule
class UnknownField(Rule):
    """A field the Caffe schema does not know.

    BVLC Caffe refuses to load the file. Fork nets (SSD, SegNet, R-FCN, ceil-mode
    pooling, NVCaffe) use such fields on purpose: the message names the fork the field
    comes from, and the net only runs on that fork.

    Bad:
        pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false }

    Good (BVLC Caffe):
        pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR }
    """

    code = "E002"
    name = "unknown-field"
    severity = Severity.ERROR

    def check_net(self, ctx):
        for p in ctx.text_file.problems:
            if p.kind != UNKNOWN_FIELD:
                continue
            fork = known.fork_of_field(p.container, p.field)
            message = p.message
            if fork:
                message = (f"unknown field '{p.field}' in {p.container.rsplit('.', 1)[-1]}: "
                           f"it comes from {fork}; BVLC Caffe refuses this file")
            yield self.diag(ctx, message, start=p.start, end=p.end, fork=fork)


@register_rule
class InvalidValue(Rule):
    """A value of the wrong type, an unknown enum value, or a number out of range.

    Bad:
        pooling_param { pool: MAXIMUM }
        convolution_param { num_output: -64 }

    Good:
        pooling_param { pool: MAX }
        convolution_param { num_output: 64 }
    """

    code = "E003"
    name = "invalid-value"
    severity = Severity.ERROR

    def check_net(self, ctx):
        for p in ctx.text_file.problems:
            if p.kind == INVALID_VALUE:
                yield self.diag(ctx, p.message, start=p.start, end=p.end)
