"""InnerProduct and Embed (inner_product_layer.cpp, embed_layer.cpp), float32."""

from __future__ import annotations

import numpy as np

from bnlint.caffe import shapes
from bnlint.errors import ForwardError
from bnlint.forward.ops.base import caffe_blob
from bnlint.forward.registry import Op, register_op


def _check_blob_count(op: Op, bias_term: bool) -> None:
    expected = 2 if bias_term else 1
    if len(op.blobs) != expected:
        raise ForwardError(f"layer '{op.name}' ({op.type}): has {len(op.blobs)} blobs, "
                           f"expected {expected} (weights{' and bias' if bias_term else ''})")


@register_op("InnerProduct")
class InnerProduct(Op):
    """Flattens the axes from `axis` on; y = x W^T + b (W stored (N, K), or (K, N)
    with `transpose: true`)."""

    def setup(self, layer) -> None:
        param = layer.inner_product_param
        self.axis = int(param.axis)
        self.num_output = int(param.num_output)
        self.transpose = bool(param.transpose)
        self.bias_term = bool(param.bias_term)
        _check_blob_count(self, self.bias_term)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        x = np.asarray(bottoms[0], dtype=np.float32)
        result = shapes.infer(self.layer, [x.shape])
        axis = shapes.canonical_axis(self.axis, x.shape)
        weights = caffe_blob(self.blobs, 0, result.params[0], "weight")
        rows = x.reshape(shapes.count(x.shape, 0, axis), -1)
        out = rows @ (weights if self.transpose else weights.T)
        if self.bias_term:
            out += caffe_blob(self.blobs, 1, (self.num_output,), "bias")
        return [out.reshape(result.tops[0])]


@register_op("Embed")
class Embed(Op):
    """A table look-up: each bottom value is a row index into the (input_dim,
    num_output) weights. Caffe casts the float to int and only checks it in debug
    builds; here a non-integer or out-of-range index is an error."""

    def setup(self, layer) -> None:
        param = layer.embed_param
        self.input_dim = int(param.input_dim)
        self.num_output = int(param.num_output)
        self.bias_term = bool(param.bias_term)
        _check_blob_count(self, self.bias_term)
        self.table = caffe_blob(self.blobs, 0, (self.input_dim, self.num_output), "weight")
        self.bias = (caffe_blob(self.blobs, 1, (self.num_output,), "bias")
                     if self.bias_term else None)

    def _forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        values = np.asarray(bottoms[0], dtype=np.float32)
        index = values.astype(np.int64)
        bad = (index != values) | (index < 0) | (index >= self.input_dim)
        if bad.any():
            first = values.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
            raise ForwardError(f"Embed index {first!r} is not an integer in "
                               f"[0, {self.input_dim})")
        out = self.table[index]
        if self.bias is not None:
            out = out + self.bias
        return [out]
