"""Are the agents' confidences calibrated, and does their self-assessment predict failure?

Per agent (and dataset), on the agent's top label with confidence ``c`` and
``correct = [y_m = y*]``, over the instances the agent answered:

- **reliability diagram** data: per bin, count, mean confidence and accuracy; equal-width
  bins ``[0, 1/B), ..., [(B-1)/B, 1]`` and equal-mass bins (quantile edges).
- **ECE** = ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` and **MCE** = ``max_b |acc - conf|``
  (Naeini, Cooper & Hauskrecht 2015, "Obtaining well calibrated probabilities using
  Bayesian binning"; Guo et al. 2017, "On calibration of modern neural networks").
- **Brier** score of the top label, ``mean (c - correct)^2`` (Brier 1950), and its
  log loss ``-mean log p(correct)`` with ``p = c`` (``top_nll``).
- **NLL over the ranked candidates**: ``-mean log q(y*)`` with ``q(y) = (S(y) + eps/K) /
  (sum_y S(y) + eps)``, the candidates' confidences normalised (eps = 0.01 keeps a gold
  label outside the list finite).
- **AUROC** of confidence and of self-reported quality for telling right from wrong
  answers: the probability that a right answer scores higher than a wrong one, ties
  half (Hanley & McNeil 1982); 0.5 is no information.

Recalibration (Guo et al. 2017's temperature scaling on the top-label logit, and
isotonic regression, Zadrozny & Elkan 2002, via scikit-learn) is **cross-fitted**: the
predictions contract has no split column, so instances are dealt into seeded folds and
each fold is recalibrated by maps fitted on the other folds; every figure "after" is on
held-out instances. A map fitted on top labels is applied to every candidate's confidence.

Every figure comes from small tables: each agent's answered instances are counted once,
keyed by group (one ``bincount``, no sort), by distinct confidence and correctness, by
self-reported quality and correctness, and by candidate-NLL cell (the gold label's percent
and the percent sum of the candidates); values off the integer-percent grid are counted
by their sorted distinct values instead. Equal-mass edges are numpy's linear quantiles read
off the cumulative counts; recalibrated confidences are the fold tables' values counted by
fold.

Intervals resample instances: each statistic is a function of counts of distinct
``(confidence, correct)`` cells, so the bootstrap is a multinomial over cells, as in
:mod:`modsab.stats.metrics` (``all`` one multinomial over every instance, each dataset its own).
Points are exact; for resampling, confidences go on a 0.01 grid (exact for the
integer-percent answers of real agents; for recalibrated, continuous confidences the
interval is shifted by the grid's rounding of the figure), and candidate NLLs on a grid
of :data:`NLL_CELLS` steps, the interval shifted by the grid's rounding of the mean.
"""

from __future__ import annotations

import numpy as np

from modsab.contract.predictions import PredictionSet
from modsab.core import audit
from modsab.core.context import of
from modsab.core.folds import n_folds_of
from modsab.core.recalibration import (
    BLOCK,
    CLIP,
    METHODS,
    PERCENT,
    count_cells,
    crossfit,
    distinct_codes,
    fits,
    fold_tally,
    set_folds,
)
from modsab.core.typed import Interval, Model, absent
from modsab.diagnostics._base import Diagnostic, bootstrap_options
from modsab.registry import diagnostics
from modsab.stats import metrics

CANDIDATE_EPS = 0.01
GRID = 1e-2  # resampling grid of confidences (exact for integer percent answers)
EXACT = 1e-6  # confidences are compared on this grid for the point figures (counting, not sorting)
STRICT = 1e-11  # scores this close to integer percents (in percent) give exact candidate-NLL cells
# Resampling grid of the candidate NLL's mean (its interval only; the point is exact): with
# 128 steps the grid's rounding changes the bootstrap spread by far less than the Monte
# Carlo noise of 1,000 resamples (measured: < 0.1% of the SD), at a quarter of the cells of
# metrics.mean_interval's 512, and a multinomial costs per cell.
NLL_CELLS = 128


