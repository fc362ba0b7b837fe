"""The maths of a fold, pure functions of arrays (as torch/nn/utils/fusion.py).

float64 inside, rounded once to float32. `batchnorm_as_scale` turns BatchNorm
(+ affine) into one per-channel (scale, bias); `fold_batchnorm` puts it into a
producer's weights.
"""

from __future__ import annotations

import numpy as np

from bnlint.caffe.layers.batchnorm import inverse_scale_factor


def batchnorm_affine(mean, var, scale_factor, eps, gamma=None, beta=None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm (+ affine) as y = x * k + c, per channel, in float64."""
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    var = np.asarray(var, dtype=np.float64).reshape(-1)
    inverse = inverse_scale_factor(float(scale_factor))
    mean = mean * inverse
    var = var * inverse
    gamma = np.ones_like(mean) if gamma is None else np.asarray(gamma, np.float64).reshape(-1)
    beta = np.zeros_like(mean) if beta is None else np.asarray(beta, np.float64).reshape(-1)
    if not mean.size == var.size == gamma.size == beta.size:
        raise ValueError(f"per-channel sizes differ: mean {mean.size}, variance {var.size}, "
                         f"scale {gamma.size}, bias {beta.size}")
    k = gamma / np.sqrt(var + float(eps))
    return k, beta - mean * k


def batchnorm_as_scale(mean, var, scale_factor, eps, gamma=None, beta=None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias) of the one Scale layer equal to BatchNorm followed by (gamma, beta).

    mean and var are Caffe's stored sums, divided here by `scale_factor` (blobs[2];
    0 means mean 0 and variance 0, as Caffe). gamma/beta None: no Scale (1 and 0).
    """
    k, c = batchnorm_affine(mean, var, scale_factor, eps, gamma, beta)
    return k.astype(np.float32), c.astype(np.float32)


def fold_affine64(weight, bias, k, c, out_axis: int = 0, groups: int = 1
                   ) -> tuple[np.ndarray, np.ndarray]:
    """weight and bias of a layer followed by y = x * k + c, per output channel (float64)."""
    w = np.asarray(weight, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64).reshape(-1)
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    n = k.size
    b = np.zeros(n) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
    if b.size != n or c.size != n:
        raise ValueError(f"bias has {b.size} values, the fold has {n} channels")
    if out_axis == 0:
        if w.ndim < 1 or w.shape[0] != n:
            raise ValueError(f"weights {list(w.shape)} do not have {n} output channels on "
                             f"axis 0")
        scaled = w * k.reshape((n,) + (1,) * (w.ndim - 1))
    elif out_axis == 1:
        # Deconvolution (C_in, O/g, ...): group g's rows hold output channels g*O/g + j.
        if w.ndim < 2 or groups < 1 or w.shape[0] % groups or w.shape[1] * groups != n:
            raise ValueError(f"weights {list(w.shape)} with {groups} groups do not have {n} "
                             f"output channels on axis 1")
        grouped = w.reshape((groups, w.shape[0] // groups) + w.shape[1:])
        factor = k.reshape((groups, 1, w.shape[1]) + (1,) * (w.ndim - 2))
        scaled = (grouped * factor).reshape(w.shape)
    else:
        raise ValueError(f"output channels on axis {out_axis}: only 0 or 1 occur in Caffe")
    return scaled, b * k + c


def fold_batchnorm(weight, bias, mean, var, scale_factor, eps, gamma=None, beta=None,
                   out_axis: int = 0, groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') of a producer with BatchNorm (+ Scale gamma, beta) folded in, float32.

    k = gamma / sqrt(var + eps); W' = W * k along the output-channel axis; b' =
    (b - mean) * k + beta. `out_axis` is 0 for Convolution and InnerProduct, 1 for
    Deconvolution (per group: weights are (C_in, O/groups, ...)) and for a transposed
    InnerProduct. bias None: the producer had none (0). Maths in float64.
    """
    k, c = batchnorm_affine(mean, var, scale_factor, eps, gamma, beta)
    w, b = fold_affine64(weight, bias, k, c, out_axis, groups)
    return w.astype(np.float32), b.astype(np.float32)


def unit_variance(eps: float) -> np.float32:
    """The float32 v with v + eps == 1 exactly in float32: a BatchNorm with mean 0 and
    variance v computes (x - 0) / sqrt(1), i.e. x, bit for bit."""
    e = np.float32(eps)
    v = np.float32(1) - e
    while v + e > np.float32(1):
        v = np.nextafter(v, np.float32(0))
    while v + e < np.float32(1):
        v = np.nextafter(v, np.float32(2))
    return v
