"""A set's confidences held as one-byte percent codes, decoded a block of instances at a time.

``scores[n, m, k]`` as float64 is 224 bytes an instance at 4 agents x 7 labels (2.2 GB at
ten million instances). When every confidence read is on the percent grid
(:mod:`modsab.contract.grid`), the reader keeps instead the ``uint8`` code of each slot
(0 where the agent did not name the label) and :meth:`CompactScores.decode` gives back the
very float64 values the dense array holds: ``(code / divisor) / top``, the two divisions
the reader makes, in the same order, so every figure computed from a block is bit for bit
the figure computed from the dense array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modsab.contract.grid import ABSENT

#: Instances decoded at a time by :func:`blocks` (a block of 4 x 7 floats is ~15 MB).
BLOCK_ROWS = 1 << 16


@dataclass(frozen=True)
class CompactScores:
    """``codes[n, m, k]`` (``uint8``) standing for ``(codes / divisor) / top`` (NaN for code 255)."""

    codes: np.ndarray
    divisor: float
    top: float

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)

    def __getitem__(self, key) -> CompactScores:
        """The codes of some instances (and agents): ``store[rows]``, ``store[:, agents]``."""
        return CompactScores(self.codes[key], self.divisor, self.top)

    def decode(self) -> np.ndarray:
        """The float64 array these codes stand for."""
        values = self.codes.astype(np.float64)
        if self.divisor != 1.0:
            values /= self.divisor
        values /= self.top
        values[self.codes == ABSENT] = np.nan
        return values


def blocks(n: int, rows: int = BLOCK_ROWS) -> list[slice]:
    """``n`` instances as consecutive slices of at most ``rows``."""
    return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]
