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

Intervals resample instances: each statistic is a function of counts of distinct
``(confidence, correct)`` cells, so the bootstrap is a multinomial over cells, as in
:mod:`modsab.metrics`. Points are exact; for resampling, confidences go on a 0.01 grid
(exact for the integer-percent answers of real agents; for recalibrated, continuous
confidences the interval is shifted by the grid's rounding of the figure).
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


# -- statistics ---------------------------------------------------------------------------------


def bin_index(confidence: np.ndarray, *, bins: int = 10, strategy: str = "width", edges: np.ndarray | None = None):
    """Bin of each confidence: equal width ``[i/B, (i+1)/B)`` (last bin closed), or equal
    mass (quantile ``edges``, computed from ``confidence`` when not given)."""
    if strategy == "width":
        return np.minimum((confidence * bins).astype(np.int64), bins - 1)
    if edges is None:
        edges = np.quantile(confidence, np.linspace(0, 1, bins + 1))
    return np.clip(np.searchsorted(edges[1:-1], confidence, side="right"), 0, bins - 1)


def _binned(counts, confidence, correct, bin_of_cell, bins):
    """Per-bin ``(n, sum confidence, sum correct)`` from cell counts ``[..., C]``."""
    order = np.argsort(bin_of_cell, kind="stable")
    starts = np.searchsorted(bin_of_cell[order], np.arange(bins))
    nonempty = np.bincount(bin_of_cell, minlength=bins) > 0
    out = []
    for weights in (counts, counts * confidence, counts * correct):
        sums = np.zeros((*counts.shape[:-1], bins))
        if nonempty.any():
            reduced = np.add.reduceat(weights[..., order], starts[nonempty], axis=-1)
            sums[..., nonempty] = reduced
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
    """AUROC of ``score`` for ``correct`` from cell counts ``[..., C]`` (ties count half)."""
    order = np.argsort(score, kind="stable")
    levels, level_of = np.unique(score[order], return_inverse=True)
    onehot = np.zeros((order.size, levels.size))
    onehot[np.arange(order.size), level_of] = 1
    counts = counts[..., order]
    positive = (counts * correct[order]) @ onehot
    negative = (counts * (1 - correct[order])) @ onehot
    below = np.cumsum(negative, axis=-1) - negative
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positive * (below + 0.5 * negative)).sum(axis=-1) / (positive.sum(-1) * negative.sum(-1))


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


def _cell_bootstrap(score, correct, figures, *, resamples, seed, level):
    """Point figures on exact ``(score, correct)`` cells; intervals from a multinomial over
    cells on a :data:`GRID` grid, shifted by the grid's rounding of each figure."""
    cells, counts = metrics.row_patterns(np.column_stack([np.round(score / GRID), correct]))
    cell_score, cell_correct = cells[:, 0] * GRID, cells[:, 1].astype(float)
    on_grid = figures(counts.astype(float), cell_score, cell_correct)
    if np.allclose(score, np.round(score / GRID) * GRID, rtol=0, atol=EXACT):
        point = {key: float(value) for key, value in on_grid.items()}  # integer percent: the grid is exact
    else:
        exact, exact_counts = metrics.row_patterns(np.column_stack([np.round(score / EXACT), correct]))
        point = figures(exact_counts.astype(float), exact[:, 0] * EXACT, exact[:, 1].astype(float))
        point = {key: float(value) for key, value in point.items()}
    if not resamples:
        return point, {key: [None, None] for key in point}
    draws = figures(
        metrics.resample_counts(counts, resamples=resamples, seed=seed).astype(float), cell_score, cell_correct
    )
    shifted = {key: draws[key] + (point[key] - float(on_grid[key])) for key in point}
    return point, metrics.percentile_intervals(shifted, level=level)


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
    out: dict = {"n": int(confidence.size)}
    if confidence.size == 0:
        return out
    edges = np.quantile(confidence, np.linspace(0, 1, bins + 1))

    def top_label_figures(counts, cell_conf, cell_correct):
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

    options = {"resamples": resamples, "seed": seed, "level": level}
    point, ci = _cell_bootstrap(confidence, correct, top_label_figures, **options)
    out.update(point)
    if quality is not None and np.isfinite(quality).any():
        known = np.isfinite(quality)
        q_point, q_ci = _cell_bootstrap(
            quality[known], correct[known], lambda c, q, y: {"quality_auroc": _auroc(c, q, y)}, **options
        )
        out.update(q_point)
        ci.update(q_ci)
    if nll is not None:
        out["candidate_nll"], ci["candidate_nll"] = metrics.mean_interval(
            nll, resamples=resamples, seed=seed, level=level
        )
    out["reliability"] = {
        "equal_width": reliability(confidence, correct, bins=bins, strategy="width"),
        "equal_mass": reliability(confidence, correct, bins=bins, strategy="mass"),
    }
    out["ci"] = ci
    return {key: (None if isinstance(v, float) and not np.isfinite(v) else v) for key, v in out.items()}


