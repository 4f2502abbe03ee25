"""Durable run store and shared response cache, both SQLite in WAL mode.

Run store (``RUN_DIR/run.sqlite``)::

    meta(key PRIMARY KEY, value)                  -- the run's config as JSON, created_at
    calls(cache_key PRIMARY KEY, instance_id, agent, purpose, request, response,
          prompt_tokens, completion_tokens, latency_s, attempts, status, error,
          source, created_at)                     -- every request and its raw answer
    answers(instance_id, agent, status, answer, raw, call_key, error, created_at,
            PRIMARY KEY (instance_id, agent))     -- the parsed answer per (instance, agent)

Cache (``CACHE_DIR/cache.sqlite``)::

    responses(cache_key PRIMARY KEY, base_url, model, prompt_version, request, response,
              prompt_tokens, completion_tokens, created_at, hits, last_hit)

Outside a run every write commits at once (autocommit). During a run the engine batches them
(:meth:`_Database.batching`): rows wait in memory for at most :data:`FLUSH_SECONDS` (or
:data:`FLUSH_ROWS` rows), then go in one transaction, which costs a fifth of the CPU of one commit
per row; reads of a key still waiting flush first, and leaving the batch (the run's end, an error,
a cancel) flushes. A crash (SIGKILL, power) loses at most the calls in flight and the last
batch's answers, which a resumed run asks again; a transaction is whole or absent, so no row is
half written. Only successful responses are cached; failed calls are retried next run.
The cache key (:func:`cache_key`) hashes base URL, model, messages, generation
parameters and prompt version; never an API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modsab.contract.errors import InputError, storage_error


def cache_key(
    *,
    base_url: str,
    model: str,
    messages: list[dict[str, str]],
    params: Mapping[str, Any],
    prompt_version: str,
) -> str:
    payload = json.dumps(
        {
            "base_url": base_url.rstrip("/"),
            "model": model,
            "messages": messages,
            "params": dict(params),
            "prompt_version": prompt_version,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _request_json(request: Mapping[str, Any] | str) -> str:
    """A call's request as stored: its JSON (``ensure_ascii=False``), or that text already made
    (the engine serialises a request once for the run store and the cache)."""
    return request if isinstance(request, str) else json.dumps(request, ensure_ascii=False)


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.row_factory = sqlite3.Row
    return connection


def unreadable(path: Path, error: sqlite3.DatabaseError) -> InputError:
    """The error for a file that SQLite cannot read (corrupt, or not a database at all)."""
    return InputError(
        f"not a readable SQLite database ({error})",
        path=path,
        hint="move the file away (or delete it) and run again to start a new one",
    )


@dataclass(frozen=True)
class CachedResponse:
    response: str
    prompt_tokens: int
    completion_tokens: int


RUN_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    cache_key TEXT PRIMARY KEY, instance_id TEXT NOT NULL, agent TEXT NOT NULL,
    purpose TEXT NOT NULL, request TEXT NOT NULL, response TEXT,
    prompt_tokens INTEGER DEFAULT 0, completion_tokens INTEGER DEFAULT 0,
    latency_s REAL, attempts INTEGER DEFAULT 0, status TEXT NOT NULL, error TEXT,
    source TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    instance_id TEXT NOT NULL, agent TEXT NOT NULL, status TEXT NOT NULL,
    answer TEXT, raw TEXT, call_key TEXT, error TEXT, created_at REAL NOT NULL,
    PRIMARY KEY (instance_id, agent)
);
"""

CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    cache_key TEXT PRIMARY KEY, base_url TEXT NOT NULL, model TEXT NOT NULL,
    prompt_version TEXT NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL,
    prompt_tokens INTEGER DEFAULT 0, completion_tokens INTEGER DEFAULT 0,
    created_at REAL NOT NULL, hits INTEGER DEFAULT 0, last_hit REAL
);
"""


#: Longest a batched write waits in memory before its transaction (seconds): what a crash may lose.
FLUSH_SECONDS = 0.2
#: Most rows a batch holds before it is written, whatever its age.
FLUSH_ROWS = 500


class _Database:
    """A SQLite file; a failed read or write (disk full, read-only, damaged file) is an
    :class:`~modsab.contract.errors.InputError` naming the file and what to do, never a traceback."""

    FILENAME = ""
    SCHEMA = ""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / self.FILENAME
        #: writes waiting for their transaction while :meth:`batching` (``None``: autocommit)
        self._pending: list[tuple[str, tuple[Any, ...]]] | None = None
        #: keys of the rows waiting (a read of one flushes first)
        self._pending_keys: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        #: a timed flush that failed: raised by the next write (the rows stay pending)
        self._failure: InputError | None = None
        try:
            self.db = _connect(self.path)
            self.db.executescript(self.SCHEMA)
        except (OSError, sqlite3.OperationalError, sqlite3.DatabaseError) as error:
            raise self._failed(error, "open") from None

    def _failed(self, error: Exception, what: str) -> InputError:
        if isinstance(error, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
            raise error  # a bug, not the disk
        return storage_error(error, path=self.path, what=f"{what} {self.path.name}")

    def _sql(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Any statement but a batched write or a read of one key: the waiting rows go first."""
        if self._pending:
            self.flush()
        return self._execute(sql, args)

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.DatabaseError as error:
            raise self._failed(error, "write" if not sql.lstrip().upper().startswith("SELECT") else "read") from None

    def close(self) -> None:
        self.flush()
        self.db.close()

    # -- batched writes ---------------------------------------------------------------

    @contextlib.contextmanager
    def batching(self) -> Iterator[None]:
        """Writes inside are batched (see the module doc) and all flushed on the way out, however
        it is left. Needs a running event loop (the timed flush is one of its callbacks)."""
        if self._pending is not None:  # already batching (a nested run): the outer one flushes
            yield
            return
        self._pending, self._failure = [], None
        try:
            yield
        finally:
            try:
                self.flush()
            finally:
                self._pending = None
                self._pending_keys.clear()

    def _write(self, key: str, sql: str, args: tuple[Any, ...]) -> None:
        if self._pending is None:
            self._sql(sql, args)
            return
        if self._failure is not None:
            raise self._failure
        self._pending.append((sql, args))
        self._pending_keys.add(key)
        if len(self._pending) >= FLUSH_ROWS:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._timed_flush)

    def _timed_flush(self) -> None:
        self._timer = None
        try:
            self.flush()
        except InputError as error:  # raised to the run by its next write, or by the last flush
            self._failure = error

    def _waiting(self, key: str) -> None:
        """Before a read of ``key``: the batch it waits in is written first."""
        if key in self._pending_keys:
            self.flush()

    def flush(self) -> None:
        """Write the waiting rows in one transaction (in the order they came). When that fails
        (a full disk) they are written one by one, as without a batch, so every row that still
        fits is kept; the first that does not raises the storage error, it and those after it
        still waiting."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        try:
            self.db.execute("BEGIN")
            for sql, group in itertools.groupby(self._pending, key=lambda row: row[0]):
                self.db.executemany(sql, [args for _, args in group])
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError:
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            self._flush_one_by_one()
        self._failure = None
        self._pending.clear()
        self._pending_keys.clear()

    def _flush_one_by_one(self) -> None:
        for done, (sql, args) in enumerate(self._pending):
            try:
                self.db.execute(sql, args)
            except sqlite3.DatabaseError as error:
                del self._pending[:done]
                self._failure = self._failed(error, "write")
                raise self._failure from None

    def _response(self, sql: str, key: str) -> CachedResponse | None:
        self._waiting(key)
        row = self._execute(sql, (key,)).fetchone()
        return None if row is None else CachedResponse(row[0], row[1], row[2])


class RunStore(_Database):
    """One run's SQLite file: config, calls, answers."""

    FILENAME = "run.sqlite"
    SCHEMA = RUN_SCHEMA

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        super().__init__(run_dir)

    # -- config ------------------------------------------------------------------

    def config(self) -> dict[str, Any] | None:
        row = self._sql("SELECT value FROM meta WHERE key = 'config'").fetchone()
        return None if row is None else json.loads(row["value"])

    def set_config(self, config: Mapping[str, Any]) -> None:
        self._sql("INSERT OR REPLACE INTO meta VALUES ('config', ?)", (json.dumps(config),))
        self._sql("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (str(time.time()),))

    # -- calls ---------------------------------------------------------------------

    def cached_call(self, key: str) -> CachedResponse | None:
        return self._response(
            "SELECT response, prompt_tokens, completion_tokens FROM calls "
            "WHERE cache_key = ? AND status = 'ok'",
            key,
        )

    def record_call(
        self,
        key: str,
        *,
        instance_id: str,
        agent: str,
        purpose: str,
        request: Mapping[str, Any] | str,
        response: str | None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        latency_s: float | None = None,
        attempts: int = 0,
        status: str,
        error: str | None = None,
        source: str = "network",
    ) -> None:
        self._write(
            key,
            "INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                key,
                instance_id,
                agent,
                purpose,
                _request_json(request),
                response,
                prompt_tokens,
                completion_tokens,
                latency_s,
                attempts,
                status,
                error,
                source,
                time.time(),
            ),
        )

    # -- answers ---------------------------------------------------------------------

    def done(self) -> set[tuple[str, str]]:
        """(instance, agent) pairs with a final answer (ok or invalid)."""
        rows = self._sql(
            "SELECT instance_id, agent FROM answers WHERE status IN ('ok','invalid')"
        )
        return {(row[0], row[1]) for row in rows}

    def record_answer(
        self,
        instance_id: str,
        agent: str,
        *,
        status: str,
        answer: Mapping | None,
        raw: str | None,
        call_key: str | None,
        error: str | None = None,
    ) -> None:
        self._write(
            f"{instance_id}\0{agent}",
            "INSERT OR REPLACE INTO answers VALUES (?,?,?,?,?,?,?,?)",
            (
                instance_id,
                agent,
                status,
                None if answer is None else json.dumps(answer),
                raw,
                call_key,
                error,
                time.time(),
            ),
        )

    def answers(self) -> Iterator[sqlite3.Row]:
        yield from self._sql("SELECT * FROM answers ORDER BY rowid")

    def clear_answers(self, agent: str) -> None:
        """Forget one agent's answers (its calls stay, so asking again costs nothing)."""
        self._sql("DELETE FROM answers WHERE agent = ?", (agent,))

    def counts(self) -> dict[str, int]:
        rows = self._sql("SELECT status, COUNT(*) FROM answers GROUP BY status")
        return {row[0]: row[1] for row in rows}

    def usage(self) -> tuple[int, int, int]:
        """Network calls, prompt tokens and completion tokens spent by this run so far."""
        row = self._sql(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0) "
            "FROM calls WHERE source = 'network'"
        ).fetchone()
        return row[0], row[1], row[2]


