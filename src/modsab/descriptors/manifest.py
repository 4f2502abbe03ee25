"""The media manifest: which files describe which instance.

Columns: ``instance_id`` (required), ``audio_path`` and/or ``video_path`` (at least one
per row), optional ``speaker`` and ``transcript``. Relative paths are relative to the
manifest file. CSV, TSV, JSONL, a JSON list and Parquet are read (the reader `modsab run` uses);
other columns are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from modsab.contract.errors import InputError
from modsab.contract.instance import Instance

#: What a manifest row gives (other columns are ignored).
MANIFEST_COLUMNS = ("instance_id", "audio_path", "video_path", "speaker", "transcript")

#: The former name of the instance record in ``describe`` (one record serves every stage).
MediaItem = Instance


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def items_from_records(records: Iterable[Mapping[str, object]], *, base: Path | None = None,
                       source: Path | None = None, first_line: int = 1,
                       lines: Sequence[int] | None = None) -> list[Instance]:
    """Validate manifest rows (mappings) into :class:`~modsab.contract.instance.Instance` records, resolving paths; errors
    name ``source`` and the row's line (``lines[i]``, else ``first_line + i``)."""
    items: list[Instance] = []
    seen: set[str] = set()
    for offset, record in enumerate(records):
        line = lines[offset] if lines is not None else first_line + offset
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
        items.append(Instance(instance_id, audio_path=paths.get("audio_path"), video_path=paths.get("video_path"),
                              speaker=_text(record.get("speaker")), transcript=_text(record.get("transcript"))))
    return items


def read_manifest(path: str | Path) -> list[Instance]:
    """Read and validate a CSV / JSONL / Parquet manifest (paths relative to its folder).

    The table is read by :func:`modsab.data.loaders.read_rows`, the reader ``modsab run``'s
    manifest loader uses; describing is stricter: every row needs a media file."""
    from modsab.data.loaders import read_rows

    path = Path(path)
    if not path.is_file():
        raise InputError("manifest not found", path=path)
    rows = read_rows(path)
    columns = set().union(*(row.keys() for _, row in rows)) if rows else set()
    if "instance_id" not in columns:
        raise InputError("the manifest has no 'instance_id' column", path=path,
                         hint="columns: instance_id, audio_path and/or video_path, "
                              "optional speaker, transcript")
    if not {"audio_path", "video_path"} & columns:
        raise InputError("the manifest has neither an 'audio_path' nor a 'video_path' column",
                         path=path)
    return items_from_records([row for _, row in rows], base=path.resolve().parent, source=path,
                              lines=[line for line, _ in rows])
