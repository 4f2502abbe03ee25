"""Exact Shapley shares of each fused agent, over all ``2^M`` coalitions.

For a coalition value ``v(S)`` (the fused top-1 is correct, or the fused probability of
the gold label, fusing only the agents in S), agent m's Shapley value is

    phi_m = sum_{S not containing m} |S|! (M - |S| - 1)! / M! * (v(S + m) - v(S))

(Shapley 1953; Lundberg & Lee 2017 for attribution). With the ``[n, 2^M]`` values of
all coalitions in hand it is one product with a fixed ``[2^M, M]`` coefficient matrix,
and the values sum to ``v(all) - v(empty)`` (efficiency). ``v(empty) = 0`` for both
values here. Exact up to M = 10 agents (1024 fusions per instance, batched).

The report needs only each agent's mean phi per group, with a bootstrap interval. For
``correct``, phi is a function of the instance's ``2^M`` coalition-correctness bits, so
each instance is one packed code (up to M = 6); ``M! * phi`` is an integer, so each
agent's resamples run over its few distinct exact values, counted from the codes. For
``gold_probability``, phi is computed once per instance and each agent is resampled over
a grid of :data:`GOLD_PROBABILITY_CELLS` values, the interval shifted by the grid's
rounding of the (exact) mean, as :func:`modsab.stats.metrics.mean_interval`. Each agent, value
and group is its own bootstrap (one generator for all). The coalition rows are read from
the fusions :class:`Coalitions` remembers (:meth:`Coalitions.rows`),
so no ``[n, 2^M]`` float table is built.
"""

from __future__ import annotations

from math import factorial

import numpy as np

from modsab.contract.errors import InputError
from modsab.core import fusion
from modsab.core.typed import Interval, Model
from modsab.diagnostics._base import Diagnostic, bootstrap_options, coalitions, fused_indices
from modsab.diagnostics.attribution import Attribution, Coalitions
from modsab.registry import attributions, diagnostics
from modsab.stats import metrics

MAX_AGENTS = 10
VALUES = ("correct", "gold_probability")
#: Up to this many agents the report packs the ``2^M`` correctness bits into one 64-bit code.
PACKED_MAX_AGENTS = 6
#: Grid cells per agent for resampling mean ``gold_probability`` Shapley values (rounding
#: to the grid changes a resampled mean's spread by under 0.02% on the 1M benchmark).
GOLD_PROBABILITY_CELLS = 128  # at most 2^15 (int16 cells)
#: Instances per block when combining coalition values into Shapley values.
BLOCK = 1 << 14



# -- the section's typed model (the JSON it writes) ------------------------------

class ShapleyMean(Model):
    """Mean Shapley value per instance, with its interval (null mean: no instance)."""

    mean: float | None
    ci: Interval


class ShapleyAgent(Model):
    """``shapley.groups.<g>.agents.<a>``: one mean per coalition value (``shapley.values``)."""

    correct: ShapleyMean
    gold_probability: ShapleyMean

    def value(self, name: str) -> ShapleyMean:
        """The mean for a name of ``shapley.values``."""
        return getattr(self, name)


class ShapleyGroup(Model):
    """``shapley.groups.<all or dataset>``; the agents' means sum to ``total_<value>``."""

    n_instances: int
    agents: dict[str, ShapleyAgent]
    total_correct: float | None
    total_gold_probability: float | None


class ShapleySection(Model):
    """``shapley``: exact Shapley value of each fused agent, per group of instances."""

    values: list[str]
    groups: dict[str, ShapleyGroup]


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


