"""Instance folds for everything that is cross-fitted (recalibration, learned weights).

``folds`` is an int or a scikit-learn style splitter (anything with
``split(X, y, groups)`` yielding ``(train, test)`` index arrays, e.g. ``GroupKFold(5)``),
as scikit-learn's ``cv``. With an int, instances are dealt into seeded folds; when the set
knows each instance's speaker, whole speakers are dealt instead, so that no speaker is
recalibrated or weighted by a map fitted on itself (as the probes cross-fit).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from modsab.contract.errors import InputError


class Splitter(Protocol):
    def split(self, X: Any, y: Any = None, groups: Any = None): ...


Folds = int | Splitter


def seeded_folds(n: int, n_folds: int = 5, seed: int | None = 0) -> np.ndarray:
    """``[n]`` fold of each instance: a seeded shuffle dealt round-robin."""
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % n_folds
    return fold


def grouped_folds(groups: np.ndarray, n_folds: int = 5, seed: int | None = 0) -> np.ndarray:
    """``[n]`` fold of each instance, whole groups dealt: the distinct groups in a seeded
    order, each to the fold that holds the fewest instances so far (balanced, as GroupKFold)."""
    names, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    sizes = np.bincount(inverse, minlength=names.size)
    order = np.random.default_rng(seed).permutation(names.size)
    order = order[np.argsort(-sizes[order], kind="stable")]  # largest first, ties in seeded order
    load = np.zeros(n_folds, dtype=np.int64)
    group_fold = np.empty(names.size, dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        group_fold[g] = f
        load[f] += sizes[g]
    return group_fold[inverse]


class SpeakerFolds:
    """The one speaker-grouped splitter (scikit-learn's splitter protocol): seeded folds that
    keep every group (speaker) in one fold, balanced by size (:func:`grouped_folds`); without
    groups, seeded instance folds (:func:`seeded_folds`). The probes cross-fit with it, and
    recalibration and learned weights deal the same folds when the set knows its speakers."""

    def __init__(self, n_splits: int = 5, *, seed: int | None = 0) -> None:
        self.n_splits, self.seed = n_splits, seed

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def split(self, X: Any, y: Any = None, groups: Any = None):
        n = len(X)
        if groups is None:
            fold = seeded_folds(n, self.n_splits, self.seed)
        else:
            fold = grouped_folds(groups, self.n_splits, self.seed)
        for f in range(self.n_splits):
            yield np.flatnonzero(fold != f), np.flatnonzero(fold == f)


def n_folds_of(folds: Folds) -> int:
    """How many folds ``folds`` deals (an int, or a splitter's ``get_n_splits()``)."""
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer):
        getter = getattr(folds, "get_n_splits", None)
        if getter is None:
            raise InputError("folds must be an int (at least 2) or a splitter with split() and get_n_splits()")
        return int(getter())
    return int(folds)


def check_folds(folds: Folds) -> Folds:
    """``folds`` itself, or an :class:`InputError` naming what is wrong."""
    if isinstance(folds, int | np.integer) and not isinstance(folds, bool):
        if folds < 2:
            raise InputError(f"--folds {folds}: cross-fitting needs at least 2 folds", hint="the default is 5")
        return int(folds)
    if isinstance(folds, str | bytes) or not (hasattr(folds, "split") and hasattr(folds, "get_n_splits")):
        raise InputError(
            f"folds {folds!r} is neither an int nor a splitter",
            hint="give an int (at least 2) or an object with split(X, y, groups) and get_n_splits(), e.g. GroupKFold(5)",
        )
    return folds


def assign_folds(pset: Any, folds: Folds, seed: int | None) -> np.ndarray:
    """``[n]`` fold of every instance of ``pset`` (see the module docstring)."""
    folds = check_folds(folds)
    n = pset.n_instances
    speakers = getattr(pset, "speaker", None)
    if isinstance(folds, int):
        if speakers is not None and np.unique(np.asarray(speakers).astype(str)).size >= folds:
            return grouped_folds(speakers, folds, seed)
        return seeded_folds(n, folds, seed)
    fold = np.full(n, -1, dtype=np.int64)
    for f, (_, test) in enumerate(folds.split(np.zeros((n, 1)), pset.gold, speakers)):
        fold[np.asarray(test)] = f
    if (fold < 0).any():
        raise InputError("the splitter's test folds leave some instances out", hint="every instance must be tested once")
    return fold
