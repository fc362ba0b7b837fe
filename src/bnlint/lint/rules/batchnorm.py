"""The BatchNorm layer rules: its statistics blobs, eps, the bias before it, fork forms.

The affine after it is in affine.py, what runs in which phase in phases.py."""

from __future__ import annotations

from bnlint.caffe.layers.batchnorm import INTEL_FIELDS, MIN_EPS, NVCAFFE_FIELDS
from bnlint.caffe.phase import Phase
from bnlint.lint.diagnostics import Fix, Severity
from bnlint.lint.registry import Rule, register_rule
from bnlint.syntax import edits

BN = ("BatchNorm",)
FROZEN_PARAM = "param { lr_mult: 0 decay_mult: 0 }"


def _indent_lines(field, lines: list[str]) -> str:
    indent = edits.indentation_of(field)
    sep = "\n" + indent if indent is not None else " "
    return sep.join(lines)


def _trains(ctx) -> bool:
    """Whether the file is meant for training (a deploy net never updates weights)."""
    return not ctx.is_deploy


@register_rule
class BnStatsNotFrozen(Rule):
    """BatchNorm without three `param { lr_mult: 0 }` blocks.

    Its three blobs are running statistics, not weights. BVLC Caffe since rc4 (Sept
    2016) masks them itself, and so does NVCaffe, but forks from before that (the SSD
    fork, PVANet-style forks, many vendor Caffes) do not: there the solver trains the
    statistics and the net degrades silently. It follows the dialect: an error where
    BatchNorm does not mask (`legacy`, `ssd`), nothing where it does (`bvlc`,
    `nvcaffe`), and a warning elsewhere (`portable`: the net must be right on any
    Caffe; forks whose builds differ). Only nets that train are checked (a deploy net
    has no solver).

    Bad:
        layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }

    Good:
        layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1"
                param { lr_mult: 0 decay_mult: 0 }
                param { lr_mult: 0 decay_mult: 0 }
                param { lr_mult: 0 decay_mult: 0 } }

    Fix (safe): adds the three param blocks.
    """

    code = "BN001"
    name = "bn-stats-not-frozen"
    severity = Severity.WARNING
    layer_types = BN

    def check_layer(self, ctx, layer):
        masked = ctx.dialect_info.bn_stats_masked
        if masked or not _trains(ctx):
            return
        if not any(s.phase == Phase.TRAIN for s in ctx.states_of(layer)):
            return
        count = len(layer.message.param)
        if count:
            return  # BN002 / BN003 judge explicit param blocks
        severity = Severity.ERROR if masked is False else self.severity
        anchor = (layer.find_all("top") or layer.find_all("bottom") or
                  [layer.find("type") or layer.find("name")])[-1]
        fix = None
        if anchor is not None:
            text = _indent_lines(anchor, [FROZEN_PARAM] * 3)
            fix = Fix("add three `param { lr_mult: 0 decay_mult: 0 }`",
                      (edits.insert_after(ctx.locator, anchor, text),))
        yield self.diag(ctx, f"BatchNorm '{layer.name}' does not freeze its statistics: "
                        f"Caffe forks before Sept 2016 train them unless it has three "
                        f"`param {{ lr_mult: 0 }}`", layer.find("name") or layer.node,
                        fix=fix, layer=layer, severity=severity)


@register_rule
class BnTrainableStats(Rule):
    """A BatchNorm `param` block with a nonzero `lr_mult`.

    With one or two such blocks BVLC Caffe aborts ("Cannot configure batch
    normalization statistics as layer parameters"); with three it silently resets
    them to 0, so the file says something Caffe does not do; forks before Sept 2016
    really train the statistics. A `param {}` without `lr_mult` means lr_mult 1. A
    nonzero `decay_mult` alone is not reported: with lr_mult 0 it has no effect.

    Bad:
        param { lr_mult: 1 decay_mult: 1 }   # x3, copied from a Convolution

    Good:
        param { lr_mult: 0 decay_mult: 0 }   # x3

    Fix (safe): sets lr_mult and decay_mult to 0, keeping a `name` for sharing.
    """

    code = "BN002"
    name = "bn-trainable-stats"
    severity = Severity.ERROR
    layer_types = BN

    def check_layer(self, ctx, layer):
        nodes = layer.find_all("param")
        for i, (param, node) in enumerate(zip(layer.message.param, nodes)):
            if param.lr_mult == 0:
                continue  # decay_mult alone does nothing when the learning rate is 0
            what = (f"lr_mult {param.lr_mult:g}" if param.HasField("lr_mult")
                    else "lr_mult 1 (the default)")
            yield self.diag(ctx, f"BatchNorm '{layer.name}' param {i} has {what}: its blobs "
                            f"are statistics, not weights", node, fix=self._fix(ctx, node),
                            layer=layer)

    def _fix(self, ctx, node):
        from bnlint.syntax.nodes import Message

        body = node.value
        if not isinstance(body, Message):
            return None
        changes = [edits.replace_value(f, "0") for f in body.fields
                   if f.name in ("lr_mult", "decay_mult") and f.value is not None]
        present = {f.name for f in body.fields}
        missing = [f"{name}: 0" for name in ("lr_mult", "decay_mult") if name not in present]
        if missing:
            changes.append(edits.insert_into(ctx.locator, body, " ".join(missing)))
        return Fix("set lr_mult and decay_mult to 0", tuple(changes))


