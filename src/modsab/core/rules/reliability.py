"""``reliability`` (sabotage-resistant): each agent weighted by its held-out skill above chance,
``(acc - 1/K) / (1 - 1/K)`` clipped at 0, measured on the other folds."""

from __future__ import annotations

import numpy as np

from modsab.core.context import of
from modsab.core.rules._crossfitted import CrossFitted
from modsab.registry import fusion_rules


@fusion_rules.register("reliability", order=7)
class ReliabilityWeighted(CrossFitted):
    """Weight = held-out top-1 skill above chance, ``(acc - 1/K) / (1 - 1/K)``, at least 0."""

    name = "reliability"

    def learn(self, pset, agents: list[int], train: np.ndarray) -> np.ndarray:
        top, _ = of(pset).agent_top(agents)
        return self._skill(pset, (top[train] >= 0).sum(axis=0), (top[train] == pset.gold[train, None]).sum(axis=0))

    def fold_weights(self, pset, agents: list[int], fold: np.ndarray) -> np.ndarray:
        """Per-fold tallies once, then each fold's training counts are the total minus its own."""
        top, _ = of(pset).agent_top(agents)
        k = self.fold_count
        tally = np.stack(
            [
                [np.bincount(fold, weights=column, minlength=k) for column in (top >= 0).T],
                [np.bincount(fold, weights=column, minlength=k) for column in (top == pset.gold[:, None]).T],
            ]
        )  # [2, m, folds]
        train = tally.sum(axis=2, keepdims=True) - tally
        return np.stack([self._skill(pset, train[0, :, f], train[1, :, f]) for f in range(k)])

    @staticmethod
    def _skill(pset, answered: np.ndarray, right: np.ndarray) -> np.ndarray:
        if len(pset.labels) < 2:  # one label: no skill above chance to measure
            return np.ones(len(answered))
        accuracy = right / np.maximum(answered, 1)
        chance = 1 / len(pset.labels)
        skill = np.clip((accuracy - chance) / (1 - chance), 0, None)
        return skill if skill.sum() > 0 else np.ones(len(answered))
