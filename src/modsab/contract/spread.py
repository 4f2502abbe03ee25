"""A directory of Parquet files reduced on an executor (issue 15: "reduced file by file on
the cluster and merged on the driver").

Each task gets a file's *path* and reads the file where it runs (on a cluster the files sit
on storage every node sees), reduces it with :func:`~modsab.contract.predictions.reduce_file`
and sends back its partial result, pickled (so the driver owns writable arrays and holds no
object-store memory); the driver merges the partials in file order with
:func:`~modsab.contract.predictions.merge_partials`, so the set is the one read here, bit for
bit. A file a task could not vouch for, or could not reduce at all (a node that cannot see
it, a dead actor), is reduced again on the driver: the result and the errors are then
exactly those of the local reader.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("modsab.spread")


@dataclass(frozen=True)
class _Failed:
    """A file a task did not reduce: why (``None``: the reader cannot vouch for it)."""

    message: str | None


@dataclass(frozen=True)
class ReduceFiles:
    """A worker factory (picklable, equal for equal options, so an executor keeps its actors
    from one directory to the next): the worker maps ``(path, first row)`` to the pickled
    partial result of that file, or a :class:`_Failed`."""

    scale: str
    batch_rows: int

    def __call__(self):
        return self._reduce

    def _reduce(self, job: tuple[str, int]) -> bytes | _Failed:
        from modsab.contract.predictions import _GiveUp, reduce_file

        path, first = job
        try:
            flat = reduce_file(Path(path), fmt="parquet", scale=self.scale, batch_rows=self.batch_rows,
                               first_line=first)
        except _GiveUp:
            return _Failed(None)
        return pickle.dumps(flat, protocol=pickle.HIGHEST_PROTOCOL)


def reduce_on(executor: Any, files: Sequence[tuple[Path, int]], *, scale: str, batch_rows: int) -> list[Any]:
    """The partial results of ``files`` (``(path, first row)`` each), in their order, each
    reduced by a task of ``executor``; see the module docstring."""
    from modsab.contract.predictions import reduce_file

    jobs = [(str(path), first) for path, first in files]
    parts: list[Any] = [None] * len(files)
    for position, result in executor.map(ReduceFiles(scale, batch_rows), jobs, failed=_Failed):
        parts[position] = pickle.loads(result) if isinstance(result, bytes) else result  # unpickled as they come
    for position, (path, first) in enumerate(files):
        if isinstance(parts[position], _Failed):
            if parts[position].message is not None:
                log.warning("a task could not reduce %s (%s); reducing it here", path, parts[position].message)
            parts[position] = reduce_file(path, fmt="parquet", scale=scale, batch_rows=batch_rows, first_line=first)
    return parts


__all__ = ["ReduceFiles", "reduce_on"]
