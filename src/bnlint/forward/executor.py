"""Run a whole net: the layers of one NetState in file order, each through its op.

Built the way Caffe's `Net::Init` builds a net: layers filtered by the state, top
shapes inferred layer by layer from the input shapes, each layer's blobs taken from
the weights by layer name (checked as `CopyTrainedLayersFrom` checks them) or, when
the weights lack the layer, made by its fillers as `LayerSetUp` would, with a seeded
generator so a run can be repeated.

`run` keeps memory near the largest set of live blobs: a blob is dropped after its
last consumer unless it was asked for, and that last consumer may write its result
into it (`norm.overwriting`) when the array is an op's fresh result that nothing else
holds, as Caffe's in-place layers share one blob. Blob names follow Caffe: an in-place top
shadows the earlier blob of that name, and what `run(keep="all")` returns under a
name is its value after the last layer that writes it (as pycaffe's `net.blobs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from bnlint.caffe import shapes as shape_rules
from bnlint.caffe.net import DATA_LAYER_TYPES, LayerView, NetGraph, NetState, NetView, layer_phase
from bnlint.errors import BnlintError, ForwardError, WeightsError
from bnlint.forward.ops.base import overwriting
from bnlint.forward import ops as _ops  # noqa: F401  (registers every op)
from bnlint.forward.fillers import LazyRng, blobs_from_fillers, dummy_data_tops
from bnlint.forward.registry import OPS, Op, op_for

Shape = tuple[int, ...]
Keep = str | Iterable[str]
LayerHook = Callable[[LayerView, list[np.ndarray]], None]

#: The extra blob count that gives away NVIDIA Caffe's BatchNorm (scale and bias inside).
_NVCAFFE_BATCH_NORM_BLOBS = 5


@dataclass
class _Step:
    """One active layer: its op (None for a source of inputs) and its blob slots."""

    layer: LayerView
    op: Op | None
    bottoms: list[int]
    tops: list[int]
    #: Bottoms read for the last time here (once each): the op may write into them.
    dying: tuple[int, ...] = ()
    #: The layers a fused step runs (bnlint.forward.fusion), in order; empty for one.
    covers: tuple[LayerView, ...] = ()


@dataclass(frozen=True)
class _Slot:
    """One version of a named blob (an input, or one layer's top)."""

    name: str
    shape: Shape | None


class Network:
    """A net ready to run: ops built, blobs loaded or filled, blob lifetimes planned.

    `weights` maps layer names to blob arrays (`bnlint.caffe.weights.read_weights`);
    layers it lacks are filled from their fillers with `numpy.random.default_rng(seed)`
    (BatchNorm statistics are zeros, as in Caffe). `input_shapes` overrides the shapes
    the net declares for its inputs; a data layer's tops need one. `source` (the net's
    SourceFile) lets errors point at the layer in the file.
    """

    def __init__(self, view: NetView, state: NetState | None = None,
                 weights: Mapping[str, Sequence[np.ndarray]] | None = None, *,
                 input_shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0,
                 source=None) -> None:
        self.view = view
        self.state = state or NetState()
        self.graph = NetGraph(view, self.state)
        self.source = source
        self.weights_path = getattr(weights, "path", "") or ""
        self.seed = seed
        self._given_shapes = {name: tuple(int(d) for d in shape)
                              for name, shape in (input_shapes or {}).items()}
        self.slots: list[_Slot] = []
        self.steps: list[_Step] = []
        self.blobs: dict[str, list[np.ndarray]] = {}
        self.filled: list[str] = []        # layers whose blobs came from fillers
        self.notes: list[str] = []         # what building it left out (`load_network`)
        self._input_slots: dict[str, int] = {}
        #: DummyData tops: values made from the layer's fillers, used unless given.
        self._default_inputs: dict[str, tuple[int, np.ndarray]] = {}
        self._fused: tuple[list[_Step], dict[int, int]] | None = None
        self._build(weights or {})

    # --- building ----------------------------------------------------------------------

    def _located(self, err: BnlintError, layer: LayerView | None) -> BnlintError:
        """`err` pointing at the layer in the net file, unless it already points somewhere."""
        if layer is not None and self.source is not None and err.path is None:
            err.source, err.path, err.offset = self.source, self.source.path, layer.node.start
        return err

    def _build(self, weights: Mapping[str, Sequence[np.ndarray]]) -> None:
        if self.graph.problems:
            problem = self.graph.problems[0]
            raise self._located(ForwardError(problem.message), problem.layer)
        rng = LazyRng(self.seed)
        slot_of: dict[int, int] = {}             # id(graph Blob) -> slot
        unconsumed_inputs = []
        for blob in self.graph.inputs:
            shape = self._given_shapes.get(blob.name, blob.shape)
            if shape is None:
                raise ForwardError(f"net input '{blob.name}' has no declared shape; pass "
                                   f"--input-shape {blob.name}=N,C,H,W (input_shapes=)")
            slot_of[id(blob)] = self._new_slot(blob.name, shape)
            self._input_slots[blob.name] = slot_of[id(blob)]
            if not blob.consumers:
                unconsumed_inputs.append(slot_of[id(blob)])
        for lv in self.graph.layers:
            try:
                step = self._build_step(lv, weights, rng, slot_of)
            except BnlintError as err:
                raise self._located(err, lv) from None
            self.steps.append(step)
        self._last_use = _schedule(self.steps)
        self._outputs = unconsumed_inputs + [
            slot_of[id(b)] for b in self.graph.outputs()
            if id(b) in slot_of and self.slots[slot_of[id(b)]].shape is not None]
        # Entries with blobs that fit no layer: a renamed layer, whose weights Caffe would
        # silently skip (parameter-free entries, such as saved Split layers, do not matter).
        active = {lv.name for lv in self.graph.layers}
        self.unused_weights = sorted(name for name, blobs in weights.items()
                                     if name not in active and len(blobs))

    def _fused_plan(self) -> tuple[list[_Step], dict[int, int]]:
        """The steps with BatchNorm chains fused (bnlint.forward.fusion), made on the
        first fused run, and their blobs' last uses."""
        if self._fused is None:
            from bnlint.forward.fusion import fuse_steps

            steps = fuse_steps(self.steps, self.slots, set(self._outputs))
            self._fused = (steps, _schedule(steps))
        return self._fused

    def _new_slot(self, name: str, shape: Shape | None) -> int:
        self.slots.append(_Slot(name, None if shape is None else tuple(shape)))
        return len(self.slots) - 1

    def _build_step(self, lv: LayerView, weights, rng, slot_of: dict[int, int]) -> _Step:
        bottoms = [slot_of[id(b)] for b in self.graph.bottoms[lv.index]]
        top_blobs = self.graph.tops[lv.index]
        if not lv.bottoms and (lv.type == "Input" or lv.type in DATA_LAYER_TYPES):
            return self._source_step(lv, top_blobs, slot_of, rng)
        if lv.type == "Python":
            # Never run; its tops (py-faster-rcnn's proposals: the ROIs) may be inputs.
            wanted = [b.name for b in top_blobs if b.consumers]
            missing = [name for name in wanted if name not in self._given_shapes]
            if missing:
                raise ForwardError(
                    f"layer '{lv.name}' (Python): bnlint never runs Python layers; to run "
                    f"the layers after it, give its tops as inputs: --input-shape "
                    f"{missing[0]}=DIMS and --input {missing[0]}=FILE.npy")
            return self._source_step(lv, top_blobs, slot_of, rng)
        if lv.type not in OPS:
            raise ForwardError(f"layer '{lv.name}': type '{lv.type}' is not supported by "
                               f"bnlint's forward (supported: {', '.join(sorted(OPS))})")
        bottom_shapes = [self.slots[s].shape for s in bottoms]
        for name, shape in zip(lv.bottoms, bottom_shapes):
            if shape is None:
                raise ForwardError(f"layer '{lv.name}' ({lv.type}): the shape of its bottom "
                                   f"'{name}' is unknown (its producer makes no such top)")
        inferred = shape_rules.infer(lv.message, bottom_shapes)
        try:
            blobs = self._layer_blobs(lv, weights, inferred.params, rng)
        except MemoryError as err:              # fillers of weights too big to hold
            from bnlint.forward.registry import out_of_memory

            raise ForwardError(f"layer '{lv.name}' ({lv.type}): {out_of_memory(err)}") \
                from None
        self.blobs[lv.name] = blobs
        op = op_for(lv.message, blobs, layer_phase(lv, self.state))
        tops = []
        for i, blob in enumerate(top_blobs):
            shape = inferred.tops[i] if i < len(inferred.tops) else None
            slot_of[id(blob)] = self._new_slot(blob.name, shape)
            tops.append(slot_of[id(blob)])
        return _Step(lv, op, bottoms, tops)

    def _source_step(self, lv: LayerView, top_blobs, slot_of: dict[int, int],
                     rng: np.random.Generator) -> _Step:
        """Input and data layers: their tops are bound to the inputs given to `run`.
        DummyData's tops need not be given: its fillers make them (`dummy_data_tops`)."""
        declared: list[Shape | None] = [None] * len(top_blobs)
        try:
            declared = list(shape_rules.infer(lv.message, []).tops)
        except shape_rules.DataDependentShapeError:
            pass
        except BnlintError:
            if not all(b.name in self._given_shapes for b in top_blobs):
                raise
        tops = []
        for i, blob in enumerate(top_blobs):
            shape = self._given_shapes.get(blob.name,
                                           declared[i] if i < len(declared) else None)
            if shape is None and blob.consumers:
                raise ForwardError(
                    f"layer '{lv.name}' ({lv.type}) reads its top '{blob.name}' from a "
                    f"dataset, so its shape is unknown; pass --input-shape "
                    f"{blob.name}=N,C,H,W (input_shapes=) and feed it as an input")
            slot_of[id(blob)] = self._new_slot(blob.name, shape)
            # A top nothing reads (an unused label) is not demanded from the caller.
            wanted = blob.consumers or blob.name in self._given_shapes
            if lv.type != "DummyData" and shape is not None and wanted:
                self._input_slots[blob.name] = slot_of[id(blob)]
            tops.append(slot_of[id(blob)])   # aligned with lv.tops for on_layer
        if lv.type == "DummyData" and all(self.slots[s].shape is not None for s in tops):
            values = dummy_data_tops(lv.message, [self.slots[s].shape for s in tops], rng)
            for blob, slot, value in zip(top_blobs, tops, values):
                self._default_inputs[blob.name] = (slot, value)
        return _Step(lv, None, [], tops)

    def _layer_blobs(self, lv: LayerView, weights, expected: list[Shape],
                     rng: np.random.Generator) -> list[np.ndarray]:
        if lv.name not in weights:
            if expected:
                self.filled.append(lv.name)
            return blobs_from_fillers(lv.message, expected, rng)
        given = weights[lv.name]
        if len(given) != len(expected):
            hint = ""
            if lv.type == "BatchNorm" and len(given) == _NVCAFFE_BATCH_NORM_BLOBS:
                hint = ("; 5 BatchNorm blobs are NVIDIA Caffe's (scale and bias inside "
                        "BatchNorm), which BVLC Caffe cannot load")
            raise WeightsError(
                f"layer '{lv.name}' ({lv.type}): incompatible number of blobs, "
                f"{len(given)} vs {len(expected)} {lv.type} blobs (the weights hold "
                f"{len(given)}, the net needs {len(expected)}: "
                f"{', '.join(str(list(s)) for s in expected) or 'none'}){hint}",
                path=self.weights_path or None)
        legacy = getattr(given, "legacy", None)
        out = []
        for index, (array, shape) in enumerate(zip(given, expected)):
            array = np.asarray(array, dtype=np.float32)
            is_legacy = legacy[index] if legacy is not None and index < len(legacy) else None
            if not _shape_equals(array.shape, tuple(shape), is_legacy):
                raise WeightsError(
                    f"layer '{lv.name}' ({lv.type}), blob {index}: shape mismatch, "
                    f"{list(array.shape)} in the weights vs {list(shape)} expected by the "
                    f"net (rename the layer to learn it from scratch instead)",
                    path=self.weights_path or None)
            out.append(array.reshape(shape))
        return out

    # --- running -----------------------------------------------------------------------

    @property
    def output_names(self) -> list[str]:
        """The net's outputs, as Caffe lists them: blobs no later layer consumes."""
        return [self.slots[s].name for s in self._outputs]

    @property
    def input_names(self) -> list[str]:
        return list(self._input_slots)

    @property
    def default_input_names(self) -> list[str]:
        """Inputs that may be given but need not be: DummyData's tops (made from its
        fillers otherwise)."""
        return list(self._default_inputs)

    def input_shapes(self) -> dict[str, Shape]:
        return {name: self.slots[slot].shape for name, slot in self._input_slots.items()}

    def top_names(self) -> list[str]:
        """Every blob name an input or a layer writes, in first-written order."""
        return list(dict.fromkeys(slot.name for slot in self.slots))

    def run(self, inputs: Mapping[str, np.ndarray], keep: Keep = "outputs",
            on_layer: LayerHook | None = None, *,
            reuse: bool | None = None, fuse: bool = False) -> dict[str, np.ndarray]:
        """Forward `inputs` (by blob name) through the net.

        keep: "outputs" (the net's outputs), "all" (every blob, each name's last
        value), or a collection of blob names. `on_layer(layer, tops)` is called after
        each layer, with its top arrays.

        reuse: let a blob's last consumer write into it. Defaults to on without
        `on_layer` only, since a hook may keep the tops it is shown (pass True for a
        hook that does not). Returned arrays and the inputs are never written.

        fuse: with keep "outputs", run BatchNorm [+ Scale] [+ ReLU] chains as one step
        (bnlint.forward.fusion: equal to the exact ops within float32 rounding, not bit
        for bit); a hook is then called for each layer of a chain with its last tops.
        """
        values: list[np.ndarray | None] = [None] * len(self.slots)
        self._bind_inputs(inputs, values)
        wanted_slot, wanted_name = self._wanted(keep)
        result: dict[str, np.ndarray] = {}
        for slot, value in enumerate(values):
            if value is not None and self._keeps(slot, wanted_slot, wanted_name):
                result[self.slots[slot].name] = value
        fuse = fuse and keep == "outputs"      # a fused chain's inner blobs are never made
        steps, last_use = self._fused_plan() if fuse else (self.steps, self._last_use)
        if reuse is None:
            reuse = on_layer is None
        owned = [False] * len(self.slots)      # an op's fresh top, held by this slot alone
        for position, step in enumerate(steps):
            if step.op is None:
                tops = [values[s] for s in step.tops]
            else:
                bottoms = [values[s] for s in step.bottoms]
                given = [s for s in step.dying if owned[s]] if reuse else None
                scalar = any(b.ndim == 0 for b in bottoms)
                if scalar:          # a 0-axis blob: ops see one value on one axis
                    bottoms, given = [b.reshape(-1) if b.ndim == 0 else b
                                      for b in bottoms], []
                try:
                    if given:
                        with overwriting([values[s] for s in given]):
                            tops = step.op.run(bottoms)
                    else:
                        tops = step.op.run(bottoms)
                except BnlintError as err:
                    raise self._located(err, step.layer) from None
                if scalar:
                    tops = [self._as_inferred(slot, top) for slot, top in zip(step.tops, tops)]
                if len(tops) < len(step.tops):
                    raise self._located(ForwardError(
                        f"layer '{step.layer.name}' ({step.layer.type}): produced "
                        f"{len(tops)} tops, the net names {len(step.tops)}"), step.layer)
                for slot, value in zip(step.tops, tops):
                    if last_use.get(slot) is not None:
                        values[slot] = value
                    if self._keeps(slot, wanted_slot, wanted_name):
                        result[self.slots[slot].name] = value
                if reuse:
                    self._claim(step, bottoms, tops, given, owned, wanted_slot, wanted_name)
            if on_layer is not None:
                for layer in step.covers or (step.layer,):
                    on_layer(layer, list(tops))
            for slot in step.bottoms:
                if last_use[slot] == position:
                    values[slot] = None
        order = ([self.slots[s].name for s in self._outputs] if keep == "outputs"
                 else self.top_names())
        return {name: result[name] for name in order if name in result}

    def _as_inferred(self, slot: int, top: np.ndarray) -> np.ndarray:
        """A one-value top back on the 0 axes its shape rule gives it."""
        if self.slots[slot].shape == () and isinstance(top, np.ndarray) and top.size == 1:
            return top.reshape(())
        return top

    def _claim(self, step: _Step, bottoms: list[np.ndarray], tops: list[np.ndarray],
               given: list[int], owned: list[bool], wanted_slot: set[int] | None,
               wanted_name: set[str] | None) -> None:
        """Mark which of the step's tops a later op may write into: a fresh op's top that
        is not returned and shares no memory with a live array. A Reshape's view of its
        bottom, or a Split's one array as two tops, is held twice, so neither holder
        (the bottom included, unless it was handed over and so dies here) may write."""
        fresh = getattr(step.op, "fresh_tops", False)
        for index, slot in enumerate(step.tops):
            top = tops[index]
            alone = fresh and isinstance(top, np.ndarray)
            for bottom_slot, bottom in zip(step.bottoms, bottoms):
                if (alone or owned[bottom_slot]) and np.may_share_memory(top, bottom) \
                        and bottom_slot not in given:
                    owned[bottom_slot] = alone = False
            if alone and len(tops) > 1:
                alone = not any(np.may_share_memory(top, other)
                                for i, other in enumerate(tops) if i != index)
            owned[slot] = alone and not self._keeps(slot, wanted_slot, wanted_name)

    def _wanted(self, keep: Keep) -> tuple[set[int] | None, set[str] | None]:
        if keep == "outputs":
            return set(self._outputs), None
        if keep == "all":
            return None, set(self.top_names())
        if isinstance(keep, str):
            raise ForwardError(f"keep must be 'outputs', 'all' or a set of blob names, "
                               f"got {keep!r}")
        names = set(keep)
        unknown = sorted(names - set(self.top_names()))
        if unknown:
            raise ForwardError(f"no blob named {', '.join(map(repr, unknown))} in the net "
                               f"(blobs: {', '.join(self.top_names())})")
        return None, names

    def _keeps(self, slot: int, wanted_slot: set[int] | None,
               wanted_name: set[str] | None) -> bool:
        if wanted_slot is not None:
            return slot in wanted_slot
        return self.slots[slot].name in wanted_name

    def _bind_inputs(self, inputs: Mapping[str, np.ndarray],
                     values: list[np.ndarray | None]) -> None:
        for name, (slot, default) in self._default_inputs.items():
            values[slot] = default if name not in inputs else self._checked_input(
                name, slot, inputs[name])
        unknown = sorted(set(inputs) - set(self._input_slots) - set(self._default_inputs))
        if unknown:
            raise ForwardError(f"unknown input {', '.join(map(repr, unknown))}: the net's "
                               f"inputs are {', '.join(self._input_slots) or 'none'}")
        for name, slot in self._input_slots.items():
            if name not in inputs:
                raise ForwardError(f"missing input '{name}' (shape "
                                   f"{list(self.slots[slot].shape)})")
            values[slot] = self._checked_input(name, slot, inputs[name])

    def _checked_input(self, name: str, slot: int, given) -> np.ndarray:
        array = np.asarray(given, dtype=np.float32)
        if array.shape != self.slots[slot].shape:
            raise ForwardError(f"input '{name}' has shape {list(array.shape)}, the net "
                               f"was built for {list(self.slots[slot].shape)}; build it "
                               f"with that input shape (--input-shape)")
        return array


def _schedule(steps: list[_Step]) -> dict[int, int]:
    """Each blob slot's last reader (a step position), and each step's `dying` bottoms."""
    last_use = {slot: position for position, step in enumerate(steps)
                for slot in step.bottoms}
    for position, step in enumerate(steps):
        step.dying = tuple(slot for slot in step.bottoms if last_use[slot] == position
                           and step.bottoms.count(slot) == 1)
    return last_use


def _shape_equals(got: Shape, expected: Shape, legacy: bool | None) -> bool:
    """Caffe's Blob::ShapeEquals for a stored blob of shape `got`.

    A legacy (num, channels, height, width) blob fits any shape of at most 4 axes
    that pads on the left with 1s to those four; a BlobShape blob must match exactly.
    When it is unknown how the shape was stored (`legacy` None) either is accepted.
    """
    if got == expected:
        return True
    if legacy is False:
        return False
    return len(expected) <= 4 and len(got) == 4 and got == (1,) * (4 - len(expected)) + expected


def load_network(net_path: str, weights_path: str | None = None, *,
                 state: NetState | None = None,
                 input_shapes: Mapping[str, Sequence[int]] | None = None,
                 seed: int = 0, drop_losses: bool = False, text=None,
                 given: Iterable[str] = (), wanted: Iterable[str] = ()) -> Network:
    """Read a net file (and its weights) with `caffe.netfile.load_net` and build its Network.

    `text`: the file already parsed (`caffe.load.parse_text`), so it is not read twice.

    `drop_losses` leaves out loss and accuracy layers unless labels are among the
    `given` input names or a loss's top is `wanted` (`bnlint.forward.labels`); what
    the user should know about it is in the network's `notes`.

    A net the schema does not fully understand (fork fields such as `ceil_mode`) is
    refused: those fields would be dropped and the forward would silently differ.
    """
    from bnlint.caffe.inputs import with_inferred_inputs
    from bnlint.caffe.netfile import load_net

    net = load_net(net_path, weights_path, text=text)
    text, weights = net.text, net.weights
    view = net.view
    notes: list[str] = []
    if drop_losses:
        from bnlint.forward.labels import select_losses

        view, notes = select_losses(view, state or NetState(), set(given), set(wanted),
                                    source=text.source)
    network = Network(view, state, weights, seed=seed, source=text.source,
                      input_shapes=with_inferred_inputs(view, state or NetState(),
                                                        input_shapes))
    network.notes = notes
    return network
