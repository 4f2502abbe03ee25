"""Fusion strategies side by side, including rules built to resist a saboteur.

Every strategy is a :class:`~modsab.core.fusion.FusionRule`, so the audit, the counterfactual
test and the Shapley shares work on each alike. Beside the paper's two rules:

- ``recalibrated-temperature`` / ``recalibrated-isotonic``: uniform fusion of
  cross-fitted recalibrated confidences (:mod:`modsab.diagnostics.calibration`).
- ``learned``: logistic stacking. For every (instance, label), the agents' scores for
  that label are the features and "this label is gold" the target; the coefficients,
  clipped at 0, are per-agent weights of a linear fusion (so it stays a fusion rule).
  Cross-fitted: each fold is fused with weights learned on the other folds (at most
  ``max_fit`` training instances per fold, drawn with the seed).
- ``cap`` (sabotage-resistant): no agent may count for more than the mean top
  confidence of the other agents on that instance; a lone confident voice can no longer
  outshout several unsure ones.
- ``agreement`` (sabotage-resistant): a confident answer (``c >= tau``) whose top label no
  other fused agent names at all is down-weighted to ``lone_weight``: a high-confidence
  override needs a second opinion.
- ``reliability`` (sabotage-resistant): each agent weighted by its skill above chance,
  ``(acc - 1/K) / (1 - 1/K)`` clipped at 0, measured on the other folds (held out).

:func:`compare` reports fused top-1..top-k, the share of instances with a successful
saboteur (paper's rule) and with a causal saboteur (leave-one-out), each with a
bootstrap interval, and the paired bootstrap interval of each figure's difference to
uniform (both rules evaluated on the same resampled instances).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab.core import audit, cache, fusion
from modsab.stats import metrics
from modsab.diagnostics.calibration import Recalibrated, set_folds
from modsab.contract.errors import InputError
from modsab.core.fusion import FusionRule, QualityWeighted
from modsab.contract.predictions import PredictionSet


class _CrossFitted(FusionRule):
    """A rule whose weights are learned on the other folds of each instance."""

    def __init__(self, *, n_folds: int = 5, seed: int | None = 0) -> None:
        self.n_folds, self.seed = n_folds, seed

    def learn(self, pset: PredictionSet, agents: list[int], train: np.ndarray) -> np.ndarray:
        """``[len(agents)]`` weights learned on the instances where ``train`` is True."""
        raise NotImplementedError

    def fold_weights(self, pset: PredictionSet, agents: list[int], fold: np.ndarray) -> np.ndarray:
        """``[n_folds, len(agents)]``: row f learned on every fold but f."""
        return np.stack([self.learn(pset, agents, fold != f) for f in range(self.n_folds)])

    def weights(self, pset: PredictionSet, agents: Sequence[int]) -> np.ndarray:
        agents = list(agents)
        fold = set_folds(pset, self.n_folds, self.seed)
        return self.fold_weights(pset, agents, fold)[fold]


class LearnedWeights(_CrossFitted):
    """Logistic stacking on agent scores, coefficients clipped at 0 (see the module docstring)."""

    name = "learned"

    def __init__(self, *, n_folds: int = 5, seed: int | None = 0, max_fit: int = 10_000) -> None:
        super().__init__(n_folds=n_folds, seed=seed)
        self.max_fit = max_fit

    def learn(self, pset: PredictionSet, agents: list[int], train: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        rows = np.flatnonzero(train)
        if rows.size > self.max_fit:
            rows = np.sort(np.random.default_rng(self.seed).choice(rows, self.max_fit, replace=False))
        k = len(pset.labels)
        features = pset.scores[rows][:, agents, :].transpose(0, 2, 1).reshape(-1, len(agents))
        target = (np.arange(k)[None, :] == pset.gold[rows, None]).ravel()
        if target.all() or not target.any():
            return np.ones(len(agents))
        model = LogisticRegression(C=1.0, max_iter=200).fit(features, target)
        coef = np.clip(model.coef_[0], 0, None)
        return coef if coef.sum() > 0 else np.ones(len(agents))


class ReliabilityWeighted(_CrossFitted):
    """Weight = held-out top-1 skill above chance, ``(acc - 1/K) / (1 - 1/K)``, at least 0."""

    name = "reliability"

    def learn(self, pset: PredictionSet, agents: list[int], train: np.ndarray) -> np.ndarray:
        top, _ = cache.agent_top(pset, agents)
        return self._skill(pset, (top[train] >= 0).sum(axis=0), (top[train] == pset.gold[train, None]).sum(axis=0))

    def fold_weights(self, pset: PredictionSet, agents: list[int], fold: np.ndarray) -> np.ndarray:
        """Per-fold tallies once, then each fold's training counts are the total minus its own."""
        top, _ = cache.agent_top(pset, agents)
        tally = np.stack(
            [
                [np.bincount(fold, weights=column, minlength=self.n_folds) for column in (top >= 0).T],
                [np.bincount(fold, weights=column, minlength=self.n_folds) for column in (top == pset.gold[:, None]).T],
            ]
        )  # [2, m, folds]
        train = tally.sum(axis=2, keepdims=True) - tally
        return np.stack([self._skill(pset, train[0, :, f], train[1, :, f]) for f in range(self.n_folds)])

    @staticmethod
    def _skill(pset: PredictionSet, answered: np.ndarray, right: np.ndarray) -> np.ndarray:
        if len(pset.labels) < 2:  # one label: no skill above chance to measure
            return np.ones(len(answered))
        accuracy = right / np.maximum(answered, 1)
        chance = 1 / len(pset.labels)
        skill = np.clip((accuracy - chance) / (1 - chance), 0, None)
        return skill if skill.sum() > 0 else np.ones(len(answered))


