"""What `to_deploy` is asked to make, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from bnlint.caffe.net import NetState
from bnlint.caffe.phase import Phase

Shape = tuple[int, ...]


@dataclass
class DeployOptions:
    """What `to_deploy` makes: the state, the input shapes, what it keeps."""

    phase: Phase | None = None     # None: TEST, or TRAIN for a net written for TRAIN only
    stages: tuple[str, ...] = ()
    input_shapes: dict[str, Shape] = field(default_factory=dict)   # --input-shape
    batch: int | None = None       # --batch; None: declared batch kept, 1 when inferred
    softmax: bool = True           # False: --no-softmax
    keep_fillers: bool = False
    # shapes used only where inference fails (`--check` takes them from the deploy file)
    fallback_shapes: dict[str, Shape] = field(default_factory=dict)

    def state_for(self, view) -> NetState:
        """The state the deploy view is taken under."""
        phase = self.phase
        if phase is None:
            phase = Phase.TEST if Phase.TEST in view.phases() else Phase.TRAIN
        return NetState(phase, tuple(self.stages))


@dataclass
class DeployResult:
    text: str
    notes: list[str] = field(default_factory=list)
    input_shapes: dict[str, Shape] = field(default_factory=dict)   # the Input layer written
    state: NetState = field(default_factory=NetState)               # the view it was made from
