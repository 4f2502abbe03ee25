"""``ravdess``: labels, actor, statement, intensity from the file name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from modsab.contract.labels import PRESETS
from modsab.data.loaders._base import (
    MEDIA_SUFFIXES,
    DatasetLoader,
    Instance,
    Loaded,
    Skip,
)
from modsab.registry import loaders

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


@loaders.register("ravdess", order=3)
class Ravdess(DatasetLoader):
    """RAVDESS clips anywhere under ``path``; the file name ``MM-VC-EE-II-SS-RR-AA`` says it all.

    Speech only by default (vocal channel 01). Audio-only files (modality 03) become audio
    instances, full AV files (01) audio+video instances. The spoken words are known from the
    statement code; ``statement_as_transcript`` gives them to the text agent directly.
    """

    name = "ravdess"
    default_labels = PRESETS["ravdess"]

    def __init__(
        self, path: str | Path, *, statement_as_transcript: bool = False, include_song: bool = False, **options: Any
    ) -> None:
        super().__init__(path, **options)
        self.statement_as_transcript = statement_as_transcript
        self.include_song = include_song

    def load(self) -> Loaded:
        instances, skipped = [], []
        files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES)
        if self.path.is_file():
            files = [self.path]
        for path in files:
            match = _RAVDESS_NAME.match(path.stem)
            if not match:
                skipped.append(Skip(str(path), "not a RAVDESS file name (MM-VC-EE-II-SS-RR-AA)"))
                continue
            modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
            if channel != "01" and not self.include_song:
                continue
            if modality == "02":
                skipped.append(Skip(path.stem, "video-only file (no audio)"))
                continue
            if emotion not in RAVDESS_EMOTIONS:
                skipped.append(Skip(path.stem, f"unknown label: emotion code {emotion}"))
                continue
            words = RAVDESS_STATEMENTS.get(statement)
            instances.append(
                Instance(
                    instance_id=path.stem,
                    gold=RAVDESS_EMOTIONS[emotion],
                    dataset="ravdess",
                    split=f"actor{actor}",
                    speaker=f"actor{actor}",
                    transcript=words if self.statement_as_transcript else None,
                    audio_path=path,
                    video_path=path if modality == "01" else None,
                    meta={
                        "intensity": "strong" if intensity == "02" else "normal",
                        "statement": words,
                        "repetition": int(repetition),
                        "actor": int(actor),
                        "gender": "male" if int(actor) % 2 else "female",
                    },
                )
            )
        return self._finish(instances, skipped)
