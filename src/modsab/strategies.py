"""Fusion strategies side by side, including rules built to resist a saboteur.

Every strategy is a :class:`~modsab.fusion.FusionRule`, so the audit, the counterfactual
test and the Shapley shares work on each alike. Beside the paper's two rules:

- ``recalibrated-temperature`` / ``recalibrated-isotonic``: uniform fusion of
  cross-fitted recalibrated confidences (:mod:`modsab.calibration`).
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

from modsab import audit, cache, fusion, metrics
from modsab.attribution import Coalitions
from modsab.calibration import Recalibrated, folds
from modsab.counterfactual import LeaveOneOut
from modsab.fusion import FusionRule, QualityWeighted
from modsab.predictions import PredictionSet


class _CrossFitted(FusionRule):
    """A rule whose weights are learned on the other folds of each instance."""

    def __init__(self, *, n_folds: int = 5, seed: int | None = 0) -> None:
        self.n_folds, self.seed = n_folds, seed

    def learn(self, pset: PredictionSet, agents: list[int], train: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def weights(self, pset: PredictionSet, agents: Sequence[int]) -> np.ndarray:
        agents = list(agents)
        fold = folds(pset.n_instances, self.n_folds, self.seed)
        out = np.ones((pset.n_instances, len(agents)))
        for f in range(self.n_folds):
            out[fold == f] = self.learn(pset, agents, fold != f)
        return out


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

    def weights(self, pset: PredictionSet, agents: Sequence[int]) -> np.ndarray:
        top, _ = cache.agent_top(pset, list(agents))
        self._answered, self._right = top >= 0, top == pset.gold[:, None]  # every fold reads its rows
        return super().weights(pset, agents)

    def learn(self, pset: PredictionSet, agents: list[int], train: np.ndarray) -> np.ndarray:
        answered = self._answered[train].sum(axis=0)
        accuracy = self._right[train].sum(axis=0) / np.maximum(answered, 1)
        chance = 1 / len(pset.labels)
        skill = np.clip((accuracy - chance) / (1 - chance), 0, None)
        return skill if skill.sum() > 0 else np.ones(len(agents))


class CappedInfluence(FusionRule):
    """No agent counts for more than the mean top confidence of the other answering agents."""

    name = "cap"

    def scores(self, pset: PredictionSet, agents: Sequence[int]) -> np.ndarray:
        scores = pset.scores[:, list(agents), :]
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
        named = pset.candidate[:, agents, :]  # [n, m, k]
        safe_top = np.maximum(top, 0)
        # how many fused agents name each agent's top label: [n, m(top owner), m(namer)]
        names_it = np.take_along_axis(named.transpose(0, 2, 1), safe_top[:, :, None], axis=1)
        support = names_it.sum(axis=2) - 1  # minus the agent itself
        lone = (np.nan_to_num(confidence, nan=0) >= self.tau - audit.TAU_TOLERANCE) & (support < 1) & (top >= 0)
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


def _indicators(pset: PredictionSet, rule: FusionRule, agents: list[int], tau: float, k: int, agent_top) -> dict:
    coalitions = Coalitions.from_rule(pset, rule, agents, tau=tau, agent_top=agent_top)
    rank = fusion.gold_rank(coalitions.fused(coalitions.full_mask())[0].T, pset.gold)
    role = audit.roles(coalitions.top, coalitions.confidence, pset.gold, coalitions.fused_top(), tau=tau)
    out = {f"top{j}": (rank < j).astype(np.int64) for j in range(1, k + 1)}
    out["successful_sabotage"] = (role == audit.Role.SUCCESSFUL_SABOTAGE).any(axis=1).astype(np.int64)
    out["causal_sabotage"] = (LeaveOneOut().attribute(coalitions) < 0).any(axis=1).astype(np.int64)
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
    columns: dict[str, np.ndarray] = {"n": np.ones(pset.n_instances, dtype=np.int64)}
    ratios: dict[str, tuple[str, str]] = {}
    figures: list[str] = []
    agent_top = cache.agent_top(pset, agents)
    for rule in strategies:
        for figure, values in _indicators(pset, rule, agents, tau, k, agent_top).items():
            columns[f"{rule.name}.{figure}"] = values
            ratios[f"{rule.name}.{figure}"] = (f"{rule.name}.{figure}", "n")
            if figure not in figures:
                figures.append(figure)
    base = strategies[0].name
    differences = {
        f"{rule.name}.diff.{figure}": (f"{rule.name}.{figure}", f"{base}.{figure}")
        for rule in strategies[1:]
        for figure in figures
    }
    # each strategy resamples jointly with the baseline only: paired, with few distinct patterns
    point, ci = {}, {}
    for rule in strategies:
        names = {rule.name, base}
        own = {key: pair for key, pair in ratios.items() if key.split(".")[0] in names}
        diffs = {key: pair for key, pair in differences.items() if key.split(".")[0] == rule.name}
        needed = {"n"} | {f"{name}.{figure}" for name in names for figure in figures}
        p, c = metrics.ratio_intervals(
            {name: columns[name] for name in needed},
            own,
            differences=diffs,
            resamples=resamples,
            seed=seed,
            level=level,
        )
        point |= p
        ci |= {key: value for key, value in c.items() if key.split(".")[0] == rule.name}
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
    }
