"""Descriptors: turn audio and video files into what the modality agents read.

``describe(items, ...)`` returns one row per instance with numeric features, the text
fields ``transcript``, ``audio_description``, ``face_units``, ``face_description``, and
per-modality quality (0-100) with the reasons. Heavy libraries (PyAV, faster-whisper,
openSMILE, MediaPipe) are imported only when used; install them with the ``describe``
extra.
"""

from modsab.descriptors.describe import Cache, DescribeConfig, build_table, describe, failures
from modsab.descriptors.manifest import MediaItem, read_manifest

__all__ = ["Cache", "DescribeConfig", "MediaItem", "build_table", "describe", "failures",
           "read_manifest"]
