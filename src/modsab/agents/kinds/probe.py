"""``probe``: calibrated logistic regression on descriptor features, cross-fitted by speaker
(:class:`modsab.agents.probes.ProbeAgent`); ``features`` names text (sentence embeddings),
audio, vision or feature columns."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modsab.agents.kinds._base import AgentKind, KindInputs
from modsab.contract.errors import InputError
from modsab.diskcache import npy_cached
from modsab.registry import agent_kinds


def _quality_column(descriptors: pd.DataFrame, features: str | list[str]) -> pd.Series | None:
    from modsab.agents.probes import QUALITY_COLUMNS

    if isinstance(features, str):
        for column in QUALITY_COLUMNS.get(features, ()):
            if column in descriptors.columns:
                return descriptors[column]
    return None


def probe_agent_records(agent, study: KindInputs) -> list[dict[str, Any]]:
    """Records of one probe agent: out-of-fold probabilities of every instance with gold."""
    descriptors, instances, labels = study.descriptors, study.instances, study.labels
    from modsab.agents.probes import ProbeAgent, feature_columns, probe_records, text_embeddings

    by_id = {i.instance_id: i for i in instances}
    keep = np.array([by_id[i].gold is not None for i in descriptors["instance_id"]])
    table = descriptors[keep].reset_index(drop=True)
    spec = _stream_features(agent, study, table)
    if spec == "text":
        # an empty or missing transcript (None, or NaN from a string column) is no input:
        # the text probe abstains there and learns from the others
        texts = _texts(table, (study.task.streams.get("text") if study.task else None) or ["transcript"])
        has_text = np.array([bool(t) for t in texts], dtype=bool)
        features = np.full((len(texts), 1), np.nan)
        if has_text.any():
            embedded = _cached_embeddings([t for t in texts if t], study.cache_dir,
                                          text_embeddings)
            features = np.full((len(texts), embedded.shape[1]), np.nan)
            features[has_text] = embedded
    else:
        columns = feature_columns(table, spec, agent=agent.name)
        features = table[columns].to_numpy(dtype=np.float64)
    usable = ~np.all(np.isnan(features), axis=1) if features.size else np.zeros(len(table), bool)
    y = np.array([labels.index[by_id[i].gold] for i in table["instance_id"]])
    groups = [by_id[i].speaker or i for i in table["instance_id"]]
    probe = ProbeAgent(**agent.options)
    proba = np.zeros((len(table), len(labels)))
    if usable.sum() >= 2:
        proba[usable] = _cached_cross_fit(probe, features[usable], y[usable], np.asarray(groups)[usable],
                                          n_labels=len(labels), cache_dir=study.cache_dir, executor=study.executor)
    quality = _quality_column(table, agent.features)
    records = probe_records(
        table["instance_id"].tolist(), proba, list(labels), agent=agent.name,
        gold=[by_id[i].gold for i in table["instance_id"]],
        quality=None if quality is None else quality.tolist(),
        dataset=[by_id[i].dataset for i in table["instance_id"]],
    )
    for record, ok in zip(records, usable, strict=True):
        if not ok:  # no features for this instance (e.g. no video): the probe abstains
            record["candidates"] = []
    return records


def _stream_features(agent, study: KindInputs, table: pd.DataFrame) -> str | list[str]:
    """``features`` naming a stream of the task: the stream's numeric fields; a stream without
    any (the built-in ones describe in words) keeps the modality's meaning (text: sentence
    embeddings, audio / vision: their feature columns)."""
    from modsab.agents.probes import FEATURE_PREFIXES, numeric_column

    features = agent.features
    streams = study.task.streams if study.task is not None else {}
    if not isinstance(features, str) or features not in streams:
        return features
    numeric = [name for name in streams[features] if name in table.columns and numeric_column(table[name])]
    if numeric:
        return numeric
    if features == "text" or features in FEATURE_PREFIXES:
        return features
    raise InputError(
        f"agent '{agent.name}': the stream '{features}' has no numeric field ({', '.join(streams[features])})",
        hint="features: numeric columns by name or glob (\"a[0-9]*\"), or text / audio / vision",
    )


def _texts(table: pd.DataFrame, fields: list[str]) -> list[str]:
    """Per row, the non-empty texts of ``fields`` (one line each); "" where there is none."""
    present = [name for name in fields if name in table.columns]
    rows = zip(*(table[name].tolist() for name in present), strict=True) if present else ([] for _ in range(len(table)))
    return ["\n".join(t.strip() for t in row if isinstance(t, str) and t.strip()) for row in rows]


def _cached_cross_fit(probe, features: np.ndarray, y: np.ndarray, groups: np.ndarray, *, n_labels: int,
                      cache_dir: Path, executor: Any = None) -> np.ndarray:
    """:meth:`ProbeAgent.cross_fit_predict`, cached on disk by everything it depends on
    (features, labels, groups, options, scikit-learn version): a rerun refits nothing. Not by
    ``executor``: the folds fitted there are the ones fitted here, and only this process
    writes the cache."""
    import dataclasses

    import sklearn

    digest = hashlib.sha256()
    for part in (np.ascontiguousarray(features, dtype=np.float64), np.ascontiguousarray(y, dtype=np.int64)):
        digest.update(repr(part.shape).encode())
        digest.update(part.tobytes())
    meta = [[str(g) for g in groups], n_labels, dataclasses.asdict(probe), sklearn.__version__,
            "probe-v2"]  # v2: SpeakerFolds
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return npy_cached(cache_dir / f"probe-{digest.hexdigest()[:24]}.npy",
                       lambda: probe.cross_fit_predict(features, y, groups, n_labels=n_labels,
                                                         executor=executor))


def _cached_embeddings(texts: list[str | None], cache_dir: Path, embed) -> np.ndarray:
    """Sentence embeddings, cached on disk by text (a rerun embeds nothing twice)."""

    key = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()[:24]
    return npy_cached(cache_dir / f"embeddings-minilm-{key}.npy", lambda: embed(texts))



agent_kinds.register("probe", order=2)(
    AgentKind(
        help="calibrated logistic regression on descriptor features, cross-fitted by speaker",
        options=("C", "n_splits", "calibration", "random_state"),
        records=probe_agent_records,
    )
)
