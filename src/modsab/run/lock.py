"""One process per run directory: an advisory lock on ``RUN_DIR/run.lock``.

Two ``modsab run`` (or ``modsab agents run``) on one run directory would both ask every
pending call and pay for it twice. The first takes an exclusive ``fcntl.flock`` on
``run.lock`` and writes its pid there; the second fails at once with an error naming
that process, or, with ``wait=True`` (``--wait``), blocks until the lock is free. The
kernel releases the lock when its process ends, however it ends (a killed run leaves
no stale lock; the file itself stays, harmlessly).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from modsab.contract.errors import InputError

LOCK_FILE = "run.lock"


def _holder(path: Path) -> str:
    """Who holds the lock, as written in the lock file ("another process" if unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
        return f"{data['command']} (pid {data['pid']}, since {data['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class RunLock:
    """``with RunLock(run_dir, command="modsab run"):`` holds the run directory."""

    def __init__(
        self,
        folder: str | Path,
        *,
        command: str = "modsab",
        wait: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.command, self.wait, self.on_wait = command, wait, on_wait
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(self.path)
                if not self.wait:
                    raise InputError(
                        f"{holder} is using this run directory",
                        path=self.folder,
                        hint="wait for it to finish, or pass --wait to start when it has",
                    ) from None
                if self.on_wait is not None:
                    self.on_wait(holder)
                fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holder ends
            os.ftruncate(fd, 0)
            started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            info = {"pid": os.getpid(), "command": self.command, "started": started, "argv": sys.argv}
            os.write(fd, (json.dumps(info) + "\n").encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the lock
            self._fd = None