class CappedInfluence(FusionRule):
    """No agent counts for more than the mean top confidence of the other answering agents."""

    name = "cap"

    def scores(self, pset: PredictionSet, agents: Sequence[int]) -> np.ndarray:
        return self.block_scores(pset, agents, slice(None))

    def block_scores(self, pset: PredictionSet, agents: Sequence[int], rows: slice) -> np.ndarray:
        scores = FusionRule().block_scores(pset, agents, rows)
        top = scores.max(axis=2)
        answered = (top > 0).sum(axis=1, keepdims=True)
        others = np.maximum(answered - (top > 0), 1)
        cap = np.where(answered > 1, (top.sum(axis=1, keepdims=True) - top) / others, top)
        return np.minimum(scores, cap[:, :, None])


class AgreementOverride(FusionRule):
    """A confident answer whose top label no other fused agent names counts ``lone_weight``."""

    name = "agreement"

    def __init__(self, tau: float = 0.70, lone_weight: float = 0.25) -> None:
        self.tau, self.lone_weight = tau, lone_weight

    def weights(self, pset: PredictionSet, agents: Sequence[int]) -> np.ndarray:
        agents = list(agents)
        top, confidence = cache.agent_top(pset, agents)
        k = len(pset.labels)
        every = agents == list(range(pset.candidate.shape[1]))
        named = (pset.candidate if every else pset.candidate[:, agents, :]).reshape(pset.n_instances, -1)
        safe_top = np.maximum(top, 0)
        # how many fused agents name each agent's top label (itself included when it answered)
        support = sum(np.take_along_axis(named, i * k + safe_top, axis=1).astype(np.int64) for i in range(len(agents)))
        support -= top >= 0
        confident = np.nan_to_num(confidence, nan=0) >= self.tau - audit.TAU_TOLERANCE
        lone = confident & (support < 1) & (top >= 0)
        return np.where(lone, self.lone_weight, 1.0)


def default_strategies(*, tau: float = 0.70, n_folds: int = 5, seed: int | None = 0) -> list[FusionRule]:
    """The strategies ``modsab diagnose --fusion-compare`` puts side by side (uniform first)."""
    return [
        FusionRule(),
        QualityWeighted(),
        Recalibrated("temperature", n_folds=n_folds, seed=seed),
        Recalibrated("isotonic", n_folds=n_folds, seed=seed),
        LearnedWeights(n_folds=n_folds, seed=seed),
        CappedInfluence(),
        AgreementOverride(tau=tau),
        ReliabilityWeighted(n_folds=n_folds, seed=seed),
    ]


