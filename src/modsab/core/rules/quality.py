"""``quality``: ``w_m = q_m / 100``, each answer counts as much as the agent trusts its input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab.contract.errors import InputError
from modsab.core.fusion import FusionRule
from modsab.registry import fusion_rules


@fusion_rules.register("quality", order=1)
class QualityWeighted(FusionRule):
    """``w_m = q_m / 100``: each answer counts as much as the agent trusts its input."""

    name = "quality"

    def weights(self, pset, agents: Sequence[int]) -> np.ndarray:
        agents = list(agents)
        every = agents == list(range(pset.quality.shape[1]))
        quality = pset.quality if every else pset.quality[:, agents]
        unknown = np.isnan(quality)
        needed = (pset.answered if every else pset.answered[:, agents]) & unknown
        if needed.any():
            row, col = (int(v[0]) for v in np.nonzero(needed))
            raise InputError(
                "quality weighting needs a quality score, and this answer has none",
                item=pset.where(row, agents[col]),
                hint="add 'quality' (0-100) to every record, or use --weights uniform",
            )
        return np.where(unknown, 0.0, quality)