class ResponseCache(_Database):
    """Responses shared across runs, keyed by :func:`cache_key`."""

    FILENAME = "cache.sqlite"
    SCHEMA = CACHE_SCHEMA

    def get(self, key: str) -> CachedResponse | None:
        found = self._response(
            "SELECT response, prompt_tokens, completion_tokens FROM responses WHERE cache_key = ?",
            key,
        )
        if found is not None:
            self._write(
                key,
                "UPDATE responses SET hits = hits + 1, last_hit = ? WHERE cache_key = ?",
                (time.time(), key),
            )
        return found

    def put(
        self,
        key: str,
        *,
        base_url: str,
        model: str,
        prompt_version: str,
        request: Mapping[str, Any] | str,
        response: str,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        self._write(
            key,
            "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?,0,NULL)",
            (
                key,
                base_url,
                model,
                prompt_version,
                _request_json(request),
                response,
                prompt_tokens,
                completion_tokens,
                time.time(),
            ),
        )

    def groups(self) -> list[dict[str, Any]]:
        """One row per (base URL, model, prompt version): entries, tokens, hits, dates."""
        rows = self._sql(
            "SELECT base_url, model, prompt_version, COUNT(*) AS entries, "
            "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
            "SUM(hits) AS hits, MIN(created_at) AS first, MAX(created_at) AS last "
            "FROM responses GROUP BY base_url, model, prompt_version ORDER BY last DESC"
        )
        return [dict(row) for row in rows]

    def clear(self, *, model: str | None = None, older_than_s: float | None = None) -> int:
        clauses, args = [], []
        if model is not None:
            clauses.append("model = ?")
            args.append(model)
        if older_than_s is not None:
            clauses.append("created_at < ?")
            args.append(time.time() - older_than_s)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        removed = self._sql(f"DELETE FROM responses{where}", args).rowcount
        self._sql("VACUUM")
        return removed
