"""``meld``: the MELD CSVs (text, speaker, emotion), plus ``dia{D}_utt{U}.mp4`` clips when the
user has MELD.Raw."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from modsab.contract.errors import InputError
from modsab.contract.labels import PRESETS
from modsab.contract.textfiles import read_text
from modsab.data.loaders._base import (
    DatasetLoader,
    Instance,
    Loaded,
    Skip,
)
from modsab.registry import loaders


@loaders.register("meld", order=1)
class Meld(DatasetLoader):
    """MELD CSVs (``{train,dev,test}_sent_emo.csv``) and, optionally, MELD.Raw clips.

    Ids are ``dia{D}_utt{U}`` (as MELD.Raw names its clips); dialogue numbers restart per
    split, so when several splits are loaded the id is prefixed ``{split}/``.
    """

    name = "meld"
    default_labels = PRESETS["meld"]
    FILES: ClassVar[dict[str, str]] = {
        "train": "train_sent_emo.csv",
        "dev": "dev_sent_emo.csv",
        "test": "test_sent_emo.csv",
    }

    def __init__(
        self, path: str | Path, *, clips: str | Path | None = None, splits: Iterable[str] = ("test",), **options: Any
    ) -> None:
        super().__init__(path, **options)
        self.clips = None if clips is None else Path(clips)
        self.splits = tuple(splits) if self.split is None else (self.split,)
        unknown = [s for s in self.splits if s not in self.FILES]
        if unknown:
            raise InputError(f"unknown MELD split '{unknown[0]}'", hint="use train, dev or test")

    def load(self) -> Loaded:
        instances, skipped, notes = [], [], []
        prefix = len(self.splits) > 1
        for split in self.splits:
            path = self.path / self.FILES[split] if self.path.is_dir() else self.path
            if not path.is_file():
                raise InputError("MELD CSV not found", path=path, hint=f"expected {self.FILES[split]}")
            with io.StringIO(read_text(path), newline="") as handle:
                for row in csv.DictReader(handle):
                    clip_id = f"dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}"
                    instance_id = f"{split}/{clip_id}" if prefix else clip_id
                    video = None
                    if self.clips is not None:
                        candidate = self.clips / f"{clip_id}.mp4"
                        if candidate.is_file():
                            video = candidate
                        else:
                            notes.append(Skip(instance_id, f"missing file: {candidate} (text only)"))
                    instances.append(
                        Instance(
                            instance_id=instance_id,
                            gold=row["Emotion"],
                            dataset="meld",
                            split=split,
                            speaker=row["Speaker"],
                            transcript=row["Utterance"],
                            video_path=video,
                            audio_path=video,
                            meta={"sentiment": row["Sentiment"], "season": row["Season"], "episode": row["Episode"]},
                        )
                    )
        return self._finish(instances, skipped, notes)
