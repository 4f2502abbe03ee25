"""How the paper's rates move with the confidence threshold ``tau``.

For each ``tau`` on a grid (default 0.50, 0.55, ..., 0.95): each fused agent's potential
and successful sabotage rate (over the instances it answered) and its share of all
fused agents' successful sabotage, with bootstrap intervals; and between neighbouring
``tau`` values, how many (instance, agent) pairs change role and on how many instances
any role changes. The fused answer does not depend on ``tau``; only the audit does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab import audit, metrics

DEFAULT_GRID = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


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
    answered = (top >= 0).astype(np.int64)
    points, previous = [], None
    for tau in grid:
        role = audit.roles(top, confidence, gold, fused_top, tau=tau)
        potential = role >= audit.Role.POTENTIAL_SABOTAGE
        successful = role == audit.Role.SUCCESSFUL_SABOTAGE
        columns = {"all_successful": successful.sum(axis=1)}
        ratios = {}
        for j, name in enumerate(agents):
            columns[f"{name}.answered"] = answered[:, j]
            columns[f"{name}.potential"] = potential[:, j].astype(np.int64)
            columns[f"{name}.successful"] = successful[:, j].astype(np.int64)
            ratios[f"{name}.potential_sabotage_rate"] = (f"{name}.potential", f"{name}.answered")
            ratios[f"{name}.successful_sabotage_rate"] = (f"{name}.successful", f"{name}.answered")
            ratios[f"{name}.successful_sabotage_share"] = (f"{name}.successful", "all_successful")
        point, ci = metrics.ratio_intervals(columns, ratios, resamples=resamples, seed=seed, level=level)
        entry: dict = {"tau": float(tau), "agents": {}}
        for name in agents:
            keys = ("potential_sabotage_rate", "successful_sabotage_rate", "successful_sabotage_share")
            entry["agents"][name] = {key: point[f"{name}.{key}"] for key in keys}
            entry["agents"][name]["ci"] = {key: ci.get(f"{name}.{key}", [None, None]) for key in keys}
        if previous is not None:
            changed = role != previous
            entry["changed_from_previous"] = {
                "pairs": int(changed.sum()),
                "instances": int(changed.any(axis=1).sum()),
                "per_agent": {name: int(changed[:, j].sum()) for j, name in enumerate(agents)},
            }
        previous = role
        points.append(entry)
    return {"grid": [float(t) for t in grid], "points": points}
