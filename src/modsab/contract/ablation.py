"""Ablation records: one end-to-end model's answers with an input stream removed.

A record may carry a ``condition``: ``"full"`` (the default when absent), ``"without:<stream>"``
(the stream masked), ``"only:<stream>"`` (every other stream masked) or ``"shuffled:<stream>"``
(the stream taken from another instance). An agent with any record whose condition is not
``"full"`` is a **model**: all its records, its ``"full"`` ones included, are one model's
answers under different inputs, not separate agents. They are never fused; they go to an
:class:`AblationSet` (dense arrays per (model, condition) column) that the ``ablation``
diagnostic audits. Agents without conditions are fused and audited as before.

The loader reads the records once: :func:`tag_models` renames each model record's agent to
a key of its own per condition (``"model [without:audio]"``), so that everything the loader
checks per (instance, agent) (one record per pair, gold agreeing across records, labels in
the set, invalid candidates counted) holds per (instance, model, condition) with no second
code path; :func:`split` then takes those columns out of the :class:`PredictionSet`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modsab.contract.errors import InputError
from modsab.contract.labels import LabelSet

if TYPE_CHECKING:
    from modsab.contract.predictions import PredictionSet

#: The condition of a model's answer on its complete input.
FULL = "full"
#: Kinds of condition with a stream, in display order.
KINDS = ("without", "only", "shuffled")
CONDITION_HELP = "'full', 'without:<stream>', 'only:<stream>' or 'shuffled:<stream>'"


def parse_condition(value: Any) -> str | None:
    """The canonical condition (``"full"``, ``"<kind>:<stream>"``, kind lower-cased, both parts
    trimmed), or ``None`` when absent (null, NaN or blank: the full input). A ValueError otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a string ({CONDITION_HELP}), got {value!r}")
    text = value.strip()
    if not text:
        return None
    if text.lower() == FULL:
        return FULL
    kind, sep, stream = text.partition(":")
    kind, stream = kind.strip().lower(), stream.strip()
    if not sep or kind not in KINDS or not stream:
        raise ValueError(f"'{text}' is not a condition: use {CONDITION_HELP}")
    return f"{kind}:{stream}"


def split_condition(condition: str) -> tuple[str, str | None]:
    """``"without:audio"`` -> ``("without", "audio")``; ``"full"`` -> ``("full", None)``."""
    if condition == FULL:
        return FULL, None
    kind, _, stream = condition.partition(":")
    return kind, stream


def canonical_conditions(column: pa.Array) -> pa.Array:
    """A condition column (strings or a dictionary array, null when absent) as canonical
    strings, parsed once per distinct value; a ValueError on the first value that is not
    a condition (the exact reader then names its line)."""
    encoded = column if pa.types.is_dictionary(column.type) else column.dictionary_encode()
    values = encoded.dictionary.to_pylist()
    canonical = [parse_condition(v) for v in values]
    if canonical == values:
        return encoded
    return pa.DictionaryArray.from_arrays(encoded.indices, pa.array(canonical, pa.string()))


def _plain(column: pa.Array) -> pa.Array:
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column


def is_condition_key(name: str) -> bool:
    """Whether ``name`` is a model's per-condition key made by :func:`tag_models`."""
    return name.endswith("]") and " [" in name


def condition_key_order(key: str) -> tuple:
    """Sort key of a model's per-condition key: model, then full, without, shuffled, only, then stream."""
    model, _, condition = key[:-1].rpartition(" [")
    kind, _, stream = condition.partition(":")
    return model, {"full": 0, "without": 1, "shuffled": 2, "only": 3}.get(kind, 4), stream


def tag_models(agent: pa.Array, condition: pa.Array | None) -> tuple[pa.Array, dict[str, tuple[str, str]]]:
    """``(agent column, {key: (model, condition)})``: each record of a model (an agent with a
    condition other than ``"full"`` on any record) gets the agent key ``"<model> [<condition>]"``
    (absent condition: ``full``); plain agents keep their name. No model: the column unchanged."""
    if condition is None or condition.null_count == len(condition):
        return agent, {}
    names, conditions = _plain(agent).cast(pa.string()), _plain(condition).cast(pa.string())
    not_full = pc.fill_null(pc.not_equal(conditions, pa.scalar(FULL)), False)
    if not pc.any(not_full).as_py():
        return agent, {}
    models = pc.unique(names.filter(not_full))
    is_model = pc.is_in(names, value_set=models)
    filled = pc.fill_null(conditions, pa.scalar(FULL))
    keys = pc.binary_join_element_wise(names, pa.scalar(" ["), filled, pa.scalar("]"), pa.scalar(""))
    tagged = pc.if_else(is_model, keys, names)
    model_keys = keys.filter(is_model).dictionary_encode()
    first = np.unique(model_keys.indices.to_numpy(zero_copy_only=False), return_index=True)[1]
    rows = pa.array(np.flatnonzero(is_model.to_numpy(zero_copy_only=False))[first])
    mapping = dict(
        zip(
            keys.take(rows).to_pylist(),
            zip(names.take(rows).to_pylist(), filled.take(rows).to_pylist(), strict=True),
            strict=True,
        )
    )
    clash = pc.unique(names.filter(pc.invert(is_model))).to_pylist()
    clash = [name for name in clash if name in mapping]
    if clash:
        raise InputError(
            f"agent '{clash[0]}' has the name modsab gives model '{mapping[clash[0]][0]}' under condition "
            f"'{mapping[clash[0]][1]}'",
            hint="rename that agent",
        )
    return tagged, mapping


