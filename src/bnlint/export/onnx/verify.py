"""onnxruntime against bnlint's forward, blob by blob.

Both run the same seeded inputs; each exported value is compared with the forward's
blob of the same Caffe name written by the same Caffe layer (after a fold, a folded
producer's output is compared with the blob after the last layer folded into it),
with the golden tolerance (`compare.golden_close`). Where the reference itself is
ill-conditioned (a BatchNorm variance near 0 multiplies rounding noise), the part of
a difference that 4-ulp input noise explains is not held against the export, as
`fold` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from bnlint.forward.compare import Comparison, golden_close, input_sensitivity

Key = tuple[str, str | None]           # (Caffe blob, the layer that wrote it; None: an input)


@dataclass
class BlobCheck:
    blob: str
    layer: str | None
    layer_type: str | None
    comparison: Comparison

    @property
    def ok(self) -> bool:
        return self.comparison.ok

    def describe(self) -> str:
        by = f" (written by {self.layer_type} '{self.layer}')" if self.layer else ""
        return f"blob '{self.blob}'{by}: {self.comparison.describe()}"


def run_onnx(model, inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict:
    """onnxruntime's values of `names` (graph outputs of `model`) on `inputs`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        values = session.run(list(names), dict(inputs))
    except Exception as err:  # noqa: BLE001 - onnxruntime's errors have no common base
        from bnlint.export.onnx.model import ExportMismatch

        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ExportMismatch(f"onnxruntime cannot run the exported graph ({first}); this is "
                             f"a bug in bnlint, nothing was written", stage="onnxruntime") from None
    return dict(zip(names, values))


def reference_versions(network, inputs) -> dict[Key, np.ndarray]:
    """Every blob version of the forward: (blob, writing layer) -> value."""
    values: dict[Key, np.ndarray] = {}
    for name, array in inputs.items():
        values[(name, None)] = array

    def keep(layer, tops) -> None:
        for name, top in zip(layer.tops, tops):
            values[(name, layer.name)] = top

    network.run(inputs, keep="outputs", on_layer=keep, reuse=False)
    return values


def compare(out: np.ndarray, ref: np.ndarray, uncertainty=None) -> Comparison:
    return golden_close(np.asarray(out), np.asarray(ref), uncertainty=uncertainty)


def compare_outputs(network, inputs, onnx_values: Mapping[str, np.ndarray],
                    outputs: Sequence[tuple[str, str]]) -> list[BlobCheck]:
    """(onnx name, caffe blob) outputs compared with the forward's last versions."""
    blobs = [blob for _, blob in outputs]
    reference = network.run(inputs, keep=set(blobs))
    writers = _last_writers(network)
    checks = [BlobCheck(blob, *writers.get(blob, (None, None)),
                        compare(onnx_values[name], reference[blob]))
              for name, blob in outputs]
    if all(c.ok for c in checks):
        return checks
    spread = input_sensitivity(network, inputs, keep=set(blobs))
    return [BlobCheck(c.blob, c.layer, c.layer_type,
                      compare(onnx_values[name], reference[blob], spread[blob]))
            if not c.ok else c for c, (name, blob) in zip(checks, outputs)]


def _last_writers(network) -> dict[str, tuple[str, str]]:
    writers = {}
    for step in network.steps:
        if step.op is not None:
            for name in step.layer.tops:
                writers[name] = (step.layer.name, step.layer.type)
    return writers


def compare_versions(network, inputs, reference: Mapping[Key, np.ndarray],
                     onnx_values: Mapping[str, np.ndarray], values,
                     renamed: Mapping[str, str], types: Mapping[str, str], *,
                     noise: bool = True) -> list[BlobCheck]:
    """Each exported blob version (builder.Value) against the forward's, in graph order.

    `renamed` maps a folded producer to the last layer folded into it (the reference
    layer whose output it now computes). With `noise`, a last version that fails is
    compared again net of the rounding noise the forward amplifies there.
    """
    pairs = []
    for value in values:
        layer = renamed.get(value.layer, value.layer)
        ref = reference.get((value.blob, layer))
        if ref is not None and value.name in onnx_values:
            pairs.append((value, ref))
    checks = [BlobCheck(value.blob, value.layer, types.get(value.layer),
                        compare(onnx_values[value.name], ref)) for value, ref in pairs]
    if not noise or all(c.ok for c in checks):
        return checks
    spread = version_sensitivity(network, inputs, reference)
    return [BlobCheck(c.blob, c.layer, c.layer_type,
                      compare(onnx_values[value.name], ref,
                              spread.get((value.blob, renamed.get(value.layer, value.layer)))))
            if not c.ok else c for c, (value, ref) in zip(checks, pairs)]


def version_sensitivity(network, inputs, base: Mapping[Key, np.ndarray], *, ulps: int = 4,
                        trials: int = 8, seed: int = 0) -> dict[Key, np.ndarray]:
    """`compare.input_sensitivity` for every blob version (in-place ones included)."""
    rng = np.random.default_rng(seed)
    spread = {key: np.zeros(np.shape(value), np.float64) for key, value in base.items()}
    step = ulps * float(np.finfo(np.float32).eps)
    for _ in range(trials):
        moved = {name: (value * (1 + step * rng.choice([-1.0, 1.0], value.shape)))
                 .astype(np.float32) for name, value in inputs.items()}
        for key, value in reference_versions(network, moved).items():
            if key in spread and np.shape(value) == spread[key].shape:
                delta = np.abs(np.asarray(value, np.float64) - base[key])
                np.maximum(spread[key], np.nan_to_num(delta, nan=0.0, posinf=0.0),
                           out=spread[key])
    return spread
