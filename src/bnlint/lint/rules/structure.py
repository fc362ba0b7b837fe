"""Rules about the net's structure: what makes Caffe abort or silently misbehave
before any BatchNorm question arises."""

from __future__ import annotations

from bnlint.caffe import known
from bnlint.lint.diagnostics import Severity
from bnlint.lint.registry import Rule, register_rule


def _at(layer, field_name: str, index: int = 0):
    """The index-th `field_name` field of a layer, else the layer's name, else the layer."""
    found = layer.find_all(field_name)
    if index < len(found):
        return found[index]
    return layer.find("name") or layer.node


def _graph_problem_rule(kind: str):
    def check_net(self, ctx):
        for graph in ctx.graphs:
            for p in graph.problems:
                if p.code == kind:
                    node = _at(p.layer, "bottom" if kind == "unknown-bottom" else "top",
                               p.index)
                    yield self.diag(ctx, p.message, node, phases=(str(graph.state),),
                                    layer=p.layer)
    return check_net


@register_rule
class UnknownBottom(Rule):
    """A bottom that no earlier layer produces in that phase.

    Caffe aborts with "Unknown bottom blob". A common cause: a layer included only in
    TRAIN produces a blob that a layer active in TEST consumes, or layers out of order.
    The finding names the cause once, at the first layer that reads the blob: the
    layer that produces it but is not active in that phase (a data layer included
    only in TRAIN leaves the TEST net without input), or the later layer that
    produces it, or the blob's name when no layer produces it.

    Bad:
        layer { name: "relu" type: "ReLU" bottom: "conv1" top: "conv1" }
        layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" ... }

    Good: the Convolution first.
    """

    code = "N001"
    name = "unknown-bottom"
    severity = Severity.ERROR

    def check_net(self, ctx):
        for graph in ctx.graphs:
            active = {lv.index for lv in graph.layers}
            groups: dict[tuple, list] = {}
            for p in graph.problems:
                if p.code != "unknown-bottom":
                    continue
                name = p.layer.bottoms[p.index]
                # the producer Caffe would need: an inactive layer, else a later one
                producers = [lv for lv in ctx.view.layers if name in lv.tops]
                source = next((lv for lv in producers if lv.index not in active), None) or \
                    next((lv for lv in producers if lv.index > p.layer.index), None)
                key = ("layer", source.index) if source is not None else ("blob", name)
                groups.setdefault(key, []).append((p, name, source))
            for found in groups.values():
                first, name, source = found[0]
                blobs = list(dict.fromkeys(n for _, n, _ in found))
                readers = list(dict.fromkeys(p.layer.name for p, _, _ in found))
                yield self.diag(ctx, self._message(first, blobs, readers, source, active),
                                _at(first.layer, "bottom", first.index),
                                phases=(str(graph.state),), layer=first.layer)

    @staticmethod
    def _message(first, blobs, readers, source, active) -> str:
        shown = " and ".join(f"'{b}'" for b in blobs[:3]) + (
            f" and {len(blobs) - 3} more" if len(blobs) > 3 else "")
        who = (f"layer '{readers[0]}'" if len(readers) == 1 else
               f"{len(readers)} layers ('{readers[0]}', '{readers[1]}'"
               + (", ..." if len(readers) > 2 else "") + ")")
        if source is None:
            return (f"unknown bottom blob {shown} (read by {who}): no earlier layer "
                    f"produces it")
        if source.index in active:
            return (f"bottom blob {shown} is read by {who} before layer '{source.name}' "
                    f"produces it: layers out of order")
        it = "them" if len(blobs) > 1 else "it"
        return (f"layer '{source.name}' ({source.type}), which produces {shown}, is not "
                f"active in this phase (its include/exclude rules), so {who} cannot read "
                f"{it}: Caffe aborts with \"Unknown bottom blob\"")


