"""``instances.parquet`` behind DuckDB: filter, sort and page on the server.

Opening reads only the Parquet footer (row count and schema) and declares a DuckDB view
over the file, so the first page of a million instances is one query away. In the
background the table is then copied into a second, in-memory DuckDB database on one
thread (a few seconds for a million rows; the file is never turned into Python objects),
its few-valued text columns stored as ENUMs, and queries switch to the copy, which
answers filters several times faster; both give the same rows in the same order. A run
above :data:`MEMORY_MAX_CELLS` stays on the file.

Each page is two queries: the row numbers of the page (sorting only the sort keys), then
those rows. The number of matching rows is cached per filter, so paging through one
filter counts once. DuckDB may read only the files named here: after setup, external
access is switched off and the configuration locked.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from modsab.contract.errors import InputError
from modsab.views.viewer.query import ROW, Compiled, Schema, compile_filter, compile_sort, quote

#: Largest table (rows x columns) copied into memory after startup (about 1.5 GB for
#: short strings); a larger one is queried on the Parquet file.
MEMORY_MAX_CELLS = 100_000_000
#: Text columns with at most this many distinct values are stored as ENUMs in memory.
ENUM_MAX_VALUES = 1000
#: Filters whose match counts are remembered.
COUNT_CACHE = 256


def _literal(path: Path) -> str:
    """A file path as a SQL string literal (paths come from the command line, not requests)."""
    return "'" + str(path).replace("'", "''") + "'"


def _lock_down(db: Any, paths: list[Path]) -> None:
    """Let DuckDB read only ``paths`` from now on, and lock its settings."""
    db.execute(f"SET allowed_paths = [{', '.join(_literal(p) for p in paths)}]")
    db.execute("SET enable_external_access = false")
    db.execute("SET lock_configuration = true")


def clean(value: Any) -> Any:
    """A DuckDB value as JSON: NaN and infinities as None, decimals as floats, lists inside out."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | bool):
        return value
    try:
        return clean(float(value))
    except (TypeError, ValueError):
        return str(value)


