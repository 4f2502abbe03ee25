"""What every dataset loader shares: the table reader, the base class (and the Instance record of
:mod:`modsab.contract.instance`, re-exported)."""

from __future__ import annotations

import ast
import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from modsab.contract.errors import InputError
from modsab.contract.instance import Instance  # noqa: F401  (re-exported)
from modsab.contract.labels import LABEL_FIELDS, LabelSet  # noqa: F401  (LABEL_FIELDS: the one list, re-exported)
from modsab.contract.textfiles import data_suffix, read_text

MEDIA_SUFFIXES = (".wav", ".flac", ".mp3", ".mp4", ".mkv", ".avi", ".webm", ".m4a", ".ogg")


@dataclass(frozen=True)
class Skip:
    item: str
    reason: str


@dataclass
class Loaded:
    """What a loader found: instances, and what it skipped or noticed, with reasons."""

    instances: list[Instance]
    labels: LabelSet
    skipped: list[Skip] = field(default_factory=list)
    notes: list[Skip] = field(default_factory=list)

    def skipped_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for skip in self.skipped:
            key = skip.reason.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


class DatasetLoader:
    """Base class: subclasses set ``name`` and ``default_labels`` and implement ``load``."""

    name: ClassVar[str] = "dataset"
    default_labels: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        path: str | Path,
        *,
        labels: LabelSet | str | None = None,
        limit: int | None = None,
        split: str | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.name} data not found", path=self.path, hint="check dataset.path")
        if isinstance(labels, str):
            labels = LabelSet.parse(labels)
        if labels is None and self.default_labels is not None:
            labels = LabelSet(self.default_labels, source=f"{self.name} default")
        self.labels = labels
        self.limit = limit
        self.split = split

    def load(self) -> Loaded:
        raise NotImplementedError

    def _finish(self, instances: list[Instance], skipped: list[Skip], notes: list[Skip] | None = None) -> Loaded:
        """Resolve gold labels against the label set, apply split and limit."""
        labels = self.labels or LabelSet.from_gold(i.gold for i in instances if i.gold)
        if self.split is not None and instances and not any(i.split == self.split for i in instances):
            splits = sorted({i.split for i in instances if i.split is not None})
            raise InputError(
                f"split '{self.split}' matches no instance",
                path=self.path,
                item="dataset.split",
                hint=f"splits: {', '.join(splits)}" if splits else f"the {self.name} loader gives no split",
            )
        kept: list[Instance] = []
        for instance in instances:
            if self.split is not None and instance.split != self.split:
                continue
            if instance.gold is not None:
                resolved = labels.resolve(instance.gold)
                if resolved is None:
                    skipped.append(Skip(instance.instance_id, f"unknown label: '{instance.gold}'"))
                    continue
                instance = instance.model_copy(update={"gold": resolved})
            kept.append(instance)
            if self.limit is not None and len(kept) >= self.limit:
                break
        return Loaded(kept, labels, skipped, notes or [])


# -- generic manifest ----------------------------------------------------------------------

_MANIFEST_COLUMNS = ("instance_id", "gold", "split", "speaker", "dataset", "transcript", "audio_path", "video_path")


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line or row number, row) from CSV, JSON Lines, a JSON list, or Parquet; the text
    formats may be compressed (``.csv.gz``, ``.jsonl.gz``)."""
    suffix = data_suffix(path)
    if suffix in (".parquet", ".pq"):
        import pandas as pd
        import pyarrow as pa

        try:
            frame = pd.read_parquet(path)
        except (pa.ArrowException, OSError) as error:
            raise InputError(f"cannot read Parquet: {error}", path=path) from None
        return [(i + 1, {k: _none_if_nan(v) for k, v in row.items()}) for i, row in enumerate(frame.to_dict("records"))]
    if suffix in (".csv", ".tsv"):
        handle = io.StringIO(read_text(path), newline="")
        reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
        return [(reader.line_num, {k: (v if v != "" else None) for k, v in row.items()}) for row in reader]
    if suffix not in (".json", ".jsonl", ".ndjson"):
        raise InputError(f"unknown file type '{suffix}'", path=path, hint="use .csv, .jsonl, .json or .parquet")
    text = read_text(path)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"invalid JSON: {error.msg}", path=path, line=error.lineno) from None
        if isinstance(data, dict):
            data = [dict(value, instance_id=key) for key, value in data.items()]
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise InputError("expected a JSON list of objects", path=path)
        return list(enumerate(data, start=1))
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"invalid JSON: {error.msg}", path=path, line=number) from None
        if not isinstance(row, dict):
            raise InputError("expected one JSON object per line", path=path, line=number)
        rows.append((number, row))
    return rows


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


def descriptor_text(value: Any) -> str:
    """A descriptor value as prompt text; strings holding Python literals are parsed safely."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "[{(" and text[-1:] in "]})":
            try:
                return descriptor_text(ast.literal_eval(text))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return text
        return text
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{key}: {descriptor_text(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(descriptor_text(item) for item in value)
    return str(value)



def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None



def load_dataset(loader: str, path: str | Path, **options: Any) -> Loaded:
    """Load a dataset by loader name (``manifest``, ``meld``, ``descriptions``, ``ravdess``, ``iemocap``)."""
    from modsab.registry import loaders

    return loaders.get(loader)(path, **options).load()


def instances_frame(instances: Iterable[Instance]):
    """Instances as a pandas DataFrame (descriptors flattened into columns)."""
    import pandas as pd

    rows = []
    for instance in instances:
        row: dict[str, Any] = instance.model_dump(exclude={"descriptors", "meta", "media", "line"})
        row["audio_path"] = str(instance.audio_path) if instance.audio_path else None
        row["video_path"] = str(instance.video_path) if instance.video_path else None
        row.update(instance.descriptors)
        rows.append(row)
    return pd.DataFrame(rows)
