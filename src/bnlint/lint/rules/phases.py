"""Rules about what runs in which phase: BatchNorm statistics at test time, and layers
whose weights the TEST net never receives."""

from __future__ import annotations

from bnlint.caffe.net import layer_phase
from bnlint.caffe.phase import Phase
from bnlint.lint.diagnostics import Fix, Severity
from bnlint.lint.registry import Rule, register_rule
from bnlint.syntax import edits

BN = ("BatchNorm",)


def _trains(ctx) -> bool:
    """Whether the file is meant for training (a deploy net never updates weights)."""
    return not ctx.is_deploy


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
    bug. NVCaffe's BatchNorm goes by the phase alone (it ignores `use_global_stats`),
    so only `phase: TRAIN` makes it use batch statistics at test time. Forks' BatchNorm
    forms likewise: SegNet's `BN` layer in `bn_mode: LEARN` (the
    default) normalises with batch statistics in every phase, so a deploy net, an
    inference net (no loss) or the TEST phase of a train/val net needs
    `bn_mode: INFERENCE` (after SegNet's compute_bn_statistics.py has stored the
    statistics).

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
    layer_types = ("BatchNorm", "BN")

    def check_layer(self, ctx, layer):
        if layer.type == "BN":
            yield from self._segnet(ctx, layer)
            return
        from bnlint.caffe.layers.batchnorm import uses_global_stats

        p = layer.message.batch_norm_param
        explicit_false = p.HasField("use_global_stats") and not p.use_global_stats
        test_states = [s for s in ctx.states_of(layer) if s.phase == Phase.TEST]
        if test_states and all(uses_global_stats(layer.message, layer_phase(layer, s))
                               for s in test_states):
            return  # NVCaffe's BatchNorm goes by the phase alone, whatever the field says
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

    def _segnet(self, ctx, layer):
        mode = layer.find("bn_param.bn_mode")
        text = getattr(mode.value, "text", "") if mode is not None else "LEARN"
        if text in ("INFERENCE", "1"):
            return
        from bnlint.caffe.net import is_loss_layer

        test_states = [s for s in ctx.states_of(layer) if s.phase == Phase.TEST]
        if ctx.is_deploy:
            phases = ["deploy"]
        elif not any(is_loss_layer(lv) for lv in ctx.view.layers):
            phases = [str(s) for s in test_states] or ["inference"]  # a net that cannot train
        elif ctx.view.has_phase_rules():
            phases = [str(s) for s in test_states]
        else:
            return  # a train net without a TEST phase: LEARN is what training needs
        if not phases:
            return
        said = "bn_mode: LEARN" if mode is not None else "bn_mode LEARN, the default"
        yield self.diag(ctx, f"SegNet BN '{layer.name}' normalises with batch statistics "
                        f"({said}) at test time: outputs depend on the batch; use "
                        f"bn_mode: INFERENCE with statistics from compute_bn_statistics.py",
                        mode or layer.find("type") or layer.node, phases=phases, layer=layer)

    def _fix(self, ctx, layer, node, test_states):
        trains = any(s.phase == Phase.TRAIN for s in ctx.states_of(layer))
        if ctx.is_deploy or not trains:
            return Fix("set use_global_stats: true", (edits.replace_value(node, "true"),),
                       safe=False)
        return Fix("remove use_global_stats (Caffe picks by phase)",
                   (edits.remove_field(ctx.locator, node),), safe=False)


@register_rule
class BnTrainOnly(Rule):
    """A BatchNorm (or the Scale after it) active in TRAIN only, written in place,
    while the layers that read its output run in TEST too.

    The TEST net then skips the normalisation (or the affine) and its next layer reads
    the raw blob: Caffe says nothing, and the test accuracy is that of another net. A
    TRAIN-only auxiliary head whose readers are TRAIN-only too is fine.

    Bad:
        layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1"
                include { phase: TRAIN } }
        layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }

    Good: no include rule on the BatchNorm (Caffe picks its statistics by phase).
    """

    code = "BN024"
    name = "bn-train-only"
    severity = Severity.ERROR
    layer_types = ("BatchNorm", "Scale", "BN")

    def check_layer(self, ctx, layer):
        states = ctx.states_of(layer)
        if not states or any(s.phase == Phase.TEST for s in states):
            return
        if not layer.bottoms or layer.tops[:1] != layer.bottoms[:1]:
            return  # not in place: a TEST reader of its top is an N001 error
        if layer.type == "Scale" and not _follows_batchnorm(ctx, layer):
            return
        test_graphs = [g for g in ctx.graphs if g.state.phase == Phase.TEST]
        readers: dict[str, list[str]] = {}
        for graph in ctx.graphs_of(layer):
            out = graph.tops[layer.index][0]
            for reader, i in _readers(graph, out):
                for test in test_graphs:
                    if reader.index in test.bottoms and \
                            not _twin_before(test, reader, i, layer.type):
                        readers.setdefault(reader.name, []).append(str(test.state))
        if not readers:
            return
        first = next(iter(readers))
        phases = list(dict.fromkeys(p for ps in readers.values() for p in ps))
        what = "normalisation" if layer.type != "Scale" else "affine"
        yield self.diag(ctx, f"{layer.type} '{layer.name}' runs in TRAIN only, but "
                        f"'{first}', which reads its output, runs in TEST too: the TEST net "
                        f"skips the {what}", _include_node(layer), phases=phases,
                        layer=layer)


