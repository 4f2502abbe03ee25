"""Errors a user can act on.

An :class:`InputError` says where (file, line, item), what was wrong and what to do.
The CLI prints it without a traceback and exits with code 2; the Python API raises it.
"""

from __future__ import annotations

from pathlib import Path


class ModsabError(Exception):
    """Base class of every error modsab raises on purpose."""


class InputError(ModsabError, ValueError):
    """Bad input: a file, a record, an option. Carries its location and a hint."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        item: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.item = item
        self.hint = hint
        super().__init__(self.render())

    @property
    def where(self) -> str:
        parts = []
        if self.path is not None:
            parts.append(self.path + (f":{self.line}" if self.line is not None else ""))
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.item is not None:
            parts.append(self.item)
        return " ".join(parts)

    def render(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


#: What to do about a failed write, by errno.
_STORAGE_HINTS = {
    "ENOSPC": "the disk is full: free space, then run the same command again (what is stored is kept)",
    "EDQUOT": "the disk quota is used up: free space, then run the same command again (what is stored is kept)",
    "EROFS": "the file system is read-only: choose a writable run directory",
    "EACCES": "permission denied: choose a run directory you can write, or fix its permissions",
    "EPERM": "permission denied: choose a run directory you can write, or fix its permissions",
    "ENOTDIR": "a part of this path is a file, not a folder: choose another directory",
    "EEXIST": "a file is in the way of a folder: choose another directory",
}


def storage_error(error: Exception, *, path: str | Path | None = None, what: str = "write") -> InputError:
    """An :class:`InputError` for a failed read or write of the run's own files
    (``OSError``, or a ``sqlite3`` error such as "database or disk is full"): the path,
    what failed and what to do. Data already stored is kept (every store commits at once)."""
    import errno

    if isinstance(error, OSError):
        path = error.filename or path
        name = errno.errorcode.get(error.errno or 0, "")
        hint = _STORAGE_HINTS.get(
            name, "check the path, the free disk space and the permissions; what is stored is kept"
        )
        return InputError(f"cannot {what}: {error.strerror or error}", path=path, hint=hint)
    text = str(error)
    if "full" in text:
        hint = _STORAGE_HINTS["ENOSPC"]
    elif "readonly" in text or "read-only" in text:
        hint = "the store is read-only: choose a writable run directory, or fix its permissions"
    elif "unable to open" in text:
        hint = "the folder is missing or not writable: choose another directory, or fix its permissions"
    elif "locked" in text:
        hint = "another process holds the database: wait for it, then run the same command again"
    elif "malformed" in text or "not a database" in text:
        hint = "the file is damaged (not a readable SQLite database): move it away and run again (its answers are asked again)"
    else:
        hint = "check the free disk space and the permissions; what is stored is kept"
    return InputError(f"cannot {what}: {text}", path=path, hint=hint)
