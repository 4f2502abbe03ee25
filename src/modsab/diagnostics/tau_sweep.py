"""How the paper's rates move with the confidence threshold ``tau``.

For each ``tau`` on a grid (default 0.50, 0.55, ..., 0.95): each fused agent's potential
and successful sabotage rate (over the instances it answered) and its share of all
fused agents' successful sabotage, with bootstrap intervals; and between neighbouring
``tau`` values, how many (instance, agent) pairs change role and on how many instances
any role changes. The fused answer does not depend on ``tau``; only the audit does.

An agent's role at every ``tau`` follows from one small state: abstained, right, or
wrong with the number of grid values its confidence reaches and whether the fusion
followed it. Instances are counted once by their joint state over agents (packed into
one integer per instance), and every ``tau`` is read off those counts. Each interval is
a marginal one, so each group of figures resamples only what it reads: an agent's two
rates (at every ``tau``) its own state, at most ``2 * len(grid) + 4`` patterns; the
shares at one ``tau`` the set of agents that were successful saboteurs there, at most
``2^m`` patterns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab.core import audit
from modsab.core.typed import Interval, Model, absent
from modsab.diagnostics._base import Diagnostic, bootstrap_options, fused_indices
from modsab.registry import diagnostics
from modsab.stats import metrics

DEFAULT_GRID = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))



# -- the section's typed model (the JSON it writes) ------------------------------

class TauIntervals(Model):
    potential_sabotage_rate: Interval
    successful_sabotage_rate: Interval
    successful_sabotage_share: Interval


class TauAgent(Model):
    """``tau_sweep.points[].agents.<a>``: the agent's rates (over answered) and share at one tau."""

    potential_sabotage_rate: float | None
    successful_sabotage_rate: float | None
    successful_sabotage_share: float | None
    ci: TauIntervals


class RoleChanges(Model):
    """``changed_from_previous``: (instance, agent) pairs and instances whose role changed
    since the previous tau, and pairs per agent."""

    pairs: int
    instances: int
    per_agent: dict[str, int]


class TauPoint(Model):
    """One tau of the sweep; ``changed_from_previous`` absent at the first."""

    tau: float
    agents: dict[str, TauAgent]
    changed_from_previous: RoleChanges | None = absent()


class TauSweepSection(Model):
    """``tau_sweep``: the audit at each tau of ``grid`` (ascending)."""

    grid: list[float]
    points: list[TauPoint]


def _states(top, confidence, gold, fused_top, grid) -> list[np.ndarray]:
    """Per agent, the ``[n]`` state: 0 abstained, 1 right, ``2 + 2 * level + followed`` when
    wrong, with ``level`` the number of grid values ``tau`` such that ``confidence >= tau``."""
    thresholds = np.sort(np.asarray(grid, dtype=np.float64) - audit.TAU_TOLERANCE)
    dtype = np.int8 if 2 * thresholds.size + 3 <= np.iinfo(np.int8).max else np.int32
    out = []
    for j in range(top.shape[1]):
        top_j, confidence_j = top[:, j], confidence[:, j]
        if thresholds.size and thresholds[0] <= -1.0:  # a missing confidence counts as -1
            confidence_j = np.nan_to_num(confidence_j, nan=-1.0)
        state = np.full(top_j.shape, 2, dtype=dtype)
        for threshold in thresholds:  # a few comparisons are cheaper than a search per instance
            state += 2 * (confidence_j >= threshold).astype(dtype)
        state += top_j == fused_top
        state[top_j == gold] = 1
        state[top_j < 0] = 0
        out.append(state)
    return out