# -- statistics ---------------------------------------------------------------------------------



# -- the section's typed model (the JSON it writes) ------------------------------

class ReliabilityBins(Model):
    """One reliability diagram: bin edges, and per bin the count, mean confidence and
    accuracy (null in an empty bin)."""

    edges: list[float]
    count: list[int]
    confidence: list[float | None]
    accuracy: list[float | None]


class Reliability(Model):
    equal_width: ReliabilityBins
    equal_mass: ReliabilityBins


class CalibrationFigures(Model):
    """``calibration.groups.<g>.<a>`` (and each ``recalibrated.<method>``): the agent's
    top-label figures. With no answer (``n`` 0) only ``n`` is there; ``quality_auroc``
    only when the answers carry quality; ``candidate_nll`` and ``reliability`` not after
    recalibration; ``recalibrated`` under ``all`` only. A figure that cannot be computed
    is null."""

    n: int
    ece: float | None = absent(nullable=True)
    mce: float | None = absent(nullable=True)
    ece_equal_mass: float | None = absent(nullable=True)
    brier: float | None = absent(nullable=True)
    top_nll: float | None = absent(nullable=True)
    accuracy: float | None = absent(nullable=True)
    mean_confidence: float | None = absent(nullable=True)
    confidence_auroc: float | None = absent(nullable=True)
    quality_auroc: float | None = absent(nullable=True)
    candidate_nll: float | None = absent(nullable=True)
    reliability: Reliability | None = absent()
    #: Keyed by figure name.
    ci: dict[str, Interval] | None = absent()
    #: Held-out figures after each recalibration method (``temperature``, ``isotonic``).
    recalibrated: dict[str, CalibrationFigures] | None = absent()


class CalibrationSection(Model):
    """``calibration``: per group (``all`` and each dataset) and agent, raw and recalibrated
    figures. ``temperatures.<a>``: the fitted temperature of each fold."""

    bins: int
    n_folds: int
    split: str
    temperatures: dict[str, list[float]]
    groups: dict[str, dict[str, CalibrationFigures]]


def bin_index(confidence: np.ndarray, *, bins: int = 10, strategy: str = "width", edges: np.ndarray | None = None):
    """Bin of each confidence: equal width ``[i/B, (i+1)/B)`` (last bin closed), or equal
    mass (quantile ``edges``, computed from ``confidence`` when not given)."""
    if strategy == "width":
        return np.minimum((confidence * bins).astype(np.int64), bins - 1)
    if edges is None:
        edges = np.quantile(confidence, np.linspace(0, 1, bins + 1))
    return np.clip(np.searchsorted(edges[1:-1], confidence, side="right"), 0, bins - 1)


