"""The net as Caffe sees it: layers with their source spans, phases, and the blob graph.

A `NetView` pairs each layer's syntax node (for positions and edits) with its
LayerParameter in current (V2) form, legacy `layers` upgraded layer by layer, so
every later step speaks one vocabulary. Fork fields the schema does not know stay
in the syntax tree; they are simply absent from the message.

`NetGraph` is the net under one NetState, built the way `Net::Init` does: filter
layers by include/exclude (`FilterNet`), then wire bottoms to the latest top of
that name in file order (in-place tops shadow earlier ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator

from bnlint.caffe.layers import ROLE_DATA, ROLE_EVALUATION, ROLE_LOSS, types_with
from bnlint.caffe.phase import Phase
from bnlint.syntax.nodes import Field, ListValue, Message

DATA_LAYER_TYPES = types_with(ROLE_DATA)
LOSS_LAYER_TYPES = types_with(ROLE_LOSS) | types_with(ROLE_EVALUATION)


def is_data_layer(layer: "LayerView") -> bool:
    """A layer that brings blobs into the net from outside: a reader, or a Python layer
    without bottoms (py-faster-rcnn's input layer). Input layers are not: they are
    what a deploy net keeps."""
    if layer.type == "Python":
        return not layer.bottoms
    return layer.type in DATA_LAYER_TYPES


def is_loss_layer(layer: "LayerView") -> bool:
    """A loss or evaluation layer (fork losses are recognised by their name)."""
    return layer.type in LOSS_LAYER_TYPES or layer.type.endswith("Loss")


@dataclass
class LayerView:
    """One layer entry of the file."""

    index: int                 # position among the file's layer entries
    node: Field                # the `layer { ... }` (or legacy `layers { ... }`) field
    message: object            # LayerParameter (V2 form)
    legacy: str | None = None  # "v1" or "v0" when written in an old syntax
    item: Message | None = None  # the layer's own block when written `layer: [{...}, ...]`

    # name, type and the rules are read from the message once: the rules and the graphs
    # ask for them per layer many times, and each read of a message field makes a
    # new Python object
    @cached_property
    def name(self) -> str:
        return self.message.name

    @cached_property
    def type(self) -> str:
        return self.message.type

    @cached_property
    def include(self) -> tuple:
        """The include NetStateRules."""
        return tuple(self.message.include)

    @cached_property
    def exclude(self) -> tuple:
        """The exclude NetStateRules."""
        return tuple(self.message.exclude)

    @property
    def bottoms(self) -> list[str]:
        return list(self.message.bottom)

    @property
    def tops(self) -> list[str]:
        return list(self.message.top)

    @property
    def body(self) -> Message:
        return self.item if self.item is not None else self.node.value

    def find(self, dotted: str) -> Field | None:
        """The syntax node of a (sub)field, e.g. "batch_norm_param.eps"; the last one wins."""
        msg: Message | None = self.body
        found: Field | None = None
        for part in dotted.split("."):
            if msg is None:
                return None
            found = msg.get(part)
            if found is None:
                return None
            msg = found.value if isinstance(found.value, Message) else None
        return found

    def find_all(self, name: str) -> list[Field]:
        return self.body.get_all(name)

    def __repr__(self) -> str:
        return f"LayerView({self.index}, {self.name!r}, {self.type!r})"


@dataclass
class NetInput:
    """A net-level (deprecated) `input:` with its shape, if one is given."""

    name: str
    node: Field
    shape: tuple[int, ...] | None


@dataclass
class NetView:
    """A net file's layers and inputs, each with its syntax node."""

    message: object                       # the whole NetParameter as parsed (not upgraded)
    layers: list[LayerView]
    inputs: list[NetInput]
    name: str = ""
    tree: object = None

    def stages(self) -> list[str]:
        """Every stage any include/exclude rule names, in first-seen order."""
        seen: dict[str, None] = {}
        for layer in self.layers:
            for rule in layer.include + layer.exclude:
                for s in list(rule.stage) + list(rule.not_stage):
                    seen.setdefault(s, None)
        return list(seen)

    def phases(self) -> list[Phase]:
        """The phases the file is written for: those its rules name, else both.

        A net whose rules only ever say TRAIN and that has a TRAIN-only data layer is
        a training net: checking it under TEST would report the missing input. When
        the TRAIN-only layers are others (a Dropout, an auxiliary loss), the file is
        still a train/val net and is checked under TEST too.
        """
        named: set[int] = set()
        for layer in self.layers:
            for rule in layer.include + layer.exclude:
                if rule.HasField("phase"):
                    named.add(rule.phase)
        if not named or len(named) == 2:
            return [Phase.TEST, Phase.TRAIN]
        only = Phase(next(iter(named)))
        # `exclude { phase: P }` alone means the net is meant for the other phase too,
        # and so does a loss that runs in every phase (a train/val net whose only rule
        # is a TEST-only Accuracy still trains)
        excluded = any(r.HasField("phase") for layer in self.layers for r in layer.exclude)
        trains = any(layer.type.endswith("Loss") and not layer.include
                     and not layer.exclude for layer in self.layers)
        if only == Phase.TRAIN and not any(
                is_data_layer(layer) for layer in self.layers
                if any(r.HasField("phase") for r in layer.include)):
            return [Phase.TEST, Phase.TRAIN]
        return [Phase.TEST, Phase.TRAIN] if excluded or (trains and only == Phase.TEST) \
            else [only]

    def states(self) -> list["NetState"]:
        """The states to check the net under: its phases, plain and with each stage.

        A staged state that selects the same layers as its plain phase is dropped.
        """
        phases = self.phases()
        rules = [r for layer in self.layers
                 for r in layer.include + layer.exclude]
        # A phase whose include rules pick layers by stage (a solver's `test_state {
        # stage: ... }`, DIGITS' "train"/"val") is never instantiated without a stage.
        staged: set[Phase] = set()
        for layer in self.layers:
            for r in layer.include:
                if len(r.stage):
                    staged |= {Phase(r.phase)} if r.HasField("phase") else set(phases)
        candidates = [NetState(p) for p in phases if p not in staged]
        for stage in self.stages():
            # a stage only goes with the phases its rules allow
            allowed = {Phase(r.phase) for r in rules if r.HasField("phase")
                       and (stage in r.stage or stage in r.not_stage)}
            if any(not r.HasField("phase") and (stage in r.stage or stage in r.not_stage)
                   for r in rules):
                allowed = set(phases)
            candidates += [NetState(p, (stage,)) for p in phases if p in allowed]
        seen: set[tuple] = set()
        out = []
        for state in candidates:
            key = (state.phase,) + tuple(layer.index for layer in self.layers
                                         if layer_included(layer, state))
            if key not in seen:
                seen.add(key)
                out.append(state)
        return out

    def has_phase_rules(self) -> bool:
        return any(layer.include or layer.exclude or layer.message.HasField("phase")
                    for layer in self.layers)


@dataclass(frozen=True)
class NetState:
    """Caffe's NetState: the phase, stages and level that pick the active layers."""

    phase: Phase = Phase.TEST
    stages: tuple[str, ...] = ()
    level: int = 0

    def __str__(self) -> str:
        text = self.phase.name
        if self.stages:
            text += "+" + "+".join(self.stages)
        if self.level:
            text += f"@{self.level}"
        return text


def rule_matches(rule, state: NetState) -> bool:
    """Caffe's StateMeetsRule."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(s not in state.stages for s in rule.stage):
        return False
    if any(s in state.stages for s in rule.not_stage):
        return False
    return True


def layer_included(layer: LayerView, state: NetState) -> bool:
    """Caffe's FilterNet for one layer (include wins when both are given, as Caffe
    aborts on that case anyway and N003 reports it)."""
    if layer.include:
        return any(rule_matches(r, state) for r in layer.include)
    return not any(rule_matches(r, state) for r in layer.exclude)


def layer_phase(layer: LayerView, state: NetState) -> Phase:
    """The phase a layer runs in: its own `phase` field, else the net's."""
    if layer.message.HasField("phase"):
        return Phase(layer.message.phase)
    return state.phase


