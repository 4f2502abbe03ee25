"""Base of the rules whose weights are learned on the other folds of each instance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab.core.folds import Folds, n_folds_of
from modsab.core.fusion import FusionRule
from modsab.core.recalibration import set_folds


class CrossFitted(FusionRule):
    """A rule whose weights are learned on the other folds of each instance."""

    def __init__(self, *, n_folds: Folds = 5, seed: int | None = 0) -> None:
        self.n_folds, self.seed = n_folds, seed

    @classmethod
    def from_options(cls, *, tau: float = 0.70, folds: Folds = 5, seed: int | None = 0) -> CrossFitted:
        return cls(n_folds=folds, seed=seed)

    @property
    def fold_count(self) -> int:
        return n_folds_of(self.n_folds)

    def learn(self, pset, agents: list[int], train: np.ndarray) -> np.ndarray:
        """``[len(agents)]`` weights learned on the instances where ``train`` is True."""
        raise NotImplementedError

    def fold_weights(self, pset, agents: list[int], fold: np.ndarray) -> np.ndarray:
        """``[folds, len(agents)]``: row f learned on every fold but f."""
        return np.stack([self.learn(pset, agents, fold != f) for f in range(self.fold_count)])

    def weights(self, pset, agents: Sequence[int]) -> np.ndarray:
        agents = list(agents)
        fold = set_folds(pset, self.n_folds, self.seed)
        return self.fold_weights(pset, agents, fold)[fold]
