"""Make the ablation conditions by masking input streams and calling the user's model:
``modsab.ablate`` (and ``modsab.to_jsonl`` to write its records).

An end-to-end model that reads several input streams (image, audio, text, ...) is asked once
on the full input and once per stream with that stream masked; its answers come back as
records of the predictions contract with a ``condition`` (``full``, ``without:<stream>``,
``shuffled:<stream>``, ``only:<stream>``), ready for :func:`to_jsonl` and ``modsab diagnose``,
whose ``ablation`` section then says which stream sabotages the model::

    records = modsab.ablate(pipeline.predict_proba, {"image": X_img, "audio": X_aud, "text": X_txt},
                            labels=pipeline.classes_, gold=y, mask=("mean", "shuffle"))
    modsab.to_jsonl(records, "model.jsonl")

``predict`` takes what ``inputs`` is (a dict of per-stream 2-D arrays, or a DataFrame whose
column groups ``streams`` names) and returns label probabilities ``[n, len(labels)]``, in
``labels`` order: ``predict_proba`` of a scikit-learn pipeline, or a torch module wrapped by
the caller (a tensor is accepted and detached). It is called once per condition and batch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modsab.contract.ablation import FULL
from modsab.contract.errors import InputError
from modsab.contract.records import PredictionRecord

#: Masks by name: what replaces a stream, and the kind of condition it makes.
MASKS = {"mean": "without", "zero": "without", "shuffle": "shuffled"}
Mask = str | Callable[[Any, np.random.Generator], Any]


class Record(dict):
    """A contract record (or candidate) as a plain dict, ready for JSON, that also reads like a
    :class:`~modsab.contract.records.PredictionRecord`: ``r["condition"]`` or ``r.condition``,
    ``r.candidates[0].label``; an optional field left out reads ``None``."""

    __slots__ = ()
    _optional = frozenset({"gold", "quality", "dataset", "condition"})

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name in self._optional:
                return None
            raise AttributeError(name) from None


def _is_frame(value: Any) -> bool:
    return hasattr(value, "columns") and hasattr(value, "iloc")


def _probabilities(output: Any, rows: int, labels: int, condition: str) -> np.ndarray:
    """``predict``'s answer as a checked float array ``[rows, labels]``."""
    if hasattr(output, "detach"):  # a torch tensor
        output = output.detach().cpu().numpy()
    proba = np.asarray(output, dtype=np.float64)
    if proba.shape != (rows, labels):
        raise InputError(
            f"predict returned shape {proba.shape} under condition '{condition}', expected ({rows}, {labels})",
            hint="return one probability per label, in the order of 'labels' (predict_proba, or softmax of logits)",
        )
    if not np.all(np.isfinite(proba)) or proba.min(initial=0) < -1e-9 or proba.max(initial=0) > 1 + 1e-9:
        raise InputError(
            f"predict returned values outside [0, 1] under condition '{condition}'",
            hint="return probabilities (apply softmax to logits)",
        )
    return np.clip(proba, 0.0, 1.0)


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded permutation with no fixed point (n >= 2): every instance gets another's stream."""
    order = rng.permutation(n)
    fixed = np.flatnonzero(order == np.arange(n))
    if fixed.size > 1:
        order[fixed] = order[np.roll(fixed, 1)]  # rotate the fixed points among themselves
    elif fixed.size == 1:
        other = (fixed[0] + 1 + rng.integers(n - 1)) % n
        order[fixed[0]], order[other] = order[other], order[fixed[0]]
    return order


def _blank(values: np.ndarray, how: str) -> np.ndarray:
    """``values`` (one stream, ``[n, d]``) masked by ``mean`` or ``zero``: numeric columns take
    their mean over the instances (or 0), other columns (text) become empty strings."""
    if values.dtype.kind in "fiub":
        if how == "zero":
            return np.zeros_like(values, dtype=np.float64)
        return np.broadcast_to(values.astype(np.float64).mean(axis=0), values.shape).copy()
    return np.full(values.shape, "", dtype=object)


