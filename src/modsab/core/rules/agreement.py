"""``agreement`` (sabotage-resistant): a confident answer (``c >= tau``) whose top label no
other fused agent names at all is down-weighted to ``lone_weight``: a high-confidence override
needs a second opinion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab.contract import compact
from modsab.core import audit
from modsab.core.context import of
from modsab.core.fusion import FusionRule
from modsab.registry import fusion_rules


@fusion_rules.register("agreement", order=6)
class AgreementOverride(FusionRule):
    """A confident answer whose top label no other fused agent names counts ``lone_weight``."""

    name = "agreement"

    def __init__(self, tau: float = 0.70, lone_weight: float = 0.25) -> None:
        self.tau, self.lone_weight = tau, lone_weight

    @classmethod
    def from_options(cls, *, tau: float = 0.70, folds=5, seed: int | None = 0) -> AgreementOverride:
        return cls(tau=tau)

    def weights(self, pset, agents: Sequence[int]) -> np.ndarray:
        """Made a block of rows at a time (each row's weights are its own), so the ``[n, m]``
        integer and float temporaries stay the size of a block."""
        agents = list(agents)
        top, confidence = of(pset).agent_top(agents)
        out = np.empty(top.shape)
        for rows in compact.blocks(top.shape[0]):
            out[rows] = self._weights(pset.candidate[rows], agents, top[rows], confidence[rows])
        return out

    def _weights(self, candidate: np.ndarray, agents: list[int], top: np.ndarray, confidence: np.ndarray):
        k = candidate.shape[2]
        every = agents == list(range(candidate.shape[1]))
        named = (candidate if every else candidate[:, agents, :]).reshape(candidate.shape[0], -1)
        safe_top = np.maximum(top, 0)
        # how many fused agents name each agent's top label (itself included when it answered)
        support = sum(np.take_along_axis(named, i * k + safe_top, axis=1).astype(np.int64) for i in range(len(agents)))
        support -= top >= 0
        confident = np.nan_to_num(confidence, nan=0) >= self.tau - audit.TAU_TOLERANCE
        lone = confident & (support < 1) & (top >= 0)
        return np.where(lone, self.lone_weight, 1.0)
