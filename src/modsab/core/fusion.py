"""Late fusion of agent answers: ``s(y) = sum_m w_m * c_m(y)``.

This module is the one definition of fusion: the weighted sum, its rounding, the tie rule
and the ranking. A fusion rule is a small object with one method, :meth:`FusionRule.weights`,
that says how much each (instance, agent) answer counts; :func:`fuse` does the weighted
sum over the agent axis for every rule alike. Rules that change the answers themselves
(recalibration, caps) override :meth:`FusionRule.scores` too. The rules live one per module
in :mod:`modsab.core.rules`; rules receive a :class:`~modsab.core.context.Context` (or a bare
set) and read the set's arrays through it.

Fused scores are rounded to :data:`TIE_DECIMALS` decimals so that ties are ties
whatever order the agents are summed in (0.1 + 0.2 + 0.3 != 0.3 + 0.2 + 0.1 in
floating point), and ties always go to the label earlier in the label set.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from modsab.contract import compact
from modsab.contract.predictions import PredictionSet
from modsab.core.context import Context, of

TIE_DECIMALS = 9


class FusionRule:
    """Uniform weights (the paper's default rule). Subclasses change the weights."""

    name = "uniform"
    #: Whether the ``fusion_compare`` diagnostic puts this rule beside the others.
    in_comparison = True

    @classmethod
    def from_options(cls, *, tau: float = 0.70, folds=5, seed: int | None = 0) -> FusionRule:
        """The rule as a diagnosis makes it from its options (tau, folds, seed); rules that
        take none of them ignore them."""
        return cls()

    def weights(self, pset: PredictionSet, agents: Sequence[int]) -> np.ndarray:
        """``[n, len(agents)]`` weight of each fused agent's answer per instance."""
        return np.ones((pset.n_instances, len(agents)))

    def scores(self, pset: PredictionSet, agents: Sequence[int]) -> np.ndarray:
        """``[n, len(agents), k]`` the answers to fuse (confidence in [0, 1]); the set's own
        array, not a copy, when all agents are fused in order (callers never write to it)."""
        agents = list(agents)
        if agents == list(range(pset.scores_shape[1])):
            return pset.scores
        return pset.scores[:, agents, :]

    @property
    def transforms_answers(self) -> bool:
        """True when the rule fuses answers other than the set's own scores (it overrides
        :meth:`scores` or :meth:`block_scores`): fast paths that read the raw scores directly
        must then ask the rule for its answers."""
        cls = type(self)
        return cls.scores is not FusionRule.scores or cls.block_scores is not FusionRule.block_scores

    def block_scores(self, pset: PredictionSet, agents: Sequence[int], rows: slice) -> np.ndarray:
        """:meth:`scores` of the instances in ``rows`` only (``[rows, len(agents), k]``).

        Diagnostics that fuse a strategy many times walk the set in blocks of rows small
        enough to stay in cache; a rule that transforms answers per instance overrides
        this so that no whole-set copy is made. The default slices :meth:`scores`."""
        if type(self).scores is FusionRule.scores:
            agents = list(agents)
            block = pset.block_scores(rows)
            return block if agents == list(range(block.shape[1])) else block[:, agents, :]
        return self.scores(pset, agents)[rows]

    def fuse(self, pset: PredictionSet | Context, agents: Sequence[int]) -> np.ndarray:
        """``[n, k]`` fused scores of ``agents`` under this rule (see :func:`fuse`); a rule
        that fuses the set's own answers walks them a block of rows at a time (each row's sum
        is its own, so the figures are those of one sum over the whole set), and a set held
        as one-byte codes is never decoded whole."""
        data = of(pset)
        n, _, k = data.scores_shape
        fused = np.empty((n, k), dtype=np.float64)
        for rows, block in self.fuse_blocks(data, agents):
            fused[rows] = block
        return fused

    @property
    def uniform(self) -> bool:
        """True when every answer counts once (the weights are :class:`FusionRule`'s own ones)
        and the answers are the set's own: the fused scores are then a plain function of the
        scores, block by block, and nothing else."""
        return type(self).weights is FusionRule.weights and not self.transforms_answers

    def fuse_blocks(self, pset: PredictionSet | Context, agents: Sequence[int]) -> Iterator[tuple[slice, np.ndarray]]:
        """``(rows, fused[rows])`` block after block (what :meth:`fuse` puts together): a
        uniform rule's weights are made a block at a time too, so a caller that reduces each
        block (the foundation audit) holds no ``[n, k]`` or ``[n, m]`` float array at all."""
        data = of(pset)
        n = data.scores_shape[0]
        if self.uniform:
            for rows in compact.blocks(n):
                scores = self.block_scores(data, agents, rows)
                yield rows, fuse(scores, np.ones(scores.shape[:2]))
            return
        weights = self.weights(data, agents)
        if self.transforms_answers:
            yield slice(0, n), fuse(self.scores(data, agents), weights)
            return
        for rows in compact.blocks(n):
            yield rows, fuse(self.block_scores(data, agents, rows), weights[rows])


def rule(name: str | FusionRule, *, tau: float = 0.70, folds=5, seed: int | None = 0) -> FusionRule:
    """A fusion rule by its registered name (:data:`modsab.registry.fusion_rules`: ``uniform``,
    ``quality``, ``learned``, ...) made with the diagnosis' options, or the rule itself."""
    if isinstance(name, FusionRule):
        return name
    from modsab.registry import fusion_rules

    return fusion_rules.get(name).from_options(tau=tau, folds=folds, seed=seed)


def fuse(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[n, k]`` fused score: weighted sum over the agent axis, rounded for exact ties."""
    fused = np.einsum("nmk,nm->nk", scores, weights, optimize=False)
    return np.round(fused, TIE_DECIMALS, out=fused)


def top_label(fused: np.ndarray) -> np.ndarray:
    """``[n]`` fused top-1 index, ties to the earlier label; -1 where nothing scored above 0."""
    best = np.argmax(fused, axis=1)
    positive = np.take_along_axis(fused, best[:, None], axis=1)[:, 0] > 0
    return np.where(positive, best, -1)


def gold_rank(fused: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """``[n]`` 0-based position of the gold label in the fused ranking.

    The ranking holds labels with ``s(y) > 0`` by score, ties to the earlier label;
    a gold label outside the ranking gets rank ``n_labels`` (never a hit).
    """
    n, k = fused.shape
    gold_score = fused[np.arange(n), gold]
    ahead = (fused > gold_score[:, None]) | ((fused == gold_score[:, None]) & (np.arange(k)[None, :] < gold[:, None]))
    rank = ahead.sum(axis=1)
    return np.where(gold_score > 0, rank, k)


def ranking(fused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order[n, k], length[n])``: labels by fused score (ties to the earlier label) and
    how many of them scored above 0."""
    order = np.argsort(-fused, axis=1, kind="stable")
    return order, (fused > 0).sum(axis=1)
