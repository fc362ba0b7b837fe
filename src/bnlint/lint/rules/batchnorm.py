"""The BatchNorm rules: the mistakes that cost Caffe users days."""

from __future__ import annotations

import struct

from bnlint.caffe.net import Blob, LayerView, NetGraph, layer_phase
from bnlint.caffe.phase import Phase
from bnlint.lint.diagnostics import Fix, Severity
from bnlint.lint.registry import Rule, register_rule
from bnlint.syntax import edits

BN = ("BatchNorm",)
FROZEN_PARAM = "param { lr_mult: 0 decay_mult: 0 }"
# cuDNN's CUDNN_BN_MIN_EPSILON, as the float32 Caffe stores eps in
CUDNN_MIN_EPS = struct.unpack("f", struct.pack("f", 1e-5))[0]


def bn_output(graph: NetGraph, layer: LayerView) -> Blob | None:
    tops = graph.tops.get(layer.index)
    return tops[0] if tops else None


# Layers that carry a BatchNorm's learned affine: BVLC's Scale, and forks' own
# (EltwiseAffine: one slope and one bias per channel).
AFFINE_TYPES = frozenset({"Scale", "EltwiseAffine"})


def is_channelwise_scale(layer: LayerView) -> bool:
    """One bottom, canonical axis 1, num_axes 1: a per-channel affine."""
    p = layer.message.scale_param
    return (layer.type == "Scale" and len(layer.bottoms) == 1 and p.axis in (1, -3)
            and p.num_axes == 1)


def is_channelwise_bias(layer: LayerView) -> bool:
    """A Bias layer adding one learned value per channel (what a Scale's bias would)."""
    p = layer.message.bias_param
    return (layer.type == "Bias" and len(layer.bottoms) == 1 and p.axis in (1, -3)
            and p.num_axes == 1)


def _hands_on(graph: NetGraph, layer: LayerView, bottom_index: int) -> list[Blob] | None:
    """The blobs a layer passes its input on to unchanged at test time, or None.

    A Split (copies of its bottom), and a Dropout (identity at test time; in training
    a per-element mask the affine after it does not care about) stand between a
    BatchNorm and its Scale without changing what the Scale is for. SegNet's
    `sample_weights_test` Dropout keeps dropping at test time, so it is not one.
    """
    tops = graph.tops.get(layer.index) or []
    if bottom_index != 0 or len(layer.bottoms) != 1 or not tops:
        return None
    if layer.type == "Split":
        return list(tops)
    if layer.type == "Dropout" and len(tops) == 1:
        mc = layer.find("dropout_param.sample_weights_test")
        if mc is not None and getattr(mc.value, "text", "") in ("true", "1"):
            return None
        return list(tops)
    return None


def consumers_after(graph: NetGraph, blob: Blob) -> list[LayerView]:
    """The layers that read a blob, looking through layers that hand it on unchanged
    (`_hands_on`); each layer once, in the order Caffe runs them."""
    out: list[LayerView] = []
    todo = [blob]
    seen: set[int] = set()
    while todo:
        current = todo.pop(0)
        for lv, i in current.consumers:
            if lv.index in seen:
                continue
            seen.add(lv.index)
            nxt = _hands_on(graph, lv, i)
            if nxt is not None:
                todo.extend(nxt)
            else:
                out.append(lv)
    return out


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
class BnWithoutScale(Rule):
    """A BatchNorm whose output is not consumed by a channel-wise Scale.

    Caffe's BatchNorm only normalises; the learned affine (gamma, beta) lives in a
    separate `Scale` layer with `bias_term: true`. Without it the net cannot learn the
    scale and shift that batch normalisation relies on. (Caffe's own cifar10 BN example
    has no Scale, so this is a warning, not an error.) A Split with one top or a
    Dropout between the two does not hide the Scale; a fork's affine layer
    (EltwiseAffine) counts as one. In a deploy net the finding is informational: the
    weights were trained without a Scale, and adding one means retraining.

    Bad:
        layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
        layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }

    Good:
        layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
        layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1"
                scale_param { bias_term: true } }
        layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
    """

    code = "BN010"
    name = "bn-without-scale"
    severity = Severity.WARNING
    layer_types = BN

    def check_layer(self, ctx, layer):
        from bnlint.caffe.shapes import nvcaffe_scale_bias

        inside = layer.find("batch_norm_param.scale_bias")
        if nvcaffe_scale_bias(layer.message) or (
                inside is not None and getattr(inside.value, "text", "") in ("true", "1")):
            return  # NVCaffe: the affine is inside the BatchNorm (BN030 says so)
        # A deploy net was trained this way: adding a Scale means retraining, so the
        # finding only informs.
        severity = Severity.INFO if ctx.is_deploy else self.severity
        for graph in ctx.graphs_of(layer):
            out = bn_output(graph, layer)
            if out is None:
                continue
            after = consumers_after(graph, out)
            if any(lv.type in AFFINE_TYPES for lv in after):
                continue
            if after:
                where = f"its output goes to {after[0].type} '{after[0].name}'"
            else:
                where = "its output is an output of the net"
            why = ("the net was trained without one" if ctx.is_deploy
                   else "no learned scale and bias")
            yield self.diag(ctx, f"BatchNorm '{layer.name}' is not followed by a Scale "
                            f"layer ({where}): {why}",
                            layer.find("name") or layer.node, phases=(str(graph.state),),
                            layer=layer, severity=severity)


