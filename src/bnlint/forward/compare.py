"""Numerical comparison of a forward result with a reference, in the conventions that matter.

- `golden_close`: the golden README's rule, OpenCV's layer-test rule scaled by the
  reference's size: max|out - ref| <= 1e-4 * s and mean|out - ref| <= 1e-5 * s with
  s = max(1, max|ref|). Float32 accumulation order differs between BLAS builds, so
  bit equality is not the bar.
- `opencv_close`: the same bounds unscaled, as OpenCV's `test_layers.cpp` applies them.
- `allclose`: onnx-simplifier's check, |out - ref| <= atol + rtol * |ref| element-wise
  (rtol 1e-4, atol 1e-5 by default).

`golden_close` takes an optional `uncertainty`: how far the reference itself moves
under rounding noise (see `input_sensitivity`). Where a net is ill-conditioned (a
BatchNorm whose variance is near 0 divides rounding noise by sqrt(eps)), two correct
float32 implementations differ by more than any fixed tolerance; the part of the
difference that such noise explains is not held against the result.

Each returns a `Comparison` record. Non-finite values must match exactly (a NaN where
the reference has a NaN is agreement: Caffe's Log of a negative gives one too), and
the differences are taken in float64 so the comparison adds no rounding of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GOLDEN_MAX = 1e-4
GOLDEN_MEAN = 1e-5
ONNXSIM_RTOL = 1e-4
ONNXSIM_ATOL = 1e-5


@dataclass(frozen=True)
class Comparison:
    """How far `out` is from `ref`.

    max_rel is the largest |out - ref| / |ref| over elements where ref != 0;
    `used` is the largest fraction of the tolerance spent (1.0 = at the limit),
    so `ok` is `used <= 1`.
    """

    max_abs: float
    mean_abs: float
    max_rel: float
    ref_max: float
    used: float
    ok: bool
    problem: str = ""          # why it failed outright: shape or non-finite mismatch

    def describe(self) -> str:
        if self.problem:
            return self.problem
        return (f"max |diff| {self.max_abs:.3g}, mean {self.mean_abs:.3g}, max rel "
                f"{self.max_rel:.3g} ({self.used:.1%} of tolerance)")


def _differences(out, ref) -> tuple[np.ndarray, np.ndarray, str]:
    """|out - ref| and |ref| over the finite positions (float64), or a reason they differ."""
    out = np.asarray(out)
    ref = np.asarray(ref)
    empty = np.zeros(0)
    if out.shape != ref.shape:
        return empty, empty, f"shape {list(out.shape)} vs reference {list(ref.shape)}"
    out64 = out.astype(np.float64, copy=False)
    ref64 = ref.astype(np.float64, copy=False)
    finite = np.isfinite(ref64)
    if not finite.all():
        same = (np.isnan(out64) & np.isnan(ref64)) | (out64 == ref64)
        if not same[~finite].all():
            count = int((~same[~finite]).sum())
            return empty, empty, f"{count} non-finite reference values not matched"
    if not np.isfinite(out64[finite]).all():
        count = int((~np.isfinite(out64[finite])).sum())
        return empty, empty, f"{count} NaN or infinite values where the reference is finite"
    abs_ref = np.abs(ref64[finite])
    diff = np.abs(out64[finite] - ref64[finite])
    return diff, abs_ref, ""


def _summary(diff: np.ndarray, abs_ref: np.ndarray) -> tuple[float, float, float, float]:
    if diff.size == 0:
        return 0.0, 0.0, 0.0, 0.0
    nonzero = abs_ref > 0
    max_rel = float((diff[nonzero] / abs_ref[nonzero]).max()) if nonzero.any() else 0.0
    return float(diff.max()), float(diff.mean()), max_rel, float(abs_ref.max())


def _worst_ratio(diff: np.ndarray, limit: np.ndarray) -> float:
    """max(diff / limit); a nonzero difference against a zero limit is infinitely over."""
    if diff.size == 0:
        return 0.0
    positive = limit > 0
    if (diff[~positive] > 0).any():
        return float("inf")
    return float((diff[positive] / limit[positive]).max()) if positive.any() else 0.0


def _net_of(diff: np.ndarray, ref, uncertainty) -> np.ndarray:
    """The differences less what rounding noise explains (see `input_sensitivity`)."""
    if uncertainty is None:
        return diff
    finite = np.isfinite(np.asarray(ref, dtype=np.float64))
    allowed = np.asarray(uncertainty, dtype=np.float64)[finite]
    return np.maximum(diff - allowed, 0.0)


def golden_close(out, ref, max_tol: float = GOLDEN_MAX, mean_tol: float = GOLDEN_MEAN,
                 uncertainty=None) -> Comparison:
    """The golden README's tolerance, relative to max(1, max|ref|), after subtracting
    the element-wise `uncertainty` (if given) from the differences."""
    diff, abs_ref, problem = _differences(out, ref)
    if problem:
        return Comparison(np.inf, np.inf, np.inf, 0.0, np.inf, False, problem)
    diff = _net_of(diff, ref, uncertainty)
    max_abs, mean_abs, max_rel, ref_max = _summary(diff, abs_ref)
    scale = max(1.0, ref_max)
    used = max(max_abs / (max_tol * scale), mean_abs / (mean_tol * scale))
    return Comparison(max_abs, mean_abs, max_rel, ref_max, used, used <= 1.0)


def opencv_close(out, ref, max_tol: float = GOLDEN_MAX,
                 mean_tol: float = GOLDEN_MEAN) -> Comparison:
    """OpenCV's layer-test rule: the same bounds as `golden_close`, but absolute."""
    diff, abs_ref, problem = _differences(out, ref)
    if problem:
        return Comparison(np.inf, np.inf, np.inf, 0.0, np.inf, False, problem)
    max_abs, mean_abs, max_rel, ref_max = _summary(diff, abs_ref)
    used = max(max_abs / max_tol, mean_abs / mean_tol)
    return Comparison(max_abs, mean_abs, max_rel, ref_max, used, used <= 1.0)