class InstanceTable:
    """One run's ``instances.parquet`` (and optional ``descriptors`` file) in DuckDB."""

    def __init__(self, path: Path, *, descriptors: Path | None = None, memory: bool | None = None, threads: int = 2):
        import duckdb
        import pyarrow.parquet as pq

        self.path = Path(path).resolve()
        try:
            meta = pq.read_metadata(self.path)  # the footer only
            arrow = meta.schema.to_arrow_schema()
        except Exception as error:
            raise InputError(f"cannot read the instances table: {error}", path=self.path) from None
        self.n_rows = meta.num_rows
        self.schema = Schema.from_arrow(f for f in arrow if f.name != ROW)
        if "instance_id" not in self.schema.by_name:
            raise InputError(
                "the instances table has no instance_id column",
                path=self.path,
                hint="write it with modsab diagnose --instances FILE.parquet",
            )
        self._threads = max(1, threads)
        self._db = duckdb.connect(":memory:", config={"threads": self._threads})
        select = []
        for column in self.schema.columns:
            if column.floating:  # NaN is no value: no comparison matches it, it sorts last, JSON null
                select.append(f"CASE WHEN isnan({column.sql}) THEN NULL ELSE {column.sql} END AS {column.sql}")
            else:
                select.append(column.sql)
        self._select = (
            f"SELECT {', '.join(select)}, {quote(ROW)} FROM read_parquet({_literal(self.path)}, file_row_number = true)"
        )
        self._db.execute(f"CREATE VIEW instances AS {self._select}")
        allowed = [self.path]
        self.descriptors: _Descriptors | None = None
        if descriptors is not None:
            self.descriptors = _Descriptors.open(self._db, Path(descriptors).resolve())
            if self.descriptors is not None:
                allowed.append(self.descriptors.path)
        _lock_down(self._db, allowed)
        self._memory_db: Any = None
        self._source: tuple[Any, str] = (self._db, "instances")  # swapped whole once the copy is ready
        self.engine = "parquet"
        self.load_seconds: float | None = None
        self._counts: OrderedDict[tuple, int] = OrderedDict()
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None
        cells = self.n_rows * max(1, len(self.schema.columns))
        if memory or (memory is None and cells <= MEMORY_MAX_CELLS):
            self._loader = threading.Thread(target=self._load, name="modsab-view-load", daemon=True)
            self._loader.start()

    # -- the in-memory copy ----------------------------------------------------------------------

    def _load(self) -> None:
        """Copy the table into a second DuckDB database with one thread (the other core keeps
        answering on the file meanwhile), then give it every thread and switch to it."""
        import duckdb

        start = time.perf_counter()
        try:
            self._memory_db = duckdb.connect(":memory:", config={"threads": 1})
            cursor = self._memory_db.cursor()
            cursor.execute(f"CREATE TABLE loaded AS {self._select}")
            self._enumerate(cursor)
            cursor.execute(f"SET threads = {self._threads}")
            cursor.close()
            _lock_down(self._memory_db, [])
        except Exception:  # out of memory or closed while loading: keep querying the file
            return
        self.load_seconds = time.perf_counter() - start
        self._source = (self._memory_db, "loaded")
        self.engine = "memory"

    def _enumerate(self, cursor: Any) -> None:
        """Store each text column with few distinct values (roles, labels, datasets) as an ENUM
        of its values in sorted order: filters compare small integers (ten times faster), and
        sorting gives the same order as on text. Values come from the table, never a request."""
        for n, column in enumerate(self.schema.columns):
            if column.kind != "text" or column.name == "instance_id":
                continue
            distinct = cursor.execute(f"SELECT count(DISTINCT {column.sql}) FROM loaded").fetchone()[0]
            if not 0 < distinct <= ENUM_MAX_VALUES:
                continue
            cursor.execute(
                f"CREATE TYPE enum_{n} AS ENUM "
                f"(SELECT DISTINCT {column.sql} FROM loaded WHERE {column.sql} IS NOT NULL ORDER BY 1)"
            )
            cursor.execute(f"ALTER TABLE loaded ALTER {column.sql} TYPE enum_{n}")

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Wait for the in-memory copy (True when queries run on it)."""
        if self._loader is not None:
            self._loader.join(timeout)
        return self.engine == "memory"

    def close(self) -> None:
        if self._memory_db is not None:
            self._memory_db.interrupt()
        if self._loader is not None:
            self._loader.join(10)
        self._db.close()
        if self._memory_db is not None:
            self._memory_db.close()

    def _cursor(self) -> tuple[Any, str]:
        """A cursor on the database that answers now, and the relation to query there."""
        db, relation = self._source
        return db.cursor(), relation

    # -- queries ---------------------------------------------------------------------------------

    def count(self, where: Compiled) -> int:
        key = (where.sql, tuple(where.params))
        with self._lock:
            if key in self._counts:
                self._counts.move_to_end(key)
                return self._counts[key]
        cursor, relation = self._cursor()
        try:
            total = cursor.execute(f"SELECT count(*) FROM {relation} WHERE {where.sql}", where.params).fetchone()
        finally:
            cursor.close()
        with self._lock:
            self._counts[key] = int(total[0])
            while len(self._counts) > COUNT_CACHE:
                self._counts.popitem(last=False)
        return int(total[0])

    def _rows(self, cursor: Any, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        result = cursor.execute(sql, params)
        names = [d[0] for d in result.description]
        return [{n: clean(v) for n, v in zip(names, row, strict=True)} for row in result.fetchall()]

    def page(
        self, filter_text: str | None, sort: list[str], page: int, size: int
    ) -> tuple[list[dict[str, Any]], int, float]:
        """``(rows, matching, seconds)``: one page of rows (each with its ``file_row_number``)."""
        start = time.perf_counter()
        where = compile_filter(filter_text, self.schema)
        order = compile_sort(sort, self.schema)
        total = self.count(where)
        offset = (page - 1) * size
        if offset >= total:
            return [], total, time.perf_counter() - start
        cursor, relation = self._cursor()
        try:
            picked = cursor.execute(
                f"SELECT {quote(ROW)} FROM {relation} WHERE {where.sql} ORDER BY {order} LIMIT ? OFFSET ?",
                [*where.params, size, offset],
            ).fetchall()
            numbers = [r[0] for r in picked]
            rows = self._rows(
                cursor,
                f"SELECT * FROM {relation} WHERE {quote(ROW)} BETWEEN ? AND ? AND {quote(ROW)} IN "
                f"(SELECT unnest(?::BIGINT[]))",
                [min(numbers), max(numbers), numbers],
            )
        finally:
            cursor.close()
        place = {n: i for i, n in enumerate(numbers)}
        rows.sort(key=lambda r: place[r[ROW]])
        return rows, total, time.perf_counter() - start

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        cursor, relation = self._cursor()
        try:
            rows = self._rows(
                cursor,
                f"SELECT * FROM {relation} WHERE instance_id = ? ORDER BY {quote(ROW)} LIMIT 1",
                [instance_id],
            )
        finally:
            cursor.close()
        return rows[0] if rows else None

    def distinct(self, column: str, limit: int = 1000) -> list[Any]:
        """Distinct values of a text column, sorted (at most ``limit``)."""
        if column not in self.schema.by_name:
            return []
        cursor, relation = self._cursor()
        try:
            sql = self.schema.by_name[column].sql
            rows = cursor.execute(
                f"SELECT DISTINCT {sql} FROM {relation} WHERE {sql} IS NOT NULL ORDER BY 1 LIMIT ?", [limit]
            ).fetchall()
        finally:
            cursor.close()
        return [clean(r[0]) for r in rows]

    def descriptors_of(self, instance_id: str) -> dict[str, str]:
        if self.descriptors is None:
            return {}
        cursor = self._db.cursor()
        try:
            return self.descriptors.of(cursor, instance_id)
        finally:
            cursor.close()


class _Descriptors:
    """A descriptors table (wide: one row per instance; long: a row per instance and field)."""

    def __init__(self, path: Path, id_column: str, key: str | None, text: str | None):
        self.path, self.id_column, self.key, self.text = path, id_column, key, text

    @classmethod
    def open(cls, db: Any, path: Path) -> _Descriptors | None:
        from modsab.views.report import inputs

        reader = {".parquet": "read_parquet", ".csv": "read_csv_auto", ".jsonl": "read_json_auto"}.get(path.suffix)
        if reader is None or not path.is_file():
            return None
        try:
            db.execute(f"CREATE VIEW descriptors AS SELECT * FROM {reader}({_literal(path)})")
            columns = [r[0] for r in db.execute("DESCRIBE descriptors").fetchall()]
        except Exception:
            return None
        id_column = inputs._pick(columns, inputs._ID_COLUMNS)
        if id_column is None:
            return None
        others = [c for c in columns if c != id_column]
        return cls(
            path, id_column, inputs._pick(others, inputs._KEY_COLUMNS), inputs._pick(others, inputs._TEXT_COLUMNS)
        )

    def of(self, cursor: Any, instance_id: str) -> dict[str, str]:
        """``{field: text}`` as the report reads them (:func:`modsab.views.report.inputs.read_descriptors`)."""
        from modsab.views.report.inputs import text

        result = cursor.execute(
            f"SELECT * FROM descriptors WHERE CAST({quote(self.id_column)} AS VARCHAR) = ? LIMIT 1000", [instance_id]
        )
        names = [d[0] for d in result.description]
        rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        out: dict[str, str] = {}
        if len(rows) > 1 and self.key and self.text:
            for row in rows:
                out[str(row[self.key])] = text(row[self.text])
            return out
        for row in rows:
            for key, value in row.items():
                if key == self.id_column or value is None or (isinstance(value, float) and value != value):
                    continue
                out[key if key not in out else f"{key} ({len(out)})"] = text(value)
        return out
