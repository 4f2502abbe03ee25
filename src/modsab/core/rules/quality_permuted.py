"""``quality-permuted``: a placebo for quality weighting.

Each agent's self-reported quality is permuted (with the seed) among the instances that
agent answered, then used as ``quality`` uses it. The weights keep their distribution but
lose their link to the instance: if ``quality`` beats ``uniform`` and this placebo does
too, the gain came from the weights' spread, not from the self-report carrying information.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab.core.rules.quality import QualityWeighted
from modsab.registry import fusion_rules


@fusion_rules.register("quality-permuted", order=8)
class QualityPermuted(QualityWeighted):
    """Quality weights permuted across each agent's answered instances (see the module docstring)."""

    name = "quality-permuted"

    def __init__(self, *, seed: int | None = 0) -> None:
        self.seed = seed

    @classmethod
    def from_options(cls, *, tau: float = 0.70, folds=5, seed: int | None = 0) -> QualityPermuted:
        return cls(seed=seed)

    def weights(self, pset, agents: Sequence[int]) -> np.ndarray:
        weights = super().weights(pset, agents)
        answered = pset.answered[:, list(agents)]
        rng = np.random.default_rng(self.seed)
        out = weights.copy()
        for j in range(weights.shape[1]):
            rows = np.flatnonzero(answered[:, j])
            out[rows, j] = weights[rng.permutation(rows), j]
        return out