class _Streams:
    """The inputs, by stream: reads one stream, and builds the input with some streams replaced."""

    def __init__(self, inputs: Any, streams: Sequence[str] | Mapping[str, Sequence[str]] | None) -> None:
        self.frame = _is_frame(inputs)
        if self.frame:
            if not isinstance(streams, Mapping) or not streams:
                raise InputError(
                    "a DataFrame input needs streams={name: [columns]}",
                    hint="say which columns make each stream: streams={'image': pixel_columns, 'text': ['caption']}",
                )
            self.columns = {str(name): list(columns) for name, columns in streams.items()}
            seen: dict[Any, str] = {}
            for name, columns in self.columns.items():
                if not columns:
                    raise InputError(f"stream '{name}' has no column")
                for column in columns:
                    if column not in inputs.columns:
                        raise InputError(f"column '{column}' of stream '{name}' is not in the DataFrame")
                    if column in seen:
                        raise InputError(f"column '{column}' is in streams '{seen[column]}' and '{name}'")
                    seen[column] = name
            self.inputs = inputs
            self.n = len(inputs)
            self.names = self.every = list(self.columns)
            return
        if not isinstance(inputs, Mapping) or not inputs:
            raise InputError("inputs must be a dict of stream -> array (n, d), or a pandas DataFrame")
        arrays = {}
        for name, values in inputs.items():
            array = np.asarray(values)
            if array.ndim == 1:
                array = array[:, None]
            if array.ndim != 2:
                raise InputError(f"stream '{name}' has shape {array.shape}; expected (n, d)")
            arrays[str(name)] = array
        sizes = {name: len(a) for name, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise InputError(f"streams have different numbers of instances: {sizes}")
        self.inputs = arrays
        self.n = next(iter(sizes.values()))
        self.every = list(arrays)  # every stream of the input (``only:`` masks all but one)
        if streams is None:
            self.names = list(arrays)
        else:
            self.names = [str(s) for s in streams]
            unknown = [s for s in self.names if s not in arrays]
            if unknown:
                raise InputError(f"stream '{unknown[0]}' is not in inputs", hint=f"inputs: {', '.join(arrays)}")

    def values(self, name: str) -> Any:
        return self.inputs[self.columns[name]] if self.frame else self.inputs[name]

    def mask(self, name: str, mask: Mask, rng: np.random.Generator, order: np.ndarray | None) -> Any:
        """The stream ``name`` masked: blanked, permuted by ``order``, or by the callable (an
        array ``[n, d]``, or for a DataFrame input a frame of the stream's columns)."""
        values = self.values(name)
        if callable(mask):
            out = mask(values, rng)
            if np.shape(out) != np.shape(values):
                raise InputError(
                    f"the mask returned shape {np.shape(out)} for stream '{name}', expected {np.shape(values)}"
                )
            return out
        if mask == "shuffle":
            if self.frame:
                out = values.iloc[order].copy()
                out.index = values.index
                return out
            return values[order]
        if self.frame:
            out = values.copy()
            for column in self.columns[name]:
                out[column] = _blank(values[[column]].to_numpy(), mask)[:, 0]
            return out
        return _blank(values, mask)

    def replaced(self, masked: dict[str, Any]) -> Any:
        """The inputs with the streams in ``masked`` replaced."""
        if not self.frame:
            return {name: masked.get(name, values) for name, values in self.inputs.items()}
        frame = self.inputs.copy()
        for name, values in masked.items():
            array = values.to_numpy() if _is_frame(values) else np.asarray(values)
            for j, column in enumerate(self.columns[name]):
                frame[column] = values[column].to_numpy() if _is_frame(values) else array[:, j]
        return frame

    def batch(self, data: Any, rows: slice) -> Any:
        if self.frame:
            return data.iloc[rows]
        return {name: values[rows] for name, values in data.items()}


def _masks(mask: Mask | Sequence[Mask]) -> list[tuple[str, Mask]]:
    """``(kind, mask)`` for each mask asked for; a mask name must be known, kinds distinct."""
    masks = [mask] if isinstance(mask, str) or callable(mask) else list(mask)
    out = []
    for item in masks:
        if callable(item):
            out.append(("without", item))
        elif item in MASKS:
            out.append((MASKS[item], item))
        else:
            raise InputError(f"unknown mask '{item}'", hint="use 'mean', 'zero', 'shuffle' or a callable(values, rng)")
    kinds = [kind for kind, _ in out]
    if len(set(kinds)) != len(kinds):
        raise InputError(
            "two masks make the same condition (mean, zero and a callable all make 'without:<stream>')",
            hint="give one removal mask, optionally with 'shuffle'",
        )
    return out


def ablate(
    predict: Callable[[Any], Any],
    inputs: Mapping[str, Any] | Any,
    *,
    labels: Sequence[Any],
    streams: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    mask: Mask | Sequence[Mask] = "mean",
    gold: Sequence[Any] | None = None,
    instance_ids: Sequence[Any] | None = None,
    dataset: Sequence[Any] | str | None = None,
    agent: str = "model",
    only: bool = False,
    seed: int | None = 0,
    batch_size: int | None = None,
) -> list[Record]:
    """The model's answers on the full input and with each stream masked, as contract records
    (:class:`Record`: plain dicts in the JSON shape that also read as attributes, ``r.condition``;
    ``PredictionRecord.model_validate(r)`` makes the pydantic record).

    ``inputs``: a dict of stream -> array ``(n, d)`` (``streams`` optionally picks the streams
    to ablate), or a pandas DataFrame with ``streams={name: [columns]}``. ``predict(inputs)``
    returns probabilities ``(n, len(labels))`` in ``labels`` order. ``mask``:

    - ``"mean"`` (default): the stream's column means over ``inputs`` -> ``without:<stream>``;
    - ``"zero"``: zeros -> ``without:<stream>`` (text columns become ``""`` under both);
    - ``"shuffle"``: the stream taken from another instance (a seeded permutation without
      fixed points) -> ``shuffled:<stream>``, for the perceptual score;
    - a callable ``(stream_values, rng) -> masked values`` -> ``without:<stream>``;
    - a sequence of these (one removal mask, optionally with ``"shuffle"``).

    ``only=True`` adds ``only:<stream>``: every other stream masked by the removal mask.
    ``gold``, ``instance_ids`` (default: the DataFrame's index, else 0..n-1) and ``dataset``
    fill those fields. Confidences are written on the contract's 0-100 scale; every label is a
    candidate, ranked by confidence (ties in ``labels`` order). One ``predict`` call per
    condition and batch of ``batch_size`` instances (default: all at once).
    """
    if not callable(predict):
        raise InputError("predict must be a callable: inputs -> probabilities (n, n_labels)")
    data = _Streams(inputs, streams)
    n = data.n
    if n == 0:
        raise InputError("inputs have no instance")
    names = [str(label) for label in labels]
    if not names or len(set(names)) != len(names):
        raise InputError("labels must be a non-empty list of distinct labels", hint="e.g. pipeline.classes_")
    masks = _masks(mask)
    ids = _column(instance_ids, n, "instance_ids")
    if ids is None:
        ids = [str(i) for i in (inputs.index if data.frame else range(n))]
    if len(set(ids)) != n:
        raise InputError("instance_ids must be distinct")
    golds = _column(gold, n, "gold")
    if golds is not None:
        unknown = sorted(set(golds) - set(names))
        if unknown:
            raise InputError(f"gold '{unknown[0]}' is not among the labels", hint=", ".join(names))
    datasets = [dataset] * n if isinstance(dataset, str) else _column(dataset, n, "dataset")
    if batch_size is not None and batch_size < 1:
        raise InputError("batch_size must be at least 1")
    if any(kind == "shuffled" for kind, _ in masks) and n < 2:
        raise InputError("shuffling a stream needs at least two instances")

    rng = np.random.default_rng(seed)
    removal = next((m for kind, m in masks if kind == "without"), "mean")

    def conditions():
        """``(condition, masked streams)``, made one at a time (a masked copy of one stream lives
        only while its condition is asked), in a fixed order so the permutations are seeded."""
        yield FULL, {}
        for name in data.names:
            for kind, item in masks:
                order = _derangement(n, rng) if item == "shuffle" else None
                yield f"{kind}:{name}", {name: data.mask(name, item, rng, order)}
            if only:
                yield f"only:{name}", {o: data.mask(o, removal, rng, None) for o in data.every if o != name}

    step = batch_size or n
    records: list[Record] = []
    for condition, masked in conditions():
        full_input = data.replaced(masked) if masked else data.inputs
        parts = []
        for start in range(0, n, step):
            rows = slice(start, min(start + step, n))
            count = rows.stop - rows.start
            parts.append(_probabilities(predict(data.batch(full_input, rows)), count, len(names), condition))
        records += _records(np.vstack(parts), names, ids, golds, datasets, agent, condition)
    return records


def _column(values: Sequence[Any] | None, n: int, what: str) -> list[str] | None:
    if values is None:
        return None
    values = [None if v is None else str(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]
    if len(values) != n:
        raise InputError(f"{what} has {len(values)} values for {n} instances")
    return values


def _records(
    proba: np.ndarray,
    labels: list[str],
    ids: list[str],
    gold: list[str] | None,
    dataset: list[str] | None,
    agent: str,
    condition: str,
) -> list[Record]:
    """One record per instance: every label a candidate, by confidence (ties: label order)."""
    order = np.argsort(-proba, axis=1, kind="stable")
    confidence = (np.take_along_axis(proba, order, axis=1) * 100.0).tolist()
    names = np.asarray(labels, dtype=object)[order].tolist()
    head: dict[str, Any] = {"agent": agent, "condition": condition}
    out = []
    for i, instance in enumerate(ids):
        record = Record(instance_id=instance, **head)
        if gold is not None and gold[i] is not None:
            record["gold"] = gold[i]
        if dataset is not None and dataset[i] is not None:
            record["dataset"] = dataset[i]
        record["candidates"] = [Record(label=a, confidence=c) for a, c in zip(names[i], confidence[i], strict=True)]
        out.append(record)
    return out


def to_jsonl(
    records: Sequence[PredictionRecord | Mapping[str, Any]], path: str | Path, *, append: bool = False
) -> Path:
    """Write records (from :func:`ablate`, or any contract records or dicts) as JSON Lines,
    leaving out unset fields; written to a temporary file and renamed (``append`` adds to
    an existing file instead). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for item in records:
        data = item.model_dump(mode="json", exclude_none=True) if isinstance(item, PredictionRecord) else dict(item)
        lines.append(json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n")
    if append:
        with path.open("a", encoding="utf-8") as handle:
            handle.writelines(lines)
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.writelines(lines)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
