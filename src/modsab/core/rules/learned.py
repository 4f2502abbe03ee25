"""``learned``: logistic stacking on agent scores, coefficients clipped at 0.

For every (instance, label), the agents' scores for that label are the features and "this
label is gold" the target; the coefficients, clipped at 0, are per-agent weights of a linear
fusion (so it stays a fusion rule). Cross-fitted: each fold is fused with weights learned on
the other folds (at most ``max_fit`` training instances per fold, drawn with the seed).
"""

from __future__ import annotations

import numpy as np

from modsab.core.folds import Folds
from modsab.core.rules._crossfitted import CrossFitted
from modsab.registry import fusion_rules


@fusion_rules.register("learned", order=4)
class LearnedWeights(CrossFitted):
    """Logistic stacking on agent scores, coefficients clipped at 0 (see the module docstring)."""

    name = "learned"

    def __init__(self, *, n_folds: Folds = 5, seed: int | None = 0, max_fit: int = 10_000) -> None:
        super().__init__(n_folds=n_folds, seed=seed)
        self.max_fit = max_fit

    def learn(self, pset, agents: list[int], train: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        rows = np.flatnonzero(train)
        if rows.size > self.max_fit:
            rows = np.sort(np.random.default_rng(self.seed).choice(rows, self.max_fit, replace=False))
        k = len(pset.labels)
        features = pset.block_scores(rows)[:, agents, :].transpose(0, 2, 1).reshape(-1, len(agents))
        target = (np.arange(k)[None, :] == pset.gold[rows, None]).ravel()
        if target.all() or not target.any():
            return np.ones(len(agents))
        model = LogisticRegression(C=1.0, max_iter=200).fit(features, target)
        coef = np.clip(model.coef_[0], 0, None)
        return coef if coef.sum() > 0 else np.ones(len(agents))
