"""The media manifest: which files describe which instance.

Columns: ``instance_id`` (required), ``audio_path`` and/or ``video_path`` (at least one
per row), optional ``speaker`` and ``transcript``. Relative paths are relative to the
manifest file. CSV, JSONL and Parquet are read; other columns are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from modsab.errors import InputError

_READERS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


@dataclass(frozen=True)
class MediaItem:
    """One instance to describe. Paths are absolute once loaded from a manifest."""

    instance_id: str
    audio_path: Path | None = None
    video_path: Path | None = None
    speaker: str | None = None
    transcript: str | None = None


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _read_table(path: Path) -> pd.DataFrame:
    kind = _READERS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"unknown manifest format '{path.suffix}'", path=path,
                         hint="use .csv, .jsonl or .parquet")
    if not path.is_file():
        raise InputError("manifest not found", path=path)
    try:
        if kind == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_parquet(path)
    except (ValueError, OSError) as error:
        raise InputError(f"cannot read the manifest: {error}", path=path) from error


def items_from_records(records: Iterable[Mapping[str, object]], *, base: Path | None = None,
                       source: Path | None = None, first_line: int = 1) -> list[MediaItem]:
    """Validate manifest rows (mappings) into :class:`MediaItem`s, resolving paths."""
    items: list[MediaItem] = []
    seen: set[str] = set()
    for offset, record in enumerate(records):
        line = first_line + offset
        instance_id = _text(record.get("instance_id"))
        if instance_id is None:
            raise InputError("row has no instance_id", path=source, line=line,
                             hint="every row needs a unique instance_id")
        if instance_id in seen:
            raise InputError(f"instance_id '{instance_id}' appears twice", path=source, line=line)
        seen.add(instance_id)
        paths = {}
        for column in ("audio_path", "video_path"):
            raw = _text(record.get(column))
            if raw is not None:
                path = Path(raw).expanduser()
                paths[column] = path if path.is_absolute() or base is None else base / path
        if not paths:
            raise InputError("row has neither audio_path nor video_path", path=source, line=line,
                             item=instance_id, hint="give at least one media file per row")
        items.append(MediaItem(instance_id, paths.get("audio_path"), paths.get("video_path"),
                               _text(record.get("speaker")), _text(record.get("transcript"))))
    return items


def read_manifest(path: str | Path) -> list[MediaItem]:
    """Read and validate a CSV / JSONL / Parquet manifest (paths relative to its folder)."""
    path = Path(path)
    table = _read_table(path)
    if "instance_id" not in table.columns:
        raise InputError("the manifest has no 'instance_id' column", path=path,
                         hint="columns: instance_id, audio_path and/or video_path, "
                              "optional speaker, transcript")
    if not {"audio_path", "video_path"} & set(table.columns):
        raise InputError("the manifest has neither an 'audio_path' nor a 'video_path' column",
                         path=path)
    first_line = 2 if _READERS[path.suffix.lower()] == "csv" else 1
    return items_from_records(table.to_dict("records"), base=path.resolve().parent, source=path,
                              first_line=first_line)
