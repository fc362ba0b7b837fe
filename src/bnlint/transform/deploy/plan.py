"""The edits that turn one parsed net into its deploy form (steps 1-7 of the package's
docstring), on the blob graph of the state chosen, and the notes that say what went."""

from __future__ import annotations

from bnlint.caffe import inputs as net_inputs
from bnlint.caffe.layers import ROLE_EVALUATION, types_with
from bnlint.caffe.load import TextFile
from bnlint.caffe.net import LOSS_LAYER_TYPES, Blob, LayerView, NetGraph, net_view
from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError
from bnlint.syntax.edits import (Edit, Locator, indentation_of, insert_after, insert_before,
                                 remove_fields, replace_value)
from bnlint.syntax.nodes import Field, Message, Scalar, iter_tokens
from bnlint.syntax.values import parse_bool
from bnlint.transform import (block, detect_style, input_layer_body, is_multiline, quote,
                              replace_field)
from bnlint.transform.deploy.options import DeployOptions, Shape

_EVALUATION_TYPES = types_with(ROLE_EVALUATION)
_PARAM_SPEC_LEARNING = ("lr_mult", "decay_mult")
SHOWN = 8                       # layer names listed in one note before "and N more"


class DeployPlan:
    """The edits that turn one parsed net into its deploy form, and the notes."""

    def __init__(self, text_file: TextFile, options: DeployOptions) -> None:
        self.text_file = text_file
        self.options = options
        self.text = text_file.source.text
        self.tree = text_file.tree
        self.loc = Locator(self.tree)
        self.style = detect_style(self.tree, self.text)
        self.view = net_view(text_file)
        self.edits: list[Edit] = []
        self.notes: list[str] = []
        self.shapes: dict[str, Shape] = {}
        self._counts: dict[str, int] = {}
        self._noted: set[str] = set()
        self.state = options.state_for(self.view)
        if options.phase is None and self.state.phase == Phase.TRAIN:
            self.notes.append("the net's include/exclude rules only name TRAIN: its TRAIN view "
                              "was used (--phase test to insist)")

    def run(self) -> None:
        listed = [f for f in self.tree.fields if f.name == "layer"
                  and not isinstance(f.value, Message)]
        if listed:
            raise BnlintError("to-deploy edits `layer { ... }` blocks; this net writes "
                              "layers as a `layer: [ ... ]` list", source=self.text_file.source,
                              offset=listed[0].start)
        graph = NetGraph(self.view, self.state)
        unknown = [p for p in graph.problems if p.code == "unknown-bottom"]
        if unknown:
            hint = ""
            stages = self.view.stages()
            if stages and not self.state.stages:
                hint = (f" (its rules choose layers by stage: pick one with --stage, e.g. "
                        f"{', '.join(repr(s) for s in stages)})")
            raise BnlintError(f"the net is not valid under {self.state}: {unknown[0].message}"
                              f"{hint}", source=self.text_file.source,
                              offset=unknown[0].layer.node.start)
        self.graph = graph
        removed = self._classify()
        self._replace_and_remove(removed)
        for layer in graph.layers:
            if layer.index not in removed:
                self._edit_survivor(layer)
        self._net_level()

    # which layers go ----------------------------------------------------------------

    def _classify(self) -> dict[int, str]:
        """Layer index -> why it goes, for every layer entry of the file that goes."""
        graph, overrides = self.graph, self.options.input_shapes
        active = {lv.index for lv in graph.layers}
        removed = {lv.index: "inactive" for lv in self.view.layers if lv.index not in active}
        self.data_layers = [lv for lv in graph.layers if net_inputs.is_data_layer(lv) or (
            lv.type == "Input" and any(net_inputs.is_label_top(lv, i, overrides)
                                       for i in range(len(lv.tops))))]
        tainted: set[Blob] = set()
        self.input_blobs: list[Blob] = []
        for lv in self.data_layers:
            removed[lv.index] = "data"
            for i, blob in enumerate(graph.tops[lv.index]):
                if net_inputs.is_label_top(lv, i, overrides):
                    tainted.add(blob)
                else:
                    self.input_blobs.append(blob)
        sinks: list[LayerView] = []
        for lv in graph.layers:
            if lv.index in removed:
                continue
            if lv.type in LOSS_LAYER_TYPES or lv.type.endswith("Loss"):
                removed[lv.index] = "loss"
                sinks.append(lv)
            elif any(b is not None and b in tainted for b in graph.bottoms[lv.index]):
                removed[lv.index] = "label"
                tainted.update(graph.tops[lv.index])
        self.tainted = tainted
        weights = {lv.index: _loss_weight(lv) for lv in sinks}
        heaviest = max(weights.values(), default=0.0)
        self.primary = [lv for lv in sinks if weights[lv.index] == heaviest]
        roots: set[Blob] = set()
        for lv in self.primary:
            roots.update(b for b in graph.bottoms[lv.index] if b is not None and b not in tainted)
            roots.update(self._existing_softmax(lv, removed))
        roots.update(b for b in graph.outputs()
                     if b.producer is not None and b.producer.index not in removed)
        self.roots = roots
        live: set[Blob] = set(roots)
        self.live_layers: set[int] = set()
        for lv in reversed(graph.layers):
            if lv.index in removed:
                continue
            tops = graph.tops[lv.index]
            if not tops or any(t in live for t in tops):
                self.live_layers.add(lv.index)
                live.update(b for b in graph.bottoms[lv.index] if b is not None)
            else:
                removed[lv.index] = "dead"
        self.live_blobs = live
        return removed

    def _existing_softmax(self, sink: LayerView, removed: dict[int, str]) -> list[Blob]:
        """The output of a Softmax the net already runs on a SoftmaxWithLoss's
        prediction (py-faster-rcnn's rpn_cls_prob): kept instead of a new "prob"."""
        bottoms = self.graph.bottoms[sink.index]
        if sink.type != "SoftmaxWithLoss" or not bottoms or bottoms[0] is None:
            return []
        return [self.graph.tops[lv.index][0] for lv, i in bottoms[0].consumers
                if lv.type == "Softmax" and i == 0 and lv.index not in removed
                and self.graph.tops[lv.index]][:1]

    # removals and the two kinds of new layer ----------------------------------------

    def _replace_and_remove(self, removed: dict[int, str]) -> None:
        replaced: dict[int, str] = {}
        kept_inputs = [b for b in self.input_blobs
                       if b in self.live_blobs or b.name in self.options.input_shapes]
        if self.data_layers:
            first = self.data_layers[0]
            if kept_inputs:
                self.shapes = self._input_shapes(kept_inputs)
                replaced[first.index] = self._input_layer(first, kept_inputs)
            self._note_inputs(kept_inputs)
        for sink, softmax_text in self._softmaxes(removed).items():
            replaced[sink] = softmax_text
        gone = [lv for lv in self.view.layers if lv.index in removed and lv.index not in replaced]
        self.edits += remove_fields(self.loc, [lv.node for lv in gone])
        for lv in self.view.layers:
            if lv.index in replaced:
                self.edits.append(replace_field(self.loc, self.text, lv.node, replaced[lv.index],
                                                self.style))
        self._note_removed(removed)
        ignored = [name for name in self.options.input_shapes
                   if name not in {b.name for b in self.input_blobs}]
        declared = {b.name for b in net_inputs.find_inputs(self.view, self.state)}
        unknown = [name for name in ignored if name not in declared]
        if unknown:
            raise BnlintError(f"--input-shape names {', '.join(repr(n) for n in unknown)}, "
                              f"which is not an input of the net under {self.state} (inputs: "
                              f"{', '.join(repr(n) for n in sorted(declared)) or 'none'})",
                              path=self.text_file.path)
        if ignored:
            self.notes.append(f"--input-shape for {', '.join(repr(n) for n in ignored)} not "
                              f"used: the net already declares that input, and to-deploy keeps "
                              f"declared inputs as written")

    def _input_shapes(self, blobs: list[Blob]) -> dict[str, Shape]:
        found = {b.name: b for b in net_inputs.find_inputs(
            self.view, self.state, self.options.input_shapes, self.options.batch)}
        chosen = []
        for blob in blobs:
            info = found[blob.name]
            if info.shape is None and blob.name in self.options.fallback_shapes:
                shape = tuple(self.options.fallback_shapes[blob.name])
                if self.options.batch is not None and shape:
                    shape = (self.options.batch,) + shape[1:]
                info.shape, info.source, info.missing = shape, "the deploy file", ""
            chosen.append(info)
        self.input_sources = {i.name: i.source for i in chosen}
        return net_inputs.shapes_or_error(chosen)

    def _input_layer(self, first: LayerView, blobs: list[Blob]) -> str:
        multiline = "\n" in self.text[first.node.start:first.node.end]
        indent = indentation_of(first.node)
        tops = [b.name for b in blobs]
        body = input_layer_body(first.name, tops, [self.shapes[t] for t in tops], self.style,
                                indent, multiline)
        return block(first.node.name, body, self.style, indent, multiline)

    def _softmaxes(self, removed: dict[int, str]) -> dict[int, str]:
        """Sink layer index -> the text of the Softmax that takes its place."""
        if not self.options.softmax:
            return {}
        graph = self.graph
        chosen: list[tuple[LayerView, Blob]] = []
        for sink in self.primary:
            if sink.type != "SoftmaxWithLoss" or not graph.bottoms[sink.index]:
                continue
            blob = graph.bottoms[sink.index][0]
            if blob is None or blob in self.tainted or any(b is blob for _, b in chosen):
                continue
            if any(lv.type == "Softmax" and lv.index not in removed for lv, _ in blob.consumers):
                continue
            chosen.append((sink, blob))
        if not chosen and not any(s.type == "SoftmaxWithLoss" for s in self.primary):
            chosen = self._other_phase_softmax(removed)
        taken = {lv.name for lv in self.graph.layers if lv.index not in removed}
        taken |= {name for lv in self.graph.layers if lv.index not in removed for name in lv.tops}
        out: dict[int, str] = {}
        for sink, blob in chosen:
            name = "prob" if len(chosen) == 1 and "prob" not in taken else f"{blob.name}_prob"
            multiline = "\n" in self.text[sink.node.start:sink.node.end]
            indent = indentation_of(sink.node)
            body = [f"name: {quote(name)}", 'type: "Softmax"', f"bottom: {quote(blob.name)}",
                    f"top: {quote(name)}"]
            softmax_param = sink.find("softmax_param")
            if softmax_param is not None:
                body.append(_source(softmax_param))
            out[sink.index] = block(sink.node.name, body, self.style, indent, multiline)
            self.notes.append(f"{sink.type} '{sink.name}' → Softmax '{name}' on '{blob.name}'")
        return out

    def _other_phase_softmax(self, removed: dict[int, str]) -> list[tuple[LayerView, Blob]]:
        """A SoftmaxWithLoss of another phase on an output of this view (SqueezeNet's
        train_val has its loss in TRAIN only and accuracies in TEST)."""
        outputs = {b.name: b for b in self.roots}
        for lv in self.view.layers:
            if removed.get(lv.index) != "inactive" or lv.type != "SoftmaxWithLoss" or \
                    not lv.bottoms or lv.bottoms[0] not in outputs:
                continue
            blob = outputs[lv.bottoms[0]]
            if any(c.type == "Softmax" and c.index not in removed for c, _ in blob.consumers):
                continue
            return [(lv, blob)]
        return []

    # the layers that stay -----------------------------------------------------------

    def _edit_survivor(self, layer: LayerView) -> None:
        body = layer.body
        removals = [f for f in body.fields if f.name in ("include", "exclude")]
        removals += self._param_removals(layer)
        if layer.type == "BatchNorm":
            removals += self._batch_norm(layer, removals)
        elif layer.type == "BN":
            self._note_once("fork-bn", "layer type 'BN' (the SegNet/ENet fork) left as written: "
                                       "its inference mode (bn_param { bn_mode: INFERENCE }) "
                                       "is the fork's own setting")
        if not self.options.keep_fillers:
            self._strip_fillers(layer)
        self.edits += remove_fields(self.loc, removals)

    def _param_removals(self, layer: LayerView) -> list[Field]:
        blocks = [f for f in layer.body.fields if f.name == "param"]
        if not blocks:
            return []
        if not all(isinstance(b.value, Message) for b in blocks):
            self.notes.append(f"layer '{layer.name}': param written as a list; left as written")
            return []
        named = [i for i, b in enumerate(blocks) if b.value.get("name") is not None]
        last = max(named, default=-1)
        learning = [f for b in blocks[:last + 1] for f in b.value.fields
                    if f.name in _PARAM_SPEC_LEARNING]
        self.edits += remove_fields(self.loc, learning)
        if named:
            self._note_once("shared", "param blocks with a name (shared weights) kept, without "
                                      "lr_mult and decay_mult")
        if learning or blocks[last + 1:]:
            self._count("params")
        return blocks[last + 1:]

    def _batch_norm(self, layer: LayerView, layer_removals: list[Field]) -> list[Field]:
        """Edits making a BatchNorm use its stored statistics; returns layer-level removals."""
        before = len(self.edits)
        removals = self._batch_norm_edits(layer, layer_removals)
        if len(self.edits) > before or removals:
            self._count("bn")
        return removals

    def _batch_norm_edits(self, layer: LayerView, layer_removals: list[Field]) -> list[Field]:
        holder = layer.find("batch_norm_param")
        if holder is None:
            kept = [f for f in layer.body.fields if f not in layer_removals]
            anchor = kept[-1]
            indent = indentation_of(anchor)
            multiline = any(is_multiline(f.value) for f in layer.body.fields
                            if isinstance(f.value, Message))
            text = block("batch_norm_param", ["use_global_stats: true"], self.style, indent,
                         multiline)
            self.edits.append(insert_after(self.loc, anchor, text))
            return []
        if not isinstance(holder.value, Message):
            raise BnlintError(f"BatchNorm '{layer.name}': batch_norm_param is not a block",
                              source=self.text_file.source, offset=holder.start)
        param = holder.value
        moving = [f for f in param.fields if f.name == "moving_average_fraction"]
        flags = [f for f in param.fields if f.name == "use_global_stats"]
        others = [f for f in param.fields if f not in moving and f not in flags]
        if flags:
            for f in flags:
                if f.colon is None:
                    # `use_global_stats 0`: the parser kept it for the schema check;
                    # the whole field is rewritten so the output parses
                    self.edits.append(Edit(f.name_token.offset, f.value.end,
                                           "use_global_stats: true"))
                elif not (isinstance(f.value, Scalar) and _is_true(f.value.text)):
                    self.edits.append(replace_value(f, "true"))
        elif others:
            self.edits.append(insert_before(others[0], "use_global_stats: true"))
        else:
            self.edits.append(Edit(param.start, param.end, "{ use_global_stats: true }"))
            return []
        self.edits += remove_fields(self.loc, moving)
        return []

    def _strip_fillers(self, layer: LayerView) -> None:
        """Remove the FillerParameter fields of the layer's BVLC parameters.

        BVLC's schema decides, not the file's dialect: fork parameters (SSD's
        norm_param scale_filler, NVCaffe's BatchNorm fillers) pass through whichever
        dialect the file was read in.
        """
        from bnlint.caffe.schema import default_schema

        layer_fields = default_schema().descriptor("LayerParameter").fields_by_name
        stripped = []
        for f in layer.body.fields:
            fd = layer_fields.get(f.name)
            if fd is None or fd.message_type is None or not isinstance(f.value, Message):
                continue
            sub_fields = fd.message_type.fields_by_name
            for g in f.value.fields:
                gd = sub_fields.get(g.name)
                if gd is not None and gd.message_type is not None and \
                        gd.message_type.name == "FillerParameter":
                    stripped.append(g)
        if stripped:
            self._count("fillers")
            self.edits += remove_fields(self.loc, stripped)

    def _net_level(self) -> None:
        state = [f for f in self.tree.fields if f.name == "state"]
        if state:
            self.edits += remove_fields(self.loc, state)
            self.notes.append("net-level `state` removed: its phase, stages and level were "
                              "applied")
        counts = self._counts
        if counts.get("bn"):
            self.notes.append(f"BatchNorm: use_global_stats: true in {_layers(counts['bn'])}, "
                              f"eps kept as written, moving_average_fraction removed")
        if counts.get("fillers"):
            self.notes.append(f"fillers removed from {_layers(counts['fillers'])} "
                              f"(--keep-fillers keeps them)")
        if counts.get("params"):
            self.notes.append(f"param blocks (lr_mult, decay_mult) removed from "
                              f"{_layers(counts['params'])}")

    # notes ------------------------------------------------------------------------

    def _note_inputs(self, kept: list[Blob]) -> None:
        names = ", ".join(f"'{lv.name}' ({lv.type})" for lv in self.data_layers)
        if not kept:
            self.notes.append(f"data layer(s) {names} removed: no input they give is used")
            return
        shown = ", ".join(f"{b.name} {'x'.join(str(d) for d in self.shapes[b.name])} "
                          f"({self.input_sources.get(b.name) or 'declared'})" for b in kept)
        self.notes.append(f"data layer(s) {names} → Input '{self.data_layers[0].name}': {shown}")

    def _note_removed(self, removed: dict[int, str]) -> None:
        by_reason: dict[str, list[str]] = {}
        for lv in self.view.layers:
            reason = removed.get(lv.index)
            if reason and reason != "data":
                by_reason.setdefault(reason, []).append(lv.name)
        what = {"inactive": ("", f" not in {self.state}"),
                "loss": ("loss/accuracy ", ""),
                "label": ("", " reading labels"),
                "dead": ("", " only feeding removed layers")}
        for reason in ("inactive", "loss", "label", "dead"):
            names = by_reason.get(reason)
            if names:
                before, after = what[reason]
                listed = ", ".join(f"'{n}'" for n in names[:SHOWN])
                more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
                count = _layers(len(names)).split(" ", 1)
                self.notes.append(f"removed {count[0]} {before}{count[1]}{after}: "
                                  f"{listed}{more}")

    def _note_once(self, key: str, text: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self.notes.append(text)

    def _count(self, key: str) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1


def _layers(n: int) -> str:
    return f"{n} layer" if n == 1 else f"{n} layers"


def _loss_weight(layer: LayerView) -> float:
    """Caffe's loss weight of a layer: written, else 1 for a loss, 0 for an evaluation."""
    if len(layer.message.loss_weight):
        return float(sum(layer.message.loss_weight))
    return 0.0 if layer.type in _EVALUATION_TYPES else 1.0


def _is_true(text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError:
        return False


def _source(node: Field) -> str:
    """A field's own text, without the trivia in front of it."""
    tokens = list(iter_tokens(node))
    return "".join((t.prefix if i else "") + t.text for i, t in enumerate(tokens))