def _segment_sums(weights: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of ``weights[..., order]`` over the runs of cells beginning at ``starts``; a stack
    of resamples ``[B, C]`` is summed with cells as rows (contiguous adds, no BLAS threads)."""
    if weights.ndim == 1:
        return np.add.reduceat(weights[order], starts)
    return np.add.reduceat(weights.T[order], starts, axis=0).T


def _binned(counts, confidence, correct, bin_of_cell, bins):
    """Per-bin ``(n, sum confidence, sum correct)`` from cell counts ``[..., C]``."""
    order = np.argsort(bin_of_cell, kind="stable")
    starts = np.searchsorted(bin_of_cell[order], np.arange(bins))
    nonempty = np.bincount(bin_of_cell, minlength=bins) > 0
    out = []
    for weights in (counts, counts * confidence, counts * correct):
        sums = np.zeros((*counts.shape[:-1], bins))
        if nonempty.any():
            sums[..., nonempty] = _segment_sums(weights, order, starts[nonempty])
        out.append(sums)
    return tuple(out)


def _calibration_errors(counts, confidence, correct, bin_of_cell, bins):
    n_bin, conf_bin, hit_bin = _binned(counts, confidence, correct, bin_of_cell, bins)
    total = n_bin.sum(axis=-1)
    gap = np.abs(hit_bin - conf_bin)
    ece = gap.sum(axis=-1) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        per_bin = np.where(n_bin > 0, gap / np.maximum(n_bin, 1), -np.inf)
    return ece, per_bin.max(axis=-1)


def _auroc(counts, score, correct):
    """AUROC of ``score`` for ``correct`` from cell counts ``[..., C]`` (ties count half): each
    right cell's count times the wrong answers below it (plus half those tied), read off the
    cumulative counts of the wrong cells in score order. Integer arithmetic in floats: exact."""
    negative = np.flatnonzero(correct == 0)
    negative = negative[np.argsort(score[negative], kind="stable")]
    positive = np.flatnonzero(correct != 0)
    ranked = score[negative]
    cumulative = np.zeros((*counts.shape[:-1], negative.size + 1))
    np.cumsum(counts[..., negative], axis=-1, out=cumulative[..., 1:])
    below = cumulative[..., np.searchsorted(ranked, score[positive], side="left")]
    up_to = cumulative[..., np.searchsorted(ranked, score[positive], side="right")]
    right = counts[..., positive]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * (right * (below + up_to)).sum(axis=-1) / (right.sum(axis=-1) * cumulative[..., -1])


def expected_calibration_error(confidence, correct, *, bins: int = 10, strategy: str = "width") -> float:
    """ECE of top-label confidences (see the module docstring for the definition)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    cells = np.ones_like(confidence)
    ece, _ = _calibration_errors(
        cells, confidence, np.asarray(correct, float), bin_index(confidence, bins=bins, strategy=strategy), bins
    )
    return float(ece)


def auroc(score, correct) -> float:
    """AUROC of ``score`` for telling ``correct`` answers from wrong ones."""
    score = np.asarray(score, dtype=np.float64)
    return float(_auroc(np.ones_like(score), score, np.asarray(correct, float)))


def reliability(confidence, correct, *, bins: int = 10, strategy: str = "width") -> dict:
    """Reliability-diagram data: bin edges and per-bin count, confidence and accuracy."""
    confidence = np.asarray(confidence, dtype=np.float64)
    if strategy == "width":
        edges = np.linspace(0, 1, bins + 1)
    else:
        edges = np.quantile(confidence, np.linspace(0, 1, bins + 1)) if confidence.size else np.zeros(bins + 1)
    index = bin_index(confidence, bins=bins, strategy=strategy, edges=edges)
    n_bin = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(index, confidence, bins) / n_bin
        acc = np.bincount(index, np.asarray(correct, float), bins) / n_bin
    return {
        "edges": [float(e) for e in edges],
        "count": n_bin.tolist(),
        "confidence": [None if np.isnan(v) else float(v) for v in conf],
        "accuracy": [None if np.isnan(v) else float(v) for v in acc],
    }


def candidate_nll(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """``[n]`` ``-log q(y*)`` over one agent's ranked candidates (``scores[n, k]``)."""
    k = scores.shape[1]
    gold_score = scores[np.arange(scores.shape[0]), gold]
    return -np.log((gold_score + CANDIDATE_EPS / k) / (scores.sum(axis=1) + CANDIDATE_EPS))


def _quantiles(values: np.ndarray, weight: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(np.repeat(values, weight), q)`` (numpy's default ``linear`` method, the
    same floating-point steps) from sorted distinct ``values`` and their positive counts."""
    n = int(weight.sum())
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    above = virtual >= n - 1  # numpy takes the last value there
    gamma = virtual - np.where(above, -1.0, previous)
    cumulative = np.cumsum(weight)
    lower = values[np.searchsorted(cumulative, np.where(above, n - 1, previous), side="right")]
    upper = values[np.searchsorted(cumulative, np.where(above, n - 1, previous + 1), side="right")]
    diff = upper - lower
    return np.where(gamma >= 0.5, upper - diff * (1 - gamma), lower + diff * gamma)


def _cells(code: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cell code, cell correct, cell count)`` of a table ``counts[V, 2]`` whose values
    have the (float, integer-valued) ``code``: distinct ``(code, correct)`` cells in the
    order of :func:`modsab.stats.metrics.row_patterns` (wrong answers first, then by code)."""
    parts = []
    for correct in (0, 1):
        has = counts[:, correct] > 0
        distinct, inverse = np.unique(code[has], return_inverse=True)
        tally = np.bincount(inverse, counts[has, correct], distinct.size).astype(np.int64)
        parts.append((distinct, np.full(distinct.size, correct), tally))
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _cell_bootstrap(values, counts, figures, *, resamples, seed, level):
    """Point figures on exact ``(score, correct)`` cells; intervals from a multinomial over
    cells on a :data:`GRID` grid, shifted by the grid's rounding of each figure. The data
    are a table: sorted distinct scores ``values[V]`` and ``counts[V, 2]`` (wrong, right)."""
    grid = np.round(values / GRID)
    code, correct, cell_counts = _cells(grid, counts)
    cell_score, cell_correct = code * GRID, correct.astype(float)
    on_grid = figures(cell_counts.astype(float), cell_score, cell_correct)
    if np.allclose(values, grid * GRID, rtol=0, atol=EXACT):
        point = {key: float(value) for key, value in on_grid.items()}  # integer percent: the grid is exact
    else:
        exact, exact_correct, exact_counts = _cells(np.round(values / EXACT), counts)
        point = figures(exact_counts.astype(float), exact * EXACT, exact_correct.astype(float))
        point = {key: float(value) for key, value in point.items()}
    if not resamples:
        return point, {key: [None, None] for key in point}
    draws = figures(
        metrics.resample_counts(cell_counts, resamples=resamples, seed=seed).astype(float), cell_score, cell_correct
    )
    shifted = {key: draws[key] + (point[key] - float(on_grid[key])) for key in point}
    return point, metrics.percentile_intervals(shifted, level=level)


def _mean_interval(values, counts, *, resamples, seed, level, max_cells: int = NLL_CELLS):
    """:func:`modsab.stats.metrics.mean_interval` of the data ``np.repeat(values, counts)`` (the
    same grid, cells and draws for the same ``max_cells``), from the table."""
    keep = (counts > 0) & np.isfinite(values)
    values, counts = values[keep], counts[keep]
    n = int(counts.sum())
    if n == 0:
        return None, [None, None]
    point = float(counts.astype(float) @ values) / n
    if not resamples:
        return point, [None, None]
    low, high = float(values.min()), float(values.max())
    step = (high - low) / (max_cells - 1) if high > low else 1.0
    distinct, inverse = np.unique(np.round((values - low) / step), return_inverse=True)
    cell_counts = np.bincount(inverse, counts, distinct.size).astype(np.int64)
    cell_value = distinct * step + low
    draws = metrics.resample_counts(cell_counts, resamples=resamples, seed=seed) @ cell_value / n
    shift = point - float(cell_counts @ cell_value) / n
    return point, metrics.percentile_intervals({"mean": draws + shift}, level=level)["mean"]


def _reliability(values, counts, bins: int, edges: np.ndarray | None) -> dict:
    """:func:`reliability` of a table (equal width without ``edges``, else equal mass)."""
    if edges is None:
        edges, index = np.linspace(0, 1, bins + 1), bin_index(values, bins=bins, strategy="width")
    else:
        index = bin_index(values, bins=bins, strategy="mass", edges=edges)
    weight = counts.sum(axis=1)
    n_bin = np.bincount(index, weight, bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(index, weight * values, bins) / n_bin
        acc = np.bincount(index, counts[:, 1], bins) / n_bin
    return {
        "edges": [float(e) for e in edges],
        "count": [int(c) for c in n_bin],
        "confidence": [None if np.isnan(v) else float(v) for v in conf],
        "accuracy": [None if np.isnan(v) else float(v) for v in acc],
    }


def _top_label_figures(bins: int, edges: np.ndarray):
    def figures(counts, cell_conf, cell_correct):
        width_bins = bin_index(cell_conf, bins=bins, strategy="width")
        mass_bins = bin_index(cell_conf, bins=bins, strategy="mass", edges=edges)
        ece, mce = _calibration_errors(counts, cell_conf, cell_correct, width_bins, bins)
        log_p = np.log(np.clip(np.where(cell_correct == 1, cell_conf, 1 - cell_conf), CLIP, 1))
        total = counts.sum(-1)
        return {
            "ece": ece,
            "mce": mce,
            "ece_equal_mass": _calibration_errors(counts, cell_conf, cell_correct, mass_bins, bins)[0],
            "brier": (counts @ (cell_conf - cell_correct) ** 2) / total,
            "top_nll": -(counts @ log_p) / total,
            "accuracy": (counts @ cell_correct) / total,
            "mean_confidence": (counts @ cell_conf) / total,
            "confidence_auroc": _auroc(counts, cell_conf, cell_correct),
        }

    return figures


def _statistics(
    values: np.ndarray,
    counts: np.ndarray,
    *,
    quality: tuple[np.ndarray, np.ndarray] | None = None,
    nll: tuple[np.ndarray, np.ndarray] | None = None,
    bins: int = 10,
    resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
    diagrams: bool = True,
) -> dict:
    """:func:`agent_statistics` of tables: top confidences ``values[V]`` with ``counts[V, 2]``
    (wrong, right), quality the same way, candidate NLLs ``(values[W], counts[W])``."""
    present = counts.sum(axis=1) > 0
    values, counts = values[present], counts[present]
    out: dict = {"n": int(counts.sum())}
    if out["n"] == 0:
        return out
    edges = _quantiles(values, counts.sum(axis=1), np.linspace(0, 1, bins + 1))
    options = {"resamples": resamples, "seed": seed, "level": level}
    point, ci = _cell_bootstrap(values, counts, _top_label_figures(bins, edges), **options)
    out.update(point)
    if quality is not None and quality[1].sum() > 0:
        known = quality[1].sum(axis=1) > 0
        q_point, q_ci = _cell_bootstrap(
            quality[0][known], quality[1][known], lambda c, q, y: {"quality_auroc": _auroc(c, q, y)}, **options
        )
        out.update(q_point)
        ci.update(q_ci)
    if nll is not None:
        out["candidate_nll"], ci["candidate_nll"] = _mean_interval(*nll, **options)
    if diagrams:
        out["reliability"] = {
            "equal_width": _reliability(values, counts, bins, None),
            "equal_mass": _reliability(values, counts, bins, edges),
        }
    out["ci"] = ci
    return {key: (None if isinstance(v, float) and not np.isfinite(v) else v) for key, v in out.items()}


def agent_statistics(
    confidence: np.ndarray,
    correct: np.ndarray,
    *,
    quality: np.ndarray | None = None,
    nll: np.ndarray | None = None,
    bins: int = 10,
    resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
) -> dict:
    """Every calibration figure of one agent's answered instances, with intervals."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct).astype(np.int64)
    code, values = distinct_codes(confidence, np.ones(confidence.shape, dtype=bool))
    table = count_cells([(code, values.size + 1), (correct, 2)])[:-1]
    tables = {}
    for name, column in (("quality", quality), ("nll", nll)):
        if column is not None:
            column = np.asarray(column, dtype=np.float64)
            column_code, column_values = distinct_codes(column, np.isfinite(column))
            columns = [(column_code, column_values.size + 1)] + ([(correct, 2)] if name == "quality" else [])
            tables[name] = (column_values, count_cells(columns)[:-1])
    options = {"bins": bins, "resamples": resamples, "seed": seed, "level": level}
    return _statistics(values, table, **tables, **options)


# -- tables of distinct values ------------------------------------------------------------------


def _merge(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The table ``(sorted distinct values, counts[V, 2])`` of rows ``values[R]``, ``counts[R, 2]``."""
    has = counts.sum(axis=1) > 0
    distinct, inverse = np.unique(values[has], return_inverse=True)
    merged = np.stack([np.bincount(inverse, counts[has, c], distinct.size) for c in (0, 1)], axis=1)
    return distinct, merged.astype(np.int64)


class _Groups:
    """Counts per report group: one count keyed by group when the named groups are disjoint
    and ``all`` is every instance (``all`` is then the sum), else one count per group."""

    def __init__(self, n: int, groups: dict[str, np.ndarray], every: bool) -> None:
        self.groups, self.every, self.key = groups, every, None
        self.named = [name for name in groups if name != "all"]
        if every and self.named:
            key = np.full(n, len(self.named), dtype=np.int64)
            for i, name in enumerate(self.named):
                key[groups[name]] = i
            if sum(len(groups[name]) for name in self.named) == np.count_nonzero(key < len(self.named)):
                self.key = key

    def rows(self, group: str) -> np.ndarray | None:
        return None if group == "all" and self.every else self.groups[group]

    def counts(self, columns: list[tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
        if self.key is None:
            return {group: count_cells(columns, self.rows(group)) for group in self.groups}
        keyed = count_cells([(self.key, len(self.named) + 1), *columns])
        return {"all": keyed.sum(axis=0)} | {name: keyed[i] for i, name in enumerate(self.named)}


def _nll_codes(pset: PredictionSet, answered: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(code[m, n], values)``: the candidate NLL of each answer as a cell of (gold label's
    percent, percent sum), when these are integer percents (up to :data:`STRICT`), else None.
    One blockwise pass over the scores."""
    gold = pset.gold
    n, m, k = pset.scores_shape
    width = 100 * k + 1
    if 101 * width > 1 << 20 or gold.min(initial=0) < 0:  # very many labels (too many cells), or no gold label
        return None
    code = np.empty((m, n), dtype=np.int64)  # one contiguous row per agent
    step = max(1, BLOCK // max(1, m * k))
    at = (np.arange(step) * (m * k))[:, None] + np.arange(m) * k  # flat index of each (row, agent) in a block
    for start in range(0, n, step):
        block = pset.block_scores(slice(start, start + step))  # a set of codes is decoded a block at a time
        gold_percent = np.take(block.reshape(-1), at[: len(block)] + gold[start : start + step, None]) * 100
        total_percent = np.einsum("ijk->ij", block) * 100
        for scaled, top in ((gold_percent, 100), (total_percent, 100 * k)):
            percent = np.rint(scaled)
            if not (percent.min(initial=0) >= 0 and percent.max(initial=0) <= top):
                return None
            if not np.abs(np.subtract(scaled, percent, out=scaled)).max(initial=0) <= STRICT:
                return None
            scaled[...] = percent
        code[:, start : start + step] = (gold_percent * width + total_percent).T
    code[~answered.T] = 101 * width
    values = -np.log((PERCENT[:, None] + CANDIDATE_EPS / k) / (np.arange(width) / 100 + CANDIDATE_EPS))
    return code, values.ravel()


def calibration_report(
    pset: PredictionSet,
    *,
    groups: dict[str, np.ndarray] | None = None,
    bins: int = 10,
    n_folds: int = 5,
    resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
) -> dict:
    """The ``calibration`` JSON section: per group (``all`` and each dataset) and agent,
    the raw figures and, for ``all``, per recalibration method, the held-out figures after it.

    Each agent's instances are counted once into small tables (distinct confidence and
    correctness, quality, candidate-NLL cell) keyed by group; every figure and interval
    comes from those tables."""
    pset = of(pset)  # the folds, fits and top labels are shared with the recalibrated fusion rules
    agents = list(range(len(pset.agents)))
    n = pset.n_instances
    top, _ = of(pset).agent_top(agents)
    answered = top >= 0
    tally = fold_tally(pset, agents, n_folds, seed)
    maps = {method: fits(pset, agents, method, n_folds, seed) for method in METHODS}
    temperatures: dict[str, list[float]] = {}
    for *_, fitted in maps.values():
        temperatures |= fitted
    options = {"bins": bins, "resamples": resamples, "seed": seed, "level": level}
    out: dict = {
        "bins": bins,
        "n_folds": n_folds_of(n_folds),
        "split": _split_text(pset, n_folds, seed),
        "temperatures": temperatures,
        "groups": {},
    }
    every = "all" not in (groups or {})
    groups = {"all": np.arange(n)} | {name: np.asarray(rows, dtype=np.intp) for name, rows in (groups or {}).items()}
    layout = _Groups(n, groups, every)
    known = answered & np.isfinite(pset.quality)
    nll_codes = _nll_codes(pset, answered)
    entries: dict[str, dict] = {group: {} for group in groups}
    for j, (name, (code, values, fold_counts)) in enumerate(zip(pset.agents, tally, strict=True)):
        hit = top[:, j] == pset.gold
        q_code, q_values = distinct_codes(pset.quality[:, j], known[:, j])
        sizes = [(code, values.size + 1), (q_code, q_values.size + 1), (hit, 2)]
        if (values.size + 1) * (q_values.size + 1) <= 1 << 16:  # confidence and quality in one count
            joint = layout.counts(sizes)
            conf = {group: table.sum(axis=1) for group, table in joint.items()}
            qual = {group: table.sum(axis=0) for group, table in joint.items()}
        else:
            conf, qual = layout.counts([sizes[0], sizes[2]]), layout.counts(sizes[1:])
        if nll_codes is not None:
            n_code, n_values = nll_codes[0][j], nll_codes[1]
        else:
            n_code, n_values = distinct_codes(candidate_nll(pset.scores[:, j], pset.gold), answered[:, j])
        nll = layout.counts([(n_code, n_values.size + 1)])
        for group in groups:
            stats = _statistics(
                values,
                conf[group][:-1],
                quality=(q_values, qual[group][:-1]),
                nll=(n_values, nll[group][:-1]),
                **options,
            )
            if group == "all":
                rows = layout.rows("all")
                if rows is not None:
                    fold_counts = count_cells(
                        [(set_folds(pset, n_folds, seed), n_folds), (code, values.size + 1), (hit, 2)], rows
                    )
                    fold_counts = fold_counts[:, :-1]
                stats["recalibrated"] = {}
                for method, (_, tables, _) in maps.items():
                    if values is PERCENT:  # exact integer percents: the fold's table is the map
                        table = _merge(tables[j].ravel(), fold_counts.reshape(-1, 2))
                    else:  # the recalibrated scores themselves
                        scores = crossfit(pset, agents, method, n_folds=n_folds, seed=seed)[0]
                        after = scores[np.arange(n), j, np.maximum(top[:, j], 0)]
                        after_code, after_values = distinct_codes(after, answered[:, j])
                        table = (after_values, count_cells([(after_code, after_values.size + 1), (hit, 2)], rows)[:-1])
                    stats["recalibrated"][method] = _statistics(*table, diagrams=False, **options)
            entries[group][name] = stats
    out["groups"] = entries
    return out


def _split_text(pset, folds, seed) -> str:
    """How the recalibration folds were dealt, in words (the ``split`` key)."""
    if not isinstance(folds, int):
        return f"cross-fitted over the {n_folds_of(folds)} folds of {type(folds).__name__}"
    if getattr(pset, "speaker", None) is not None:
        return f"cross-fitted over {folds} seeded speaker folds (seed {seed})"
    return f"cross-fitted over {folds} seeded instance folds (seed {seed})"


def _section(d, *, folds=5) -> dict:
    return calibration_report(d.context, groups=d.context.groups(), n_folds=folds, **bootstrap_options(d))


def _reference_diagram(c: np.ndarray, correct: np.ndarray, edges: list[float], strategy: str) -> dict:
    """One reliability diagram of ten bins with its ECE and MCE, as a loop over the bins.
    Equal width: bin b holds ``b/10 <= c < (b+1)/10`` (the last one also ``c == 1``); equal
    mass: the bin after as many inner quantile edges as lie at or below ``c`` (tied edges
    leave bins empty)."""
    if strategy == "width":
        bin_of = [min(int(value * 10), 9) for value in c]
    else:
        bin_of = [sum(value >= edge for edge in edges[1:-1]) for value in c]
    diagram: dict = {"edges": edges, "count": [], "confidence": [], "accuracy": []}
    ece, mce = 0.0, -np.inf
    for b in range(10):
        inside = np.array([i == b for i in bin_of], dtype=bool)
        diagram["count"].append(int(inside.sum()))
        if not inside.any():
            diagram["confidence"].append(None)
            diagram["accuracy"].append(None)
            continue
        confidence, accuracy = float(c[inside].mean()), float(correct[inside].mean())
        diagram["confidence"].append(confidence)
        diagram["accuracy"].append(accuracy)
        ece += inside.sum() / c.size * abs(accuracy - confidence)
        mce = max(mce, abs(accuracy - confidence))
    return diagram | {"ece": float(ece), "mce": float(mce)}


def calibration_reference(d, *, folds=5) -> dict:
    """The point figures of the ``calibration`` section, plainly, per group and agent, on the
    agent's answered instances (top label, confidence ``c``, ``correct``): counts, accuracy,
    mean confidence, Brier, top-label NLL, ECE and MCE over equal-width bins and ECE over
    equal-mass bins as loops over bins, both reliability diagrams, AUROC of confidence and of
    quality by scikit-learn, candidate NLL (no intervals)."""
    from sklearn.metrics import roc_auc_score

    pset = d.pset
    top, confidence = audit.agent_top(pset.scores, pset.candidate)
    k = len(pset.labels)
    groups = {"all": np.arange(pset.n_instances)} | d.context.groups()
    out: dict = {"groups": {}}
    for group, rows in groups.items():
        out["groups"][group] = entry = {}
        for m, name in enumerate(pset.agents):
            answered = rows[top[rows, m] >= 0]
            c = confidence[answered, m]
            correct = (top[answered, m] == pset.gold[answered]).astype(float)
            figures: dict = {"n": int(answered.size)}
            if answered.size:
                p = np.clip(np.where(correct > 0, c, 1 - c), CLIP, 1)
                width = _reference_diagram(c, correct, [b / 10 for b in range(11)], "width")
                mass = _reference_diagram(c, correct, [float(e) for e in np.quantile(c, np.linspace(0, 1, 11))], "mass")
                del mass["mce"]  # the section reports the MCE of the equal-width bins only
                scores = pset.scores[answered, m]
                at_gold = scores[np.arange(answered.size), pset.gold[answered]]
                figures |= {
                    "accuracy": float(correct.mean()),
                    "mean_confidence": float(c.mean()),
                    "brier": float(np.mean((c - correct) ** 2)),
                    "top_nll": float(-np.mean(np.log(p))),
                    "ece": width.pop("ece"),
                    "mce": width.pop("mce"),
                    "ece_equal_mass": mass.pop("ece"),
                    "reliability": {"equal_width": width, "equal_mass": mass},
                    "candidate_nll": float(
                        np.mean(-np.log((at_gold + CANDIDATE_EPS / k) / (scores.sum(axis=1) + CANDIDATE_EPS)))
                    ),
                }
                if 0 < correct.sum() < correct.size:
                    figures["confidence_auroc"] = float(roc_auc_score(correct, c))
                    quality = pset.quality[answered, m]
                    known = np.isfinite(quality)
                    if known.any() and 0 < correct[known].sum() < known.sum():
                        figures["quality_auroc"] = float(roc_auc_score(correct[known], quality[known]))
            entry[name] = figures
    return out


diagnostics.register("calibration", order=3)(
    Diagnostic(
        section=CalibrationSection,
        help="Calibration, self-assessment AUROC, cross-fitted recalibration.",
        compute=_section,
        by_dataset=True,
        reference=calibration_reference,
    )
)