@register_rule
class BnParamCount(Rule):
    """BatchNorm with a number of `param` blocks other than 0 or 3.

    The layer has exactly three blobs. With more than three param blocks Caffe aborts
    ("Too many params specified for layer"); with one or two, BVLC Caffe fills in the
    rest, but older forks train the blobs that have no block.

    Bad:
        param { lr_mult: 0 }

    Good:
        param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 }
    """

    code = "BN003"
    name = "bn-param-count"
    severity = Severity.WARNING
    layer_types = BN

    def check_layer(self, ctx, layer):
        count = len(layer.message.param)
        if count in (0, 3):
            return
        nodes = layer.find_all("param")
        severity = Severity.ERROR if count > 3 else self.severity
        blocks = "1 param block" if count == 1 else f"{count} param blocks"
        yield self.diag(ctx, f"BatchNorm '{layer.name}' has {blocks}; it has "
                        f"three blobs (give 0 or 3)", nodes[0] if nodes else layer.node,
                        layer=layer, severity=severity)


@register_rule
class BnEps(Rule):
    """BatchNorm eps <= 0 (error), or below 1e-5 where a Caffe raises it to 1e-5.

    eps keeps `sqrt(var + eps)` away from zero: 0 or less divides by zero on dead
    channels. BVLC's own BatchNorm uses any eps above 0 as written, but cuDNN's
    batch normalisation needs at least 1e-5 (CUDNN_BN_MIN_EPSILON), and Caffe forks
    with a cuDNN BatchNorm raise a smaller eps to 1e-5: NVCaffe does so on GPU and
    CPU (the net computes with 1e-5, not what the file says). So: a warning for
    `portable` nets (the forks compute something else than BVLC Caffe), information
    for `nvcaffe`, nothing for `bvlc`, `legacy` and `ssd`, whose BatchNorm has no
    cuDNN path.

    Bad (portable):
        batch_norm_param { eps: 0 }
        batch_norm_param { eps: 1e-6 }

    Good:
        batch_norm_param { eps: 1e-5 }
    """

    code = "BN022"
    name = "bn-eps"
    severity = Severity.WARNING
    layer_types = BN

    def check_layer(self, ctx, layer):
        p = layer.message.batch_norm_param
        if not p.HasField("eps"):
            return
        node = layer.find("batch_norm_param.eps")
        eps = p.eps
        if not eps > 0:
            yield self.diag(ctx, f"BatchNorm '{layer.name}' eps is {eps:g}: must be > 0",
                            node, layer=layer, severity=Severity.ERROR)
            return
        floor = ctx.dialect_info.bn_eps_floor
        if eps >= MIN_EPS or floor is False:
            return
        if floor:
            yield self.diag(ctx, f"BatchNorm '{layer.name}' eps {eps:g} is below 1e-5: "
                            f"{ctx.dialect_info.fork or ctx.dialect} raises it to 1e-5, so "
                            f"the net computes with 1e-5", node, layer=layer,
                            severity=Severity.INFO)
            return
        yield self.diag(ctx, f"BatchNorm '{layer.name}' eps {eps:g} is below 1e-5: Caffe "
                        f"forks with a cuDNN BatchNorm (NVCaffe) raise it to 1e-5 and "
                        f"compute differently from BVLC Caffe", node, layer=layer)


@register_rule
class BnRedundantBias(Rule):
    """The Convolution / InnerProduct feeding a BatchNorm has a bias.

    BatchNorm subtracts the per-channel mean, which removes any per-channel bias: the
    bias blob is wasted parameters and computation (and `bias_term` defaults to true).
    Informational.

    Bad:
        convolution_param { num_output: 64 kernel_size: 3 }   # bias_term defaults to true

    Good:
        convolution_param { num_output: 64 kernel_size: 3 bias_term: false }

    Fix (unsafe: changes the blob count, so trained weights no longer load): sets
    `bias_term: false`.
    """

    code = "BN023"
    name = "bn-redundant-bias"
    severity = Severity.INFO
    layer_types = BN
    PRODUCERS = {"Convolution": "convolution_param", "Deconvolution": "convolution_param",
                 "InnerProduct": "inner_product_param"}

    def check_layer(self, ctx, layer):
        if not _trains(ctx):
            return  # a deploy net's weights were trained with the bias; nothing to gain
        seen = set()
        for graph in ctx.graphs_of(layer):
            if not layer.bottoms:
                continue
            src = graph.producer_of(layer, 0)
            if src is None or src.producer is None:
                continue
            prod = src.producer
            field = self.PRODUCERS.get(prod.type)
            if field is None or prod.index in seen:
                continue
            if not getattr(prod.message, field).bias_term or len(src.consumers) != 1:
                continue
            seen.add(prod.index)
            yield self.diag(ctx, f"{prod.type} '{prod.name}' has a bias, but BatchNorm "
                            f"'{layer.name}' right after it removes it", prod.find("name")
                            or prod.node, fix=self._fix(ctx, prod, field), layer=prod)

    def _fix(self, ctx, prod, field):
        from bnlint.syntax.nodes import Message

        existing = prod.find(f"{field}.bias_term")
        if existing is not None:
            return Fix("set bias_term: false", (edits.replace_value(existing, "false"),),
                       safe=False)
        holder = prod.find(field)
        if holder is not None and isinstance(holder.value, Message):
            return Fix("add bias_term: false",
                       (edits.insert_into(ctx.locator, holder.value, "bias_term: false"),),
                       safe=False)
        return None


