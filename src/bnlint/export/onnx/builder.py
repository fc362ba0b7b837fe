"""The ONNX graph of a built `Network`: one converter per layer, Caffe's names kept.

The builder walks the network's steps in order (layers already filtered by phase, in-place
chains resolved into blob versions, parameters loaded and checked by the forward ops).
Every blob version becomes one ONNX value: the last version of a Caffe blob keeps the
blob's name (so graph inputs, outputs and the blobs pycaffe shows keep their names);
an earlier version of an in-place chain is `blob/layer` (the layer that wrote it).
Nodes are named after their Caffe layer; a layer made of several nodes names its
helpers `layer/OpType`. Nothing here depends on the batch size: shapes that include
it are taken from the running graph (Shape), so one graph serves any batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from bnlint.export.onnx import convert as _convert  # noqa: F401  (registers converters)
from bnlint.export.onnx.registry import CONVERTERS, ExportRefused

#: Opset from which ReduceMean/ReduceMax/ReduceL1/ReduceSumSquare take axes as an input
#: (ReduceSum: 13).
REDUCE_AXES_INPUT = 18
#: Opset from which Shape takes start/end.
SHAPE_SLICE = 15


@dataclass
class Value:
    """One blob version: its ONNX name, the Caffe blob and the layer that wrote it."""

    name: str
    blob: str
    layer: str | None               # None: a net input
    shape: tuple[int, ...] | None


@dataclass
class Graph:
    """What the builder made, before it becomes a ModelProto."""

    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    inputs: list[Value] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    values: list[Value] = field(default_factory=list)    # every Caffe blob version made
    layers: list[tuple[str, str]] = field(default_factory=list)   # (name, type) converted


class _Names:
    """Unique names in one namespace, Caffe's own names first."""

    def __init__(self, reserved: Sequence[str] = ()) -> None:
        self.used: set[str] = set(reserved)

    def fresh(self, wanted: str) -> str:
        name, k = wanted, 1
        while name in self.used:
            name = f"{wanted}_{k}"
            k += 1
        self.used.add(name)
        return name


class LayerNodes:
    """What a converter sees of one layer, and how it emits nodes."""

    def __init__(self, builder: "GraphBuilder", step, bottoms: list[str], tops: list[str],
                 bottom_shapes, top_shapes) -> None:
        self._builder = builder
        self.step = step
        self.layer = step.layer.message
        self.name = step.layer.name
        self.type = step.layer.type
        self.op = step.op
        self.blobs = [np.asarray(b, dtype=np.float32) for b in step.op.blobs]
        self.bottoms = bottoms
        self.tops = tops
        self.bottom_shapes = [tuple(s) for s in bottom_shapes]
        self.top_shapes = [None if s is None else tuple(s) for s in top_shapes]
        self.opset = builder.opset
        self._named = False

    # --- emitting ---------------------------------------------------------------------

    def node(self, op_type: str, inputs: Sequence[str], out: str | Sequence[str] | None = None,
             outputs: int = 1, **attrs) -> str | list[str]:
        """Add a node; returns its output name (or names when `out` is a list or
        outputs > 1). The first node that writes a top is named after the layer."""
        from onnx import helper

        if out is None:
            names = [self._builder.values.fresh(f"{self.name}/{op_type}") for _ in range(outputs)]
        elif isinstance(out, str):
            names = [out]
        else:
            names = list(out)
        writes_top = any(n in self.tops for n in names)
        if writes_top and not self._named and self.name not in self._builder.node_names.used:
            node_name = self._builder.node_names.fresh(self.name)
            self._named = True
        else:
            node_name = self._builder.node_names.fresh(f"{self.name}/{op_type}")
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self._builder.graph.nodes.append(helper.make_node(op_type, list(inputs), names,
                                                          name=node_name, **attrs))
        if isinstance(out, str) or (out is None and outputs == 1):
            return names[0]
        return names

    def const(self, array, what: str, dtype=np.float32) -> str:
        """An initializer named `layer/what`."""
        from onnx import numpy_helper

        name = self._builder.values.fresh(f"{self.name}/{what}")
        tensor = numpy_helper.from_array(np.array(array, dtype=dtype, order="C"), name)
        self._builder.graph.initializers.append(tensor)
        return name

    def ints(self, values: Sequence[int], what: str = "shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64), what, np.int64)

    def scalar(self, value, what: str) -> str:
        return self.const(np.float32(value), what)

    def refuse(self, why: str, *, unfaithful: bool = True) -> ExportRefused:
        """The refusal to raise; `unfaithful`: because ONNX has no exact form of it."""
        tail = ("; no ONNX form computes what Caffe computes, so bnlint refuses to export "
                "it rather than approximate it") if unfaithful else ""
        return ExportRefused(f"layer '{self.name}' ({self.type}): {why}{tail}")

    # --- opset-aware helpers -----------------------------------------------------------

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool,
               out: str | None = None) -> str:
        """ReduceX over `axes`, with axes an input or an attribute as the opset wants."""
        takes_input = self.opset >= (13 if op_type == "ReduceSum" else REDUCE_AXES_INPUT)
        if takes_input:
            return self.node(op_type, [x, self.ints(list(axes), "axes")], out,
                             keepdims=int(keepdims))
        return self.node(op_type, [x], out, axes=list(axes), keepdims=int(keepdims))

    def leading_dims(self, x: str, count: int) -> str:
        """The first `count` dimensions of x at run time (int64, 1-D)."""
        if self.opset >= SHAPE_SLICE:
            return self.node("Shape", [x], end=count)
        shape = self.node("Shape", [x])
        return self.node("Slice", [shape, self.ints([0], "start"), self.ints([count], "end")])

    def shape_with_batch(self, x: str, rest: Sequence[int], lead: int = 1) -> str:
        """[x's first `lead` dims..., *rest] as a run-time shape (batch-free constants)."""
        if lead == 0:
            return self.ints(list(rest))
        return self.node("Concat", [self.leading_dims(x, lead), self.ints(list(rest))], axis=0)

    def channel_operand(self, values: np.ndarray, ndim: int, what: str, axis: int = 1) -> str:
        """A per-channel vector shaped to broadcast along `axis` of an ndim-axis blob."""
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        return self.const(values.reshape((-1,) + (1,) * (ndim - axis - 1)), what)