# --- building the view -----------------------------------------------------------------

def net_view(text_file) -> NetView:
    """The NetView of a parsed net file (a solver: the net embedded in `net_param`)."""
    message = text_file.message
    tree = text_file.tree
    if text_file.kind == "SolverParameter":
        holder = tree.get("net_param")
        if holder is None or not isinstance(holder.value, Message):
            return NetView(message.net_param, [], [], "", tree)
        tree, message = holder.value, message.net_param
    return build_view(tree, message)


def _layer_nodes(tree, name: str) -> Iterator[tuple[Field, Message | None]]:
    """(field, list item or None) for each Message that produced one entry of repeated
    `name`, in order."""
    for f in tree.fields:
        if f.name != name:
            continue
        if isinstance(f.value, Message):
            yield f, None
        elif isinstance(f.value, ListValue):
            for item in f.value.items:
                if isinstance(item, Message):
                    yield f, item


def build_view(tree, message) -> NetView:
    layers: list[LayerView] = []
    for (node, item), msg in zip(_layer_nodes(tree, "layer"), message.layer):
        layers.append(LayerView(len(layers), node, msg, item=item))
    if len(message.layers):
        from bnlint.caffe.upgrade import needs_v0_upgrade, upgrade_v1_layer

        entries = list(_layer_nodes(tree, "layers"))
        nodes = [node for node, _ in entries]
        if needs_v0_upgrade(message):
            layers.extend(_v0_layers(message, nodes, start=len(layers)))
        else:
            for (node, item), v1 in zip(entries, message.layers):
                layers.append(LayerView(len(layers), node, upgrade_v1_layer(v1), "v1",
                                        item=item))
        layers.sort(key=lambda lv: lv.node.start)
        for i, lv in enumerate(layers):
            lv.index = i
    return NetView(message, layers, _net_inputs(tree, message), message.name, tree)


