"""Counterfactual (causal) sabotage: fuse again without an agent, or a pair of agents.

The paper's "successful sabotage" is correlational: agent m was confident, wrong, and
the fusion picked m's label, but m need not have *caused* it (METHOD.md, Limits). Here
agent m is a **causal saboteur** on an instance when the fused top-1 is wrong with m
and right without it, a **causal contributor** when right with m and wrong without it
(a leave-one-out counterfactual, as in feature ablation). A pair is **jointly causal**
when the answer is wrong with all agents and right without both, and **only jointly**
when, in addition, neither alone is a causal saboteur (for example two agents backing
the same wrong label: both successful saboteurs by the paper's rule, neither causal).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from modsab import metrics
from modsab.attribution import Attribution, Coalitions, PaperRule


def _without(n_agents: int, drop: list[tuple[int, ...]]) -> np.ndarray:
    masks = np.ones((len(drop), n_agents), dtype=np.int8)
    for row, agents in enumerate(drop):
        masks[row, list(agents)] = 0
    return masks


class LeaveOneOut(Attribution):
    """``correct(all) - correct(all but m)``: -1 causal saboteur, +1 causal contributor."""

    name = "counterfactual"

    def attribute(self, coalitions: Coalitions) -> np.ndarray:
        m = coalitions.n_agents
        masks = np.vstack([coalitions.full_mask(), _without(m, [(j,) for j in range(m)])])
        values = coalitions.values(masks, "correct")
        return values[:, :1] - values[:, 1:]


def agent_pairs(n_agents: int) -> list[tuple[int, int]]:
    return list(combinations(range(n_agents), 2))


def pair_effects(coalitions: Coalitions) -> tuple[np.ndarray, np.ndarray]:
    """``(jointly_causal[n, P], only_jointly[n, P])`` for :func:`agent_pairs` order."""
    m = coalitions.n_agents
    pairs = agent_pairs(m)
    masks = np.vstack([coalitions.full_mask(), _without(m, [(j,) for j in range(m)]), _without(m, pairs)])
    values = coalitions.values(masks, "correct").astype(bool)
    wrong = ~values[:, 0]
    single = wrong[:, None] & values[:, 1 : m + 1]
    joint = wrong[:, None] & values[:, m + 1 :]
    first, second = (np.asarray([p[i] for p in pairs], dtype=np.int64) for i in (0, 1))
    only = joint & ~single[:, first] & ~single[:, second]
    return joint, only


def causal_report(
    coalitions: Coalitions,
    *,
    answered: np.ndarray,
    resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
) -> dict:
    """The ``causal`` JSON section: per-agent causal rates beside the paper's rule, how the
    two disagree, and pairwise removal. Agent rates are over the instances the agent
    answered (as the paper's rates); pair rates over all instances."""
    causal = LeaveOneOut().attribute(coalitions)
    paper = PaperRule().attribute(coalitions)
    joint, only = pair_effects(coalitions)
    columns: dict[str, np.ndarray] = {"n": np.ones(len(coalitions.gold), dtype=np.int64)}
    ratios: dict[str, tuple[str, str]] = {}
    disagreement: dict[str, dict[str, int]] = {}
    for j, name in enumerate(coalitions.agents):
        flags = {
            "answered": answered[:, j],
            "causal_sabotage": causal[:, j] < 0,
            "causal_contribution": causal[:, j] > 0,
            "paper_successful_sabotage": paper[:, j] < 0,
        }
        both = flags["causal_sabotage"] & flags["paper_successful_sabotage"]
        flags["both"] = both
        flags["paper_only"] = flags["paper_successful_sabotage"] & ~both
        flags["causal_only"] = flags["causal_sabotage"] & ~both
        for key, value in flags.items():
            columns[f"{name}.{key}"] = value.astype(np.int64)
        for key in ("causal_sabotage", "causal_contribution", "paper_successful_sabotage"):
            ratios[f"agents.{name}.{key}_rate"] = (f"{name}.{key}", f"{name}.answered")
        ratios[f"agents.{name}.causal_given_paper"] = (f"{name}.both", f"{name}.paper_successful_sabotage")
        disagreement[name] = {
            "both": int(both.sum()),
            "paper_only": int(flags["paper_only"].sum()),
            "causal_only": int(flags["causal_only"].sum()),
        }
    pair_names = [f"{coalitions.agents[a]}+{coalitions.agents[b]}" for a, b in agent_pairs(coalitions.n_agents)]
    for p, name in enumerate(pair_names):
        columns[f"{name}.joint"] = joint[:, p].astype(np.int64)
        columns[f"{name}.only"] = only[:, p].astype(np.int64)
        ratios[f"pairs.{name}.jointly_causal_rate"] = (f"{name}.joint", "n")
        ratios[f"pairs.{name}.only_jointly_rate"] = (f"{name}.only", "n")
    # each agent's and each pair's figures resample together (few distinct patterns each)
    point, ci = {}, {}
    for prefix in [*coalitions.agents, *pair_names]:
        own = {key: pair for key, pair in ratios.items() if pair[0].startswith(prefix + ".")}
        needed = {name for pair in own.values() for name in pair}
        p, c = metrics.ratio_intervals(
            {name: columns[name] for name in needed}, own, resamples=resamples, seed=seed, level=level
        )
        point |= p
        ci |= c
    agents = {
        name: {
            "n": int(answered[:, j].sum()),
            **{
                key: point[f"agents.{name}.{key}"]
                for key in (
                    "causal_sabotage_rate",
                    "causal_contribution_rate",
                    "paper_successful_sabotage_rate",
                    "causal_given_paper",
                )
            },
            "disagreement": disagreement[name],
        }
        for j, name in enumerate(coalitions.agents)
    }
    pairs = {
        name: {
            "jointly_causal": int(joint[:, p].sum()),
            "only_jointly": int(only[:, p].sum()),
            "jointly_causal_rate": point[f"pairs.{name}.jointly_causal_rate"],
            "only_jointly_rate": point[f"pairs.{name}.only_jointly_rate"],
        }
        for p, name in enumerate(pair_names)
    }
    return {"n_instances": len(coalitions.gold), "agents": agents, "pairs": pairs, "ci": ci}
