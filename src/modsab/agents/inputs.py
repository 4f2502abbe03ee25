"""Descriptor inputs of the agents: one row per instance, text fields per modality.

Rows come from JSON Lines, CSV, Parquet, or a JSON list such as the MELD
descriptions file (``meld_annotation.json``), whose fields may hold Python
literals as strings; those are parsed with :func:`ast.literal_eval`, never eval.

Which fields each agent reads is configuration (:data:`DEFAULT_FIELDS`, overridable
per agent); it is recorded in the run metadata. Gold and label-naming fields
(:data:`FORBIDDEN_FIELDS`) are never sent to a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modsab.contract.errors import InputError
from modsab.contract.instance import Instance
from modsab.contract.labels import LABEL_FIELDS, Leak, LeakageChecker
from modsab.contract.task import EMOTION, Task
from modsab.data.loaders import descriptor_text, read_rows

#: Fields each agent reads by default, in prompt order: the streams of the built-in emotion
#: task (:data:`modsab.contract.task.SPEECH_STREAMS`) and ``tav``, all of them. Both the
#: MELD-descriptions names and the generic names are accepted; absent fields are skipped.
DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    name: fields for name, fields in EMOTION.default_fields().items() if name != "joint"
}

AGENT_KINDS: tuple[str, ...] = tuple(DEFAULT_FIELDS)

#: Fields that hold or name the answer: never sent, whatever the configuration says.
FORBIDDEN_FIELDS = LABEL_FIELDS

_ID_FIELDS = ("instance_id", "video_id", "id")
_GOLD_FIELDS = ("gold", "true_label")


#: Descriptor value -> prompt text (Python-literal strings parsed safely); shared with the loaders.
render_value = descriptor_text

#: Descriptor columns that name media files rather than describe the clip: never text for a prompt.
MEDIA_COLUMNS = ("peak_frame_path", "frame_paths", "audio_path", "video_path")


def media_from_row(row: Mapping[str, object], base: Path | None = None) -> dict[str, tuple[str, ...]]:
    """Media files of a descriptor row: ``peak_frame_path``, ``frame_paths`` (a JSON list,
    the peak frame first) and the clip (``audio_path``, else ``video_path``, for ``audio``).
    Relative paths are relative to ``base``."""
    import json

    def path(value: object) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return None
        p = Path(value.strip())
        return str(p if p.is_absolute() or base is None else base / p)

    media: dict[str, tuple[str, ...]] = {}
    frames: list[str] = []
    listed = row.get("frame_paths")
    if isinstance(listed, str) and listed.strip().startswith("["):
        try:
            frames = [p for p in (path(v) for v in json.loads(listed)) if p]
        except ValueError:
            frames = []
    elif isinstance(listed, list | tuple):
        frames = [p for p in (path(v) for v in listed) if p]
    peak = path(row.get("peak_frame_path")) or (frames[0] if frames else None)
    if peak:
        media["peak_frame"] = (peak,)
        media["frames"] = tuple(frames or [peak])
    clip = path(row.get("audio_path")) or path(row.get("video_path"))
    if clip:
        media["audio"] = (clip,)
    return media


def _instance_id(row: Mapping[str, object], where: str, line: int | None) -> str:
    for name in _ID_FIELDS:
        value = row.get(name)
        if value not in (None, ""):
            text = str(value).strip()
            return text[:-4] if name == "video_id" and text.endswith(".mp4") else text
    raise InputError(
        "row has no instance_id",
        path=where,
        line=line,
        hint="each row needs instance_id (or video_id)",
    )


def load_descriptors(path: str | Path, *, dataset: str | None = None) -> list[Instance]:
    """Read descriptor rows into :class:`Instance` objects, validated once here."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path)
    rows = read_rows(path)
    if not rows:
        raise InputError("no rows", path=path, hint="expected one descriptor row per instance")
    if dataset is None and path.name == "meld_annotation.json":
        dataset = "meld"
    instances: list[Instance] = []
    seen: dict[str, int | None] = {}
    for line, row in rows:
        instance_id = _instance_id(row, str(path), line)
        if instance_id in seen:
            raise InputError(f"instance '{instance_id}' appears twice", path=path, line=line)
        seen[instance_id] = line
        gold = next(
            (str(row[g]).strip() for g in _GOLD_FIELDS if row.get(g) not in (None, "")), None
        )
        fields = {
            name: render_value(value)
            for name, value in row.items()
            if name not in _ID_FIELDS and name not in FORBIDDEN_FIELDS and name != "dataset"
            and name not in MEDIA_COLUMNS
        }
        row_dataset = row.get("dataset")
        instances.append(
            Instance(instance_id, descriptors=fields, gold=gold,
                     dataset=str(row_dataset) if row_dataset else dataset, line=line,
                     media=media_from_row(row, path.parent))
        )
    return instances


@dataclass(frozen=True)
class FieldConfig:
    """Which descriptor fields each agent reads."""

    fields: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_FIELDS))

    @classmethod
    def parse(cls, specs: Iterable[str] = ()) -> FieldConfig:
        """``["vision=face_units,face_description", ...]`` overrides the defaults per agent."""
        fields = dict(DEFAULT_FIELDS)
        for spec in specs:
            agent, sep, names = spec.partition("=")
            agent = agent.strip()
            if not sep or not agent or not names.strip():
                raise InputError(f"bad --fields value '{spec}'", hint="use AGENT=field1,field2")
            chosen = tuple(name.strip() for name in names.split(",") if name.strip())
            forbidden = [name for name in chosen if name in FORBIDDEN_FIELDS]
            if forbidden:
                raise InputError(
                    f"field '{forbidden[0]}' holds the answer and is never sent",
                    item=f"--fields {spec}",
                )
            fields[agent] = chosen
        return cls(fields)

    def for_agent(self, agent: str) -> tuple[str, ...]:
        if agent not in self.fields:
            raise InputError(
                f"no descriptor fields configured for agent '{agent}'",
                hint=f"use --fields {agent}=field1,field2",
            )
        return self.fields[agent]


def find_leaks(
    instances: Iterable[Instance], used: Iterable[str], labels: Iterable[str], *, task: Task | None = None
) -> dict[str, int]:
    """Count, per sent field, the instances whose text contains a label word or synonym
    (and, for the emotion task, the default, any emotion word)."""
    checker = task.leakage_checker(labels) if task is not None else LeakageChecker(labels)
    used = tuple(dict.fromkeys(used))
    counts: dict[str, int] = {}
    for instance in instances:
        leaks: list[Leak] = checker.check(instance.view(used))
        for name in {leak.field for leak in leaks}:
            counts[name] = counts.get(name, 0) + 1
    return counts