def _v0_layers(message, nodes: list[Field], start: int) -> list[LayerView]:
    """V0 nets are upgraded whole (padding layers fold into the next layer), then
    matched back to their `layers { layer { name } }` nodes by name."""
    from bnlint.caffe.upgrade import upgrade_net

    upgraded = upgrade_net(message).message
    by_name = {}
    for node, v1 in zip(nodes, message.layers):
        by_name.setdefault(v1.layer.name or v1.name, node)
    out = []
    for msg in upgraded.layer:
        if msg.type == "Input" and msg.name == "input" and len(message.input):
            continue  # the net-level inputs, kept as NetInputs
        node = by_name.get(msg.name, nodes[0])
        out.append(LayerView(start + len(out), node, msg, "v0"))
    return out


def _net_inputs(tree, message) -> list[NetInput]:
    nodes = [f for f in tree.fields if f.name == "input"]
    shapes: list[tuple[int, ...] | None] = []
    if len(message.input_shape):
        shapes = [tuple(int(d) for d in s.dim) for s in message.input_shape]
    elif len(message.input_dim):
        dims = list(message.input_dim)
        shapes = [tuple(dims[i:i + 4]) for i in range(0, len(dims), 4)]
    out = []
    for i, name in enumerate(message.input):
        node = nodes[i] if i < len(nodes) else nodes[-1] if nodes else None
        out.append(NetInput(name, node, shapes[i] if i < len(shapes) else None))
    return out


# --- the blob graph under one state ------------------------------------------------------

@dataclass(eq=False)
class Blob:
    """One version of a named blob: written once, by an input or a layer's top."""

    name: str
    producer: LayerView | None       # None: a net-level input field
    top_index: int
    consumers: list[tuple[LayerView, int]] = field(default_factory=list)
    shape: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        who = self.producer.name if self.producer else "<input>"
        return f"Blob({self.name!r} from {who})"


@dataclass
class GraphProblem:
    """A bottom no earlier layer makes, or a top made twice: Net::Init refuses both."""

    code: str                 # "unknown-bottom" | "duplicate-top"
    layer: LayerView
    index: int                # bottom or top index
    message: str


class NetGraph:
    """The layers active under one state, wired bottom to top as Net::Init wires them."""

    def __init__(self, view: NetView, state: NetState) -> None:
        self.view = view
        self.state = state
        self.layers = [lv for lv in view.layers if layer_included(lv, state)]
        self.inputs: list[Blob] = []
        self.bottoms: dict[int, list[Blob | None]] = {}
        self.tops: dict[int, list[Blob]] = {}
        self.problems: list[GraphProblem] = []
        self._wire()

    def _wire(self) -> None:
        latest: dict[str, Blob] = {}
        produced = {top for lv in self.layers for top in lv.message.top}
        for inp in self.view.inputs:
            if inp.shape is None and inp.name in produced:
                # Caffe's upgrade drops net-level inputs that have no shape at all
                # (input_shape / input_dim): a layer's top of that name is the blob
                continue
            blob = Blob(inp.name, None, 0, shape=inp.shape)
            latest[inp.name] = blob
            self.inputs.append(blob)
        for lv in self.layers:
            bottom_names = list(lv.message.bottom)
            bottoms: list[Blob | None] = []
            for i, name in enumerate(bottom_names):
                blob = latest.get(name)
                if blob is None:
                    self.problems.append(GraphProblem(
                        "unknown-bottom", lv, i,
                        f"unknown bottom blob '{name}' (layer '{lv.name}', bottom index {i}): "
                        f"no earlier layer produces it"))
                else:
                    blob.consumers.append((lv, i))
                bottoms.append(blob)
            tops: list[Blob] = []
            for i, name in enumerate(lv.message.top):
                in_place = i < len(bottom_names) and bottom_names[i] == name
                if not in_place and name in latest:
                    prev = latest[name]
                    who = (f"layer '{prev.producer.name}'" if prev.producer
                           else "the net-level input")
                    self.problems.append(GraphProblem(
                        "duplicate-top", lv, i,
                        f"top blob '{name}' is produced by multiple sources ({who} "
                        f"already produces it, and this is not in-place)"))
                blob = Blob(name, lv, i)
                latest[name] = blob
                tops.append(blob)
            self.bottoms[lv.index] = bottoms
            self.tops[lv.index] = tops
        self._latest = latest

    def outputs(self) -> list[Blob]:
        """Blobs no layer consumes after they are written: the net's outputs."""
        out = []
        for lv in self.layers:
            for blob in self.tops[lv.index]:
                if not blob.consumers and self._latest.get(blob.name) is blob:
                    out.append(blob)
        return out

    def next_version(self, blob: Blob) -> Blob | None:
        """The blob written in place over this one by its consumer, if any."""
        for lv, i in blob.consumers:
            if i < len(lv.tops) and lv.tops[i] == blob.name:
                return self.tops[lv.index][i]
        return None

    def producer_of(self, lv: LayerView, bottom_index: int) -> Blob | None:
        return self.bottoms[lv.index][bottom_index]
