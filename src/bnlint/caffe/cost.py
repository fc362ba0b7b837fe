"""What a layer costs: multiply-accumulates (MACs) per forward pass.

Only the matrix-product layers are counted (Convolution, Deconvolution,
InnerProduct), as published model figures count them (ResNet-50's ~3.9 G, MobileNet
v1's ~0.57 G): element-wise layers such as BatchNorm, Scale or ReLU are cheap beside
them and fold away at deployment. Every other type costs 0 here. The counts are the
`@mac_rule`s of the layer table (`bnlint.caffe.layers.convolution`).

Pure Python (no NumPy), like `shapes`: `bnlint info` and the linter can use it
without starting NumPy.
"""

from __future__ import annotations

from typing import Sequence

from bnlint.caffe.layers import TABLE
from bnlint.caffe.shapes import LayerShapes, infer


def macs(layer, bottom_shapes: Sequence[Sequence[int]],
         layer_shapes: LayerShapes | None = None) -> int:
    """Multiply-accumulates of one forward pass of `layer` over these bottoms."""
    entry = TABLE.get(layer.type)
    rule = entry.macs if entry is not None else None
    if rule is None:
        return 0
    bottoms = [tuple(int(d) for d in shape) for shape in bottom_shapes]
    shapes = layer_shapes if layer_shapes is not None else infer(layer, bottoms)
    return rule(layer, bottoms, shapes)
