"""Dataset loaders: files on disk -> one shared :class:`Instance` record.

One module per loader, each registered in :data:`modsab.registry.loaders` (``[dataset]
loader`` reads the registry); a new loader is one new module here.

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

from modsab.data.loaders._base import (
    LABEL_FIELDS,
    MEDIA_SUFFIXES,
    DatasetLoader,
    Instance,
    Loaded,
    Skip,
    descriptor_text,
    instances_frame,
    load_dataset,
    read_rows,
)
from modsab.data.loaders.descriptions import ClipDescriptions
from modsab.data.loaders.iemocap import Iemocap
from modsab.data.loaders.manifest import Manifest
from modsab.data.loaders.meld import Meld
from modsab.data.loaders.ravdess import Ravdess

__all__ = [
    "LABEL_FIELDS", "MEDIA_SUFFIXES", "ClipDescriptions", "DatasetLoader", "Iemocap", "Instance", "Loaded",
    "Manifest", "Meld", "Ravdess", "Skip", "descriptor_text", "instances_frame", "load_dataset", "read_rows",
]
