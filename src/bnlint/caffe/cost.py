"""What a layer costs: multiply-accumulates (MACs) per forward pass, next to the shape rules.

Only the matrix-product layers are counted (Convolution, Deconvolution,
InnerProduct), as published model figures count them (ResNet-50's ~3.9 G, MobileNet
v1's ~0.57 G): element-wise layers such as BatchNorm, Scale or ReLU are cheap beside
them and fold away at deployment. Every other type costs 0 here.

Pure Python (no NumPy), like `shapes`: `bnlint info` and the linter can use it
without starting NumPy. A rule gets the layer message, the bottom shapes and the
layer's `LayerShapes` (tops and parameter shapes from `shapes.infer`).
"""

from __future__ import annotations

from typing import Callable, Sequence

from bnlint.caffe.shapes import LayerShapes, Shape, count, infer

MacRule = Callable[[object, list[Shape], LayerShapes], int]
MAC_RULES: dict[str, MacRule] = {}


def mac_rule(*type_names: str) -> Callable[[MacRule], MacRule]:
    """Register the MAC count of one or more layer types."""

    def deco(fn: MacRule) -> MacRule:
        for name in type_names:
            if name in MAC_RULES:
                raise RuntimeError(f"MAC rule for {name!r} registered twice")
            MAC_RULES[name] = fn
        return fn

    return deco


def macs(layer, bottom_shapes: Sequence[Sequence[int]],
         layer_shapes: LayerShapes | None = None) -> int:
    """Multiply-accumulates of one forward pass of `layer` over these bottoms."""
    rule = MAC_RULES.get(layer.type)
    if rule is None:
        return 0
    bottoms = [tuple(int(d) for d in shape) for shape in bottom_shapes]
    shapes = layer_shapes if layer_shapes is not None else infer(layer, bottoms)
    return rule(layer, bottoms, shapes)


@mac_rule("Convolution")
def _convolution(layer, bottoms: list[Shape], shapes: LayerShapes) -> int:
    """Each output element: C/group * kernel taps."""
    per_output = count(shapes.params[0], 1)
    return sum(count(top) * per_output for top in shapes.tops)


@mac_rule("Deconvolution")
def _deconvolution(layer, bottoms: list[Shape], shapes: LayerShapes) -> int:
    """Each input element is spread over num_output/group * kernel taps (weights (C, O/g, k...))."""
    per_input = count(shapes.params[0], 1)
    return sum(count(bottom) * per_input for bottom in bottoms)


@mac_rule("InnerProduct")
def _inner_product(layer, bottoms: list[Shape], shapes: LayerShapes) -> int:
    """Each output element: K inputs (the bottom's axes from `axis` on)."""
    top = shapes.tops[0]
    inputs = count(shapes.params[0]) // top[-1]
    return count(top) * inputs
