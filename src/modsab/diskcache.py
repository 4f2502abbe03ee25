"""The one on-disk array cache: an array saved under a name made from a hash of its inputs.

Probe fits and text embeddings are cached with it (a rerun recomputes nothing). Writes go to
a temporary file that is renamed, so a killed run or a full disk never leaves a truncated
entry; an entry that does not load is dropped and recomputed with a :class:`CacheWarning`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


class CacheWarning(UserWarning):
    """A cache entry that does not load (torn write, disk full, foreign file): recomputed."""


def npy_cached(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The array saved at ``path`` (a name made from a hash of the inputs), else ``compute()`` saved there.

    Written to a temporary file and renamed (``os.replace``), so a killed run or a full
    disk never leaves a truncated entry under the final name; an entry that does not
    load anyway is dropped and recomputed, with a :class:`CacheWarning`."""
    import warnings

    if path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as error:
            warnings.warn(f"cache entry {path} does not load ({type(error).__name__}: {error}); recomputing it",
                          CacheWarning, stacklevel=2)
            path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = compute()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            np.save(handle, values)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            from modsab.contract.errors import storage_error

            raise storage_error(error, path=path, what="write the cache entry") from None
        raise
    return values