def _label_major(pset: PredictionSet, agents: list[int]) -> np.ndarray:
    """``[agents, labels, n]`` copy of the answers, remembered per set (copied in blocks of
    rows, each transposed in cache)."""

    def compute() -> np.ndarray:
        n, _, k = pset.scores.shape
        out = np.empty((len(agents), k, n))
        every = agents == list(range(pset.scores.shape[1]))
        for start in range(0, n, BLOCK_ROWS):
            rows = slice(start, min(n, start + BLOCK_ROWS))
            block = pset.scores[rows] if every else pset.scores[rows][:, agents]
            out[:, :, rows] = block.transpose(1, 2, 0)
        return out

    return cache.remember(pset, ("label_major", tuple(agents)), compute)


#: Rows fused at once by :func:`outcomes`: small enough that a block's arrays stay in cache.
BLOCK_ROWS = 1 << 13


def outcomes(
    pset: PredictionSet,
    rule: FusionRule,
    agents: Sequence[int],
    *,
    tau: float = 0.70,
    k: int = 5,
    agent_top: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``[n]`` small code of what ``rule`` does on each instance: ``min(gold rank, k)``
    (``rank < j`` is a top-j hit), ``+ (k + 1)`` when some agent is a successful saboteur
    (the paper's rule), ``+ 2 (k + 1)`` when some agent is a causal saboteur (the fused
    top-1 is wrong with all agents and right without that one).

    One pass over the set in blocks of :data:`BLOCK_ROWS` instances, label-major
    (``[labels, rows]``) so that every reduction over labels is an element-wise one.
    Each block's weighted answers are summed once and every leave-one-out fusion is that
    sum minus one agent's share. Fused scores are compared as the integers
    ``rint(s * 10^TIE_DECIMALS)`` (what :func:`~modsab.core.fusion.fuse` rounds to), each
    extended by the label's position so that equal scores rank the earlier label first:
    then "gold is the top-1" is one comparison with the largest key."""
    agents = list(agents)
    top, confidence = agent_top or cache.agent_top(pset, agents)
    confident = confidence >= tau - audit.TAU_TOLERANCE  # NaN (abstained) is never confident
    weights = rule.weights(pset, agents)
    n, n_labels, m = pset.n_instances, len(pset.labels), len(agents)
    scale = 10.0**fusion.TIE_DECIMALS
    later = (n_labels - 1 - np.arange(n_labels, dtype=np.float64))[:, None]  # tie-break: earlier label wins

    def keys(raw: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``rint(raw * 10^d) * k + (k - 1 - label)``: a score above 0 is a key >= k."""
        np.multiply(raw, scale, out=out)
        np.rint(out, out=out)
        out *= n_labels
        out += later
        return out

    # rules that fuse the answers as given read them label-major, copied once per set for all such rules
    label_major = None if rule.transforms_answers else _label_major(pset, agents)
    out = np.empty(n, dtype=np.int16)
    for start in range(0, n, BLOCK_ROWS):
        rows = slice(start, min(n, start + BLOCK_ROWS))
        gold = pset.gold[rows]
        b = gold.size
        at_gold = gold * b + np.arange(b)  # flat index of (gold label, row) in a [labels, rows] array
        contrib = np.empty((m, n_labels, b))
        answers = label_major[:, :, rows] if label_major is not None else rule.block_scores(pset, agents, rows)
        if label_major is None:
            answers = answers.transpose(1, 2, 0)
        np.multiply(answers, weights[rows].T[:, None, :], out=contrib)
        raw = np.add.reduce(contrib, axis=0)
        key = keys(raw, np.empty_like(raw))
        best = key.max(axis=0)
        gold_key = key.ravel()[at_gold]
        rank = np.where(gold_key >= n_labels, (key > gold_key).sum(axis=0), n_labels)
        block_top, block_confident, row = top[rows], confident[rows], np.arange(b)
        successful = np.zeros(b, dtype=bool)
        causal = np.zeros(b, dtype=bool)
        without = np.empty_like(raw)
        for j in range(m):
            top_j = block_top[:, j]
            followed = key.ravel()[np.maximum(top_j, 0) * b + row] == best  # the fusion picked j's label
            successful |= followed & block_confident[:, j] & (top_j >= 0) & (top_j != gold)
            np.subtract(raw, contrib[j], out=without)
            key_j = keys(without, without)
            gold_j = key_j.ravel()[at_gold]
            causal |= (gold_j >= key_j.max(axis=0)) & (gold_j >= n_labels)
        successful &= best >= n_labels  # a fused answer exists
        causal &= rank > 0
        out[rows] = np.minimum(rank, k) + (k + 1) * (successful + 2 * causal)
    return out


def compare(
    pset: PredictionSet,
    agents: Sequence[int],
    *,
    strategies: Sequence[FusionRule] | None = None,
    tau: float = 0.70,
    k: int = 5,
    n_folds: int = 5,
    resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
) -> dict:
    """The ``fusion_compare`` JSON section (see the module docstring). Rates are over all
    instances; ``diff`` is the strategy minus uniform, with a paired interval."""
    agents = list(agents)
    strategies = list(strategies or default_strategies(tau=tau, n_folds=n_folds, seed=seed))
    k = min(k, len(pset.labels))
    figures = [f"top{j}" for j in range(1, k + 1)] + ["successful_sabotage", "causal_sabotage"]
    width = 4 * (k + 1)  # distinct outcome codes
    code = np.arange(width)
    indicator = np.column_stack(  # [code, figure] 0/1
        [(code % (k + 1)) < j for j in range(1, k + 1)] + [(code // (k + 1)) % 2 == 1, code // (2 * (k + 1)) == 1]
    ).astype(np.float64)
    agent_top = cache.agent_top(pset, agents)
    codes, kept, skipped = [], [], {}
    for i, rule in enumerate(strategies):
        try:
            codes.append(outcomes(pset, rule, agents, tau=tau, k=k, agent_top=agent_top))
        except InputError as error:  # e.g. quality weighting without quality scores: leave that rule out
            if i == 0:
                raise
            skipped[rule.name] = str(error)
            continue
        kept.append(rule)
    strategies = kept
    base = strategies[0].name
    tail = (1 - level) / 2 * 100
    point, ci = {}, {}
    for rule, own in zip(strategies, codes, strict=True):
        # each strategy resamples jointly with the baseline only: paired, over <= width^2 cells
        tally = np.bincount(own.astype(np.int64) * width + codes[0], minlength=width * width)
        cells = np.flatnonzero(tally)
        counts = tally[cells]
        mine, theirs = indicator[cells // width], indicator[cells % width]
        total = counts.sum()
        for f, figure in enumerate(figures):
            point[f"{rule.name}.{figure}"] = float(counts @ mine[:, f]) / total
            point[f"{rule.name}.diff.{figure}"] = float(counts @ (mine[:, f] - theirs[:, f])) / total
        if not resamples:
            continue
        draws = metrics.resample_counts(counts, resamples=resamples, seed=seed).astype(np.float64)
        rates, base_rates = draws @ mine / total, draws @ theirs / total
        bounds = np.percentile(rates, [tail, 100 - tail], axis=0)
        diff_bounds = np.percentile(rates - base_rates, [tail, 100 - tail], axis=0)
        for f, figure in enumerate(figures):
            ci[f"{rule.name}.{figure}"] = [float(bounds[0, f]), float(bounds[1, f])]
            if rule.name != base:
                ci[f"{rule.name}.diff.{figure}"] = [float(diff_bounds[0, f]), float(diff_bounds[1, f])]
    table = {}
    for rule in strategies:
        entry = {figure: point[f"{rule.name}.{figure}"] for figure in figures}
        entry["ci"] = {figure: ci.get(f"{rule.name}.{figure}", [None, None]) for figure in figures}
        if rule.name != base:
            entry["diff"] = {figure: point[f"{rule.name}.diff.{figure}"] for figure in figures}
            entry["diff_ci"] = {figure: ci.get(f"{rule.name}.diff.{figure}", [None, None]) for figure in figures}
        table[rule.name] = entry
    return {
        "baseline": base,
        "figures": figures,
        "n_instances": pset.n_instances,
        "n_folds": n_folds,
        "strategies": table,
        "skipped": skipped,
    }