@register_rule
class BnForkDialect(Rule):
    """A fork's BatchNorm: NVCaffe / Intel Caffe fields in `batch_norm_param`
    (scale_bias, scale_filler, bias_filler, engine, use_weight_bias, bias_term), or a
    fork's "BN" layer type (SegNet / ENet).

    These carry the affine inside the BatchNorm (NVCaffe stores 5 blobs) or use another
    layer altogether, so the weights do not load in BVLC Caffe ("Incompatible number of
    blobs ... (5 vs. 3)") and tools that expect BatchNorm + Scale misread them.

    Only reported for nets read as BVLC Caffe (`portable`, `bvlc`, `legacy`): in a
    net read in the fork's own dialect (detected, or given with `--dialect`) these
    are the fork's layers and fields, and D001 already names the fork.

    Bad (for BVLC Caffe):
        batch_norm_param { scale_bias: true }

    Good:
        a BatchNorm followed by `Scale { bias_term: true }`.
    """

    code = "BN030"
    name = "bn-fork-dialect"
    severity = Severity.WARNING
    layer_types = ("BatchNorm", "BN")
    NVCAFFE = NVCAFFE_FIELDS
    INTEL = INTEL_FIELDS

    def check_layer(self, ctx, layer):
        dialect = ctx.dialect_info
        if dialect.fork and dialect.knows_layer_type(layer.type) and layer.type != "BatchNorm":
            return  # the fork's own BatchNorm layer, in a net read in its dialect
        if layer.type == "BN":
            yield self.diag(ctx, f"layer '{layer.name}' uses the SegNet/ENet fork's \"BN\" "
                            f"type (affine inside the layer); BVLC Caffe has BatchNorm + "
                            f"Scale", layer.find("type") or layer.node, layer=layer)
            return
        holder = layer.find("batch_norm_param")
        from bnlint.syntax.nodes import Message

        if holder is None or not isinstance(holder.value, Message):
            return
        own = (dialect.schema().descriptor("BatchNormParameter").fields_by_name
               if dialect.fork else {})
        for f in holder.value.fields:
            if f.name in own:
                continue  # the fork's own field, in a net read in its dialect
            fork = ("NVIDIA Caffe" if f.name in self.NVCAFFE else
                    "Intel Caffe" if f.name in self.INTEL else None)
            if fork:
                yield self.diag(ctx, f"BatchNorm '{layer.name}' field '{f.name}' is "
                                f"{fork}'s (affine inside BatchNorm); BVLC Caffe cannot load "
                                f"this layer's weights", f, layer=layer, fork=fork)


@register_rule
class BnMovingAverageFraction(Rule):
    """BatchNorm `moving_average_fraction` outside (0, 1].

    Caffe keeps the statistics as `stored = fraction * stored + batch` (with a
    matching scale factor), so the fraction weighs the past batches: 0 keeps only
    the last batch's statistics (a warning), above 1 weighs the oldest batches most
    and grows without bound, below 0 flips signs (both errors). The default 0.999
    is right; 0.9 to 0.999 are usual. Only nets that train are checked.

    Bad:
        batch_norm_param { moving_average_fraction: 1.5 }

    Good:
        batch_norm_param { moving_average_fraction: 0.999 }
    """

    code = "BN025"
    name = "bn-moving-average-fraction"
    severity = Severity.ERROR
    layer_types = BN

    def check_layer(self, ctx, layer):
        p = layer.message.batch_norm_param
        if not p.HasField("moving_average_fraction") or not _trains(ctx):
            return
        if not any(s.phase == Phase.TRAIN for s in ctx.states_of(layer)):
            return
        fraction = p.moving_average_fraction
        if 0 < fraction <= 1:
            return
        why = ("keeps only the last batch's statistics" if fraction == 0 else
               "weighs the oldest batches most and grows without bound" if fraction > 1
               else "gives the stored statistics alternating signs")
        yield self.diag(ctx, f"BatchNorm '{layer.name}' moving_average_fraction {fraction:g} "
                        f"is outside (0, 1]: it {why}",
                        layer.find("batch_norm_param.moving_average_fraction"), layer=layer,
                        severity=Severity.WARNING if fraction == 0 else None)
