"""Cross-fitted recalibration of agent confidences (temperature scaling and isotonic regression).

The predictions contract has no split column, so instances are dealt into folds
(:mod:`modsab.core.folds`; whole speakers when they are known) and each fold is recalibrated
by maps fitted on the other folds. A map fitted on top labels (Guo et al. 2017's
temperature scaling on the top-label logit; isotonic regression, Zadrozny & Elkan 2002,
via scikit-learn) is applied to every candidate's confidence. Fits work on counts of
distinct confidences; integer-percent answers go through one 101-entry table per agent and
fold. :func:`crossfit_reference` is the plain computation the fast path must equal.

Used by the ``recalibrated-*`` fusion rules and by the calibration diagnostic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modsab.contract import compact
from modsab.contract.predictions import PredictionSet
from modsab.core import audit
from modsab.core.context import of
from modsab.core.folds import Folds, assign_folds, n_folds_of, seeded_folds

folds = seeded_folds  # the name the calibration module exported

CLIP = 1e-4
METHODS = ("temperature", "isotonic")
PERCENT = np.arange(101) / 100  # integer-percent answers as read (``p / 100``)
BLOCK = 1 << 18  # scores per block of a pass over the score array


# -- tables of distinct values ------------------------------------------------------------------

def percent_codes(values: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
    """Integer percent of each valid value (``PERCENT.size`` elsewhere) when every valid value
    is exactly ``p / 100`` (as integer-percent answers are read), else None."""
    x = np.where(valid, values, 0.0)
    percent = np.rint(x * 100)
    if percent.size and not (percent.min() >= 0 and percent.max() <= 100 and np.array_equal(percent / 100, x)):
        return None
    code = percent.astype(np.int64)
    code[~valid] = PERCENT.size
    return code


def distinct_codes(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(code[n], distinct[V])``: each valid value's index among the sorted distinct valid
    values, ``V`` elsewhere. Integer-percent values are coded on :data:`PERCENT`, unsorted."""
    code = percent_codes(values, valid)
    if code is not None:
        return code, PERCENT
    distinct, inverse = np.unique(values[valid], return_inverse=True)
    code = np.full(values.shape, distinct.size, dtype=np.int64)
    code[valid] = inverse.reshape(-1)
    return code, distinct


def count_cells(columns: list[tuple[np.ndarray, int]], rows: np.ndarray | None = None) -> np.ndarray:
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




