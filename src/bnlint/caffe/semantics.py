"""What a layer's parameters mean to Caffe, in one normal form both comparisons use.

`to-deploy --check` (a generated deploy net against a hand-written one) and `verify`
(whether B's layer computes what A's does, so B may reuse A's tops) ask the same
question of two LayerParameters: do they mean the same forward? Both read the
answer from `normal_form`:

- fillers go (the blobs are given), and so does `engine` (CAFFE or CUDNN is an
  implementation, not the maths);
- a value written at its default goes, and so does a block left empty, except the
  fields whose presence Caffe asks with has_*() (`pad_h` set at 0 with `pad` makes
  Caffe refuse the layer; `concat_dim` wins over `axis`): those stay when written;
- a repeated field Caffe reads with an implicit default when empty goes when it
  holds exactly that default (`stride: 1` is no `stride`);
- BatchNorm's `use_global_stats` is written as what the layer's phase makes it, and
  `moving_average_fraction`, which only trains, goes.

Erring towards "different" is safe for both: `--check` then shows a line to judge,
and `verify` computes the layer instead of reusing A's tops.
"""

from __future__ import annotations

from typing import Iterable

from bnlint.caffe.layers.batchnorm import uses_global_stats
from bnlint.caffe.phase import Phase

# Fields whose presence matters even at their default value (Caffe asks has_*()).
PRESENCE_MATTERS = frozenset({"pad_h", "pad_w", "kernel_h", "kernel_w", "stride_h",
                              "stride_w", "slice_dim", "concat_dim", "phase",
                              "use_global_stats"})

# Repeated fields Caffe reads with an implicit default when empty (base_conv_layer.cpp:
# an empty `stride` is 1, an empty `pad` 0, an empty `dilation` 1).
REPEATED_DEFAULTS = {("ConvolutionParameter", "stride"): [1],
                     ("ConvolutionParameter", "pad"): [0],
                     ("ConvolutionParameter", "dilation"): [1]}


def normal_form(layer, phase: Phase, drop: Iterable[str] = ()):
    """A copy of a LayerParameter as Caffe runs it in `phase`, fields `drop` cleared
    (what the caller does not compare: names, wiring, rules, blobs)."""
    norm = type(layer)()
    norm.CopyFrom(layer)
    fields = norm.DESCRIPTOR.fields_by_name
    for name in drop:
        if name in fields:
            norm.ClearField(name)
    if norm.type == "BatchNorm":
        param = norm.batch_norm_param
        param.use_global_stats = uses_global_stats(layer, phase)
        param.ClearField("moving_average_fraction")
    normalize(norm)
    return norm


def normalize(message) -> None:
    """Drop fillers, `engine`, values written at their default, and blocks left empty,
    recursively (in place)."""
    for fd, value in list(message.ListFields()):
        if fd.is_repeated and fd.message_type is None and \
                REPEATED_DEFAULTS.get((message.DESCRIPTOR.name, fd.name)) == list(value):
            message.ClearField(fd.name)
        elif fd.name == "engine":
            message.ClearField(fd.name)
        elif fd.message_type is not None:
            if fd.message_type.name == "FillerParameter":
                message.ClearField(fd.name)
                continue
            subs = list(value) if fd.is_repeated else [value]
            for sub in subs:
                normalize(sub)
            if not fd.is_repeated and not value.ListFields():
                message.ClearField(fd.name)
        elif not fd.is_repeated and fd.name not in PRESENCE_MATTERS and \
                value == fd.default_value:
            message.ClearField(fd.name)
