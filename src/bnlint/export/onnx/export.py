"""`export_onnx`: a Caffe net and its weights as an ONNX model that provably computes the same.

Steps, each of which can refuse: the TEST net is built by the forward's executor (layers
filtered, in-place chains resolved, weights checked); BatchNorm and its Scale are folded
into the layer before them by `transform.fold` (unless `fold=False`); every layer is
converted by its registered converter; the model passes ONNX's checker and strict
shape inference; then onnxruntime runs it on seeded inputs of batch >= 2 (and at the
written batch) and every output must match bnlint's forward of the original net
within the golden tolerance (with `check_blobs`, every blob). Only then are the bytes
returned. On a mismatch the first Caffe layer whose ONNX counterpart diverges is named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from bnlint.caffe.net import NetState, net_view
from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError, SchemaError
from bnlint.export.onnx.model import (BATCH_DIM, ExportMismatch, assemble, check_opset,
                                      checked, require_onnx)

TEST = NetState(Phase.TEST)
MIN_VERIFY_BATCH = 2


@dataclass
class ExportOptions:
    opset: int | None = None
    input_shapes: Mapping[str, Sequence[int]] | None = None
    dynamic_batch: bool = False
    fold: bool = True
    check_blobs: bool = False
    until: Sequence[str] | None = None
    seed: int = 0


@dataclass
class ExportResult:
    model: bytes
    opset: int
    input_shapes: dict[str, tuple]
    verified_batches: list[int]
    outputs: list = field(default_factory=list)         # verify.BlobCheck per output
    blobs: list = field(default_factory=list)           # with check_blobs
    folded: list = field(default_factory=list)          # fold Sites
    layers: int = 0
    nodes: int = 0

    def worst(self):
        checks = self.outputs + self.blobs
        return max(checks, key=lambda c: c.comparison.used) if checks else None


def _refuse_unknown_fields(text_file) -> None:
    if text_file.problems:
        first = text_file.problems[0]
        more = f" (and {len(text_file.problems) - 1} more)" if len(text_file.problems) > 1 else ""
        raise SchemaError(f"{first.message}{more}; the export would ignore it, so bnlint "
                          f"refuses to export this net", source=text_file.source,
                          offset=first.start)


def _network(view, weights, shapes, source=None):
    from bnlint.forward.executor import Network

    return Network(view, TEST, weights, input_shapes=shapes, source=source)


def _with_batch(shapes: Mapping[str, tuple], batch: int) -> dict[str, tuple]:
    return {name: (batch,) + tuple(shape[1:]) if len(shape) else tuple(shape)
            for name, shape in shapes.items()}


def _folded(text_file, weights, shapes):
    """(view, weights, sites, renamed) of the folded net; renamed maps each producer a
    BatchNorm folded into to the last layer folded into it."""
    from bnlint.caffe.netfile import reparse
    from bnlint.transform.fold import FOLDED, plan_fold

    try:
        plan = plan_fold(text_file, weights, input_shapes=shapes)
    except BnlintError as err:
        raise type(err)(f"{err.message} (or export without folding: --no-fold)",
                        path=err.path, offset=err.offset, source=err.source) from None
    folded_text = reparse(text_file, plan.text, plan.dialect)
    view = net_view(folded_text)
    renamed: dict[str, str] = {}
    for site in plan.sites:
        if site.action == FOLDED:
            renamed[site.into.name] = (site.scale or site.batchnorm).name
    return view, plan.arrays, plan.sites, renamed


def export_onnx(text_file, weights: Mapping, options: ExportOptions | None = None
                ) -> ExportResult:
    """The ONNX model of `text_file`'s TEST net with `weights`, verified (see the module)."""
    from bnlint.caffe.inputs import with_inferred_inputs
    from bnlint.export.onnx.builder import GraphBuilder

    options = options or ExportOptions()
    require_onnx()
    opset = check_opset(options.opset)
    if text_file.kind == "SolverParameter":
        raise BnlintError("a solver, not a net: export the deploy net it trains",
                          path=text_file.path)
    _refuse_unknown_fields(text_file)
    view = net_view(text_file)
    shapes = with_inferred_inputs(view, TEST, options.input_shapes)
    written = _network(view, weights, shapes, text_file.source)
    if written.filled:
        shown = ", ".join(repr(n) for n in written.filled[:5])
        more = f" and {len(written.filled) - 5} more" if len(written.filled) > 5 else ""
        raise BnlintError(f"the weights have no blobs for layer {shown}{more}; an export "
                          f"would hold their fillers' random values (check the layer names)",
                          path=getattr(weights, "path", None) or text_file.path)
    export_shapes = {name: tuple(s) for name, s in written.input_shapes().items()}
    batch = _batch_of(export_shapes)
    verify_batch = max(MIN_VERIFY_BATCH, batch)
    verify_shapes = _with_batch(export_shapes, verify_batch)
    reference = _network(view, weights, verify_shapes, text_file.source)
    sites, renamed = [], {}
    if options.fold:
        fold_view, fold_weights, sites, renamed = _folded(text_file, weights, export_shapes)
        exported = _network(fold_view, fold_weights, verify_shapes)
    else:
        exported = reference
    built = GraphBuilder(exported, opset, options.until).build()
    input_dims = {name: ([BATCH_DIM] + list(shape[1:]) if options.dynamic_batch and len(shape)
                         else list(shape)) for name, shape in export_shapes.items()}
    model = checked(assemble(built, opset, input_dims, name=view.name or "caffe"))
    result = ExportResult(b"", opset, export_shapes, [], folded=sites,
                          layers=len(built.layers), nodes=len(built.nodes))
    _verify(result, built, reference, written, export_shapes, verify_shapes, options,
            renamed, opset)
    result.model = model.SerializeToString()
    return result


