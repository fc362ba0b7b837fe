"""BatchNorm, its Scale and the ReLU after them as one step at run time.

Caffe computes (x - mean) / std, then * gamma + beta, then max(., 0): five passes over
the blob, a fifth to a third of a MobileNet v2 or DenseNet forward. The fused step
computes x * k + c per channel, k = gamma / std and c = beta - mean * k (worked out
in float64, rounded once), and the ReLU in place: three passes. As OpenCV's, that form
loses the difference to cancellation when |mean| / std is large (mean 1000, variance
1e-4: errors of 6e-3 on outputs of about 2), so a chain whose BatchNorm has some
channel with |mean| / std above MAX_MEAN_OVER_STD subtracts the mean first, as Caffe
does: (x - mean) * k + beta, four passes. Putting k and c into the weights of a
Convolution before the chain (as
`bnlint fold` does) was measured too and lost on every benchmark net: rewriting the
weights in the run cost more than the passes it saved (ResNet-50 first forward
100 -> 107 ms).

The results differ from the exact ops by float32 rounding (at most ~1e-6 of the scale),
far inside the golden tolerances; `Network.run(fuse=True)` asks for it (the
`forward` command does). verify, fold and the tests of single ops compare layer by
layer and run the exact ops.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

from bnlint.forward.ops.activations import ReLU
from bnlint.forward.ops.base import overwriting, result_like, unbuffered_rows
from bnlint.forward.ops.norm import BatchNorm, Scale

if TYPE_CHECKING:
    from bnlint.forward.executor import _Slot, _Step

#: Above this |mean| / std in some channel, the fused step subtracts the mean first: the
#: x * k + c form then errs by more than ~1e-6 of the output's scale (20 ulps).
MAX_MEAN_OVER_STD = 16.0


def fuse_steps(steps: Sequence[_Step], slots: Sequence[_Slot], outputs: set[int]
               ) -> list[_Step]:
    """Copies of `steps` with each BatchNorm [+ Scale] [+ ReLU] chain replaced by one
    step, placed where the chain starts. Only the chain reads its inner blobs, and
    none of them is an output."""
    readers: dict[int, list[int]] = {}      # slot -> the steps reading it, once per read
    for j, step in enumerate(steps):
        for slot in step.bottoms:
            readers.setdefault(slot, []).append(j)

    def next_step(i: int, kind: type) -> int | None:
        """The step that alone reads step i's one top, and reads nothing else, if its op
        is a `kind`; the top is no output."""
        if len(steps[i].tops) != 1 or steps[i].tops[0] in outputs:
            return None
        reading = readers.get(steps[i].tops[0], [])
        if len(reading) != 1:
            return None
        j = reading[0]
        return j if isinstance(steps[j].op, kind) and len(steps[j].bottoms) == 1 else None

    replaced: dict[int, _Step] = {}
    dropped: set[int] = set()
    for i, step in enumerate(steps):
        if not isinstance(step.op, BatchNorm) or i in dropped or len(step.bottoms) != 1:
            continue
        shape = slots[step.bottoms[0]].shape
        normalise = _batchnorm_affine(step.op, shape)
        if normalise is None:
            continue
        mean, affine, mean_over_std = normalise
        chain = [i]
        j = next_step(i, Scale)
        if j is not None:
            scale = _scale_affine(steps[j].op, shape)
            if scale is not None:
                with np.errstate(all="ignore"):
                    both = (affine[0] * scale[0], affine[1] * scale[0] + scale[1])
                if _finite(both):       # inf or NaN in the Scale: left to the exact op
                    affine = both
                    chain.append(j)
        relu = next_step(chain[-1], ReLU)
        relu_op = None
        if relu is not None and steps[relu].op.slope == 0:
            chain.append(relu)
            relu_op = steps[relu].op
        replaced[i] = replace(steps[chain[-1]],
                              op=_FusedChain(mean, affine, relu_op,
                                             subtract=mean_over_std > MAX_MEAN_OVER_STD),
                              bottoms=list(step.bottoms),
                              covers=tuple(steps[k].layer for k in chain))
        dropped.update(chain[1:])
    return [replaced.get(i) or replace(s) for i, s in enumerate(steps) if i not in dropped]


def _batchnorm_affine(op: BatchNorm, shape
                      ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], float] | None:
    """BatchNorm with stored statistics as its mean (the op's own float32 values), the
    (k, c) that follow the subtraction, in float64, and the largest |mean| / std: the
    scale-factor guard, eps and NVCaffe's form are the op's."""
    if not op.use_global_stats or shape is None or len(shape) < 2:
        return None
    if op.mean.size != shape[1]:
        return None                     # the exact op reports the mismatch
    with np.errstate(divide="ignore", invalid="ignore"):
        k = op.inv_std.astype(np.float64) if op.nvcaffe else 1.0 / op.std.astype(np.float64)
        mean_over_std = float(np.max(np.abs(op.mean.astype(np.float64) * k), initial=0.0))
        c = np.zeros_like(k)
        if op.scale_bias:
            if op.gamma.size != shape[1]:
                return None
            k, c = k * op.gamma.astype(np.float64), op.beta.astype(np.float64)
    if not _finite((k, c)) or not np.all(np.isfinite(op.mean)):
        return None                     # a zero std: Caffe's inf and NaN, from the exact op
    return op.mean, (k, c), mean_over_std


def _finite(affine: tuple[np.ndarray, np.ndarray]) -> bool:
    """Both finite once rounded to float32 (a k past float32's range would be inf)."""
    with np.errstate(over="ignore"):
        return all(bool(np.all(np.isfinite(a.astype(np.float32)))) for a in affine)


def _scale_affine(op: Scale, shape) -> tuple[np.ndarray, np.ndarray] | None:
    """A per-channel Scale (one bottom, axis 1, one value per channel) as (s, b)."""
    channels = shape[1]
    axis = op.axis if op.axis >= 0 else op.axis + len(shape)
    expected = 2 if op.bias_term else 1
    if axis != 1 or len(op.blobs) != expected:
        return None
    scale = np.asarray(op.blobs[0])
    if scale.shape != (channels,):
        return None
    bias = np.asarray(op.blobs[1]) if op.bias_term else np.zeros(channels)
    if bias.shape != (channels,):
        return None
    return scale.astype(np.float64), bias.astype(np.float64)


class _FusedChain:
    """The fused step's op: x * k + c, or (x - mean) * k + c where cancellation
    would show (`subtract`), then the ReLU in place."""

    fresh_tops = True

    def __init__(self, mean: np.ndarray, affine: tuple[np.ndarray, np.ndarray], relu,
                 subtract: bool) -> None:
        k, c = affine
        if not subtract:                # the subtraction folded into c: c - mean * k
            with np.errstate(all="ignore"):
                folded = (c - np.asarray(mean, dtype=np.float64) * k).astype(np.float32)
            subtract = not np.all(np.isfinite(folded))
            c = c if subtract else folded
        self.subtract = subtract
        self.mean = np.asarray(mean, dtype=np.float32)
        self.k, self.c = k.astype(np.float32), np.asarray(c, dtype=np.float32)
        self.has_bias = bool(np.any(self.c))
        self.relu = relu

    def run(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        x = bottoms[0]
        view = (-1,) + (1,) * (x.ndim - 2)
        y = result_like(x)
        with unbuffered_rows(x.size // max(1, x.shape[0] * x.shape[1])):
            if self.subtract:
                np.subtract(x, self.mean.reshape(view), out=y)
                np.multiply(y, self.k.reshape(view), out=y)
            else:
                np.multiply(x, self.k.reshape(view), out=y)
            if self.has_bias:
                np.add(y, self.c.reshape(view), out=y)
        if self.relu is not None:
            with overwriting([y]):
                y = self.relu.run([y])[0]
        return [y]
