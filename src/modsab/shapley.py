"""Exact Shapley shares of each fused agent, over all ``2^M`` coalitions.

For a coalition value ``v(S)`` (the fused top-1 is correct, or the fused probability of
the gold label, fusing only the agents in S), agent m's Shapley value is

    phi_m = sum_{S not containing m} |S|! (M - |S| - 1)! / M! * (v(S + m) - v(S))

(Shapley 1953; Lundberg & Lee 2017 for attribution). With the ``[n, 2^M]`` values of
all coalitions in hand it is one product with a fixed ``[2^M, M]`` coefficient matrix,
and the values sum to ``v(all) - v(empty)`` (efficiency). ``v(empty) = 0`` for both
values here. Exact up to M = 10 agents (1024 fusions per instance, batched).
"""

from __future__ import annotations

from math import factorial

import numpy as np

from modsab import metrics
from modsab.attribution import Attribution, Coalitions

MAX_AGENTS = 10
VALUES = ("correct", "gold_probability")


def subset_masks(n_agents: int) -> np.ndarray:
    """``[2^M, M]`` 0/1 membership of every coalition; row s holds the bits of s."""
    if n_agents > MAX_AGENTS:
        raise ValueError(f"exact Shapley values over {n_agents} agents need 2^{n_agents} fusions; at most {MAX_AGENTS}")
    codes = np.arange(1 << n_agents)
    return ((codes[:, None] >> np.arange(n_agents)[None, :]) & 1).astype(np.int8)


def shapley_matrix(n_agents: int) -> np.ndarray:
    """``[2^M, M]`` coefficients A with ``phi = v @ A`` for values ``v[n, 2^M]``."""
    masks = subset_masks(n_agents)
    size = masks.sum(axis=1)
    total = factorial(n_agents)
    with_m = np.array([factorial(s - 1) * factorial(n_agents - s) / total if s else 0.0 for s in size])
    without_m = np.array([factorial(s) * factorial(n_agents - s - 1) / total if s < n_agents else 0.0 for s in size])
    return np.where(masks == 1, with_m[:, None], -without_m[:, None])


class Shapley(Attribution):
    """Exact Shapley value of each agent for ``value`` (``correct`` or ``gold_probability``).

    As a sabotage detector it flags agent m on an instance the fusion gets wrong when
    ``phi_m < 0``: over all orders of adding agents, m lowered the value on average."""

    name = "shapley"

    def __init__(self, value: str = "correct") -> None:
        if value not in VALUES:
            raise ValueError(f"unknown Shapley value '{value}': use one of {', '.join(VALUES)}")
        self.value = value

    def attribute(self, coalitions: Coalitions) -> np.ndarray:
        return coalitions.values(subset_masks(coalitions.n_agents), self.value) @ shapley_matrix(coalitions.n_agents)

    def saboteurs(self, coalitions: Coalitions) -> np.ndarray:
        phi = self.attribute(coalitions) if self.value == "correct" else Shapley("correct").attribute(coalitions)
        wrong = phi.sum(axis=1) < 0.5  # efficiency: the sum is correct(all) - 0
        return wrong[:, None] & (phi < -1e-12)


def shapley_report(
    coalitions: Coalitions,
    *,
    groups: dict[str, np.ndarray] | None = None,
    resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
) -> dict:
    """The ``shapley`` JSON section: mean Shapley value per agent for each value, overall
    and per group of instances (datasets), each with a bootstrap interval."""
    table = coalitions.value_table(subset_masks(coalitions.n_agents))
    matrix = shapley_matrix(coalitions.n_agents)
    phis = {value: table[value] @ matrix for value in VALUES}
    groups = {"all": np.arange(len(coalitions.gold))} | (groups or {})
    out: dict = {"values": list(VALUES), "groups": {}}
    for group, rows in groups.items():
        entry: dict = {"n_instances": int(np.size(rows)), "agents": {}}
        for j, name in enumerate(coalitions.agents):
            entry["agents"][name] = {}
            for value, phi in phis.items():
                mean, interval = metrics.mean_interval(phi[rows, j], resamples=resamples, seed=seed, level=level)
                entry["agents"][name][value] = {"mean": mean, "ci": interval}
        for value, phi in phis.items():
            entry[f"total_{value}"] = float(phi[rows].sum(axis=1).mean()) if np.size(rows) else None
        out["groups"][group] = entry
    return out
