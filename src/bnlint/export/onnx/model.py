"""The ModelProto around a built graph, the opsets, and the ONNX checks.

The graph's inputs get the export shapes (the batch a symbolic `N` with
--dynamic-batch); its outputs get the shapes ONNX's own shape inference finds, so a
runtime (TensorRT) sees them without running anything.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

from bnlint.errors import EXIT_FINDINGS, BnlintError

MIN_OPSET = 13
BATCH_DIM = "N"
PRODUCER = "bnlint"


class ExportMismatch(BnlintError):
    """The exported graph fails a check or computes something else: nothing written, exit 1.

    `stage`: "checker" (ONNX's checker or shape inference), "onnxruntime" (cannot run
    it) or "mismatch" (runs, differs); `first_blob`: the first diverging blob, if found.
    """

    exit_code = EXIT_FINDINGS

    def __init__(self, message: str, *, stage: str = "mismatch",
                 first_blob: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.first_blob = first_blob


def require_onnx() -> None:
    """onnx and onnxruntime, or a message that says how to get them (exit 2)."""
    from importlib.util import find_spec

    missing = [module for module in ("onnx", "onnxruntime") if find_spec(module) is None]
    if missing:
        raise BnlintError(f"bnlint export onnx needs {' and '.join(missing)}: pip install "
                          f"'bnlint[onnx]'")


def newest_opset() -> int:
    import onnx

    return int(onnx.defs.onnx_opset_version())


@lru_cache(maxsize=1)
def default_opset() -> int:
    """The newest opset that both onnx and the installed onnxruntime run."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    for opset in range(newest_opset(), MIN_OPSET - 1, -1):
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2]),
                 helper.make_node("Softmax", ["p"], ["y"], axis=1)]
        weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 3, 3], [0.1] * 9)
        graph = helper.make_graph(
            nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                           [1, 1, 4, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
        model = make_model(graph, opset)
        try:
            session = ort.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
            session.run(None, {"x": np.zeros((1, 1, 4, 4), np.float32)})
        except Exception:  # noqa: BLE001 - onnxruntime raises its own types per version
            continue
        return opset
    raise BnlintError(f"the installed onnxruntime runs no opset from {MIN_OPSET} to "
                      f"{newest_opset()}; pip install 'bnlint[onnx]' to get a matching one")


def check_opset(opset: int | None) -> int:
    if opset is None:
        return default_opset()
    newest = newest_opset()
    if not MIN_OPSET <= opset <= newest:
        raise BnlintError(f"--opset {opset} is outside {MIN_OPSET}..{newest} (the installed "
                          f"onnx's newest)")
    return opset


def make_model(graph, opset: int):
    from onnx import helper

    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER,
                              ir_version=helper.find_min_ir_version_for(opsets))
    return model


def _value_info(name: str, dims: Sequence[int | str | None] | None):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                         None if dims is None else list(dims))


def _unknown_dims(value) -> list[None] | None:
    """A shape of the value's rank with every dimension left open (found by inference)."""
    return None if value.shape is None else [None] * len(value.shape)


def assemble(built, opset: int, input_dims: Mapping[str, Sequence[int | str]],
             extra_outputs: Sequence[str] = (), name: str = "caffe") -> object:
    """A ModelProto of the built graph with these input dims and untyped-shape outputs."""
    from onnx import helper

    inputs = [_value_info(v.name, input_dims[v.name]) for v in built.inputs]
    outputs = [_value_info(v.name, _unknown_dims(v)) for v in built.outputs]
    shown = {v.name for v in built.outputs}
    ranks = {v.name: v for v in built.values}
    outputs += [_value_info(n, _unknown_dims(ranks[n]) if n in ranks else None)
                for n in extra_outputs if n not in shown]
    graph = helper.make_graph(built.nodes, name or "caffe", inputs, outputs,
                              built.initializers)
    return make_model(graph, opset)


def checked(model):
    """The model after the ONNX checker and strict shape inference, output shapes filled
    in from the inference; ExportMismatch (exit 1) if either fails."""
    import onnx
    from onnx import shape_inference

    try:
        onnx.checker.check_model(model)
        inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                data_prop=True)
    except Exception as err:  # noqa: BLE001 - onnx raises several types (ValidationError, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportMismatch(f"the exported graph fails ONNX's checks ({first}); this is a "
                             f"bug in bnlint, nothing was written", stage="checker") from None
    known = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for output in model.graph.output:
        found = known.get(output.name)
        if found is not None and found.type.tensor_type.HasField("shape"):
            output.type.CopyFrom(found.type)
    return model