def _readers(graph, blob):
    """(layer, bottom index) reading a blob, following in-place layers over it."""
    out, todo = [], [blob]
    while todo:
        current = todo.pop()
        for lv, i in current.consumers:
            out.append((lv, i))
            tops = graph.tops.get(lv.index) or []
            if i < len(tops) and tops[i].name == current.name:
                todo.append(tops[i])
    return out


def _twin_before(graph, reader, index: int, type_name: str) -> bool:
    """Whether, in this graph, a layer of the type writes the reader's bottom in
    place before it reads it (a TEST twin standing in for the TRAIN-only layer)."""
    blob = graph.bottoms[reader.index][index]
    while blob is not None and blob.producer is not None:
        producer = blob.producer
        if producer.type == type_name or {producer.type, type_name} <= {"BatchNorm", "BN"}:
            return True
        if producer.bottoms[:1] != [blob.name]:
            return False
        blob = graph.bottoms[producer.index][0]
    return False


def _follows_batchnorm(ctx, scale) -> bool:
    for graph in ctx.graphs_of(scale):
        src = graph.producer_of(scale, 0)
        if src is not None and src.producer is not None and \
                src.producer.type in ("BatchNorm", "BN"):
            return True
    return False


def _include_node(layer):
    found = layer.find_all("include") or layer.find_all("exclude")
    return found[0] if found else (layer.find("name") or layer.node)


@register_rule
class UntrainedTestLayer(Rule):
    """A layer with weights that is active in TEST only, and no layer active in TRAIN
    has its name.

    The solver gives the TEST net the trained weights layer by layer, by name
    (`ShareTrainedLayersWith`), and a .caffemodel is loaded by name too: this layer
    never receives trained weights and runs with its fillers' initial values. The
    classic case is a BatchNorm written twice, "bn1" for TRAIN and "bn1_test" for
    TEST: the TEST twin normalises with zero statistics. Give both twins one name
    (or write the layer once, without phase rules).

    Bad:
        layer { name: "bn1" type: "BatchNorm" ... include { phase: TRAIN } }
        layer { name: "bn1_test" type: "BatchNorm" ... include { phase: TEST } }

    Good:
        layer { name: "bn1" type: "BatchNorm" ... include { phase: TRAIN } }
        layer { name: "bn1" type: "BatchNorm" ... include { phase: TEST } }
    """

    code = "N009"
    name = "untrained-test-layer"
    severity = Severity.ERROR

    def check_net(self, ctx):
        from bnlint.caffe import known

        train_names = {lv.name for g in ctx.graphs if g.state.phase == Phase.TRAIN
                       for lv in g.layers}
        if not train_names or ctx.is_deploy:
            return
        for layer in ctx.view.layers:
            if layer.type not in known.PARAMETRIC_LAYER_TYPES and not len(layer.message.param):
                continue
            states = ctx.states_of(layer)
            if not states or any(s.phase == Phase.TRAIN for s in states):
                continue
            if layer.name in train_names:
                continue
            twin = _twin(ctx, layer)
            hint = f" (its TRAIN twin is '{twin.name}')" if twin is not None else ""
            yield self.diag(ctx, f"{layer.type} '{layer.name}' is active in TEST only and no "
                            f"TRAIN layer is named '{layer.name}'{hint}: weights are shared "
                            f"and loaded by layer name, so it never gets the trained ones",
                            layer.find("name") or layer.node,
                            phases=[str(s) for s in states], layer=layer)


def _twin(ctx, layer):
    """A TRAIN-only layer of the same type with the same bottoms: the layer's twin."""
    for lv in ctx.view.layers:
        if lv.type == layer.type and lv.bottoms == layer.bottoms and lv.index != layer.index \
                and ctx.states_of(lv) and \
                all(s.phase == Phase.TRAIN for s in ctx.states_of(lv)):
            return lv
    return None