def _scales_after(ctx, layer):
    for graph in ctx.graphs_of(layer):
        out = bn_output(graph, layer)
        if out is None:
            continue
        for lv in consumers_after(graph, out):
            if lv.type == "Scale":
                yield graph, lv


def _bias_after(graph: NetGraph, scale: LayerView) -> bool:
    """Whether a channel-wise Bias layer reads the Scale's output (the shift, apart)."""
    tops = graph.tops.get(scale.index)
    return bool(tops) and any(is_channelwise_bias(lv) for lv in consumers_after(graph, tops[0]))


@register_rule
class ScaleWithoutBias(Rule):
    """The Scale after a BatchNorm has no `bias_term: true`.

    BatchNorm removes the mean; without the Scale's bias the net cannot put a learned
    shift back (beta). Usually an oversight. A channel-wise `Bias` layer right after
    the Scale supplies the shift, and is not reported.

    Bad:
        layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" }

    Good:
        layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1"
                scale_param { bias_term: true } }

    Fix (unsafe: the Scale gets a second blob, so an existing .caffemodel no longer
    loads): adds `bias_term: true`.
    """

    code = "BN011"
    name = "scale-without-bias"
    severity = Severity.WARNING
    layer_types = BN

    def check_layer(self, ctx, layer):
        seen = set()
        for graph, scale in _scales_after(ctx, layer):
            if scale.index in seen or not is_channelwise_scale(scale):
                continue
            seen.add(scale.index)
            if scale.message.scale_param.bias_term or _bias_after(graph, scale):
                continue
            yield self.diag(ctx, f"Scale '{scale.name}' after BatchNorm '{layer.name}' has "
                            f"no bias_term: true (no learned shift)",
                            scale.find("name") or scale.node, fix=self._fix(ctx, scale),
                            layer=scale)

    def _fix(self, ctx, scale):
        # never safe: a Scale with a bias has one more blob, so a pretrained
        # .caffemodel (fine-tuning, or a deploy net) no longer loads (W001)
        safe = False
        existing = scale.find("scale_param.bias_term")
        if existing is not None:
            return Fix("set bias_term: true", (edits.replace_value(existing, "true"),), safe)
        sp = scale.find("scale_param")
        from bnlint.syntax.nodes import Message

        if sp is not None and isinstance(sp.value, Message):
            return Fix("add bias_term: true",
                       (edits.insert_into(ctx.locator, sp.value, "bias_term: true"),), safe)
        anchor = (scale.find_all("top") or scale.find_all("bottom") or
                  [scale.find("type") or scale.find("name")])[-1]
        if anchor is None:
            return None
        return Fix("add scale_param { bias_term: true }",
                   (edits.insert_after(ctx.locator, anchor,
                                       "scale_param { bias_term: true }"),), safe)


@register_rule
class ScaleNotChannelwise(Rule):
    """The Scale after a BatchNorm is not a per-channel affine: axis/num_axes other
    than 1/1, or two bottoms.

    A BatchNorm's affine is one gamma and one beta per channel. Another axis scales
    something else, and a two-bottom Scale multiplies by a blob (SE blocks), which is
    not a BatchNorm affine and cannot be folded.

    Bad:
        scale_param { axis: 0 bias_term: true }

    Good:
        scale_param { bias_term: true }
    """

    code = "BN012"
    name = "scale-not-channelwise"
    severity = Severity.WARNING
    layer_types = BN

    def check_layer(self, ctx, layer):
        seen = set()
        for graph, scale in _scales_after(ctx, layer):
            if scale.index in seen or is_channelwise_scale(scale):
                continue
            seen.add(scale.index)
            p = scale.message.scale_param
            why = ("two bottoms" if len(scale.bottoms) > 1
                   else f"axis {p.axis}, num_axes {p.num_axes}")
            yield self.diag(ctx, f"Scale '{scale.name}' after BatchNorm '{layer.name}' is not "
                            f"channel-wise ({why})", scale.find("scale_param") or
                            scale.find("name") or scale.node, layer=scale)


