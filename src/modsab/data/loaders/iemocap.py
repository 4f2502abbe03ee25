"""``iemocap``: the official release layout, 4- and 6-class maps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from modsab.contract.errors import InputError
from modsab.contract.labels import PRESETS
from modsab.data.loaders._base import (
    DatasetLoader,
    Instance,
    Loaded,
    Skip,
)
from modsab.registry import loaders

IEMOCAP_CODES = {
    "neu": "neutral",
    "hap": "happy",
    "sad": "sad",
    "ang": "angry",
    "exc": "excited",
    "fru": "frustrated",
    "sur": "surprised",
    "fea": "fearful",
    "dis": "disgust",
}
_EVAL_LINE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)")
_TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s*(.*)$")


@loaders.register("iemocap", order=4)
class Iemocap(DatasetLoader):
    """IEMOCAP release layout: ``Session{1-5}/dialog/EmoEvaluation/*.txt`` (labels),
    ``dialog/transcriptions/*.txt`` and ``sentences/wav/<dialog>/<utterance>.wav``.

    ``classes=4``: neutral, happy, sad, angry (``merge_excited`` folds excited into happy,
    the usual choice); ``classes=6`` adds excited and frustrated. Other codes (xxx, oth,
    and those outside the map) are skipped with their reason. Split = session.
    """

    name = "iemocap"

    def __init__(self, path: str | Path, *, classes: int = 4, merge_excited: bool = True, **options: Any) -> None:
        if classes not in (4, 6):
            raise InputError(f"IEMOCAP classes must be 4 or 6, got {classes}")
        options.setdefault("labels", f"iemocap{classes}")
        super().__init__(path, **options)
        self.classes, self.merge_excited = classes, merge_excited

    def _map(self, code: str) -> str | None:
        label = IEMOCAP_CODES.get(code)
        if label == "excited" and (self.merge_excited and self.classes == 4):
            return "happy"
        return label if label in PRESETS[f"iemocap{self.classes}"] else None

    def load(self) -> Loaded:
        sessions = sorted(p for p in self.path.glob("Session*") if p.is_dir())
        if not sessions:
            raise InputError("no Session* folders", path=self.path, hint="point at the IEMOCAP release root")
        instances, skipped = [], []
        for session in sessions:
            transcripts: dict[str, str] = {}
            for path in sorted((session / "dialog" / "transcriptions").glob("*.txt")):
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    match = _TRANSCRIPT_LINE.match(line.strip())
                    if match:
                        transcripts[match.group(1)] = match.group(2).strip()
            for path in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    match = _EVAL_LINE.match(line.strip())
                    if not match:
                        continue
                    start, end, utterance, code = match.groups()
                    label = self._map(code)
                    if label is None:
                        skipped.append(Skip(utterance, f"unknown label: '{code}' not in the {self.classes}-class map"))
                        continue
                    dialog = utterance.rsplit("_", 1)[0]
                    wav = session / "sentences" / "wav" / dialog / f"{utterance}.wav"
                    if not wav.is_file():
                        skipped.append(Skip(utterance, f"missing file: {wav}"))
                        continue
                    gender = utterance.rsplit("_", 1)[1][:1]
                    instances.append(
                        Instance(
                            instance_id=utterance,
                            gold=label,
                            dataset="iemocap",
                            split=session.name,
                            speaker=f"{utterance[:5]}{gender}",
                            transcript=transcripts.get(utterance),
                            audio_path=wav,
                            meta={
                                "start": float(start),
                                "end": float(end),
                                "code": code,
                                "improvised": "_impro" in utterance,
                            },
                        )
                    )
        return self._finish(instances, skipped)