@register_rule
class DuplicateTop(Rule):
    """A top produced twice without being in-place.

    Caffe aborts with "Top blob 'x' produced by multiple sources". In-place means the
    top at index i has the name of the bottom at the same index i.

    Bad:
        layer { name: "a" type: "ReLU" bottom: "x" top: "y" }
        layer { name: "b" type: "ReLU" bottom: "x" top: "y" }

    Good:
        layer { name: "b" type: "ReLU" bottom: "y" top: "y" }
    """

    code = "N002"
    name = "duplicate-top"
    severity = Severity.ERROR
    check_net = _graph_problem_rule("duplicate-top")


@register_rule
class IncludeAndExclude(Rule):
    """A layer with both include and exclude rules.

    Caffe aborts: "Specify either include rules or exclude rules; not both."

    Bad:
        include { phase: TRAIN } exclude { stage: "deploy" }

    Good:
        include { phase: TRAIN not_stage: "deploy" }
    """

    code = "N003"
    name = "include-and-exclude"
    severity = Severity.ERROR

    def check_layer(self, ctx, layer):
        if len(layer.message.include) and len(layer.message.exclude):
            node = layer.find("exclude") or layer.node
            yield self.diag(ctx, f"layer '{layer.name}' has both include and exclude rules "
                            f"(Caffe aborts)", node, layer=layer)


@register_rule
class DuplicateLayerName(Rule):
    """Two layers with one name that are active in the same phase.

    Weights are matched to layers by name, so one of the two silently gets the
    other's weights (or none): an error for layers with weights, information for
    layers without (harmless, but confusing in logs). TRAIN and TEST variants of one
    layer are fine.

    Bad:
        layer { name: "conv" type: "Convolution" bottom: "data" top: "c1" ... }
        layer { name: "conv" type: "Convolution" bottom: "c1" top: "c2" ... }

    Good: "conv1" and "conv2".
    """

    code = "N004"
    name = "duplicate-layer-name"
    severity = Severity.ERROR

    def check_net(self, ctx):
        for graph in ctx.graphs:
            first: dict[str, object] = {}
            for layer in graph.layers:
                if layer.name not in first:
                    first[layer.name] = layer
                    continue
                line = ctx.source.line_col(first[layer.name].node.start)[0]
                has_params = (layer.type in known.PARAMETRIC_LAYER_TYPES
                              or len(layer.message.param))
                severity = self.severity if has_params else Severity.INFO
                why = ("weights are matched by name, so one of them gets the other's weights"
                       if has_params else "harmless for a layer without weights, but "
                       "confusing in logs and tools")
                yield self.diag(ctx, f"layer name '{layer.name}' is used twice (first on line "
                                f"{line}): {why}", layer.find("name") or layer.node,
                                phases=(str(graph.state),), layer=layer, severity=severity)


@register_rule
class DeprecatedInputFields(Rule):
    """Net-level `input` / `input_shape` / `input_dim` fields.

    Still read by Caffe (it upgrades them into an Input layer named "input"), but
    deprecated; tools that do not upgrade miss the shape. `bnlint upgrade` rewrites
    them.

    Bad:
        input: "data"
        input_dim: 1 input_dim: 3 input_dim: 224 input_dim: 224

    Good:
        layer { name: "input" type: "Input" top: "data"
                input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }
    """

    code = "N005"
    name = "deprecated-input-fields"
    severity = Severity.INFO

    def check_net(self, ctx):
        tree = ctx.view.tree
        if tree is None:
            return
        fields = [f for f in tree.fields if f.name in ("input", "input_shape", "input_dim")]
        if fields:
            names = ", ".join(sorted({f.name for f in fields}))
            yield self.diag(ctx, f"deprecated net-level {names}: use an Input layer "
                            f"(`bnlint upgrade` rewrites it)", fields[0],
                            end=fields[-1].end)


