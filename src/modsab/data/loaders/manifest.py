"""``manifest``: a user's CSV / JSONL / Parquet (instance_id, gold, optional split, speaker,
dataset, transcript, audio_path, video_path, any descriptor columns)."""

from __future__ import annotations

from pathlib import Path

from modsab.contract.errors import InputError
from modsab.data.loaders._base import (
    _MANIFEST_COLUMNS,
    LABEL_FIELDS,
    DatasetLoader,
    Instance,
    Loaded,
    Skip,
    _text,
    descriptor_text,
    read_rows,
)
from modsab.registry import loaders


@loaders.register("manifest", order=0)
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
                        line=number,
                        meta={"line": number},
                        **paths,
                    )
                )
        return self._finish(instances, skipped)