@dataclass
class AblationSet:
    """Models' answers under conditions, as dense arrays over ``(model, condition)`` columns::

        scores[n, C, k]     confidence in [0, 1], 0 where absent
        candidate[n, C, k]  the model named that label (valid)
        present[n, C]       a record exists for (instance, model, condition)
        gold[n]             label index

    ``columns[c] = (model, condition)``; every model has a ``"full"`` column (first among
    its columns, even when no record has it). Instances are those with any model record;
    they need not be the fused agents' instances."""

    instance_ids: np.ndarray
    labels: LabelSet
    gold: np.ndarray
    columns: tuple[tuple[str, str], ...]
    scores: np.ndarray
    candidate: np.ndarray
    present: np.ndarray
    dataset: np.ndarray | None = None
    line: np.ndarray | None = None
    invalid_labels: dict[str, int] = field(default_factory=dict)
    invalid_examples: dict[str, list[str]] = field(default_factory=dict)
    source: str = "<memory>"

    @classmethod
    def from_arrays(
        cls,
        scores: np.ndarray,
        gold: np.ndarray,
        *,
        labels: LabelSet | Sequence[str],
        columns: Sequence[tuple[str, str]],
        candidate: np.ndarray | None = None,
        present: np.ndarray | None = None,
        instance_ids: Sequence[str] | None = None,
        dataset: Sequence[str] | None = None,
    ) -> AblationSet:
        """A set from arrays in memory (confidences in [0, 1]; ``candidate`` defaults to
        ``scores > 0``, ``present`` to every pair). Conditions are checked and canonicalised;
        a model without a ``"full"`` column gets an empty one."""
        scores = np.asarray(scores, dtype=np.float64)
        n, c, k = scores.shape
        labels = labels if isinstance(labels, LabelSet) else LabelSet(tuple(labels))
        if len(labels) != k or len(columns) != c:
            raise InputError(f"scores has shape {scores.shape}, but {len(columns)} columns and {len(labels)} labels")
        try:
            pairs = [(str(model), parse_condition(condition) or FULL) for model, condition in columns]
        except ValueError as error:
            raise InputError(f"condition {error}") from None
        candidate = scores > 0 if candidate is None else np.asarray(candidate, dtype=bool)
        present = np.ones((n, c), dtype=bool) if present is None else np.asarray(present, dtype=bool)
        out = cls(
            instance_ids=np.asarray(instance_ids if instance_ids is not None else [str(i) for i in range(n)], object),
            labels=labels,
            gold=np.asarray(gold, dtype=np.int64),
            columns=tuple(pairs),
            scores=scores,
            candidate=candidate,
            present=present,
            dataset=None if dataset is None else np.asarray(dataset, dtype=object),
            invalid_labels=dict.fromkeys(dict.fromkeys(model for model, _ in pairs), 0),
        )
        return out._ordered()

    def _ordered(self) -> AblationSet:
        """Columns grouped by model (first appearance), ``"full"`` first in each group, the
        others in first-appearance order, with an empty ``"full"`` column where a model has
        none; the same (model, condition) twice is an error."""
        if len(set(self.columns)) != len(self.columns):
            twice = next(c for i, c in enumerate(self.columns) if c in self.columns[:i])
            raise InputError(f"model '{twice[0]}' has condition '{twice[1]}' twice")
        columns: list[tuple[str, str]] = []
        source: list[int | None] = []  # the old column of each new one (None: an empty full column)
        for model in dict.fromkeys(model for model, _ in self.columns):
            own = [i for i, (m, _) in enumerate(self.columns) if m == model]
            full = [i for i in own if self.columns[i][1] == FULL]
            columns.append((model, FULL))
            source.append(full[0] if full else None)
            for i in own:
                if self.columns[i][1] != FULL:
                    columns.append(self.columns[i])
                    source.append(i)
        if source == list(range(len(self.columns))):
            return self

        def take(array: np.ndarray | None, fill: Any) -> np.ndarray | None:
            if array is None:
                return None
            out = np.full((array.shape[0], len(source), *array.shape[2:]), fill, dtype=array.dtype)
            for new, old in enumerate(source):
                if old is not None:
                    out[:, new] = array[:, old]
            return out

        self.columns = tuple(columns)
        self.scores, self.candidate = take(self.scores, 0.0), take(self.candidate, False)
        self.present, self.line = take(self.present, False), take(self.line, 0)
        return self

    @property
    def n_instances(self) -> int:
        return int(self.gold.shape[0])

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(model for model, _ in self.columns))

    def conditions(self, model: str) -> tuple[str, ...]:
        """The model's conditions, ``"full"`` first."""
        return tuple(condition for m, condition in self.columns if m == model)

    def streams(self, model: str) -> tuple[str, ...]:
        """The streams the model's conditions name, in order of first appearance."""
        names = (split_condition(c)[1] for c in self.conditions(model))
        return tuple(dict.fromkeys(s for s in names if s is not None))

    def column(self, model: str, condition: str) -> int | None:
        try:
            return self.columns.index((model, condition))
        except ValueError:
            return None

    def subset(self, rows: np.ndarray) -> AblationSet:
        """The same set restricted to some instances (by index or boolean mask)."""
        return AblationSet(
            instance_ids=self.instance_ids[rows],
            labels=self.labels,
            gold=self.gold[rows],
            columns=self.columns,
            scores=self.scores[rows],
            candidate=self.candidate[rows],
            present=self.present[rows],
            dataset=None if self.dataset is None else self.dataset[rows],
            line=None if self.line is None else self.line[rows],
            invalid_labels=self.invalid_labels,
            invalid_examples=self.invalid_examples,
            source=self.source,
        )


