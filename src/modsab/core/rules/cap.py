"""``cap`` (sabotage-resistant): no agent counts for more than the mean top confidence of the
other answering agents on that instance, so a lone confident voice can no longer outshout
several unsure ones."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab.core.fusion import FusionRule
from modsab.registry import fusion_rules


@fusion_rules.register("cap", order=5)
class CappedInfluence(FusionRule):
    """No agent counts for more than the mean top confidence of the other answering agents."""

    name = "cap"

    def scores(self, pset, agents: Sequence[int]) -> np.ndarray:
        return self.block_scores(pset, agents, slice(None))

    def block_scores(self, pset, agents: Sequence[int], rows: slice) -> np.ndarray:
        scores = FusionRule().block_scores(pset, agents, rows)
        top = scores.max(axis=2)
        answered = (top > 0).sum(axis=1, keepdims=True)
        others = np.maximum(answered - (top > 0), 1)
        cap = np.where(answered > 1, (top.sum(axis=1, keepdims=True) - top) / others, top)
        return np.minimum(scores, cap[:, :, None])
