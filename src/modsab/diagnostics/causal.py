"""Counterfactual (causal) sabotage: fuse again without an agent, or a pair of agents.

The paper's "successful sabotage" is correlational: agent m was confident, wrong, and
the fusion picked m's label, but m need not have *caused* it (METHOD.md, Limits). Here
agent m is a **causal saboteur** on an instance when the fused top-1 is wrong with m
and right without it, a **causal contributor** when right with m and wrong without it
(a leave-one-out counterfactual, as in feature ablation). A pair is **jointly causal**
when the answer is wrong with all agents and right without both, and **only jointly**
when, in addition, neither alone is a causal saboteur (for example two agents backing
the same wrong label: both successful saboteurs by the paper's rule, neither causal).

The report reads each coalition's ``[n]`` correctness row once and packs, per agent and
per pair, the few booleans behind its figures into one small integer per instance; the
figures and their resamples come from the (at most 16) distinct codes and their counts.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from modsab.core import audit, fusion
from modsab.core.typed import Interval, Model
from modsab.diagnostics._base import Diagnostic, bootstrap_options, coalitions, fused_indices
from modsab.diagnostics.attribution import Attribution, Coalitions
from modsab.registry import attributions, diagnostics
from modsab.stats import metrics

# -- the section's typed model (the JSON it writes) ------------------------------

class CausalDisagreement(Model):
    """Instances where the agent is a successful saboteur by the paper's rule, a causal one, or both."""

    both: int
    paper_only: int
    causal_only: int


class CausalAgent(Model):
    """``causal.agents.<a>``: rates over the instances the agent answered."""

    n: int
    causal_sabotage_rate: float | None
    causal_contribution_rate: float | None
    paper_successful_sabotage_rate: float | None
    causal_given_paper: float | None
    disagreement: CausalDisagreement


class CausalPair(Model):
    """``causal.pairs.<a+b>``: pairwise removal, counts and rates over all instances."""

    jointly_causal: int
    only_jointly: int
    jointly_causal_rate: float | None
    only_jointly_rate: float | None


class CausalSection(Model):
    """``causal``: leave-one-out (and leave-two-out) counterfactual sabotage. ``ci`` is keyed
    ``agents.<a>.<rate>`` and ``pairs.<a+b>.<rate>``; empty without bootstrap."""

    n_instances: int
    agents: dict[str, CausalAgent]
    pairs: dict[str, CausalPair]
    ci: dict[str, Interval]


def _without(n_agents: int, drop: list[tuple[int, ...]]) -> np.ndarray:
    masks = np.ones((len(drop), n_agents), dtype=np.int8)
    for row, agents in enumerate(drop):
        masks[row, list(agents)] = 0
    return masks


@attributions.register("leave-one-out", order=1)
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


def _effect_masks(n_agents: int) -> np.ndarray:
    """All agents, then each agent left out, then each pair left out (:func:`agent_pairs` order)."""
    singles = _without(n_agents, [(j,) for j in range(n_agents)])
    return np.vstack([np.ones((1, n_agents), dtype=np.int8), singles, _without(n_agents, agent_pairs(n_agents))])


def _pair_flags(correct: list[np.ndarray], n_agents: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per pair, ``(jointly_causal[n], only_jointly[n])`` from the rows of :func:`_effect_masks`."""
    wrong = ~correct[0]
    single = [wrong & row for row in correct[1 : n_agents + 1]]
    joint = [wrong & row for row in correct[n_agents + 1 :]]
    only = [joint[p] & ~single[a] & ~single[b] for p, (a, b) in enumerate(agent_pairs(n_agents))]
    return joint, only


def pair_effects(coalitions: Coalitions) -> tuple[np.ndarray, np.ndarray]:
    """``(jointly_causal[n, P], only_jointly[n, P])`` for :func:`agent_pairs` order."""
    m = coalitions.n_agents
    correct, _ = coalitions.rows(_effect_masks(m))
    joint, only = _pair_flags(correct, m)
    n = len(coalitions.gold)
    return tuple(np.column_stack(flags) if flags else np.zeros((n, 0), dtype=bool) for flags in (joint, only))


def _paper_successful(coalitions: Coalitions, fused_top: np.ndarray) -> np.ndarray:
    """``[n, m]`` successful saboteurs by the paper's rule (as :class:`PaperRule`, from
    :func:`modsab.core.audit.roles`): answered, wrong, ``confidence >= tau`` and followed."""
    top, confidence = coalitions.top, coalitions.confidence
    threshold = coalitions.tau - audit.TAU_TOLERANCE
    if threshold <= -1.0:  # a missing confidence counts as -1
        confidence = np.nan_to_num(confidence, nan=-1.0)
    return (top >= 0) & (top != coalitions.gold[:, None]) & (confidence >= threshold) & (top == fused_top[:, None])


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
    answered (as the paper's rates); pair rates over all instances. Each agent's and each
    pair's figures resample together (their own bootstrap, from one generator)."""
    m = coalitions.n_agents
    correct, _ = coalitions.rows(_effect_masks(m))
    right = correct[0]
    paper_rule = _paper_successful(coalitions, coalitions.fused_top())
    rng = np.random.default_rng(seed)
    ci: dict[str, list[float | None]] = {}
    agents = {}
    for j, name in enumerate(coalitions.agents):
        flags = [
            answered[:, j],
            ~right & correct[1 + j],  # causal saboteur: wrong with the agent, right without it
            right & ~correct[1 + j],  # causal contributor
            paper_rule[:, j],
        ]
        rows, counts = metrics.column_patterns(flags, [2] * len(flags))
        was_answered, causal, contribution, paper = rows.T
        both = causal & paper
        p, c = metrics.pattern_ratio_intervals(
            counts,
            {
                f"agents.{name}.causal_sabotage_rate": (causal, was_answered),
                f"agents.{name}.causal_contribution_rate": (contribution, was_answered),
                f"agents.{name}.paper_successful_sabotage_rate": (paper, was_answered),
                f"agents.{name}.causal_given_paper": (both, paper),
            },
            resamples=resamples,
            rng=rng,
            level=level,
        )
        ci |= c
        n_both = int(counts @ both)
        agents[name] = {
            "n": int(counts @ was_answered),
            **{key.rsplit(".", 1)[1]: value for key, value in p.items()},
            "disagreement": {
                "both": n_both,
                "paper_only": int(counts @ paper) - n_both,
                "causal_only": int(counts @ causal) - n_both,
            },
        }
    pairs = {}
    for (a, b), joint, only in zip(agent_pairs(m), *_pair_flags(correct, m), strict=True):
        name = f"{coalitions.agents[a]}+{coalitions.agents[b]}"
        rows, counts = metrics.column_patterns([joint, only], [2, 2])
        every = np.ones(len(counts), dtype=np.int64)
        p, c = metrics.pattern_ratio_intervals(
            counts,
            {
                f"pairs.{name}.jointly_causal_rate": (rows[:, 0], every),
                f"pairs.{name}.only_jointly_rate": (rows[:, 1], every),
            },
            resamples=resamples,
            rng=rng,
            level=level,
        )
        ci |= c
        pairs[name] = {
            "jointly_causal": int(counts @ rows[:, 0]),
            "only_jointly": int(counts @ rows[:, 1]),
            "jointly_causal_rate": p[f"pairs.{name}.jointly_causal_rate"],
            "only_jointly_rate": p[f"pairs.{name}.only_jointly_rate"],
        }
    return {"n_instances": len(coalitions.gold), "agents": agents, "pairs": pairs, "ci": ci}


