"""What the computations of one diagnosis share, held in one object passed explicitly.

Several diagnostics need the same derived arrays (every agent's top label, the folds,
cross-fitted recalibration, dataset groups, coalition fusions); on a million instances
each costs seconds. A :class:`Context` wraps one :class:`PredictionSet` and remembers them
for as long as it lives: ``diagnose()`` makes one, the :class:`~modsab.core.diagnosis.Diagnosis`
carries it to later :meth:`~modsab.core.diagnosis.Diagnosis.extend` calls, and it is dropped
with the diagnosis. Nothing is remembered anywhere else.

A context reads like its set (``context.scores`` is ``context.pset.scores``), so fusion
rules take either; :func:`of` gives a fresh context for a bare set.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from modsab.contract import compact
from modsab.contract.predictions import PredictionSet
from modsab.core import audit
from modsab.core.folds import Folds, assign_folds


class Context:
    """One set and the arrays derived from it (see the module docstring)."""

    def __init__(self, pset: PredictionSet) -> None:
        self.pset = pset
        self._memo: dict[Hashable, Any] = {}

    def __getattr__(self, name: str) -> Any:  # reads like the set it wraps
        if name == "pset":  # not set yet (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.pset, name)

    def remember(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per ``key`` for this context."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def agent_top(self, agents) -> tuple[np.ndarray, np.ndarray]:
        """:func:`modsab.core.audit.agent_top` of ``agents`` (indices), remembered."""
        agents = list(agents)

        def compute():
            ps = self.pset
            n, m, _ = ps.scores_shape
            every = agents == list(range(m))
            top = np.empty((n, len(agents)), dtype=np.int64)
            confidence = np.empty((n, len(agents)), dtype=np.float64)
            for rows in compact.blocks(n):  # row by row alike: the same arrays as one call on the whole set
                scores, candidate = ps.block_scores(rows), ps.candidate[rows]
                if not every:
                    scores, candidate = scores[:, agents], candidate[:, agents]
                top[rows], confidence[rows] = audit.agent_top(scores, candidate)
            return top, confidence

        return self.remember(("agent_top", tuple(agents)), compute)

    def folds(self, folds: Folds, seed: int | None) -> np.ndarray:
        """``[n]`` fold of every instance (:func:`modsab.core.folds.assign_folds`), remembered:
        every cross-fitted part (recalibration, learned and reliability weights) deals the
        same folds once."""
        key = ("folds", folds if isinstance(folds, int) else id(folds), seed)
        return self.remember(key, lambda: assign_folds(self.pset, folds, seed))

    def groups(self) -> dict[str, np.ndarray]:
        """``{dataset: rows}`` (empty without a dataset column), remembered."""

        def compute() -> dict[str, np.ndarray]:
            dataset = self.pset.dataset
            if dataset is None:
                return {}
            names, codes = np.unique(dataset.astype(str), return_inverse=True)
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
            return {str(name): order[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)}

        return self.remember("groups", compute)


def of(data: PredictionSet | Context) -> Context:
    """``data`` itself when it is a context, else a fresh context around the set."""
    return data if isinstance(data, Context) else Context(data)
