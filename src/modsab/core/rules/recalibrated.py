"""``recalibrated-temperature`` / ``recalibrated-isotonic``: uniform fusion of cross-fitted
recalibrated confidences (:mod:`modsab.core.recalibration`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab.core.folds import Folds
from modsab.core.fusion import FusionRule
from modsab.core.recalibration import crossfit, crossfit_store
from modsab.registry import fusion_rules


class Recalibrated(FusionRule):
    """Uniform fusion of cross-fitted recalibrated confidences (temperature or isotonic)."""

    method_name = "temperature"

    def __init__(self, method: str | None = None, *, n_folds: Folds = 5, seed: int | None = 0) -> None:
        self.method, self.n_folds, self.seed = method or self.method_name, n_folds, seed
        self.name = f"recalibrated-{self.method}"

    @classmethod
    def from_options(cls, *, tau: float = 0.70, folds: Folds = 5, seed: int | None = 0) -> Recalibrated:
        return cls(n_folds=folds, seed=seed)

    def scores(self, pset, agents: Sequence[int]) -> np.ndarray:
        return crossfit(pset, agents, self.method, n_folds=self.n_folds, seed=self.seed)[0]

    def block_scores(self, pset, agents: Sequence[int], rows: slice) -> np.ndarray:
        """:meth:`scores` of ``rows``, looked up a block at a time when the set holds codes."""
        return crossfit_store(pset, agents, self.method, n_folds=self.n_folds, seed=self.seed)[0][rows]


@fusion_rules.register("recalibrated-temperature", order=2)
class RecalibratedTemperature(Recalibrated):
    method_name = "temperature"


@fusion_rules.register("recalibrated-isotonic", order=3)
class RecalibratedIsotonic(Recalibrated):
    method_name = "isotonic"
