"""What a fold decides per BatchNorm (a `Site`), and the plan the sites make up."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bnlint.caffe.layers import FOLD_INTO, FOLD_NORM, TABLE
from bnlint.caffe.net import LayerView, NetState
from bnlint.caffe.phase import Phase
from bnlint.coded import CodedText

FOLDABLE_TYPES = tuple(name for name, t in TABLE.items() if t.fold == FOLD_INTO)
BATCHNORM_TYPES = tuple(name for name, t in TABLE.items() if t.fold == FOLD_NORM)
TEST_STATE = NetState(Phase.TEST)

FOLDED = "folded"
AS_SCALE = "scale"
KEPT = "kept"
CONVERTED = "converted"          # kept, and written in BVLC's form (to_dialect)

#: Why a BatchNorm is not folded (`Site.cause`); the site's reason says it in words.
CAUSES = {
    # its statistics
    "unknown-form": "a BatchNorm form (fork) whose meaning bnlint does not know",
    "no-weights": "the weights hold nothing for it or for its producer",
    "blob-count": "its (or its producer's) blobs are not as many as its form has",
    "blob-shapes": "its blobs do not fit its channels",
    "batch-statistics": "it normalises with the batch's statistics, even at TEST",
    "nan-variance": "variance + eps is not positive for some channel",
    # the graph around it
    "wiring": "it has other than one bottom and one top",
    "zero-axis": "its bottom has no axis",
    "input-shared": "its input has other readers",
    "net-input": "its input is a net input",
    "producer-type": "its producer is not a Convolution, Deconvolution or InnerProduct",
    "producer-wiring": "its producer has other than one bottom and one top",
    "in-place": "its producer works in place",
    "top-list": "its producer writes its top as a list",
    "shared-weights": "its producer shares its weights with another layer",
    "shapes-unknown": "the shapes around its producer are unknown",
    "axis": "its producer's outputs are not on axis 1",
    "channels": "its producer's outputs are not its channels",
    "weights-mismatch": "its producer's weights do not fit the fold",
}


class Reason(CodedText):
    """A reason in words that carries its `CAUSES` code."""

    CODES = CAUSES


@dataclass
class Site:
    """One BatchNorm (or fork "BN") and what the fold does with it."""

    batchnorm: LayerView
    action: str                           # FOLDED, AS_SCALE, KEPT or CONVERTED
    reason: str = ""                      # why not folded (or not converted): a Reason
    scale: LayerView | None = None        # the Scale absorbed with it
    into: LayerView | None = None         # FOLDED: the producer; AS_SCALE: the Scale layer
    notes: list[str] = field(default_factory=list)
    added: str | None = None              # CONVERTED: the new Scale layer's name, if any

    @property
    def cause(self) -> str:
        """Why not folded: the CAUSES code of its Reason ("" when folded)."""
        return getattr(self.reason, "code", "")

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
