"""``descriptions``: JSON in the layout of the paper's distributed inputs
(``meld_annotation.json``); literal-valued fields are parsed with ``ast.literal_eval``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from modsab.contract.labels import PRESETS
from modsab.data.loaders._base import (
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


@loaders.register("descriptions", order=2)
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
