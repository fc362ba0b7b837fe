"""
Three parts, each usable alone:

- The maths, pure functions of arrays (as torch/nn/utils/fusion.py): float64 inside,
  rounded once to float32. `batchnorm_as_scale` turns BatchNorm (+ affine) into one
  per-channel (scale, bias); `fold_batchnorm` puts it into a producer's weights.
- The plan, made on the blob graph of the TEST net (each blob version with its
  producer and consumers, in-place chains resolved), never on positions in the file:
  which BatchNorm folds into which Convolution, Deconvolution or InnerProduct, which
  becomes a Scale, and why each other one stays. Folds chain: in conv -> bn -> scale
  -> bn, the second BatchNorm folds into the conv too, so a second run finds nothing.
- The rewrite: format-preserving text edits and the new weights, checked before
  anything is returned (black's safe mode): the output parses and wires, a second
  fold finds nothing to do, each rewritten layer fed the input net's own blob matches
  the BatchNorm chain it replaces (a wrong axis, eps or group is named at its site,
  not blurred by the layers after it), and the outputs of both nets match on seeded
  inputs.

The maths (`maths`), what BatchNorm's blobs mean per fork (`statistics`), the plan
(`sites`, `plan`), its text edits and new weights (`edits`) and the checks
(`check`) are one module each; this module runs them in turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from bnlint.transform.fold.check import FoldMismatch, Verification, check_stable, verify_fold
from bnlint.transform.fold.maths import batchnorm_as_scale, fold_batchnorm
from bnlint.transform.fold.plan import parse_view, plan_fold
from bnlint.transform.fold.sites import (AS_SCALE, CONVERTED, FOLDABLE_TYPES, FOLDED, KEPT,
                                         FoldPlan, Site)


@dataclass
class FoldResult:
    plan: FoldPlan
    caffemodel: bytes
    verification: Verification | None


def fold(text_file, weights: Mapping[str, Sequence[np.ndarray]], *,
         keep_unfoldable: bool = False, verify: bool = True,
         input_shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0,
         to_dialect=None) -> FoldResult:
    """Plan, check and serialise a fold; nothing is written here.

    The weights checked by the forward are the ones read back from the serialised
    .caffemodel, so what is verified is what the caller writes.
    """
    from bnlint.caffe.schema import default_schema
    from bnlint.caffe.weights import caffemodel_bytes, weights_from_net

    plan = plan_fold(text_file, weights, keep_unfoldable=keep_unfoldable,
                     input_shapes=input_shapes, to_dialect=to_dialect)
    check_stable(plan, text_file, keep_unfoldable)
    out_view = parse_view(text_file, plan.text, plan.dialect)
    data = caffemodel_bytes(out_view, plan.arrays)
    verification = None
    if verify:
        message = default_schema().message_class("NetParameter")()
        message.ParseFromString(data)
        written = weights_from_net(message) if len(message.layer) else {}
        verification = verify_fold(text_file, weights, plan, written,
                                   input_shapes=input_shapes, seed=seed)
    return FoldResult(plan, data, verification)


__all__ = ["AS_SCALE", "CONVERTED", "FOLDED", "FOLDABLE_TYPES", "KEPT", "FoldMismatch",
           "FoldPlan", "FoldResult", "Site", "Verification", "batchnorm_as_scale",
           "check_stable", "fold", "fold_batchnorm", "plan_fold", "verify_fold"]
