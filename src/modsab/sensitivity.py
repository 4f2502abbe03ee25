"""How the paper's rates move with the confidence threshold ``tau``.

For each ``tau`` on a grid (default 0.50, 0.55, ..., 0.95): each fused agent's potential
and successful sabotage rate (over the instances it answered) and its share of all
fused agents' successful sabotage, with bootstrap intervals; and between neighbouring
``tau`` values, how many (instance, agent) pairs change role and on how many instances
any role changes. The fused answer does not depend on ``tau``; only the audit does.

An agent's role at every ``tau`` follows from one small state: abstained, right, or
wrong with the number of grid values its confidence reaches and whether the fusion
followed it. Instances are counted once by their joint state over agents, and every
``tau`` (and every bootstrap resample, shared by all ``tau``) is read off those counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab import audit, metrics

DEFAULT_GRID = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _states(top, confidence, gold, fused_top, grid) -> np.ndarray:
    """``[n, m]`` state: 0 abstained, 1 right, ``2 + 2 * level + followed`` when wrong, with
    ``level`` the number of grid values ``tau`` such that ``confidence >= tau``."""
    thresholds = np.asarray(grid, dtype=np.float64) - audit.TAU_TOLERANCE
    level = np.searchsorted(np.sort(thresholds), np.nan_to_num(confidence, nan=-1.0), side="right")
    wrong = 2 + 2 * level + (top == fused_top[:, None])
    return np.where(top < 0, 0, np.where(top == gold[:, None], 1, wrong))


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
    states, counts = metrics.row_patterns(_states(top, confidence, gold, fused_top, grid))
    answered = states > 0
    reached = np.where(states >= 2, (states - 2) // 2, -1)  # grid values reached (wrong answers)
    followed = (states >= 2) & ((states - 2) % 2 == 1)
    m = len(agents)
    blocks, roles = [], []
    for t in range(len(grid)):
        potential = reached > t
        successful = potential & followed
        blocks.append(np.column_stack([answered, potential, successful, successful.sum(axis=1, keepdims=True)]))
        role = np.where(answered, np.where(states == 1, 1, 2), 0) + potential + successful  # 0..4 like audit.Role
        roles.append(role)
    indicators = np.hstack(blocks).astype(np.int64)  # per tau: answered[m], potential[m], successful[m], total
    width = 3 * m + 1
    sums = counts @ indicators
    draws = metrics.bootstrap_counts(counts, indicators, resamples=resamples, seed=seed) if resamples else None

    def figures(values: np.ndarray, t: int) -> dict[str, np.ndarray]:
        base = t * width
        out = {}
        for j, name in enumerate(agents):
            answered_j, potential_j, successful_j = (values[..., base + i * m + j] for i in range(3))
            out[f"{name}.potential_sabotage_rate"] = metrics._ratio(potential_j, answered_j)
            out[f"{name}.successful_sabotage_rate"] = metrics._ratio(successful_j, answered_j)
            out[f"{name}.successful_sabotage_share"] = metrics._ratio(successful_j, values[..., base + 3 * m])
        return out

    keys = ("potential_sabotage_rate", "successful_sabotage_rate", "successful_sabotage_share")
    points = []
    for t, tau in enumerate(grid):
        point = figures(sums.astype(np.float64), t)
        ci = metrics.percentile_intervals(figures(draws, t), level=level) if draws is not None else {}
        entry: dict = {"tau": tau, "agents": {}}
        for name in agents:
            entry["agents"][name] = {key: metrics._nan_to_none(float(point[f"{name}.{key}"])) for key in keys}
            entry["agents"][name]["ci"] = {key: ci.get(f"{name}.{key}", [None, None]) for key in keys}
        if t:
            changed = roles[t] != roles[t - 1]  # [patterns, m]
            entry["changed_from_previous"] = {
                "pairs": int(counts @ changed.sum(axis=1)),
                "instances": int(counts @ changed.any(axis=1)),
                "per_agent": {name: int(counts @ changed[:, j]) for j, name in enumerate(agents)},
            }
        points.append(entry)
    return {"grid": grid, "points": points}
