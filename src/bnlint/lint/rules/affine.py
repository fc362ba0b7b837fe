"""The BatchNorm affine rules: the Scale (gamma, beta) Caffe keeps in a separate layer."""

from __future__ import annotations

from bnlint.caffe.net import Blob, LayerView, NetGraph
from bnlint.lint.diagnostics import Fix, Severity
from bnlint.lint.registry import Rule, register_rule
from bnlint.syntax import edits

BN = ("BatchNorm",)


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


@register_rule
class BnWithoutScale(Rule):
    """A BatchNorm whose output is not consumed by a channel-wise Scale.

    Caffe's BatchNorm only normalises; the learned affine (gamma, beta) lives in a
    separate `Scale` layer with `bias_term: true`. Without it the net cannot learn the
    scale and shift that batch normalisation relies on. (Caffe's own cifar10 BN example
    has no Scale, so this is a warning, not an error.) A Split or a Dropout between
    the two does not hide the Scale; a fork's affine layer (EltwiseAffine) counts as
    one. In a deploy net the finding is informational: usually the net was trained
    without a Scale and adding one means retraining; whether a hand-written deploy
    net lost the Scale of its train net, `bnlint to-deploy TRAIN --check DEPLOY` says.

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
        from bnlint.caffe.layers.batchnorm import nvcaffe_scale_bias

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
            why = ("right if the net was trained without one; if its train net has one, "
                   "compare the two with `bnlint to-deploy TRAIN --check`" if ctx.is_deploy
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
    the Scale supplies the shift, and is not reported. In a deploy net the finding is
    informational: the weights were trained without the shift.

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
            # a deploy net was trained without the shift: information only
            yield self.diag(ctx, f"Scale '{scale.name}' after BatchNorm '{layer.name}' has "
                            f"no bias_term: true (no learned shift)",
                            scale.find("name") or scale.node, fix=self._fix(ctx, scale),
                            layer=scale, severity=Severity.INFO if ctx.is_deploy else None)

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