@attributions.register("shapley", order=2)
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
    n, m = len(coalitions.gold), coalitions.n_agents
    if m > PACKED_MAX_AGENTS:
        return _plain_report(coalitions, groups=groups, resamples=resamples, seed=seed, level=level)
    masks, matrix = subset_masks(m), shapley_matrix(m)
    correct, gold_probability = coalitions.rows(masks)
    phi_gold, cells, grid = _gridded_phi(gold_probability, matrix)
    if phi_gold is None:  # a non-finite value: the plain path drops it
        return _plain_report(coalitions, groups=groups, resamples=resamples, seed=seed, level=level)

    # correct: one code per instance, bit s = coalition s is correct
    size = 1 << len(masks)
    code = metrics.pack_columns(correct, [2] * len(masks))
    if size <= max(1 << 22, 4 * n):
        distinct, index = None, code
    else:
        distinct, index = np.unique(code, return_inverse=True)
        index = index.ravel()
    scale = factorial(m)  # M! * phi is an integer for a 0/1 value
    bits = np.arange(len(masks), dtype=np.uint64)

    rng = np.random.default_rng(seed)
    out: dict = {"values": list(VALUES), "groups": {}}
    for group, rows in ({"all": slice(None)} | (groups or {})).items():
        size_group = n if isinstance(rows, slice) else int(np.size(rows))
        entry: dict = {"n_instances": size_group, "agents": {name: {} for name in coalitions.agents}}
        out["groups"][group] = entry
        if size_group == 0:
            for name in coalitions.agents:
                entry["agents"][name] = {value: {"mean": None, "ci": [None, None]} for value in VALUES}
            entry |= {f"total_{value}": None for value in VALUES}
            continue
        tally = np.bincount(index[rows], minlength=size if distinct is None else distinct.size)
        present = np.flatnonzero(tally)
        codes = (present if distinct is None else distinct[present]).astype(np.uint64)
        values_of_code = ((codes[:, None] >> bits[None, :]) & np.uint64(1)).astype(np.float64)  # [codes, 2^M]
        tally = tally[present]
        keys = np.rint(values_of_code @ matrix * scale).astype(np.int64)  # [codes, m]: M! * phi
        for j, name in enumerate(coalitions.agents):
            values, inverse = np.unique(keys[:, j], return_inverse=True)
            counts = np.rint(np.bincount(inverse.ravel(), weights=tally, minlength=values.size)).astype(np.int64)
            entry["agents"][name]["correct"] = _mean(counts, values / scale, resamples=resamples, rng=rng, level=level)
        means = []
        for j, name in enumerate(coalitions.agents):
            counts = np.bincount(cells[j, rows], minlength=GOLD_PROBABILITY_CELLS)
            occupied = np.flatnonzero(counts)
            means.append(float(phi_gold[j, rows].mean()))
            entry["agents"][name]["gold_probability"] = _mean(
                counts[occupied], grid[j, occupied], resamples=resamples, rng=rng, level=level, point=means[-1]
            )
        entry["total_correct"] = float(tally @ keys.sum(axis=1)) / scale / size_group
        entry["total_gold_probability"] = sum(means)
    return out


def _gridded_phi(values: list[np.ndarray], matrix: np.ndarray) -> tuple:
    """``(phi[m, n], cells[m, n], grid[m, cells])``: the Shapley values of each instance for
    one coalition value (``values``, one ``[n]`` row per coalition) and each agent's grid
    cell; ``(None, None, None)`` when a value is not finite. Computed in blocks of
    instances with numpy's own loops (a BLAS product this thin costs more in threads)."""
    m, n = matrix.shape[1], values[0].size
    phi = np.empty((m, n))
    stacked = np.empty((len(values), min(n, BLOCK)))
    low, high = np.full(m, np.inf), np.full(m, -np.inf)
    for start in range(0, n, BLOCK):
        block = slice(start, min(n, start + BLOCK))
        width = block.stop - start
        for s, row in enumerate(values):
            stacked[s, :width] = row[block]
        np.einsum("sj,sb->jb", matrix, stacked[:, :width], out=phi[:, block], optimize=False)
        np.minimum(low, phi[:, block].min(axis=1), out=low)
        np.maximum(high, phi[:, block].max(axis=1), out=high)
    if n and not (np.isfinite(low).all() and np.isfinite(high).all()):
        return None, None, None
    if not n:
        low, high = np.zeros(m), np.zeros(m)
    step = np.where(high > low, (high - low) / (GOLD_PROBABILITY_CELLS - 1), 1.0)
    cells = np.empty((m, n), dtype=np.int16)
    for start in range(0, n, BLOCK):
        block = slice(start, min(n, start + BLOCK))
        cells[:, block] = np.rint((phi[:, block] - low[:, None]) / step[:, None])
    return phi, cells, low[:, None] + step[:, None] * np.arange(GOLD_PROBABILITY_CELLS)[None, :]


