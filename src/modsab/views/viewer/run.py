"""What the viewer reads from a run directory besides ``instances.parquet``.

- ``diagnosis.json``: the summary (headline, per-agent rates, later diagnostics);
- ``descriptors.parquet`` (or ``.csv``/``.jsonl``): looked up per instance in DuckDB;
- the agents' run stores (``agents/<agent>/run.sqlite``) and any other SQLite store the
  report reads (``*.sqlite``, ``*.sqlite3``, ``*.db`` in the run directory): raw answers,
  looked up per instance, never read whole;
- ``run.json`` / ``config.json``: shown as the run's config.

As in the report, a missing file is skipped and a broken one is named in a note.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modsab.contract.errors import InputError
from modsab.views.report import inputs
from modsab.views.viewer.query import quote
from modsab.views.viewer.table import InstanceTable

INSTANCES_FILE = "instances.parquet"


@dataclass
class Store:
    """One SQLite table with an instance id, an agent and a raw-text column."""

    path: Path
    table: str
    id_column: str
    agent_column: str
    raw_column: str

    def answers(self, instance_id: str) -> dict[str, str]:
        sql = (
            f"SELECT {quote(self.agent_column)}, {quote(self.raw_column)} FROM {quote(self.table)} "
            f"WHERE {quote(self.id_column)} = ? ORDER BY rowid"
        )
        out: dict[str, str] = {}
        with sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True) as connection:
            for agent, raw in connection.execute(sql, [instance_id]):
                if raw is not None:
                    out[str(agent)] = inputs.text(raw)
        return out


def find_store(path: Path) -> Store | None:
    """The first table of a SQLite file that holds raw answers (as the report picks it)."""
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        # an agent run store's parsed answers (answers.raw), not the HTTP bodies in calls.response
        tables.sort(key=lambda name: name != "answers")
        for table in tables:
            columns = [r[1] for r in connection.execute(f"PRAGMA table_info({quote(table)})")]
            ids = inputs._pick(columns, inputs._ID_COLUMNS)
            agent = inputs._pick(columns, inputs._AGENT_COLUMNS)
            raw = inputs._pick(columns, inputs._RAW_COLUMNS)
            if ids and agent and raw:
                return Store(path, table, ids, agent, raw)
    return None


@dataclass
class Run:
    """A run directory opened for viewing."""

    directory: Path
    table: InstanceTable
    diagnosis: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    stores: list[Store] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.directory.name or str(self.directory)

    def raw_answers(self, instance_id: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for store in self.stores:
            try:
                for agent, raw in store.answers(instance_id).items():
                    out.setdefault(agent, raw)
            except sqlite3.Error:
                continue
        return out

    def close(self) -> None:
        self.table.close()


def open_run(path: str | Path, *, memory: bool | None = None) -> Run:
    """Open a run directory (or an ``instances.parquet`` file on its own) for the viewer."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in (".parquet", ".pq"):
        return Run(path.parent, InstanceTable(path, memory=memory), notes=[f"{path.name} alone: no run directory"])
    if not path.is_dir():
        raise InputError(
            "no such run directory" if not path.exists() else "not a run directory",
            path=path,
            hint="give the directory modsab run wrote (with instances.parquet) or an instances .parquet file",
        )
    table_path = path / INSTANCES_FILE
    if not table_path.is_file():
        raise InputError(
            f"the run directory has no {INSTANCES_FILE}",
            path=path,
            hint=f"modsab diagnose {path} --instances {table_path}",
        )
    notes: list[str] = []
    descriptors = next((path / n for n in inputs.DESCRIPTOR_FILES if (path / n).is_file()), None)
    table = InstanceTable(table_path, descriptors=descriptors, memory=memory)
    if descriptors is not None and table.descriptors is None:
        notes.append(f"descriptors {descriptors.name} left out: no instance_id column or not readable")
    run = Run(path, table, notes=notes)

    def read_json(what: str, file: Path) -> dict[str, Any]:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            notes.append(f"{what} {file.name} left out: {type(error).__name__}: {error}")
            return {}
        if not isinstance(data, dict):
            notes.append(f"{what} {file.name} left out: not a JSON object")
            return {}
        return data

    if (path / inputs.DIAGNOSIS_FILE).is_file():
        run.diagnosis = read_json("diagnosis", path / inputs.DIAGNOSIS_FILE)
    else:
        notes.append(f"no {inputs.DIAGNOSIS_FILE}: the summary shows the table only")
    for name in inputs.CONFIG_FILES:
        if (path / name).is_file():
            run.config.update(read_json("config", path / name))
    # the agents' own stores first (their answer wins, as in modsab run's report), then the others
    candidates = sorted((path / "agents").glob("*/run.sqlite")) if (path / "agents").is_dir() else []
    candidates += sorted(p for p in path.iterdir() if p.suffix in inputs.STORE_SUFFIXES and p.is_file())
    for store_path in candidates:
        try:
            store = find_store(store_path)
        except sqlite3.Error as error:
            notes.append(f"raw answers {store_path.name} left out: {type(error).__name__}: {error}")
            continue
        if store is not None:
            run.stores.append(store)
    return run