def split(pset: PredictionSet, models: dict[str, tuple[str, str]]) -> PredictionSet:
    """Take the model columns (agent keys of :func:`tag_models`) out of ``pset``: the set of
    the plain agents (over the instances any of them answered; over every instance when there
    is no plain agent), with the models' :class:`AblationSet` as its ``ablation``."""
    from modsab.contract.predictions import PredictionSet

    plain = [j for j, name in enumerate(pset.agents) if name not in models]
    tagged = [j for j, name in enumerate(pset.agents) if name in models]
    ab_rows = np.flatnonzero(pset.present[:, tagged].any(axis=1))
    by_model: dict[str, list[str]] = {}
    for j in tagged:
        by_model.setdefault(models[pset.agents[j]][0], []).append(pset.agents[j])
    invalid = {model: sum(pset.invalid_labels.get(key, 0) for key in keys) for model, keys in by_model.items()}
    examples = {
        model: list(dict.fromkeys(e for key in keys for e in pset.invalid_examples.get(key, [])))[:5]
        for model, keys in by_model.items()
        if any(pset.invalid_examples.get(key) for key in keys)
    }
    ablation = AblationSet(
        instance_ids=pset.instance_ids[ab_rows],
        labels=pset.labels,
        gold=pset.gold[ab_rows],
        columns=tuple(models[pset.agents[j]] for j in tagged),
        scores=pset.scores[ab_rows][:, tagged],
        candidate=pset.candidate[ab_rows][:, tagged],
        present=pset.present[ab_rows][:, tagged],
        dataset=None if pset.dataset is None else pset.dataset[ab_rows],
        line=None if pset.line is None else pset.line[ab_rows][:, tagged],
        invalid_labels=invalid,
        invalid_examples=examples,
        source=pset.source,
    )._ordered()
    rows = np.flatnonzero(pset.present[:, plain].any(axis=1)) if plain else np.arange(pset.n_instances)
    names = tuple(pset.agents[j] for j in plain)
    return PredictionSet(
        instance_ids=pset.instance_ids[rows],
        agents=names,
        labels=pset.labels,
        scores=pset.scores[rows][:, plain],
        candidate=pset.candidate[rows][:, plain],
        quality=pset.quality[rows][:, plain],
        gold=pset.gold[rows],
        present=pset.present[rows][:, plain],
        dataset=None if pset.dataset is None else pset.dataset[rows],
        line=None if pset.line is None else pset.line[rows][:, plain],
        invalid_labels={name: pset.invalid_labels.get(name, 0) for name in names},
        invalid_examples={name: v for name, v in pset.invalid_examples.items() if name in names},
        skipped=pset.skipped,
        n_without_gold=pset.n_without_gold,
        source=pset.source,
        scale=pset.scale,
        ablation=ablation,
    )