@register_rule
class LegacySyntax(Rule):
    """V0/V1 `layers { type: ENUM }` syntax.

    Caffe upgrades it on every load; BatchNorm, Scale and most newer layers do not
    exist in it. `bnlint upgrade` rewrites the file in the current syntax. A net that
    mixes `layers` and `layer` entries is an error: Caffe refuses to upgrade it.

    Bad:
        layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" }

    Good:
        layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" }
    """

    code = "N006"
    name = "legacy-syntax"
    severity = Severity.WARNING

    def check_net(self, ctx):
        legacy = [lv for lv in ctx.view.layers if lv.legacy]
        if legacy and len(legacy) < len(ctx.view.layers):
            yield self.diag(ctx, "the net mixes legacy 'layers' with current 'layer' "
                            "entries: Caffe refuses to upgrade it and aborts",
                            start=legacy[0].node.start, end=legacy[0].node.name_token.end,
                            severity=Severity.ERROR)
            return
        if legacy:
            kinds = sorted({lv.legacy.upper() for lv in legacy})
            yield self.diag(ctx, f"{len(legacy)} layer(s) in the legacy {'/'.join(kinds)} "
                            f"'layers' syntax (`bnlint upgrade` rewrites them)",
                            start=legacy[0].node.start, end=legacy[0].node.name_token.end)


@register_rule
class ShapeErrorRule(Rule):
    """Shapes that cannot work: a Concat or Eltwise of mismatched blobs, a Crop larger
    than its input, a kernel larger than the padded input, a Reshape that changes the
    count, a Scale whose blob does not fit.

    Found by Caffe's own shape rules from the input shapes (Input layers, net-level
    inputs); nets whose inputs come from a dataset are checked below the point where
    shapes become known.

    Bad:
        layer { name: "cat" type: "Concat" bottom: "a_1x64x56x56" bottom: "b_1x64x28x28" }

    Good: both bottoms 56x56 (Concat joins along axis 1 only).
    """

    code = "N007"
    name = "shape-error"
    severity = Severity.ERROR

    def check_net(self, ctx):
        for graph in ctx.graphs:
            # layers with E002/E003 problems (and so everything below them) are not
            # inferred: their errors would be a cascade of the schema problem
            result = ctx.graph_shapes(graph)
            for layer, err in result.errors:
                yield self.diag(ctx, err.message, layer.find("name") or layer.node,
                                phases=(str(graph.state),), layer=layer)


@register_rule
class UnknownLayerType(Rule):
    """A layer type that neither BVLC Caffe nor the file's dialect has.

    Either a fork's layer (the message names the fork) or a typo; BVLC Caffe aborts
    with "Unknown layer type". A fork's own layers are not reported when the file is
    read in that fork's dialect (detected, or `--dialect`).

    Bad:
        layer { name: "up" type: "Upsample" ... }   # SegNet fork only

    Good: a BVLC layer (e.g. a Deconvolution with a bilinear filler).
    """

    code = "N008"
    name = "unknown-layer-type"
    severity = Severity.WARNING

    def check_net(self, ctx):
        by_type: dict[str, list] = {}
        dialect = ctx.dialect_info
        for layer in ctx.view.layers:
            if layer.type and not dialect.knows_layer_type(layer.type):
                by_type.setdefault(layer.type, []).append(layer)
        for type_name, layers in by_type.items():
            first = layers[0]
            fork = known.FORK_LAYER_TYPES.get(type_name)
            if fork:
                message = f"layer type '{type_name}' exists only in {fork}"
            else:
                import difflib

                names = sorted(known.BVLC_LAYER_TYPES | set(known.FORK_LAYER_TYPES))
                hint = difflib.get_close_matches(type_name, names, n=1)
                message = f"unknown layer type '{type_name}'" + (
                    f" (did you mean '{hint[0]}'?)" if hint else "")
            if len(layers) > 1:
                message += f" ({len(layers)} layers, first '{first.name}')"
            yield self.diag(ctx, message, first.find("type") or first.node, layer=first,
                            fork=fork)
