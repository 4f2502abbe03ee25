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