def _section(d, *, folds=5) -> dict:
    agents = fused_indices(d)
    return causal_report(coalitions(d), answered=d.top[:, agents] >= 0, **bootstrap_options(d))


def _columns(d) -> dict[str, np.ndarray]:
    """``<agent>.causal``: ``saboteur``, ``contributor`` or empty, per fused agent."""
    c = coalitions(d)
    effect = LeaveOneOut().attribute(c)
    return {
        f"{agent}.causal": np.where(effect[:, j] < 0, "saboteur", np.where(effect[:, j] > 0, "contributor", "")).astype(
            object
        )
        for j, agent in enumerate(c.agents)
    }


def causal_reference(d, *, folds=5) -> dict:
    """The point figures of the ``causal`` section, plainly: the rule's fusion of all fused
    agents, of all but one and of all but a pair (:func:`~modsab.core.fusion.fuse`), "right"
    meaning gold is the fused top-1 (:func:`~modsab.core.fusion.gold_rank` 0), and the paper's
    successful saboteurs from :func:`~modsab.core.audit.roles` (no intervals)."""
    agents = fused_indices(d)
    names = d.fused_agents
    scores, weights = d.rule.scores(d.context, agents), d.rule.weights(d.context, agents)
    gold = d.pset.gold

    def right(keep: list[int]) -> np.ndarray:
        return fusion.gold_rank(fusion.fuse(scores[:, keep], weights[:, keep]), gold) == 0

    every = list(range(len(agents)))
    all_right = right(every)
    top, confidence = d.top[:, agents], d.confidence[:, agents]
    paper = audit.roles(top, confidence, gold, d.fused_top, tau=d.options.tau) == audit.Role.SUCCESSFUL_SABOTAGE

    def ratio(num, den) -> float | None:
        return float(num / den) if den else None

    out_agents, causal_of = {}, {}
    for j, name in enumerate(names):
        without = right([i for i in every if i != j])
        causal, contribution = ~all_right & without, all_right & ~without
        causal_of[j] = causal
        n, both = int((top[:, j] >= 0).sum()), int((causal & paper[:, j]).sum())
        out_agents[name] = {
            "n": n,
            "causal_sabotage_rate": ratio(causal.sum(), n),
            "causal_contribution_rate": ratio(contribution.sum(), n),
            "paper_successful_sabotage_rate": ratio(paper[:, j].sum(), n),
            "causal_given_paper": ratio(both, paper[:, j].sum()),
            "disagreement": {
                "both": both,
                "paper_only": int(paper[:, j].sum()) - both,
                "causal_only": int(causal.sum()) - both,
            },
        }
    pairs = {}
    for a, b in agent_pairs(len(agents)):
        joint = ~all_right & right([i for i in every if i not in (a, b)])
        only = joint & ~causal_of[a] & ~causal_of[b]
        pairs[f"{names[a]}+{names[b]}"] = {
            "jointly_causal": int(joint.sum()),
            "only_jointly": int(only.sum()),
            "jointly_causal_rate": ratio(joint.sum(), len(gold)),
            "only_jointly_rate": ratio(only.sum(), len(gold)),
        }
    return {"n_instances": len(gold), "agents": out_agents, "pairs": pairs}


diagnostics.register("causal", order=1)(
    Diagnostic(
        section=CausalSection,
        help="Counterfactual sabotage: fuse again without each agent and each pair.",
        compute=_section,
        columns=_columns,
        reference=causal_reference,
    )
)
