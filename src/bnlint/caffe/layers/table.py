"""The layer table's entries and their registration (see the package docstring).

One `LayerType` per Caffe type string: what bnlint knows of the type without NumPy.
Family modules `declare` their types, then attach the rules with the `shape_rule`
and `mac_rule` decorators, which refuse a type that was not declared (a typo fails at
import, not at run time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from bnlint.caffe.layers.base import LayerShapes, Shape

# Drawing families, as Netron groups Caffe's nodes (`bnlint draw` colours by them).
DATA = "data"
CONVOLUTION = "convolution"
NORMALISATION = "normalisation"
ACTIVATION = "activation"
POOLING = "pooling"
ELEMENTWISE = "elementwise"
LOSS = "loss"
STRUCTURE = "shape/structure"
RECURRENT = "recurrent"
DETECTION = "detection"
OTHER = "other"
FAMILIES = (DATA, CONVOLUTION, NORMALISATION, ACTIVATION, POOLING, ELEMENTWISE, LOSS,
            STRUCTURE, RECURRENT, DETECTION, OTHER)

# Roles: what a layer of the type does in a net, as the rules and transforms ask.
ROLE_DATA = "data"              # brings blobs in from outside (a reader; not Input)
ROLE_LOSS = "loss"              # a training objective: to-deploy removes it
ROLE_EVALUATION = "evaluation"  # scores against labels (Accuracy): to-deploy removes it
ROLE_SELECTION = "selection"    # picks among values (ArgMax, NMS): tiny changes flip it
ROLE_PARAMETRIC = "parametric"  # owns parameter blobs ("has weights")
ROLE_IN_PLACE = "in-place"      # computing top over its bottom is safe
ROLES = frozenset({ROLE_DATA, ROLE_LOSS, ROLE_EVALUATION, ROLE_SELECTION, ROLE_PARAMETRIC,
                   ROLE_IN_PLACE})

# How a type takes part in `bnlint fold`.
FOLD_INTO = "into"              # a linear producer a BatchNorm folds into
FOLD_NORM = "norm"              # a batch normalisation that folds away

ShapeRule = Callable[[object, "list[Shape]"], "LayerShapes"]
MacRule = Callable[[object, "list[Shape]", "LayerShapes"], int]


@dataclass
class LayerType:
    """Everything bnlint knows of one layer type that holds without NumPy."""

    name: str
    family: str
    dialect: str | None = None          # None: BVLC's; else the fork that owns it
    param: str | None = None            # its LayerParameter field, e.g. "pooling_param"
    roles: frozenset[str] = frozenset()
    fold: str | None = None             # FOLD_INTO, FOLD_NORM or None
    shape: ShapeRule | None = None      # top and parameter shapes (base.LayerShapes)
    macs: MacRule | None = None         # multiply-accumulates of one forward pass
    doc: str = ""                       # one line for people (info, draw, docs)
    extra: dict = field(default_factory=dict)

    def has(self, role: str) -> bool:
        return role in self.roles


TABLE: dict[str, LayerType] = {}


def declare(name: str, family: str, *, dialect: str | None = None, param: str | None = None,
            roles: Iterable[str] = (), fold: str | None = None, doc: str = "") -> LayerType:
    """Add one layer type to the table (once)."""
    if name in TABLE:
        raise RuntimeError(f"layer type {name!r} declared twice")
    if family not in FAMILIES:
        raise RuntimeError(f"layer type {name!r}: unknown family {family!r}")
    roles = frozenset(roles)
    if roles - ROLES:
        raise RuntimeError(f"layer type {name!r}: unknown roles {sorted(roles - ROLES)}")
    entry = LayerType(name, family, dialect, param, roles, fold, doc=doc)
    TABLE[name] = entry
    return entry


def _attach(what: str, type_names: tuple[str, ...]) -> Callable:
    def deco(fn):
        for name in type_names:
            entry = TABLE.get(name)
            if entry is None:
                raise RuntimeError(f"{what} rule for undeclared layer type {name!r}")
            if getattr(entry, what) is not None:
                raise RuntimeError(f"{what} rule for {name!r} registered twice")
            setattr(entry, what, fn)
        return fn
    return deco


def shape_rule(*type_names: str) -> Callable[[ShapeRule], ShapeRule]:
    """Register the shape rule of declared layer types."""
    return _attach("shape", type_names)


def mac_rule(*type_names: str) -> Callable[[MacRule], MacRule]:
    """Register the multiply-accumulate count of declared layer types."""
    return _attach("macs", type_names)


def lookup(type_name: str) -> LayerType | None:
    return TABLE.get(type_name)


def types_with(role: str) -> frozenset[str]:
    """Every type name that has `role`."""
    return frozenset(name for name, entry in TABLE.items() if role in entry.roles)


def family_of(type_name: str) -> str:
    """The drawing family; OTHER for a type the table does not know."""
    entry = TABLE.get(type_name)
    return entry.family if entry is not None else OTHER