@register_rule
class BnOutputShared(Rule):
    """The BatchNorm output feeds more than one layer, besides or before its Scale.

    The other consumers see the normalised values without the learned affine, which is
    almost never intended (and it blocks folding the BatchNorm away).

    Bad:
        layer { name: "bn" type: "BatchNorm" bottom: "c" top: "bn" }
        layer { name: "scale" type: "Scale" bottom: "bn" top: "s" scale_param { bias_term: true } }
        layer { name: "pool" type: "Pooling" bottom: "bn" top: "p" ... }

    Good: the Pooling reads "s".
    """

    code = "BN013"
    name = "bn-output-shared"
    severity = Severity.WARNING
    layer_types = BN

    def check_layer(self, ctx, layer):
        for graph in ctx.graphs_of(layer):
            out = bn_output(graph, layer)
            if out is None:
                continue
            after = consumers_after(graph, out)
            if len(after) < 2 or not any(lv.type in AFFINE_TYPES for lv in after):
                continue
            others = [f"{lv.type} '{lv.name}'" for lv in after if lv.type not in AFFINE_TYPES]
            yield self.diag(ctx, f"BatchNorm '{layer.name}' output also feeds "
                            f"{', '.join(others) or 'more than one Scale'} without the "
                            f"Scale's affine", layer.find("name") or layer.node,
                            phases=(str(graph.state),), layer=layer)


@register_rule
class BnFrozenInTrain(Rule):
    """`use_global_stats: true` in a BatchNorm that runs in TRAIN.

    The layer normalises with stored statistics while training and never updates
    them. Right for fine-tuning with frozen BatchNorm (py-R-FCN does it on purpose),
    wrong when training from scratch (the statistics stay zero). Informational.

    Bad (training from scratch):
        batch_norm_param { use_global_stats: true }

    Good: no `use_global_stats` (Caffe picks by phase).
    """

    code = "BN020"
    name = "bn-frozen-in-train"
    severity = Severity.INFO
    layer_types = BN

    def check_layer(self, ctx, layer):
        p = layer.message.batch_norm_param
        if not (p.HasField("use_global_stats") and p.use_global_stats):
            return
        if not _trains(ctx):
            return
        phases = [str(s) for s in ctx.states_of(layer) if layer_phase(layer, s) == Phase.TRAIN]
        if phases:
            yield self.diag(ctx, f"BatchNorm '{layer.name}' uses frozen global statistics "
                            f"while training (fine for fine-tuning; from scratch its "
                            f"statistics never update)",
                            layer.find("batch_norm_param.use_global_stats"), phases=phases,
                            layer=layer)


@register_rule
class BnBatchStatsInTest(Rule):
    """BatchNorm normalising with batch statistics at test time: `use_global_stats:
    false` in a layer active in TEST or in a deploy net, or a layer forced to
    `phase: TRAIN` that runs in the TEST net.

    Each batch is then normalised with its own mean and variance: outputs depend on the
    other images in the batch, and a batch of one gives garbage. The classic deploy-file
    bug.

    Bad (deploy.prototxt):
        batch_norm_param { use_global_stats: false }

    Good:
        batch_norm_param { use_global_stats: true }

    Fix (unsafe, changes outputs): sets it to true in a deploy net, removes it in a
    train/test net so that Caffe picks by phase.
    """

    code = "BN021"
    name = "bn-batch-stats-in-test"
    severity = Severity.ERROR
    layer_types = BN

    def check_layer(self, ctx, layer):
        p = layer.message.batch_norm_param
        explicit_false = p.HasField("use_global_stats") and not p.use_global_stats
        test_states = [s for s in ctx.states_of(layer) if s.phase == Phase.TEST]
        if explicit_false:
            if ctx.is_deploy:
                phases = ["deploy"]
            else:
                phases = [str(s) for s in test_states]
            if not phases:
                return
            node = layer.find("batch_norm_param.use_global_stats")
            yield self.diag(ctx, f"BatchNorm '{layer.name}' uses batch statistics at test "
                            f"time (use_global_stats: false): outputs depend on the batch",
                            node, phases=phases, fix=self._fix(ctx, layer, node, test_states),
                            layer=layer)
            return
        if p.HasField("use_global_stats"):
            return
        forced = [str(s) for s in test_states if layer_phase(layer, s) == Phase.TRAIN]
        if ctx.is_deploy and layer.message.HasField("phase") and layer.message.phase == 0:
            forced = forced or ["deploy"]
        if forced:
            yield self.diag(ctx, f"BatchNorm '{layer.name}' runs with `phase: TRAIN` in the "
                            f"TEST net, so it normalises with batch statistics",
                            layer.find("phase") or layer.node, phases=forced, layer=layer)

    def _fix(self, ctx, layer, node, test_states):
        trains = any(s.phase == Phase.TRAIN for s in ctx.states_of(layer))
        if ctx.is_deploy or not trains:
            return Fix("set use_global_stats: true", (edits.replace_value(node, "true"),),
                       safe=False)
        return Fix("remove use_global_stats (Caffe picks by phase)",
                   (edits.remove_field(ctx.locator, node),), safe=False)


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
        if eps >= CUDNN_MIN_EPS or floor is False:
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
    NVCAFFE = ("scale_bias", "scale_filler", "bias_filler", "engine")
    INTEL = ("use_weight_bias", "bias_term")

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