# -- recalibration ------------------------------------------------------------------------------


def folds(n: int, n_folds: int = 5, seed: int | None = 0) -> np.ndarray:
    """``[n]`` fold of each instance: a seeded shuffle dealt round-robin."""
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % n_folds
    return fold


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, CLIP, 1 - CLIP)
    return np.log(p / (1 - p))


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
        p = 1 / (1 + np.exp(-beta * z))
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
        return 1 / (1 + np.exp(-_logit(values) / fitted))
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
    Remembered per set (the calibration report and the fusion comparison share it)."""
    key = ("crossfit", tuple(agents), method, n_folds, seed)
    return cache.remember(pset, key, lambda: _crossfit(pset, agents, method, n_folds=n_folds, seed=seed))


def _percent_codes(pset: PredictionSet, agents: list[int]) -> np.ndarray | None:
    """Integer percent of every score of ``agents``, or None when they are not on that grid."""

    def compute():
        raw = pset.scores[:, agents]
        percent = np.rint(raw * 100)
        return percent.astype(np.int64) if _on_percent_grid(raw, percent) else None

    return cache.remember(pset, ("percent", tuple(agents)), compute)


def _crossfit(pset, agents, method, *, n_folds, seed):
    if method not in METHODS:
        raise ValueError(f"unknown recalibration '{method}': use one of {', '.join(METHODS)}")
    agents = list(agents)
    top, confidence = cache.agent_top(pset, agents)
    correct = top == pset.gold[:, None]
    fold = folds(pset.n_instances, n_folds, seed)
    codes = _percent_codes(pset, agents)
    on_grid = codes is not None  # integer percent: one 101-entry table per fold
    out = np.empty(codes.shape) if on_grid else np.array(pset.scores[:, agents], dtype=np.float64)
    grid = np.arange(101) / 100
    fitted: dict[str, list[float]] = {}
    fit = _temperature if method == "temperature" else _isotonic
    for j, m in enumerate(agents):
        answered = np.flatnonzero(top[:, j] >= 0)
        values, inverse = np.unique(confidence[answered, j], return_inverse=True)  # once per agent
        temperatures = []
        tables = np.tile(grid, (n_folds, 1))
        for f in range(n_folds):
            train = (fold[answered] != f).astype(float)
            if not train.any():
                continue
            weight = np.bincount(inverse, train, values.size)
            model = fit(values, weight, np.bincount(inverse, train * correct[answered, j], values.size))
            if method == "temperature":
                temperatures.append(float(model))
            if on_grid:
                tables[f] = _apply(method, model, grid)
            else:
                held_out = fold == f
                out[held_out, j] = _apply(method, model, pset.scores[held_out, m])
        if on_grid:
            out[:, j, :] = tables[fold[:, None], codes[:, j, :]]
        if temperatures:
            fitted[pset.agents[m]] = temperatures
    return out, fitted


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
    the raw figures and, for ``all``, per recalibration method, the held-out figures after it."""
    agents = list(range(len(pset.agents)))
    top, confidence = cache.agent_top(pset, agents)
    correct = top == pset.gold[:, None]
    recalibrated = {}
    temperatures = {}
    for method in METHODS:
        scores, fitted = crossfit(pset, agents, method, n_folds=n_folds, seed=seed)
        recalibrated[method] = np.take_along_axis(scores, np.maximum(top, 0)[..., None], axis=2)[..., 0]
        temperatures |= fitted
    options = {"bins": bins, "resamples": resamples, "seed": seed, "level": level}
    out: dict = {
        "bins": bins,
        "n_folds": n_folds,
        "split": f"cross-fitted over {n_folds} seeded instance folds (seed {seed})",
        "temperatures": temperatures,
        "groups": {},
    }
    groups = {"all": np.arange(pset.n_instances)} | (groups or {})
    for group, rows in groups.items():
        entry = {}
        for m, name in enumerate(pset.agents):
            answered = rows[top[rows, m] >= 0]
            hit = correct[answered, m]
            stats = agent_statistics(
                confidence[answered, m],
                hit,
                quality=pset.quality[answered, m],
                nll=candidate_nll(pset.scores[answered, m], pset.gold[answered]),
                **options,
            )
            if group != "all":
                entry[name] = stats
                continue
            stats["recalibrated"] = {}
            for method, conf in recalibrated.items():
                after = agent_statistics(conf[answered, m], hit, **options)
                after.pop("reliability", None)
                stats["recalibrated"][method] = after
            entry[name] = stats
        out["groups"][group] = entry
    return out
