"""Dataset loaders: files on disk -> one shared :class:`Instance` record.

One small class per dataset layout, all with the same ``load()`` that returns the
instances and what was skipped and why (missing file, unknown label), so nothing is
dropped silently. Paths are resolved and checked here; later stages trust them.

- :class:`Manifest`: a user's CSV / JSONL / Parquet (instance_id, gold, optional
  split, speaker, dataset, transcript, audio_path, video_path, any descriptor columns).
- :class:`Meld`: the MELD CSVs (text, speaker, emotion), plus ``dia{D}_utt{U}.mp4`` clips
  when the user has MELD.Raw.
- :class:`ClipDescriptions`: JSON in the layout of the paper's distributed inputs
  (``meld_annotation.json``); literal-valued fields are parsed with ``ast.literal_eval``.
- :class:`Ravdess`: labels, actor, statement, intensity from the file name.
- :class:`Iemocap`: the official release layout, 4- and 6-class maps.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from modsab.contract.errors import InputError
from modsab.contract.labels import PRESETS, LabelSet
from modsab.contract.textfiles import data_suffix, read_text

#: Fields that hold or name the answer. A loader never puts them among descriptors.
LABEL_FIELDS = frozenset({"gold", "true_label", "label", "emotion", "fine-grained_summary", "fine_grained_summary"})

MEDIA_SUFFIXES = (".wav", ".flac", ".mp3", ".mp4", ".mkv", ".avi", ".webm", ".m4a", ".ogg")


class Instance(BaseModel):
    """One item to audit: gold, media, and the descriptor texts agents may read."""

    model_config = ConfigDict(frozen=True)

    instance_id: str
    gold: str | None = None
    dataset: str | None = None
    split: str | None = None
    speaker: str | None = None
    transcript: str | None = None
    audio_path: Path | None = None
    video_path: Path | None = None
    descriptors: dict[str, str] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Skip:
    item: str
    reason: str


@dataclass
class Loaded:
    """What a loader found: instances, and what it skipped or noticed, with reasons."""

    instances: list[Instance]
    labels: LabelSet
    skipped: list[Skip] = field(default_factory=list)
    notes: list[Skip] = field(default_factory=list)

    def skipped_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for skip in self.skipped:
            key = skip.reason.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


class DatasetLoader:
    """Base class: subclasses set ``name`` and ``default_labels`` and implement ``load``."""

    name: ClassVar[str] = "dataset"
    default_labels: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        path: str | Path,
        *,
        labels: LabelSet | str | None = None,
        limit: int | None = None,
        split: str | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.name} data not found", path=self.path, hint="check dataset.path")
        if isinstance(labels, str):
            labels = LabelSet.parse(labels)
        if labels is None and self.default_labels is not None:
            labels = LabelSet(self.default_labels, source=f"{self.name} default")
        self.labels = labels
        self.limit = limit
        self.split = split

    def load(self) -> Loaded:
        raise NotImplementedError

    def _finish(self, instances: list[Instance], skipped: list[Skip], notes: list[Skip] | None = None) -> Loaded:
        """Resolve gold labels against the label set, apply split and limit."""
        labels = self.labels or LabelSet.from_gold(i.gold for i in instances if i.gold)
        if self.split is not None and instances and not any(i.split == self.split for i in instances):
            splits = sorted({i.split for i in instances if i.split is not None})
            raise InputError(
                f"split '{self.split}' matches no instance",
                path=self.path,
                item="dataset.split",
                hint=f"splits: {', '.join(splits)}" if splits else f"the {self.name} loader gives no split",
            )
        kept: list[Instance] = []
        for instance in instances:
            if self.split is not None and instance.split != self.split:
                continue
            if instance.gold is not None:
                resolved = labels.resolve(instance.gold)
                if resolved is None:
                    skipped.append(Skip(instance.instance_id, f"unknown label: '{instance.gold}'"))
                    continue
                instance = instance.model_copy(update={"gold": resolved})
            kept.append(instance)
            if self.limit is not None and len(kept) >= self.limit:
                break
        return Loaded(kept, labels, skipped, notes or [])


# -- generic manifest ----------------------------------------------------------------------

_MANIFEST_COLUMNS = ("instance_id", "gold", "split", "speaker", "dataset", "transcript", "audio_path", "video_path")


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line or row number, row) from CSV, JSON Lines, a JSON list, or Parquet; the text
    formats may be compressed (``.csv.gz``, ``.jsonl.gz``)."""
    suffix = data_suffix(path)
    if suffix in (".parquet", ".pq"):
        import pandas as pd
        import pyarrow as pa

        try:
            frame = pd.read_parquet(path)
        except (pa.ArrowException, OSError) as error:
            raise InputError(f"cannot read Parquet: {error}", path=path) from None
        return [(i + 1, {k: _none_if_nan(v) for k, v in row.items()}) for i, row in enumerate(frame.to_dict("records"))]
    if suffix in (".csv", ".tsv"):
        handle = io.StringIO(read_text(path), newline="")
        reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
        return [(reader.line_num, {k: (v if v != "" else None) for k, v in row.items()}) for row in reader]
    if suffix not in (".json", ".jsonl", ".ndjson"):
        raise InputError(f"unknown file type '{suffix}'", path=path, hint="use .csv, .jsonl, .json or .parquet")
    text = read_text(path)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"invalid JSON: {error.msg}", path=path, line=error.lineno) from None
        if isinstance(data, dict):
            data = [dict(value, instance_id=key) for key, value in data.items()]
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise InputError("expected a JSON list of objects", path=path)
        return list(enumerate(data, start=1))
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"invalid JSON: {error.msg}", path=path, line=number) from None
        if not isinstance(row, dict):
            raise InputError("expected one JSON object per line", path=path, line=number)
        rows.append((number, row))
    return rows


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


