"""Seeded inputs: the uniform [-1, 1) float32 values a net runs on when none are given.

`forward` (inputs not given), `fold`'s verification, `verify`'s trials and `export
onnx`'s check all draw them here. They differ in two ways, each a parameter, because
each prints numbers drawn its own way and changing a draw would change them:

- `per_input`: one generator seeded with `key` draws the inputs in turn (forward,
  fold, export), or each input has its own generator, seeded with `key` and the
  CRC-32 of its name, so its values do not depend on the net's other inputs (verify,
  whose two nets may list their inputs differently);
- `draw`: "float64" draws `uniform(-1, 1)` and rounds it to float32; "float32"
  draws float32 values in [0, 1) and maps them to [-1, 1) in float32 (verify: half
  the memory traffic of the float64 draw).

The key keeps each stream apart: `[seed, 1]` is not the fillers' `seed`.
"""

from __future__ import annotations

import zlib
from typing import Mapping, Sequence

import numpy as np

DRAWS = ("float64", "float32")


def seeded_inputs(shapes: Mapping[str, Sequence[int]], key, *, per_input: bool = False,
                  draw: str = "float64") -> dict[str, np.ndarray]:
    """Values for each named shape, in the order of `shapes`.

    `key` seeds `np.random.default_rng` (an int or a sequence of ints; a sequence
    when `per_input`). No generator is made when `shapes` is empty: importing
    numpy.random costs start-up time a run with all inputs given does not need.
    """
    if draw not in DRAWS:
        raise ValueError(f"draw must be one of {DRAWS}, not {draw!r}")
    out: dict[str, np.ndarray] = {}
    shared = None
    for name, shape in shapes.items():
        if per_input:
            rng = np.random.default_rng([*key, zlib.crc32(name.encode("utf-8"))])
        else:
            shared = shared if shared is not None else np.random.default_rng(key)
            rng = shared
        out[name] = _draw(rng, tuple(shape), draw)
    return out


def _draw(rng: np.random.Generator, shape: tuple[int, ...], draw: str) -> np.ndarray:
    if draw == "float64":
        return rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    values = rng.random(shape, dtype=np.float32)
    values *= np.float32(2)
    values -= np.float32(1)
    return values
