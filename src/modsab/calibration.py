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
``(confidence, correct)`` cells (confidence on a 1e-3 grid for resampling only), so the
bootstrap is a multinomial over cells, as in :mod:`modsab.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab import audit, metrics
from modsab.fusion import FusionRule
from modsab.predictions import PredictionSet

CANDIDATE_EPS = 0.01
CLIP = 1e-4
GRID = 1e-3
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
    onehot = np.zeros((bin_of_cell.size, bins))
    onehot[np.arange(bin_of_cell.size), bin_of_cell] = 1
    return counts @ onehot, (counts * confidence) @ onehot, (counts * correct) @ onehot


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
    grid = np.round(confidence / GRID) * GRID
    cells, counts = metrics.row_patterns(np.column_stack([np.round(grid / GRID), correct]))
    cell_conf, cell_correct = cells[:, 0] * GRID, cells[:, 1].astype(float)
    draws = metrics.resample_counts(counts, resamples=resamples, seed=seed) if resamples else None

    def statistic(function):
        point = float(function(counts.astype(float)))
        if draws is None:
            return point, [None, None]
        return point, metrics.percentile_intervals({"x": np.asarray(function(draws.astype(float)))}, level=level)["x"]

    width_bins = bin_index(cell_conf, bins=bins, strategy="width")
    mass_bins = bin_index(cell_conf, bins=bins, strategy="mass", edges=edges)
    log_p = np.where(cell_correct == 1, np.log(np.clip(cell_conf, CLIP, 1)), np.log(np.clip(1 - cell_conf, CLIP, 1)))
    figures = {
        "ece": lambda c: _calibration_errors(c, cell_conf, cell_correct, width_bins, bins)[0],
        "mce": lambda c: _calibration_errors(c, cell_conf, cell_correct, width_bins, bins)[1],
        "ece_equal_mass": lambda c: _calibration_errors(c, cell_conf, cell_correct, mass_bins, bins)[0],
        "brier": lambda c: (c @ (cell_conf - cell_correct) ** 2) / c.sum(-1),
        "top_nll": lambda c: -(c @ log_p) / c.sum(-1),
        "accuracy": lambda c: (c @ cell_correct) / c.sum(-1),
        "mean_confidence": lambda c: (c @ cell_conf) / c.sum(-1),
        "confidence_auroc": lambda c: _auroc(c, cell_conf, cell_correct),
    }
    ci = {}
    for key, function in figures.items():
        out[key], ci[key] = statistic(function)
    if quality is not None and np.isfinite(quality).any():
        known = np.isfinite(quality)
        q_cells, q_counts = metrics.row_patterns(np.column_stack([np.round(quality[known] / GRID), correct[known]]))
        q_draws = metrics.resample_counts(q_counts, resamples=resamples, seed=seed) if resamples else None
        score, label = q_cells[:, 0].astype(float), q_cells[:, 1].astype(float)
        out["quality_auroc"] = float(_auroc(q_counts.astype(float), score, label))
        ci["quality_auroc"] = (
            metrics.percentile_intervals({"x": _auroc(q_draws.astype(float), score, label)}, level=level)["x"]
            if q_draws is not None
            else [None, None]
        )
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


def fit_temperature(confidence: np.ndarray, correct: np.ndarray, *, iterations: int = 50) -> float:
    """Temperature ``T`` minimising the log loss of ``sigmoid(logit(c) / T)`` (Newton's method
    on ``1/T``, over distinct confidences). ``T > 1`` means the agent was overconfident."""
    values, inverse = np.unique(confidence, return_inverse=True)
    weight = np.bincount(inverse).astype(float)
    hits = np.bincount(inverse, correct.astype(float))
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
    from sklearn.isotonic import IsotonicRegression

    values, inverse = np.unique(confidence, return_inverse=True)
    weight = np.bincount(inverse).astype(float)
    rate = np.bincount(inverse, correct.astype(float)) / weight
    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(values, rate, sample_weight=weight)


def _apply(method: str, fitted, scores: np.ndarray) -> np.ndarray:
    """Recalibrate every candidate confidence (absent labels stay 0, candidates stay > 0)."""
    if method == "temperature":
        mapped = 1 / (1 + np.exp(-_logit(scores) / fitted))
    else:
        mapped = fitted.predict(scores.ravel()).reshape(scores.shape)
    return np.where(scores > 0, np.maximum(mapped, CLIP), 0.0)


def crossfit(
    pset: PredictionSet, agents: Sequence[int], method: str, *, n_folds: int = 5, seed: int | None = 0
) -> tuple[np.ndarray, dict[str, list[float]]]:
    """``(scores[n, len(agents), k], fitted)``: every fold's answers recalibrated by maps
    fitted on the other folds; ``fitted`` holds each agent's temperatures (or nothing)."""
    if method not in METHODS:
        raise ValueError(f"unknown recalibration '{method}': use one of {', '.join(METHODS)}")
    agents = list(agents)
    top, confidence = audit.agent_top(pset.scores[:, agents], pset.candidate[:, agents])
    correct = top == pset.gold[:, None]
    fold = folds(pset.n_instances, n_folds, seed)
    out = np.array(pset.scores[:, agents], dtype=np.float64)
    fitted: dict[str, list[float]] = {}
    for j, m in enumerate(agents):
        answered = top[:, j] >= 0
        temperatures = []
        for f in range(n_folds):
            train = answered & (fold != f)
            if not train.any():
                continue
            model = (fit_temperature if method == "temperature" else fit_isotonic)(
                confidence[train, j], correct[train, j]
            )
            if method == "temperature":
                temperatures.append(float(model))
            held_out = fold == f
            out[held_out, j] = _apply(method, model, pset.scores[held_out, m])
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
    the raw figures and, per recalibration method, the held-out figures after it."""
    agents = list(range(len(pset.agents)))
    top, confidence = audit.agent_top(pset.scores, pset.candidate)
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
            stats["recalibrated"] = {}
            for method, conf in recalibrated.items():
                after = agent_statistics(conf[answered, m], hit, **options)
                after.pop("reliability", None)
                stats["recalibrated"][method] = after
            entry[name] = stats
        out["groups"][group] = entry
    return out
