"""Who made the fused answer right or wrong: one interface, several methods.

Following Captum's ``Attribution.attribute``, every contribution method takes the same
input (:class:`Coalitions`: the fused agents' weighted answers) and returns the same
shape, ``[n_instances, n_fused_agents]``: positive where the agent helped the fused
answer, negative where it hurt. :meth:`Attribution.saboteurs` turns that into the
boolean sabotage flags that the synthetic benchmark scores against planted truth.

Because fusion is linear (``s = sum_m w_m S_m``), the fused scores of any subset of
agents (a *coalition*) are a sum over that subset of the weighted answers, so
counterfactuals and Shapley values need no new model calls: one ``einsum`` per batch
of instances over a ``[subsets, agents]`` 0/1 matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from modsab.contract import compact
from modsab.contract.predictions import PredictionSet
from modsab.core import audit, fusion
from modsab.core.context import of
from modsab.registry import attributions

#: Floats held at once by one batch of coalition fusions (1 MiB: a batch stays in cache).
BATCH_FLOATS = 1 << 17


class BlockContributions:
    """``contrib[n, m, k] = w_m * S_m`` of a set held as one-byte codes, made a block of rows
    at a time (``contrib[rows]``, the one way :class:`Coalitions` reads it): the same floats
    as the whole product (each is one product of a decoded score and its weight), without
    the two ``[n, m, k]`` float64 arrays (4.5 GB at ten million instances)."""

    def __init__(self, pset, rule: fusion.FusionRule, agents: tuple[int, ...]) -> None:
        self.pset, self.rule, self.agents = pset, rule, agents
        n, _, k = pset.scores_shape
        self.shape = (n, len(agents), k)
        self.weights = None if rule.uniform else rule.weights(pset, list(agents))

    def __getitem__(self, rows: slice) -> np.ndarray:
        scores = self.rule.block_scores(self.pset, list(self.agents), rows)
        weights = np.ones(scores.shape[:2]) if self.weights is None else self.weights[rows]
        return scores * weights[:, :, None]


@dataclass(frozen=True)
class Coalitions:
    """The fused agents' weighted answers ``contrib[n, m, k] = w_m * S_m`` and what the
    audit needs beside them. ``agents`` are the fused agents, in the order of axis 1."""

    contrib: np.ndarray | BlockContributions
    gold: np.ndarray
    top: np.ndarray
    confidence: np.ndarray
    agents: tuple[str, ...]
    tau: float = 0.70
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_rule(
        cls,
        pset: PredictionSet,
        rule: fusion.FusionRule,
        agents: Sequence[int],
        *,
        tau: float = 0.70,
        agent_top: tuple[np.ndarray, np.ndarray] | None = None,
        fused_top: np.ndarray | None = None,
    ) -> Coalitions:
        """Weighted answers of ``agents`` under ``rule``; ``agent_top`` is the
        ``(top, confidence)`` of those agents and ``fused_top`` the fused top-1 of all of
        them under ``rule``, when the caller already has them (a diagnosis does)."""
        agents = list(agents)
        if isinstance(of(pset).score_store, compact.CompactScores) and not rule.transforms_answers:
            contrib = BlockContributions(of(pset), rule, tuple(agents))  # the codes, decoded per block
        else:
            contrib = rule.scores(pset, agents) * rule.weights(pset, agents)[:, :, None]
        top, confidence = agent_top or of(pset).agent_top(agents)
        out = cls(contrib, pset.gold, top, confidence, tuple(pset.agents[m] for m in agents), tau)
        if fused_top is not None:
            out._memo["fused_top"] = fused_top
        return out

    @property
    def n_agents(self) -> int:
        return self.contrib.shape[1]

    def _blocks(self, n_coalitions: int):
        """Batches of rows, each a contiguous ``[m, k, rows]`` copy of ``contrib``: fused
        coalitions come out as ``[S, k, rows]`` from one BLAS product and every reduction
        over labels is element-wise over long rows of instances. A batch of all
        ``n_coalitions`` fusions holds about :data:`BATCH_FLOATS` floats, so it stays in cache."""
        n, m, k = self.contrib.shape
        step = max(64, BATCH_FLOATS // (max(n_coalitions, 1) * k))
        for start in range(0, n, step):
            rows = slice(start, min(n, start + step))
            yield rows, np.ascontiguousarray(self.contrib[rows].transpose(1, 2, 0))

    @staticmethod
    def _fuse_block(masks: np.ndarray, block: np.ndarray, *, rounded: bool = True) -> np.ndarray:
        """``[S, k, r]`` fused scores, rounded as :func:`modsab.core.fusion.fuse` rounds (or, with
        ``rounded=False``, the integers ``rint(s * 10^TIE_DECIMALS)`` they are rounded to)."""
        m, k, r = block.shape
        out = (masks.astype(np.float64) @ block.reshape(m, k * r)).reshape(masks.shape[0], k, r)
        if rounded:
            return np.round(out, fusion.TIE_DECIMALS, out=out)
        out *= 10.0**fusion.TIE_DECIMALS
        return np.rint(out, out=out)

    def fused(self, masks: np.ndarray) -> np.ndarray:
        """``[S, k, n]`` fused scores of each coalition (``masks[S, m]`` 0/1)."""
        out = np.empty((masks.shape[0], self.contrib.shape[2], self.contrib.shape[0]))
        for rows, block in self._blocks(masks.shape[0]):
            out[:, :, rows] = self._fuse_block(masks, block)
        return out

    def value_table(self, masks: np.ndarray) -> dict[str, np.ndarray]:
        """``{value: [n, S]}`` for both coalition values: ``correct`` (the fused top-1 is
        gold, 0/1) and ``gold_probability`` (``p(y*) = s(y*) / sum_y s(y)``, 0 when empty).

        Each coalition is fused once per :class:`Coalitions` and remembered, so the
        counterfactual, pairwise and Shapley views share their fusions."""
        codes = self._fuse_missing(masks)
        return {
            value: np.stack([self._memo[int(c)][v] for c in codes], axis=1).astype(np.float64)
            for v, value in enumerate(("correct", "gold_probability"))
        }

    def rows(self, masks: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(correct, gold_probability)``: one ``[n]`` row (bool, float) per coalition of
        ``masks``, the remembered arrays themselves (no ``[n, S]`` float table as
        :meth:`value_table` builds; callers must not write to them)."""
        entries = [self._memo[int(code)] for code in self._fuse_missing(masks)]
        return [entry[0] for entry in entries], [entry[1] for entry in entries]

    def _fuse_missing(self, masks: np.ndarray) -> np.ndarray:
        """Coalition codes of ``masks`` (bit m = agent m), fusing those not yet remembered."""
        codes = masks.astype(np.int64) @ (1 << np.arange(self.n_agents, dtype=np.int64))
        missing = sorted({int(c) for c in codes} - set(self._memo))  # int keys: coalitions
        if missing:
            todo = ((np.asarray(missing)[:, None] >> np.arange(self.n_agents)[None, :]) & 1).astype(np.int8)
            correct, gold_probability = self._compute(todo)
            for i, code in enumerate(missing):
                self._memo[code] = (correct[i], gold_probability[i])
        return codes

    def _compute(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(correct[S, n], gold_probability[S, n])``. Correct means the gold label is the
        fused top-1: above 0, no label higher, no earlier label equal (the tie rule).

        Scores are compared as the integers they are rounded to, each extended by the
        label's position (``key = score * k + (k - 1 - label)``), so that the tie rule is
        built in and "gold is the top-1" is one comparison with the largest key."""
        n, _, k = self.contrib.shape
        s = masks.shape[0]
        correct = np.empty((s, n), dtype=bool)
        gold_probability = np.empty((s, n))
        later = (k - 1 - np.arange(k, dtype=np.float64))[None, :, None]
        for rows, block in self._blocks(s):
            r = block.shape[2]
            score = self._fuse_block(masks, block, rounded=False)  # [S, k, r]
            at_gold = (self.gold[rows] * r + np.arange(r))[None, :] + (np.arange(s) * (k * r))[:, None]  # [S, r]
            gold_score = score.ravel()[at_gold]
            total = score.sum(axis=1)
            gold_probability[:, rows] = np.where(total > 0, gold_score / np.where(total > 0, total, 1.0), 0.0)
            key = score
            key *= k
            key += later
            correct[:, rows] = (key.ravel()[at_gold] >= key.max(axis=1)) & (gold_score > 0)
        return correct, gold_probability

    def values(self, masks: np.ndarray, value: str = "correct") -> np.ndarray:
        """``[n, S]`` one coalition value (see :meth:`value_table`)."""
        if value not in ("correct", "gold_probability"):
            raise ValueError(f"unknown coalition value '{value}': use 'correct' or 'gold_probability'")
        return self.value_table(masks)[value]

    def full_mask(self) -> np.ndarray:
        return np.ones((1, self.n_agents), dtype=np.int8)

    def fused_top(self) -> np.ndarray:
        """``[n]`` fused top-1 of all agents together (the paper's ``y_hat``): ties to the
        earlier label, -1 when nothing scored above 0 (as :func:`modsab.core.fusion.top_label`).
        Computed once (or given to :meth:`from_rule` by a caller that has it)."""
        if "fused_top" not in self._memo:
            self._memo["fused_top"] = self._fused_top()
        return self._memo["fused_top"]

    def _fused_top(self) -> np.ndarray:
        out = np.empty(self.contrib.shape[0], dtype=np.int64)
        for rows, block in self._blocks(1):
            scores = self._fuse_block(self.full_mask(), block)[0]  # [k, r]
            best = np.zeros(scores.shape[1], dtype=np.int64)
            top = scores[0].copy()
            for label in range(1, scores.shape[0]):  # a loop over labels, vectorised over instances
                better = scores[label] > top
                best[better] = label
                np.maximum(top, scores[label], out=top)
            out[rows] = np.where(top > 0, best, -1)
        return out


class Attribution:
    """Base of the contribution methods: ``attribute`` returns ``[n, m]`` floats."""

    name = "attribution"

    def attribute(self, coalitions: Coalitions) -> np.ndarray:
        raise NotImplementedError

    def saboteurs(self, coalitions: Coalitions) -> np.ndarray:
        """``[n, m]`` True where the method blames agent m for a wrong fused answer."""
        return self.attribute(coalitions) < 0


@attributions.register("paper", order=0)
class PaperRule(Attribution):
    """The paper's correlational audit (METHOD.md step 4): +1 contributor (``y_m = y*``),
    -1 successful saboteur (``c_m >= tau``, ``y_m != y*``, ``y_hat = y_m``), else 0."""

    name = "paper"

    def attribute(self, coalitions: Coalitions) -> np.ndarray:
        c = coalitions
        role = audit.roles(c.top, c.confidence, c.gold, c.fused_top(), tau=c.tau)
        return (role == audit.Role.CONTRIBUTOR).astype(np.float64) - (role == audit.Role.SUCCESSFUL_SABOTAGE)
