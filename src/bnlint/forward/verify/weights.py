"""The weights each net runs with: seeded blobs that look trained, or the given ones
completed from the net's own fillers, with what Caffe would refuse to load."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from bnlint.caffe.layers.batchnorm import nvcaffe_batch_norm
from bnlint.caffe.net import NetGraph
from bnlint.errors import BnlintError, ForwardError
from bnlint.forward.fillers import blobs_from_fillers
from bnlint.forward.verify.report import Arrays, Shape

#: blobs[2] of a trained BatchNorm: 1 / (1 - 0.999) after many iterations (DOMAIN.md 1).
TRAINED_BN_FACTOR = np.float32(999.982)


def layer_rng(seed: int, layer_name: str) -> np.random.Generator:
    """A generator of its own per layer: the blobs do not depend on which layers came first."""
    return np.random.default_rng([seed, zlib.crc32(layer_name.encode("utf-8"))])


def realistic_blobs(layer, shapes: Sequence[Shape], rng: np.random.Generator
                    ) -> list[np.ndarray]:
    """Blobs that look trained, for one layer (a LayerParameter) with these blob shapes.

    Zero statistics, unit gammas and zero biases make a dropped Scale, a lost bias or a
    wrong eps invisible, so: BatchNorm mean ~ N(0, 0.5) and variance ~ U(0.5, 2), stored
    times the scale factor blobs[2] = 999.982 as trained Caffe stores them; Scale gamma
    ~ U(0.5, 1.5) and beta ~ N(0, 0.2); weights He-scaled so activations stay near
    unit size through deep nets; other biases ~ N(0, 0.1). A blob whose ParamSpec has
    lr_mult 0 is never trained, so it keeps its filler's value (a bilinear upsampling
    kernel stays bilinear).
    """
    shapes = [tuple(int(d) for d in s) for s in shapes]
    for index, shape in enumerate(shapes):
        if 0 in shape:      # as `forward` refuses to fill one (zero channels, num_output 0)
            raise ForwardError(f"layer '{layer.name}' ({layer.type}), blob {index}: cannot "
                               f"make weights for an empty blob of shape {list(shape)}")
    if layer.type == "BatchNorm" and len(shapes) in (3, 5):
        channels = shapes[0]
        mean = rng.normal(0.0, 0.5, channels).astype(np.float32)
        var = rng.uniform(0.5, 2.0, channels).astype(np.float32)
        if nvcaffe_batch_norm(layer):
            # NVCaffe stores the statistics as they are (blobs[2], its variance
            # correction, stays 1); with scale_bias, blobs[3:5] are gamma and beta.
            blobs = [mean, var, np.ones(shapes[2], np.float32)]
            if len(shapes) == 5:
                blobs += [rng.uniform(0.5, 1.5, shapes[3]).astype(np.float32),
                          rng.normal(0.0, 0.2, shapes[4]).astype(np.float32)]
            return blobs
        return [mean * TRAINED_BN_FACTOR, var * TRAINED_BN_FACTOR,
                np.full(shapes[2], TRAINED_BN_FACTOR, np.float32)]
    frozen = [i < len(layer.param) and layer.param[i].HasField("lr_mult")
              and layer.param[i].lr_mult == 0 for i in range(len(shapes))]
    from_fillers = blobs_from_fillers(layer, shapes, rng) if any(frozen) else None
    blobs = []
    for index, shape in enumerate(shapes):
        if frozen[index]:
            blobs.append(from_fillers[index])
        else:
            blobs.append(_trained_like(layer, index, shape, rng))
    return blobs


def _trained_like(layer, index: int, shape: Shape, rng: np.random.Generator) -> np.ndarray:
    one_bottom = len(layer.bottom) < 2
    if layer.type == "Scale":
        if index == 0 and one_bottom:
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return rng.normal(0.0, 0.2, shape).astype(np.float32)
    if layer.type == "Bias":
        return rng.normal(0.0, 0.2, shape).astype(np.float32)
    if layer.type == "PReLU":
        return rng.uniform(0.05, 0.5, shape).astype(np.float32)
    if index == 0:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        values = rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(np.sqrt(2.0 / max(fan_in, 1)))
        return values
    return rng.normal(0.0, 0.1, shape).astype(np.float32)


def seeded_weights(graph: NetGraph, params: Mapping[int, Sequence[Shape]], seed: int
                   ) -> dict[str, list[np.ndarray]]:
    """`realistic_blobs` for every layer of `graph` with parameters (shapes by layer index)."""
    out: dict[str, list[np.ndarray]] = {}
    for lv in graph.layers:
        shapes = params.get(lv.index)
        if shapes and lv.name not in out:
            out[lv.name] = realistic_blobs(lv.message, shapes, layer_rng(seed, lv.name))
    return out


def _fits(array: np.ndarray, shape: Shape, legacy: bool | None) -> bool:
    """Caffe's Blob::ShapeEquals: exact, or legacy 4-D padded on the left with 1s."""
    got = tuple(array.shape)
    if got == tuple(shape):
        return True
    return legacy is not False and len(shape) <= 4 and len(got) == 4 and \
        got == (1,) * (4 - len(shape)) + tuple(shape)


@dataclass
class NetWeights:
    arrays: dict[str, list[np.ndarray]]
    filled: list[str]                  # layers the weights lack: from this net's fillers
    load_problems: dict[str, str]      # layer -> why Caffe would refuse the given blobs


def complete_weights(graph: NetGraph, params: Mapping[int, Sequence[Shape]],
                      source: Arrays, seed: int, *, check_fit: bool,
                      must_have: str = "") -> NetWeights:
    """Every parameterised layer's blobs: from `source` by name, else from its fillers.

    `check_fit`: a layer whose stored blobs Caffe would refuse (count or shape) is
    recorded, and runs with the blobs that fit, the rest from its fillers, so the
    forward can still show where the nets part. `must_have`: no filling allowed; a
    missing layer is an error saying why (the seeded weights of A are all there is).
    """
    out = NetWeights({}, [], {})
    for lv in graph.layers:
        shapes = params.get(lv.index)
        if not shapes or lv.name in out.arrays:
            continue
        given = source.get(lv.name)
        if given is None:
            if must_have:
                raise BnlintError(f"layer '{lv.name}' ({lv.type}) of net B has parameters, "
                                  f"but net A has no parameterised layer of that name: "
                                  f"{must_have}")
            out.filled.append(lv.name)
            out.arrays[lv.name] = blobs_from_fillers(lv.message, shapes,
                                                     layer_rng(seed, lv.name))
            continue
        if not check_fit:
            out.arrays[lv.name] = given       # the executor checks them, as Caffe does
            continue
        legacy = getattr(given, "legacy", ())
        problems = []
        if len(given) != len(shapes):
            problems.append(f"incompatible number of blobs, {len(given)} given vs "
                            f"{len(shapes)} the layer needs")
        blobs: list[np.ndarray] = []
        fallback = None
        for index, shape in enumerate(shapes):
            array = np.asarray(given[index], np.float32) if index < len(given) else None
            is_legacy = legacy[index] if index < len(legacy) else None
            if array is not None and _fits(array, shape, is_legacy):
                blobs.append(array.reshape(shape))
                continue
            if array is not None:
                problems.append(f"blob {index}: shape {list(array.shape)} given vs "
                                f"{list(shape)} expected")
            if fallback is None:
                fallback = blobs_from_fillers(lv.message, shapes, layer_rng(seed, lv.name))
            blobs.append(fallback[index])
        if problems:
            out.load_problems[lv.name] = "; ".join(problems)
        out.arrays[lv.name] = blobs
    return out
