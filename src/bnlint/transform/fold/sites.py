"""What a fold decides per BatchNorm (a `Site`), and the plan the sites make up."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bnlint.caffe.layers import FOLD_INTO, FOLD_NORM, TABLE
from bnlint.caffe.net import LayerView, NetState
from bnlint.caffe.phase import Phase

FOLDABLE_TYPES = tuple(name for name, t in TABLE.items() if t.fold == FOLD_INTO)
BATCHNORM_TYPES = tuple(name for name, t in TABLE.items() if t.fold == FOLD_NORM)
TEST_STATE = NetState(Phase.TEST)

FOLDED = "folded"
AS_SCALE = "scale"
KEPT = "kept"
CONVERTED = "converted"          # kept, and written in BVLC's form (to_dialect)


@dataclass
class Site:
    """One BatchNorm (or fork "BN") and what the fold does with it."""

    batchnorm: LayerView
    action: str                           # FOLDED, AS_SCALE, KEPT or CONVERTED
    reason: str = ""                      # why not folded (or not converted)
    scale: LayerView | None = None        # the Scale absorbed with it
    into: LayerView | None = None         # FOLDED: the producer; AS_SCALE: the Scale layer
    notes: list[str] = field(default_factory=list)
    added: str | None = None              # CONVERTED: the new Scale layer's name, if any

    @property
    def name(self) -> str:
        return self.batchnorm.name + (f" + {self.scale.name}" if self.scale else "")

    @property
    def written_as(self) -> str:
        """CONVERTED: the BVLC layers that now do its work."""
        return "BVLC BatchNorm" + (f" + Scale '{self.added}'" if self.added else "")

    def describe(self) -> str:
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        if self.action == FOLDED:
            return f"{self.name} folded into {self.into.type} '{self.into.name}'{notes}"
        if self.action == AS_SCALE:
            return (f"{self.name} -> Scale '{self.into.name}' with bias: not folded, "
                    f"{self.reason}{notes}")
        if self.action == CONVERTED:
            return f"{self.batchnorm.name} -> {self.written_as}: {self.reason}{notes}"
        return f"{self.batchnorm.name} kept: {self.reason}{notes}"


@dataclass
class FoldPlan:
    """What a fold does: the sites, the new text and the new weights (by layer name).

    `dialect` is the one the new text is read in: the target of `to_dialect`, else the
    input's (a kept NVCaffe BatchNorm means what NVCaffe computes, fields or not).
    """

    sites: list[Site]
    text: str
    arrays: dict[str, list[np.ndarray]]
    warnings: list[str] = field(default_factory=list)
    dialect: object = None
