"""The one instance record: what a loader found, what describe extracts from, what agents read.

A dataset loader fills it from its files (gold, speaker, media paths, the dataset's own texts);
``describe`` reads its media paths and transcript; the agents read its descriptor texts and the
media files sent beside them. One record, so the stages cannot disagree about what an instance
is. It is validated where it is made (the loaders and the descriptor reader check their files);
the stages after trust it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Instance(BaseModel):
    """One item to audit. ``instance_id`` may be given positionally (``Instance("a1", ...)``)."""

    model_config = ConfigDict(frozen=True)

    instance_id: str
    gold: str | None = None
    dataset: str | None = None
    split: str | None = None
    speaker: str | None = None
    transcript: str | None = None
    #: the instance's media on disk (describe extracts descriptors from them)
    audio_path: Path | None = None
    video_path: Path | None = None
    #: descriptor texts by field name (a dataset's own texts, or a descriptor table's row):
    #: what the agents read, field by field
    descriptors: dict[str, str] = Field(default_factory=dict)
    #: media files per kind (``peak_frame``, ``frames``, ``audio``), sent to agents whose
    #: ``media`` asks for them (see :mod:`modsab.agents.media`)
    media: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    #: the line (or row) of the file it was read from, for error messages
    line: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def __init__(self, instance_id: str | None = None, /, **data: Any) -> None:
        if instance_id is not None:
            data["instance_id"] = instance_id
        super().__init__(**data)

    def view(self, names: Iterable[str]) -> dict[str, str]:
        """The descriptor texts an agent with these field names sees (absent or empty ones skipped)."""
        return {name: self.descriptors[name] for name in names if self.descriptors.get(name)}
