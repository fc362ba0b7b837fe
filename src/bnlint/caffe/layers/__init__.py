"""The layer table: per Caffe layer type, everything bnlint knows of it without NumPy.

One module per drawing family (`data`, `convolution`, `normalisation`, `activation`,
`pooling`, `elementwise`, `loss`, `structure`, `recurrent`, `detection`, `other`;
batch normalisation has its own, `batchnorm`, for its forms)
`declare`s its types: family, the fork that owns the type (`dialect`, None for BVLC),
its parameter message, its roles (data, loss, evaluation, selection, parametric,
in-place safe), how it folds, and a one-line description. The same module holds the
type's shape rule (`@shape_rule`: top and parameter blob shapes, as Caffe's `Reshape`
computes them), its multiply-accumulate count (`@mac_rule`, matrix products only) and
the geometry helpers the forward ops share (`conv_geometry`, `pool_geometry`, ...), so
each size has one definition. `shapes.infer` and `cost.macs` dispatch through the
table; the lint rules, transforms, `info` and `draw` ask it by type name
(`lookup`, `types_with(role)`, `family_of`).

Everything here is pure Python: `bnlint check` imports it and must not start NumPy.
The NumPy forward lives in `bnlint.forward.ops`, one `Op` class per type, registered
with `@register_op("TypeName")` against the same names.

Adding a layer type
-------------------
1. In the family module (or a new one imported below), `declare("Type", FAMILY,
   dialect=..., param="type_param", roles=[...])`. A fork's type names its fork
   (`bnlint.caffe.forks`).
2. Below it, `@shape_rule("Type")` a function `(layer, bottom_shapes) -> LayerShapes`
   that checks what Caffe's LayerSetUp/Reshape check and raises `ShapeError`
   otherwise; `@mac_rule("Type")` if it is a matrix product.
3. Its forward: a class in `bnlint/forward/ops/<family>.py` with
   `@register_op("Type")`, and its blobs' fillers in `bnlint/forward/fillers.py` if
   it owns parameters.
4. Tests: `tests/test_layer_table.py` fails while a type with a shape rule that the
   forward should run (not data, loss or evaluation) has no op, or an op has no
   table entry. Add shape and op cases next to the family's tests, and a golden
   comparison when Caffe's output is available.
"""

from __future__ import annotations

from bnlint.caffe.layers.table import (  # noqa: F401 - the table's interface
    FAMILIES,
    FOLD_INTO,
    FOLD_NORM,
    ROLE_DATA,
    ROLE_EVALUATION,
    ROLE_IN_PLACE,
    ROLE_LOSS,
    ROLE_PARAMETRIC,
    ROLE_SELECTION,
    TABLE,
    LayerType,
    family_of,
    lookup,
    types_with,
)

# Importing the family modules fills the table.
from bnlint.caffe.layers import (  # noqa: E402,F401
    activation,
    batchnorm,
    convolution,
    data,
    detection,
    elementwise,
    loss,
    normalisation,
    other,
    pooling,
    recurrent,
    structure,
)
