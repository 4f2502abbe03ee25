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
:mod:`modsab.metrics` (``all`` one multinomial over every instance, each dataset its own).
Points are exact; for resampling, confidences go on a 0.01 grid (exact for the
integer-percent answers of real agents; for recalibrated, continuous confidences the
interval is shifted by the grid's rounding of the figure), and candidate NLLs on a grid
of :data:`NLL_CELLS` steps, the interval shifted by the grid's rounding of the mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab import cache, metrics
from modsab.fusion import FusionRule
from modsab.predictions import PredictionSet

CANDIDATE_EPS = 0.01
CLIP = 1e-4
GRID = 1e-2  # resampling grid of confidences (exact for integer percent answers)
EXACT = 1e-6  # confidences are compared on this grid for the point figures (counting, not sorting)
METHODS = ("temperature", "isotonic")
PERCENT = np.arange(101) / 100  # integer-percent answers as read (``p / 100``)
STRICT = 1e-11  # scores this close to integer percents (in percent) give exact candidate-NLL cells
BLOCK = 1 << 18  # scores per block of a pass over the score array
# Resampling grid of the candidate NLL's mean (its interval only; the point is exact): with
# 128 steps the grid's rounding changes the bootstrap spread by far less than the Monte
# Carlo noise of 1,000 resamples (measured: < 0.1% of the SD), at a quarter of the cells of
# metrics.mean_interval's 512, and a multinomial costs per cell.
NLL_CELLS = 128


# -- statistics ---------------------------------------------------------------------------------


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
    order of :func:`modsab.metrics.row_patterns` (wrong answers first, then by code)."""
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
    """:func:`modsab.metrics.mean_interval` of the data ``np.repeat(values, counts)`` (the
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
    code, values = _codes(confidence, np.ones(confidence.shape, dtype=bool))
    table = _count([(code, values.size + 1), (correct, 2)])[:-1]
    tables = {}
    for name, column in (("quality", quality), ("nll", nll)):
        if column is not None:
            column = np.asarray(column, dtype=np.float64)
            column_code, column_values = _codes(column, np.isfinite(column))
            columns = [(column_code, column_values.size + 1)] + ([(correct, 2)] if name == "quality" else [])
            tables[name] = (column_values, _count(columns)[:-1])
    options = {"bins": bins, "resamples": resamples, "seed": seed, "level": level}
    return _statistics(values, table, **tables, **options)


# -- tables of distinct values ------------------------------------------------------------------


def _percent_codes(values: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
    """Integer percent of each valid value (``PERCENT.size`` elsewhere) when every valid value
    is exactly ``p / 100`` (as integer-percent answers are read), else None."""
    x = np.where(valid, values, 0.0)
    percent = np.rint(x * 100)
    if percent.size and not (percent.min() >= 0 and percent.max() <= 100 and np.array_equal(percent / 100, x)):
        return None
    code = percent.astype(np.int64)
    code[~valid] = PERCENT.size
    return code


def _codes(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(code[n], distinct[V])``: each valid value's index among the sorted distinct valid
    values, ``V`` elsewhere. Integer-percent values are coded on :data:`PERCENT`, unsorted."""
    code = _percent_codes(values, valid)
    if code is not None:
        return code, PERCENT
    distinct, inverse = np.unique(values[valid], return_inverse=True)
    code = np.full(values.shape, distinct.size, dtype=np.int64)
    code[valid] = inverse.reshape(-1)
    return code, distinct


def _count(columns: list[tuple[np.ndarray, int]], rows: np.ndarray | None = None) -> np.ndarray:
    """How often each combination of the integer columns ``(code, size)`` occurs (over
    ``rows``), as an array of shape ``(size, ...)``: one ``bincount``, no sort."""
    shape = tuple(size for _, size in columns)
    code = None
    for column, size in columns:
        column = column if rows is None else column[rows]
        if code is None:
            code = column.astype(np.int64)
        else:
            code *= size
            code += column
    return np.bincount(code, minlength=int(np.prod(shape))).reshape(shape)


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
            return {group: _count(columns, self.rows(group)) for group in self.groups}
        keyed = _count([(self.key, len(self.named) + 1), *columns])
        return {"all": keyed.sum(axis=0)} | {name: keyed[i] for i, name in enumerate(self.named)}


# -- recalibration ------------------------------------------------------------------------------


def folds(n: int, n_folds: int = 5, seed: int | None = 0) -> np.ndarray:
    """``[n]`` fold of each instance: a seeded shuffle dealt round-robin."""
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % n_folds
    return fold


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, CLIP, 1 - CLIP)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow: ``exp`` only of ``-|x|``. A fitted temperature
    may be as small as 1e-3, so ``|x|`` reaches ~9,000, far past where ``exp`` overflows."""
    x = np.asarray(x, dtype=np.float64)
    small = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + small), small / (1 + small))


def _tally(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(distinct confidences, how many, how many right)``: what both fits need."""
    values, inverse = np.unique(confidence, return_inverse=True)
    return values, np.bincount(inverse).astype(float), np.bincount(inverse, correct.astype(float))


def fit_temperature(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Temperature ``T`` minimising the log loss of ``sigmoid(logit(c) / T)`` (Newton's method
    on ``1/T``, over distinct confidences). ``T > 1`` means the agent was overconfident."""
    return _temperature(*_tally(confidence, correct))


def _temperature(values: np.ndarray, weight: np.ndarray, hits: np.ndarray, iterations: int = 50) -> float:
    z = _logit(values)
    beta = 1.0
    for _ in range(iterations):
        p = _sigmoid(beta * z)
        gradient = np.sum((weight * p - hits) * z)
        hessian = np.sum(weight * p * (1 - p) * z * z)
        if hessian <= 0:
            break
        step = gradient / hessian
        beta = float(np.clip(beta - step, 1e-3, 1e3))
        if abs(step) < 1e-10:
            break
    return 1.0 / beta


def fit_isotonic(confidence: np.ndarray, correct: np.ndarray):
    """Isotonic map from confidence to accuracy (scikit-learn, imported here)."""
    return _isotonic(*_tally(confidence, correct))


def _isotonic(values: np.ndarray, weight: np.ndarray, hits: np.ndarray):
    from sklearn.isotonic import IsotonicRegression

    keep = weight > 0
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    return model.fit(values[keep], hits[keep] / weight[keep], sample_weight=weight[keep])


def _on_percent_grid(scores: np.ndarray, percent: np.ndarray) -> bool:
    """Scores are integer percents (as read from 0-100 answers, up to float rounding)."""
    return bool(np.all(np.abs(scores * 100 - percent) <= 1e-6))


def _map(method: str, fitted, values: np.ndarray) -> np.ndarray:
    if method == "temperature":
        return _sigmoid(_logit(values) / fitted)
    return fitted.predict(values.ravel()).reshape(values.shape)


def _apply(method: str, fitted, scores: np.ndarray) -> np.ndarray:
    """Recalibrate every candidate confidence (absent labels stay 0, candidates stay > 0).
    Integer-percent answers go through a 101-entry table instead of one call per value."""
    percent = np.rint(scores * 100)
    if _on_percent_grid(scores, percent):
        table = np.maximum(_map(method, fitted, np.arange(101) / 100), CLIP)
        table[0] = 0.0
        return table[percent.astype(np.int64)]
    return np.where(scores > 0, np.maximum(_map(method, fitted, scores), CLIP), 0.0)


def crossfit(
    pset: PredictionSet, agents: Sequence[int], method: str, *, n_folds: int = 5, seed: int | None = 0
) -> tuple[np.ndarray, dict[str, list[float]]]:
    """``(scores[n, len(agents), k], fitted)``: every fold's answers recalibrated by maps
    fitted on the other folds; ``fitted`` holds each agent's temperatures (or nothing).
    Remembered per set; the calibration report shares the fits, not this array."""
    key = ("crossfit", tuple(agents), method, n_folds, seed)
    return cache.remember(pset, key, lambda: _crossfit(pset, agents, method, n_folds=n_folds, seed=seed))


def set_folds(pset: PredictionSet, n_folds: int, seed: int | None) -> np.ndarray:
    """:func:`folds` of the set's instances, remembered: every cross-fitted part (recalibration,
    learned and reliability weights) deals the same folds once."""
    return cache.remember(pset, ("folds", n_folds, seed), lambda: folds(pset.n_instances, n_folds, seed))


def _fold_tally(pset: PredictionSet, agents: list[int], n_folds: int, seed: int | None) -> list[tuple]:
    """Per agent ``(code[n], values[V], counts[folds, V, 2])``: its top confidences coded
    by :func:`_codes` and its answered instances counted by fold and correctness."""

    def compute():
        top, confidence = cache.agent_top(pset, agents)
        answered = top >= 0
        correct = top == pset.gold[:, None]
        fold = set_folds(pset, n_folds, seed)
        out = []
        for j in range(len(agents)):
            code, values = _codes(confidence[:, j], answered[:, j])  # one contiguous column per agent
            counts = _count([(fold, n_folds), (code, values.size + 1), (correct[:, j], 2)])
            out.append((code, values, counts[:, :-1]))
        return out

    return cache.remember(pset, ("fold_tally", tuple(agents), n_folds, seed), compute)


def _fits(pset: PredictionSet, agents: list[int], method: str, n_folds: int, seed: int | None):
    """``(models, tables, fitted)``: per agent, each fold's map fitted on the other folds (None
    when they hold no answer) and its ``[folds, 101]`` table of integer percents; the
    temperatures. Fitted on the counts of distinct confidences; remembered per set."""
    if method not in METHODS:
        raise ValueError(f"unknown recalibration '{method}': use one of {', '.join(METHODS)}")

    def compute():
        fit = _temperature if method == "temperature" else _isotonic
        models: list[list] = []
        fitted: dict[str, list[float]] = {}
        for m, (_, values, counts) in zip(agents, _fold_tally(pset, agents, n_folds, seed), strict=True):
            present = counts.sum(axis=(0, 2)) > 0
            values, counts = values[present], counts[:, present]
            total = counts.sum(axis=0)
            per_fold, temperatures = [], []
            for f in range(n_folds):
                train = total - counts[f]
                weight = train.sum(axis=1).astype(float)
                if not weight.any():
                    per_fold.append(None)
                    continue
                model = fit(values, weight, train[:, 1].astype(float))
                per_fold.append(model)
                if method == "temperature":
                    temperatures.append(float(model))
            models.append(per_fold)
            if temperatures:
                fitted[pset.agents[m]] = temperatures
        tables = [np.stack([PERCENT if f is None else _apply(method, f, PERCENT) for f in fs]) for fs in models]
        return models, tables, fitted

    return cache.remember(pset, ("fits", tuple(agents), method, n_folds, seed), compute)


def _lookup(pset: PredictionSet, agents: list[int], tables: list[np.ndarray], fold: np.ndarray):
    """Every score of ``agents`` through its agent's and fold's table, in one blockwise pass;
    None as soon as a score is off the integer-percent grid (:func:`_on_percent_grid`)."""
    scores = pset.scores
    n, k = scores.shape[0], scores.shape[2]
    flat = np.concatenate([table.ravel() for table in tables]) if tables else np.zeros(0)
    offset = (np.arange(len(agents)) * (tables[0].size if tables else 0))[None, :, None]
    every = agents == list(range(scores.shape[1]))
    out = np.empty((n, len(agents), k))
    step = max(1, BLOCK // max(1, len(agents) * k))
    for start in range(0, n, step):
        block = scores[start : start + step] if every else scores[start : start + step][:, agents]
        scaled = block * 100
        percent = np.rint(scaled)
        np.subtract(scaled, percent, out=scaled)
        if not np.abs(scaled, out=scaled).max(initial=0.0) <= 1e-6:
            return None
        index = percent.astype(np.intp)
        index += offset
        index += (fold[start : start + step] * 101)[:, None, None]
        np.take(flat, index, out=out[start : start + step], mode="clip")
    return out


def _crossfit(pset, agents, method, *, n_folds, seed):
    agents = list(agents)
    models, tables, fitted = _fits(pset, agents, method, n_folds, seed)
    fold = set_folds(pset, n_folds, seed)
    out = _lookup(pset, agents, tables, fold)  # integer percent: one 101-entry table per agent and fold
    if out is None:
        out = np.array(pset.scores[:, agents], dtype=np.float64)
        for j, m in enumerate(agents):
            for f, model in enumerate(models[j]):
                if model is not None:
                    held_out = fold == f
                    out[held_out, j] = _apply(method, model, pset.scores[held_out, m])
    return out, fitted


def _nll_codes(pset: PredictionSet, answered: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(code[m, n], values)``: the candidate NLL of each answer as a cell of (gold label's
    percent, percent sum), when these are integer percents (up to :data:`STRICT`), else None.
    One blockwise pass over the scores."""
    scores, gold = pset.scores, pset.gold
    n, m, k = scores.shape
    width = 100 * k + 1
    if 101 * width > 1 << 20 or gold.min(initial=0) < 0:  # very many labels (too many cells), or no gold label
        return None
    code = np.empty((m, n), dtype=np.int64)  # one contiguous row per agent
    step = max(1, BLOCK // max(1, m * k))
    at = (np.arange(step) * (m * k))[:, None] + np.arange(m) * k  # flat index of each (row, agent) in a block
    for start in range(0, n, step):
        block = scores[start : start + step]
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


class Recalibrated(FusionRule):
    """Uniform fusion of cross-fitted recalibrated confidences (temperature or isotonic)."""

    def __init__(self, method: str = "temperature", *, n_folds: int = 5, seed: int | None = 0) -> None:
        self.method, self.n_folds, self.seed = method, n_folds, seed
        self.name = f"recalibrated-{method}"

    def scores(self, pset: PredictionSet, agents: Sequence[int]) -> np.ndarray:
        return crossfit(pset, agents, self.method, n_folds=self.n_folds, seed=self.seed)[0]


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
    agents = list(range(len(pset.agents)))
    n = pset.n_instances
    top, _ = cache.agent_top(pset, agents)
    answered = top >= 0
    tally = _fold_tally(pset, agents, n_folds, seed)
    fits = {method: _fits(pset, agents, method, n_folds, seed) for method in METHODS}
    temperatures: dict[str, list[float]] = {}
    for *_, fitted in fits.values():
        temperatures |= fitted
    options = {"bins": bins, "resamples": resamples, "seed": seed, "level": level}
    out: dict = {
        "bins": bins,
        "n_folds": n_folds,
        "split": f"cross-fitted over {n_folds} seeded instance folds (seed {seed})",
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
        q_code, q_values = _codes(pset.quality[:, j], known[:, j])
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
            n_code, n_values = _codes(candidate_nll(pset.scores[:, j], pset.gold), answered[:, j])
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
                    fold_counts = _count(
                        [(set_folds(pset, n_folds, seed), n_folds), (code, values.size + 1), (hit, 2)], rows
                    )
                    fold_counts = fold_counts[:, :-1]
                stats["recalibrated"] = {}
                for method, (_, tables, _) in fits.items():
                    if values is PERCENT:  # exact integer percents: the fold's table is the map
                        table = _merge(tables[j].ravel(), fold_counts.reshape(-1, 2))
                    else:  # the recalibrated scores themselves
                        scores = crossfit(pset, agents, method, n_folds=n_folds, seed=seed)[0]
                        after = scores[np.arange(n), j, np.maximum(top[:, j], 0)]
                        after_code, after_values = _codes(after, answered[:, j])
                        table = (after_values, _count([(after_code, after_values.size + 1), (hit, 2)], rows)[:-1])
                    stats["recalibrated"][method] = _statistics(*table, diagrams=False, **options)
            entries[group][name] = stats
    out["groups"] = entries
    return out
