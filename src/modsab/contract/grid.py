"""Numbers on the percent grid, held in one byte each.

Confidences and qualities are nearly always whole percents (``85`` on the percent scale,
``0.85`` on the unit scale). A reader that keeps tens of millions of them holds each as
a ``uint8`` code ``c`` with ``value == c / divisor`` (divisor 1 for percents, 100 for
units; code 255 for an absent value, NaN), and decodes a block at the moment it is used.
The codes are taken only when decoding gives back every value bit for bit (sign of zero
included), so nothing computed from them can differ from the float64 original.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The code of an absent value (NaN).
ABSENT = 255


@dataclass(frozen=True)
class GridArray:
    """``[R]`` values as ``uint8`` codes; ``decode()`` is the float64 array they stand for."""

    codes: np.ndarray
    divisor: float

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __getitem__(self, rows) -> GridArray:
        return GridArray(self.codes[rows], self.divisor)

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes)

    def decode(self) -> np.ndarray:
        values = self.codes.astype(np.float64)
        if self.divisor != 1.0:
            values /= self.divisor
        values[self.codes == ABSENT] = np.nan
        return values


def encode(values: np.ndarray, divisor: float) -> GridArray | np.ndarray:
    """``values`` (float64) as a :class:`GridArray` when every one is on the grid of
    ``1 / divisor`` steps between 0 and 254 steps (or NaN), else ``values`` unchanged."""
    values = np.asarray(values, dtype=np.float64)
    absent = np.isnan(values)
    steps = np.where(absent, 0.0, values) * divisor
    if steps.size and not ((steps >= 0) & (steps < ABSENT)).all():
        return values
    codes = np.rint(steps).astype(np.uint8)
    codes[absent] = ABSENT
    grid = GridArray(codes, divisor)
    if not np.array_equal(grid.decode().view(np.int64), values.view(np.int64)):
        return values  # off the grid, -0.0, or a NaN of another payload: keep the floats
    return grid


def decode(values: GridArray | np.ndarray) -> np.ndarray:
    """The float64 values, whichever way they are held."""
    return values.decode() if isinstance(values, GridArray) else values


def concatenate(parts: Sequence[GridArray | np.ndarray]) -> GridArray | np.ndarray:
    """One array of the parts in order: codes when every part is on the same grid, else floats."""
    if parts and all(isinstance(p, GridArray) and p.divisor == parts[0].divisor for p in parts):
        return GridArray(np.concatenate([p.codes for p in parts]), parts[0].divisor)
    return np.concatenate([decode(p) for p in parts]) if parts else np.zeros(0, dtype=np.float64)