class GraphBuilder:
    """Build the ONNX graph of `network` (a `bnlint.forward.executor.Network`).

    `outputs`: Caffe blob names to end the graph at (their last versions); default the
    net's outputs. Only the layers they need are converted.
    """

    def __init__(self, network, opset: int, outputs: Sequence[str] | None = None) -> None:
        self.network = network
        self.opset = opset
        self.graph = Graph()
        caffe_names = {slot.name for slot in network.slots}
        self.values = _Names(caffe_names)
        self.node_names = _Names()
        self.slot_names: dict[int, str] = {}
        self._wanted = list(outputs) if outputs else list(network.output_names)

    def _last_slots(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for index, slot in enumerate(self.network.slots):
            last[slot.name] = index
        return last

    def _input_slots(self) -> dict[str, int]:
        produced = {s for step in self.network.steps if step.op is not None for s in step.tops}
        slots: dict[str, int] = {}
        for index, slot in enumerate(self.network.slots):
            if slot.name in self.network.input_names and index not in produced:
                slots.setdefault(slot.name, index)
        return slots

    def _needed_steps(self, output_slots: set[int]) -> list:
        needed = set(output_slots)
        kept = []
        for step in reversed(self.network.steps):
            if step.op is None or not needed.intersection(step.tops):
                continue
            kept.append(step)
            needed.update(step.bottoms)
        return list(reversed(kept))

    def _name_slots(self, inputs: Mapping[str, int], last: Mapping[str, int], steps) -> None:
        for name, slot in inputs.items():
            self.slot_names[slot] = name
            self.values.used.add(name)
        for step in steps:
            for slot in step.tops:
                caffe = self.network.slots[slot].name
                if last[caffe] == slot and caffe not in inputs:
                    self.slot_names[slot] = caffe
                else:
                    self.slot_names[slot] = self.values.fresh(f"{caffe}/{step.layer.name}")

    def build(self) -> Graph:
        last = self._last_slots()
        unknown = [name for name in self._wanted if name not in last]
        if unknown:
            raise ExportRefused(f"--until names {', '.join(map(repr, unknown))}, which no layer "
                                f"of the net writes (blobs: {', '.join(last)})")
        output_slots = {last[name] for name in self._wanted}
        steps = self._needed_steps(output_slots)
        needed_inputs = {s for step in steps for s in step.bottoms} | output_slots
        inputs = {name: slot for name, slot in self._input_slots().items()
                  if slot in needed_inputs}
        self._name_slots(inputs, last, steps)
        for name, slot in inputs.items():
            self.graph.inputs.append(Value(name, name, None, self.network.slots[slot].shape))
        for step in steps:
            self._convert(step)
        unnamed = [name for name in self._wanted if last[name] not in self.slot_names]
        if unnamed:     # found by the fuzz: a net of Input layers alone (KeyError)
            raise ExportRefused(f"output {', '.join(map(repr, unnamed))} is an input that no "
                                f"layer reads or computes: nothing to export for it")
        for name in self._wanted:
            slot = last[name]
            self.graph.outputs.append(Value(self.slot_names[slot], name, None,
                                            self.network.slots[slot].shape))
        return self.graph

    def _convert(self, step) -> None:
        converter = CONVERTERS.get(step.layer.type)
        if converter is None:
            raise ExportRefused(f"layer '{step.layer.name}': type '{step.layer.type}' has no "
                                f"ONNX converter in bnlint (converted types: "
                                f"{', '.join(sorted(CONVERTERS))})")
        slots = self.network.slots
        if any(slots[s].shape is not None and len(slots[s].shape) == 0
               for s in step.bottoms + step.tops):
            raise ExportRefused(f"layer '{step.layer.name}' ({step.layer.type}): a blob with "
                                f"no axes (a 0-axis blob) is not exported")
        tops = [self.slot_names[s] for s in step.tops]
        nodes = LayerNodes(self, step, [self.slot_names[s] for s in step.bottoms], tops,
                           [slots[s].shape for s in step.bottoms],
                           [slots[s].shape for s in step.tops])
        try:
            converter(nodes)
        except (ValueError, IndexError, KeyError, TypeError) as err:
            raise ExportRefused(f"layer '{step.layer.name}' ({step.layer.type}): bnlint cannot "
                                f"export this form of the layer ({type(err).__name__}: {err})"
                                ) from err
        self.graph.layers.append((step.layer.name, step.layer.type))
        for slot in step.tops:
            self.graph.values.append(Value(self.slot_names[slot], slots[slot].name,
                                           step.layer.name, slots[slot].shape))