def _mean(
    counts: np.ndarray,
    values: np.ndarray,
    *,
    resamples: int,
    rng: np.random.Generator,
    level: float,
    point: float | None = None,
) -> dict:
    """``{"mean", "ci"}`` of instances taking ``values`` ``counts`` times; with ``point``
    (the exact mean of values put on a grid), the interval is shifted by the grid's rounding."""
    n = int(counts.sum())
    gridded = float(counts @ values) / n
    point = gridded if point is None else point
    if not resamples:
        return {"mean": point, "ci": [None, None]}
    draws = metrics.draw_counts(counts, resamples=resamples, rng=rng) @ values / n + (point - gridded)
    return {"mean": point, "ci": metrics.percentile_columns(draws[:, None], level=level)[0]}


def _plain_report(
    coalitions: Coalitions,
    *,
    groups: dict[str, np.ndarray] | None = None,
    resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
) -> dict:
    """:func:`shapley_report` from the ``[n, 2^M]`` value table and a grid bootstrap of each
    agent's values (:func:`modsab.stats.metrics.mean_interval`): for more agents than a code holds."""
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


def _check(d) -> None:
    """Exact Shapley values fuse every subset of agents: refuse too many before anything runs."""
    n_agents = len(d.fused_agents)
    if n_agents > MAX_AGENTS:
        raise InputError(
            f"exact Shapley values fuse every subset of agents (2^{n_agents} here); "
            f"{n_agents} fused agents is more than {MAX_AGENTS}",
            hint="fuse at most 10 agents (--fuse), or name the diagnostics you want instead of --all / --shapley",
        )


def _section(d, *, folds=5) -> dict:
    return shapley_report(coalitions(d), groups=d.context.groups(), **bootstrap_options(d))


def _columns(d) -> dict[str, np.ndarray]:
    """``<agent>.shapley_<value>`` per fused agent and coalition value."""
    c = coalitions(d)
    out = {}
    for value in VALUES:
        phi = Shapley(value).attribute(c)
        for j, agent in enumerate(c.agents):
            out[f"{agent}.shapley_{value}"] = phi[:, j]
    return out


def shapley_reference(d, *, folds=5) -> dict:
    """The point figures of the ``shapley`` section, plainly: every subset of the fused agents
    fused by :func:`~modsab.core.fusion.fuse`, its value (gold is the top-1; gold's share of
    the fused score), and each agent's Shapley value by the subset formula
    ``sum_S |S|! (M-|S|-1)! / M! (v(S + m) - v(S))``, averaged per group (no intervals)."""
    from itertools import combinations

    agents = fused_indices(d)
    m, gold = len(agents), d.pset.gold
    scores, weights = d.rule.scores(d.context, agents), d.rule.weights(d.context, agents)

    def value(subset: tuple[int, ...]) -> dict[str, np.ndarray]:
        keep = list(subset)
        fused = fusion.fuse(scores[:, keep], weights[:, keep])
        total = fused.sum(axis=1)
        at_gold = fused[np.arange(len(gold)), gold]
        return {
            "correct": (fusion.gold_rank(fused, gold) == 0).astype(np.float64),
            "gold_probability": np.where(total > 0, at_gold / np.where(total > 0, total, 1.0), 0.0),
        }

    values = {s: value(s) for r in range(m + 1) for s in combinations(range(m), r)}
    phi = {v: np.zeros((len(gold), m)) for v in VALUES}
    for j in range(m):
        for subset, v_s in values.items():
            if j in subset:
                continue
            weight = factorial(len(subset)) * factorial(m - len(subset) - 1) / factorial(m)
            with_j = values[tuple(sorted((*subset, j)))]
            for v in VALUES:
                phi[v][:, j] += weight * (with_j[v] - v_s[v])
    out: dict = {"values": list(VALUES), "groups": {}}
    for group, rows in ({"all": np.arange(len(gold))} | d.context.groups()).items():
        n = len(rows)
        entry: dict = {"n_instances": n, "agents": {}}
        for j, name in enumerate(d.fused_agents):
            entry["agents"][name] = {v: {"mean": float(phi[v][rows, j].mean()) if n else None} for v in VALUES}
        for v in VALUES:
            entry[f"total_{v}"] = float(phi[v][rows].sum(axis=1).mean()) if n else None
        out["groups"][group] = entry
    return out


diagnostics.register("shapley", order=2)(
    Diagnostic(
        section=ShapleySection,
        help="Exact Shapley shares of each agent (2^M fusions).",
        compute=_section,
        check=_check,
        columns=_columns,
        by_dataset=True,
        reference=shapley_reference,
    )
)