def allclose(out, ref, rtol: float = ONNXSIM_RTOL, atol: float = ONNXSIM_ATOL,
             uncertainty=None) -> Comparison:
    """onnx-simplifier's element-wise |out - ref| <= atol + rtol * |ref|, after
    subtracting the element-wise `uncertainty` (if given) from the differences."""
    diff, abs_ref, problem = _differences(out, ref)
    if problem:
        return Comparison(np.inf, np.inf, np.inf, 0.0, np.inf, False, problem)
    diff = _net_of(diff, ref, uncertainty)
    max_abs, mean_abs, max_rel, ref_max = _summary(diff, abs_ref)
    used = _worst_ratio(diff, atol + rtol * abs_ref)
    return Comparison(max_abs, mean_abs, max_rel, ref_max, used, used <= 1.0)


def input_sensitivity(network, inputs, keep, *, ulps: int = 4, trials: int = 8,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """How far each kept blob moves when every input value moves by `ulps` float32 ulps.

    The element-wise maximum over `trials` random sign patterns: a measure of the
    rounding noise a blob amplifies, which a different BLAS summation order injects
    too. Well-conditioned blobs move by about 1e-7 relative; a blob behind a BatchNorm
    normalising by a near-zero variance moves by orders of magnitude more.
    """
    rng = np.random.default_rng(seed)
    base = network.run(inputs, keep=keep)
    spread = {name: np.zeros(value.shape, np.float64) for name, value in base.items()}
    step = ulps * float(np.finfo(np.float32).eps)
    for _ in range(trials):
        moved_inputs = {name: (value * (1 + step * rng.choice([-1.0, 1.0], value.shape)))
                        .astype(np.float32) for name, value in inputs.items()}
        moved = network.run(moved_inputs, keep=keep)
        for name in spread:
            delta = np.abs(moved[name].astype(np.float64) - base[name])
            np.maximum(spread[name], np.nan_to_num(delta, nan=0.0, posinf=0.0), out=spread[name])
    return spread