def descriptor_text(value: Any) -> str:
    """A descriptor value as prompt text; strings holding Python literals are parsed safely."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "[{(" and text[-1:] in "]})":
            try:
                return descriptor_text(ast.literal_eval(text))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return text
        return text
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{key}: {descriptor_text(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(descriptor_text(item) for item in value)
    return str(value)


class Manifest(DatasetLoader):
    """A user's own manifest; paths are relative to the manifest file."""

    name = "manifest"

    def load(self) -> Loaded:
        rows = read_rows(self.path)
        if not rows:
            raise InputError("manifest has no rows", path=self.path)
        base = self.path.parent
        instances, skipped, seen = [], [], {}
        for number, row in rows:
            where = f"{self.path}:{number}"
            instance_id = row.get("instance_id")
            if instance_id in (None, ""):
                raise InputError("row has no instance_id", path=self.path, line=number)
            instance_id = str(instance_id).strip()
            if instance_id in seen:
                raise InputError(
                    f"instance '{instance_id}' appears twice (first at line {seen[instance_id]})",
                    path=self.path,
                    line=number,
                )
            seen[instance_id] = number
            paths = {}
            for key in ("audio_path", "video_path"):
                if row.get(key):
                    media = Path(str(row[key]))
                    media = media if media.is_absolute() else base / media
                    if not media.is_file():
                        skipped.append(Skip(instance_id, f"missing file: {media} ({where})"))
                        break
                    paths[key] = media
            else:
                descriptors = {
                    k: descriptor_text(v)
                    for k, v in row.items()
                    if k not in _MANIFEST_COLUMNS and k not in LABEL_FIELDS and v is not None
                }
                instances.append(
                    Instance(
                        instance_id=instance_id,
                        gold=_text(row.get("gold")),
                        dataset=_text(row.get("dataset")),
                        split=_text(row.get("split")),
                        speaker=_text(row.get("speaker")),
                        transcript=_text(row.get("transcript")),
                        descriptors=descriptors,
                        meta={"line": number},
                        **paths,
                    )
                )
        return self._finish(instances, skipped)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# -- MELD ------------------------------------------------------------------------------------


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


class ClipDescriptions(DatasetLoader):
    """Clip descriptions as the paper distributes them (``meld_annotation.json``).

    ``true_label`` is the gold; ``fine-grained_summary`` names the emotion and is dropped;
    the other fields become descriptors (Python-literal strings parsed safely). The
    dataset name is ``dataset`` when given, else the file's stem without a trailing
    ``_annotation(s)`` / ``_description(s)`` (``meld_annotation.json`` -> ``meld``); when
    that name is a label preset and no labels are given, the preset is the label set.
    """

    name = "descriptions"
    DROP: ClassVar[frozenset[str]] = LABEL_FIELDS | {"coarse-grained_summary"}

    def __init__(self, path: str | Path, *, dataset: str | None = None, **options: Any) -> None:
        dataset = dataset or self.name_of(Path(path))
        if options.get("labels") is None and dataset in PRESETS:
            options["labels"] = dataset
        super().__init__(path, **options)
        self.dataset = dataset

    @staticmethod
    def name_of(path: Path) -> str:
        """The dataset name a descriptions file's name gives (``iemocap_annotation.json`` -> ``iemocap``)."""
        stem = re.sub(r"[_-](annotations?|descriptions?)$", "", path.stem, flags=re.IGNORECASE)
        return stem or path.stem

    def load(self) -> Loaded:
        instances, skipped = [], []
        for number, row in read_rows(self.path):
            raw_id = row.get("video_id") or row.get("instance_id")
            if not raw_id:
                skipped.append(Skip(f"{self.path}:{number}", "no video_id"))
                continue
            instance_id = re.sub(r"\.(mp4|avi|mkv|wav)$", "", str(raw_id).strip())
            descriptors = {
                k: descriptor_text(v)
                for k, v in row.items()
                if k not in self.DROP and k not in ("video_id", "instance_id") and v is not None
            }
            instances.append(
                Instance(
                    instance_id=instance_id,
                    gold=_text(row.get("true_label") or row.get("gold")),
                    dataset=self.dataset,
                    transcript=descriptors.get("transcript"),
                    descriptors=descriptors,
                )
            )
        return self._finish(instances, skipped)


# -- RAVDESS ------------------------------------------------------------------------------------

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


# -- IEMOCAP ------------------------------------------------------------------------------------

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


LOADERS: dict[str, type[DatasetLoader]] = {
    "manifest": Manifest,
    "meld": Meld,
    "descriptions": ClipDescriptions,
    "ravdess": Ravdess,
    "iemocap": Iemocap,
}


def load_dataset(loader: str, path: str | Path, **options: Any) -> Loaded:
    """Load a dataset by loader name (``manifest``, ``meld``, ``descriptions``, ``ravdess``, ``iemocap``)."""
    if loader not in LOADERS:
        raise InputError(f"unknown dataset loader '{loader}'", hint=f"choose one of {', '.join(LOADERS)}")
    return LOADERS[loader](path, **options).load()


def instances_frame(instances: Iterable[Instance]):
    """Instances as a pandas DataFrame (descriptors flattened into columns)."""
    import pandas as pd

    rows = []
    for instance in instances:
        row: dict[str, Any] = instance.model_dump(exclude={"descriptors", "meta"})
        row["audio_path"] = str(instance.audio_path) if instance.audio_path else None
        row["video_path"] = str(instance.video_path) if instance.video_path else None
        row.update(instance.descriptors)
        rows.append(row)
    return pd.DataFrame(rows)