def _distinct(flags: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(distinct rows as 0/1 floats, their summed counts)`` of a boolean ``[patterns, m]``."""
    m = flags.shape[1]
    if m <= 62:
        code = flags.astype(np.int64) @ (1 << np.arange(m, dtype=np.int64))
        present, inverse = np.unique(code, return_inverse=True)
        rows = (present[:, None] >> np.arange(m)[None, :]) & 1
    else:
        rows, inverse = np.unique(flags, axis=0, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=counts, minlength=len(rows))
    return rows.astype(np.float64), np.rint(summed).astype(np.int64)


def tau_sweep(
    top: np.ndarray,
    confidence: np.ndarray,
    gold: np.ndarray,
    fused_top: np.ndarray,
    agents: Sequence[str],
    *,
    grid: Sequence[float] = DEFAULT_GRID,
    resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
) -> dict:
    """The ``tau_sweep`` JSON section; arrays are those of the fused agents (``[n, m]``)."""
    grid = sorted(float(t) for t in grid)
    m, levels = len(agents), len(grid)
    span = 2 * levels + 4  # states 0 .. 2 * levels + 3
    states, counts = metrics.column_patterns(_states(top, confidence, gold, fused_top, grid), [span] * m)
    reached = np.where(states >= 2, (states - 2) // 2, -1)  # grid values reached (wrong answers)
    followed = (states >= 2) & ((states - 2) % 2 == 1)
    rng = np.random.default_rng(seed)
    keys = ("potential_sabotage_rate", "successful_sabotage_rate", "successful_sabotage_share")
    point = np.full((levels, m, 3), np.nan)  # [tau, agent, key]
    ci: list = [[[[None, None] for _ in keys] for _ in range(m)] for _ in range(levels)]

    # each agent's rates at every tau: counts of its own state, [answered, potential(tau)..., successful(tau)...]
    state = np.arange(span)
    potential = np.where(state >= 2, (state - 2) // 2, -1)[:, None] > np.arange(levels)[None, :]
    successful = potential & ((state >= 2) & ((state - 2) % 2 == 1))[:, None]
    table = np.column_stack([state > 0, potential, successful]).astype(np.float64)  # [span, 1 + 2 * levels]

    def rates(sums: np.ndarray) -> np.ndarray:
        return metrics._ratio(sums[..., 1:], sums[..., :1])  # [..., 2 * levels]: potential..., successful...

    for j in range(m):
        tally = np.rint(np.bincount(states[:, j], weights=counts, minlength=span)).astype(np.int64)
        cells = np.flatnonzero(tally)
        point[:, j, :2] = rates(tally[cells] @ table[cells]).reshape(2, levels).T
        if resamples:
            draws = metrics.draw_counts(tally[cells], resamples=resamples, rng=rng)
            intervals = metrics.percentile_columns(rates(draws @ table[cells]), level=level)
            for t in range(levels):
                ci[t][j][0], ci[t][j][1] = intervals[t], intervals[levels + t]

    # the shares at each tau: counts of the set of agents that were successful saboteurs there
    for t in range(levels):
        subsets, subset_counts = _distinct((reached > t) & followed, counts)  # [subsets, m]
        sums = subset_counts @ subsets
        point[t, :, 2] = metrics._ratio(sums, np.full(m, sums.sum()))
        if resamples:
            by_agent = metrics.draw_counts(subset_counts, resamples=resamples, rng=rng) @ subsets
            shares = metrics._ratio(by_agent, by_agent.sum(axis=1, keepdims=True))
            for j, interval in enumerate(metrics.percentile_columns(shares, level=level)):
                ci[t][j][2] = interval

    answered = states > 0
    points = []
    previous = None
    for t, tau in enumerate(grid):
        potential_t = reached > t
        role = np.where(answered, np.where(states == 1, 1, 2), 0) + potential_t + (potential_t & followed)  # audit.Role
        entry: dict = {"tau": tau, "agents": {}}
        for j, name in enumerate(agents):
            entry["agents"][name] = {key: metrics._nan_to_none(float(point[t, j, i])) for i, key in enumerate(keys)}
            entry["agents"][name]["ci"] = {key: ci[t][j][i] for i, key in enumerate(keys)}
        if previous is not None:
            changed = role != previous  # [patterns, m]
            entry["changed_from_previous"] = {
                "pairs": int(counts @ changed.sum(axis=1)),
                "instances": int(counts @ changed.any(axis=1)),
                "per_agent": {name: int(counts @ changed[:, j]) for j, name in enumerate(agents)},
            }
        previous = role
        points.append(entry)
    return {"grid": grid, "points": points}


def _section(d, *, folds=5) -> dict:
    agents = fused_indices(d)
    return tau_sweep(
        d.top[:, agents], d.confidence[:, agents], d.pset.gold, d.fused_top, d.fused_agents, **bootstrap_options(d)
    )


def _reference(d) -> dict:
    agents = fused_indices(d)
    return tau_sweep_reference(d.top[:, agents], d.confidence[:, agents], d.pset.gold, d.fused_top, d.fused_agents)


diagnostics.register("tau_sweep", order=5)(
    Diagnostic(section=TauSweepSection, help="Sabotage rates and role changes over tau 0.50-0.95.", compute=_section, reference=lambda d, folds=5: _reference(d))
)


def tau_sweep_reference(top, confidence, gold, fused_top, agents: Sequence[str], *, grid=DEFAULT_GRID) -> dict:
    """The point figures of :func:`tau_sweep`, plainly: the paper's roles
    (:func:`~modsab.core.audit.roles`) at every ``tau``, counted (no intervals)."""
    answered = top >= 0
    points, previous = [], None
    for tau in sorted(float(t) for t in grid):
        role = audit.roles(top, confidence, gold, fused_top, tau=tau)
        potential = role >= audit.Role.POTENTIAL_SABOTAGE
        successful = role == audit.Role.SUCCESSFUL_SABOTAGE
        total = successful.sum()
        entry: dict = {"tau": tau, "agents": {}}
        for j, name in enumerate(agents):
            n = answered[:, j].sum()
            entry["agents"][name] = {
                "potential_sabotage_rate": float(potential[:, j].sum() / n) if n else None,
                "successful_sabotage_rate": float(successful[:, j].sum() / n) if n else None,
                "successful_sabotage_share": float(successful[:, j].sum() / total) if total else None,
            }
        if previous is not None:
            changed = role != previous
            entry["changed_from_previous"] = {
                "pairs": int(changed.sum()),
                "instances": int(changed.any(axis=1).sum()),
                "per_agent": {name: int(changed[:, j].sum()) for j, name in enumerate(agents)},
            }
        previous = role
        points.append(entry)
    return {"grid": sorted(float(t) for t in grid), "points": points}
