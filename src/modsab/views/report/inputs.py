"""What a report reads besides the predictions: all optional, all read defensively.

A run directory may hold, next to ``predictions.jsonl``:

- ``diagnosis.json``: diagnostics written by other commands (``causal``, ``shapley``,
  ``calibration``, ``fusion_compare``, ``tau_sweep``...); their sections are added to
  the report;
- ``descriptors.parquet`` (or ``.jsonl``/``.csv``): the per-modality descriptions the
  agents saw, keyed by ``instance_id``;
- a SQLite store (``*.sqlite``, ``*.sqlite3``, ``*.db``) with the agents' raw answers:
  any table with an instance id, an agent and a raw-text column;
- ``run.json`` / ``config.json`` / ``manifest.json``: the run's config, model and
  prompt versions.

A file that is missing, unreadable or of an unknown shape is noted on the page and
left out; it never stops the report.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Longest descriptor text and raw answer kept per field (the page stays small).
MAX_TEXT = 4000

DIAGNOSIS_FILE = "diagnosis.json"
DESCRIPTOR_FILES = ("descriptors.parquet", "descriptors.jsonl", "descriptors.csv")
CONFIG_FILES = ("run.json", "config.json", "manifest.json", "meta.json")
STORE_SUFFIXES = (".sqlite", ".sqlite3", ".db")

_ID_COLUMNS = ("instance_id", "instance", "id")
_AGENT_COLUMNS = ("agent", "modality", "agent_name")
_RAW_COLUMNS = ("raw", "raw_answer", "raw_response", "response", "answer", "output", "completion", "content", "text")
_KEY_COLUMNS = ("modality", "agent", "kind", "source", "field", "name")
_TEXT_COLUMNS = ("text", "description", "descriptor", "descriptors", "value", "content")


@dataclass
class Extras:
    """Optional inputs of a report, keyed by instance id."""

    diagnosis: dict[str, Any] = field(default_factory=dict)
    descriptors: dict[str, dict[str, str]] = field(default_factory=dict)
    raw_answers: dict[str, dict[str, str]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def text(value: Any) -> str:
    """Any value as display text, cut at :data:`MAX_TEXT` characters."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, default=str)
    return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + f"… [{len(value) - MAX_TEXT} more characters]"


def _pick(columns: list[str], choices: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[c] for c in choices if c in lowered), None)


def read_descriptors(path: Path) -> dict[str, dict[str, str]]:
    """``{instance_id: {field: text}}`` from a wide table (one row per instance) or a
    long one (one row per instance and modality, with a text column)."""
    import pandas as pd

    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".jsonl":
        frame = pd.read_json(path, lines=True)
    else:
        frame = pd.read_csv(path)
    id_column = _pick(list(frame.columns), _ID_COLUMNS)
    if id_column is None:
        raise ValueError(f"no instance_id column (columns: {', '.join(map(str, frame.columns))})")
    ids = frame[id_column].astype(str).tolist()
    others = [c for c in frame.columns if c != id_column]
    key_column, text_column = _pick(others, _KEY_COLUMNS), _pick(others, _TEXT_COLUMNS)
    out: dict[str, dict[str, str]] = {}
    if frame[id_column].duplicated().any() and key_column and text_column:
        for instance, key, value in zip(ids, frame[key_column].tolist(), frame[text_column].tolist(), strict=True):
            out.setdefault(instance, {})[str(key)] = text(value)
        return out
    records = frame[others].to_dict(orient="records")
    for instance, record in zip(ids, records, strict=True):
        fields = out.setdefault(instance, {})
        for key, value in record.items():
            if value is None or (isinstance(value, float) and value != value):
                continue
            fields[str(key) if str(key) not in fields else f"{key} ({len(fields)})"] = text(value)
    return out


def read_raw_answers(path: Path) -> dict[str, dict[str, str]]:
    """``{instance_id: {agent: raw text}}`` from the first table of a SQLite store that has
    an instance id, an agent and a raw-text column (the latest row wins on retries)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        tables = [row[0] for row in connection.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            columns = [row[1] for row in connection.execute(f'pragma table_info("{table}")')]
            ids, agent, raw = _pick(columns, _ID_COLUMNS), _pick(columns, _AGENT_COLUMNS), _pick(columns, _RAW_COLUMNS)
            if ids and agent and raw:
                out: dict[str, dict[str, str]] = {}
                query = f'select "{ids}", "{agent}", "{raw}" from "{table}" order by rowid'
                for instance, name, value in connection.execute(query):
                    if value is not None:
                        out.setdefault(str(instance), {})[str(name)] = text(value)
                return out
    raise ValueError(f"no table with instance id, agent and raw answer columns (tables: {', '.join(tables)})")


def read_extras(run: Path) -> Extras:
    """Everything optional found in a run directory (nothing for a predictions file)."""
    extras = Extras()
    if not run.is_dir():
        return extras

    def attempt(what: str, path: Path, read: Any) -> Any:
        try:
            return read(path)
        except Exception as error:  # a broken optional file is noted, never fatal
            extras.notes.append(f"{what} {path.name} left out: {type(error).__name__}: {error}")
            return None

    if (run / DIAGNOSIS_FILE).is_file():
        data = attempt("diagnosis", run / DIAGNOSIS_FILE, lambda p: json.loads(p.read_text(encoding="utf-8")))
        if isinstance(data, dict):
            extras.diagnosis = data
    for name in DESCRIPTOR_FILES:
        if (run / name).is_file():
            extras.descriptors = attempt("descriptors", run / name, read_descriptors) or {}
            break
    for path in sorted(p for p in run.iterdir() if p.suffix in STORE_SUFFIXES and p.is_file()):
        extras.raw_answers = attempt("raw answers", path, read_raw_answers) or {}
        if extras.raw_answers:
            break
    for name in CONFIG_FILES:
        if (run / name).is_file():
            data = attempt("config", run / name, lambda p: json.loads(p.read_text(encoding="utf-8")))
            if isinstance(data, dict):
                extras.config.update(data)
    return extras