# -- recalibration ------------------------------------------------------------------------------


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
    Remembered per set (as :func:`crossfit_store` holds it); the calibration report shares
    the fits, not this array."""
    scores, fitted = crossfit_store(pset, agents, method, n_folds=n_folds, seed=seed)
    return (scores.decode() if isinstance(scores, TableScores) else scores), fitted


def crossfit_store(
    pset: PredictionSet, agents: Sequence[int], method: str, *, n_folds: int = 5, seed: int | None = 0
) -> tuple[np.ndarray | TableScores, dict[str, list[float]]]:
    """:func:`crossfit` as remembered: for a set held as one-byte percent codes, a
    :class:`TableScores` (``scores[rows]`` a block), not the ``[n, m, k]`` float64 array."""
    key = ("crossfit", tuple(agents), method, n_folds, seed)
    return of(pset).remember(key, lambda: _crossfit(pset, agents, method, n_folds=n_folds, seed=seed))


class TableScores:
    """Recalibrated scores of a set held as one-byte percent codes: each slot's code (its
    integer percent) through its agent's and fold's 101-entry table, looked up a block of
    rows at a time: the very floats :func:`_lookup` writes whole (the same table entries)."""

    def __init__(self, codes: np.ndarray, agents: list[int], fold: np.ndarray, tables: list[np.ndarray]) -> None:
        self.codes, self.agents, self.fold = codes, agents, fold
        self.flat = np.concatenate([table.ravel() for table in tables]) if tables else np.zeros(0)
        self.offset = (np.arange(len(agents)) * (tables[0].size if tables else 0))[None, :, None]
        n, m, k = codes.shape
        self.every = agents == list(range(m))
        self.shape = (n, len(agents), k)

    def __getitem__(self, rows: slice) -> np.ndarray:
        block = self.codes[rows] if self.every else self.codes[rows][:, self.agents]
        index = block.astype(np.intp)
        index += self.offset
        index += (self.fold[rows] * 101)[:, None, None]
        return np.take(self.flat, index, mode="clip")

    def decode(self) -> np.ndarray:
        """The whole ``[n, len(agents), k]`` float64 array."""
        out = np.empty(self.shape)
        step = max(1, BLOCK // max(1, self.shape[1] * self.shape[2]))
        for start in range(0, self.shape[0], step):
            rows = slice(start, start + step)
            out[rows] = self[rows]
        return out


def _percent_codes(store) -> bool:
    """A set's one-byte codes are its integer percents, as :func:`_lookup` rounds the floats
    they decode to (every code 0-100 checked, and none above 100)."""
    if not isinstance(store, compact.CompactScores):
        return False
    every = np.arange(101, dtype=np.uint8)
    scaled = compact.CompactScores(every, store.divisor, store.top).decode() * 100
    exact = np.array_equal(np.rint(scaled), every) and np.abs(scaled - every).max() <= 1e-6
    return bool(exact and int(store.codes.max(initial=0)) <= 100)


def set_folds(pset: PredictionSet, n_folds: Folds, seed: int | None) -> np.ndarray:
    """The set's folds (:meth:`modsab.core.context.Context.folds`): every cross-fitted part
    (recalibration, learned and reliability weights) deals the same folds once."""
    return of(pset).folds(n_folds, seed)


def fold_tally(pset: PredictionSet, agents: list[int], n_folds: int, seed: int | None) -> list[tuple]:
    """Per agent ``(code[n], values[V], counts[folds, V, 2])``: its top confidences coded
    by :func:`distinct_codes` and its answered instances counted by fold and correctness."""

    def compute():
        top, confidence = of(pset).agent_top(agents)
        answered = top >= 0
        correct = top == pset.gold[:, None]
        fold = set_folds(pset, n_folds, seed)
        out = []
        for j in range(len(agents)):
            code, values = distinct_codes(confidence[:, j], answered[:, j])  # one contiguous column per agent
            counts = count_cells([(fold, n_folds_of(n_folds)), (code, values.size + 1), (correct[:, j], 2)])
            out.append((code, values, counts[:, :-1]))
        return out

    return of(pset).remember(("fold_tally", tuple(agents), n_folds, seed), compute)


def fits(pset: PredictionSet, agents: list[int], method: str, n_folds: int, seed: int | None):
    """``(models, tables, fitted)``: per agent, each fold's map fitted on the other folds (None
    when they hold no answer) and its ``[folds, 101]`` table of integer percents; the
    temperatures. Fitted on the counts of distinct confidences; remembered per set."""
    if method not in METHODS:
        raise ValueError(f"unknown recalibration '{method}': use one of {', '.join(METHODS)}")

    def compute():
        fit = _temperature if method == "temperature" else _isotonic
        models: list[list] = []
        fitted: dict[str, list[float]] = {}
        for m, (_, values, counts) in zip(agents, fold_tally(pset, agents, n_folds, seed), strict=True):
            present = counts.sum(axis=(0, 2)) > 0
            values, counts = values[present], counts[:, present]
            total = counts.sum(axis=0)
            per_fold, temperatures = [], []
            for f in range(n_folds_of(n_folds)):
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

    return of(pset).remember(("fits", tuple(agents), method, n_folds, seed), compute)


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
    models, tables, fitted = fits(pset, agents, method, n_folds, seed)
    fold = set_folds(pset, n_folds, seed)
    store = of(pset).score_store
    if _percent_codes(store):  # the codes are the integer percents: look them up a block at a time
        return TableScores(store.codes, agents, fold, tables), fitted
    out = _lookup(pset, agents, tables, fold)  # integer percent: one 101-entry table per agent and fold
    if out is None:
        out = np.array(pset.scores[:, agents], dtype=np.float64)
        for j, m in enumerate(agents):
            for f, model in enumerate(models[j]):
                if model is not None:
                    held_out = fold == f
                    out[held_out, j] = _apply(method, model, pset.scores[held_out, m])
    return out, fitted




def crossfit_reference(
    pset: PredictionSet, agents: Sequence[int], method: str, *, n_folds: Folds = 5, seed: int | None = 0
) -> np.ndarray:
    """What :func:`crossfit` computes, plainly: per agent and fold, a map fitted on the other
    folds' top labels (confidence, correct) applied to every candidate of the fold."""
    agents = list(agents)
    top, confidence = audit.agent_top(pset.scores[:, agents], pset.candidate[:, agents])
    fold = assign_folds(pset, n_folds, seed)
    fit = fit_temperature if method == "temperature" else fit_isotonic
    out = np.array(pset.scores[:, agents], dtype=np.float64)
    for j, m in enumerate(agents):
        for f in range(n_folds_of(n_folds)):
            train = (fold != f) & (top[:, j] >= 0)
            if not train.any():
                continue
            model = fit(confidence[train, j], top[train, j] == pset.gold[train])
            held = fold == f
            scores = pset.scores[held, m]
            out[held, j] = np.where(scores > 0, np.maximum(_map(method, model, scores), CLIP), 0.0)
    return out