def _batch_of(shapes: dict[str, tuple[int, ...]]) -> int:
    """The batch the inputs share; 1 when no input has a batch axis (0-axis blobs)."""
    return min((s[0] for s in shapes.values() if len(s)), default=1)


def _verify(result: ExportResult, built, reference, written, export_shapes, verify_shapes,
            options: ExportOptions, renamed, opset: int) -> None:
    from bnlint.export.onnx.verify import (compare_outputs, compare_versions, reference_versions,
                                           run_onnx)
    from bnlint.forward.seeded import seeded_inputs

    outputs = [(v.name, v.blob) for v in built.outputs]
    names = [name for name, _ in outputs]
    inputs = seeded_inputs(verify_shapes, options.seed)
    extra = [v.name for v in built.values] if options.check_blobs else []
    dynamic = {name: [BATCH_DIM] + list(s[1:]) if len(s) else list(s)
               for name, s in verify_shapes.items()}
    model = assemble(built, opset, dynamic, extra)
    got = run_onnx(model, inputs, names + [n for n in extra if n not in names])
    result.verified_batches.append(_batch_of(verify_shapes))
    result.outputs = compare_outputs(reference, inputs, got, outputs)
    types = {step.layer.name: step.layer.type for step in reference.steps}
    types.update({name: kind for name, kind in built.layers})
    if options.check_blobs:
        result.blobs = compare_versions(reference, inputs, reference_versions(reference, inputs),
                                        got, built.values, renamed, types)
    if any(not c.ok for c in result.outputs + result.blobs):
        message, first = _mismatch_message(result, built, reference, inputs, model, renamed,
                                           types, got if options.check_blobs else None)
        raise ExportMismatch(message, first_blob=first)
    if export_shapes != verify_shapes:
        small = seeded_inputs(export_shapes, options.seed)
        at_batch = run_onnx(assemble(built, opset, export_shapes), small, names)
        checks = compare_outputs(written, small, at_batch, outputs)
        result.verified_batches.append(_batch_of(export_shapes))
        if any(not c.ok for c in checks):
            bad = next(c for c in checks if not c.ok)
            raise ExportMismatch(f"at the written batch size the ONNX output differs from "
                                 f"bnlint's forward: {bad.describe()}; nothing was written",
                                 first_blob=bad.blob)


def _mismatch_message(result, built, reference, inputs, model, renamed, types, got) -> str:
    from bnlint.export.onnx.verify import compare_versions, reference_versions, run_onnx

    bad = [c for c in result.outputs if not c.ok]
    if bad:
        lines = [f"onnxruntime's result differs from bnlint's forward at {len(bad)} of "
                 f"{len(result.outputs)} outputs: " + "; ".join(c.describe() for c in bad)]
    else:
        lines = [f"onnxruntime's result differs from bnlint's forward at "
                 f"{sum(not c.ok for c in result.blobs)} of {len(result.blobs)} blobs"]
    if got is None:
        extra = [v.name for v in built.values]
        everything = assemble_with_values(model, extra)
        got = run_onnx(everything, inputs, extra)
    versions = (result.blobs if result.blobs else
                compare_versions(reference, inputs, reference_versions(reference, inputs), got,
                                 built.values, renamed, types, noise=False))
    first = next((c for c in versions if not c.ok), None)
    if first is not None:
        lines.append(f"first diverging layer: {first.layer_type} '{first.layer}', "
                     f"{first.describe()}")
    lines.append("nothing was written")
    return "; ".join(lines), (first.blob if first is not None else None)


def assemble_with_values(model, names: Sequence[str]):
    """A copy of `model` that also outputs the values `names` (for localising)."""
    from onnx import TensorProto, helper

    copy = type(model)()
    copy.CopyFrom(model)
    shown = {o.name for o in copy.graph.output}
    for name in names:
        if name not in shown:
            copy.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                                   None))
    return copy
