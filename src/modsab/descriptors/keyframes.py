"""Key frames: the AU-peak frame of a clip and its neighbours, as JPEG files.

The peak frame is the frame where :mod:`modsab.descriptors.face` found the strongest
facial movement (``face_peak_time_s``); a clip where no face was found uses its middle
frame. Neighbours follow at :data:`OFFSETS` seconds from the peak (after, before, then
further after), kept inside the clip; up to :data:`~modsab.agents.media.MAX_FRAMES` frames
in all, the peak first. Frames are decoded again from the video at full resolution and
scaled so the longer side is at most 768 pixels (:data:`~modsab.agents.media.MAX_IMAGE_SIDE`).

Files are named by the SHA-256 of the video's bytes, the frame time, the size and
:data:`KEYFRAME_VERSION`, so a re-run decodes nothing that is already there; the JPEG
bytes are what the scene description and the media agents send (and what their cache
keys hash).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np

from modsab.agents.media import MAX_FRAMES, MAX_IMAGE_SIDE, encode_jpeg
from modsab.descriptors import media

KEYFRAME_VERSION = "keyframes-1"
#: seconds from the peak of the neighbours, in the order they are added
OFFSETS = (0.0, 0.5, -0.5, 1.0)


def frame_times(peak: float | None, duration: float, n: int) -> list[float]:
    """Times of the ``n`` key frames: the peak (the middle when ``None``), then neighbours."""
    duration = max(0.0, float(duration or 0.0))
    centre = duration / 2 if peak is None or not math.isfinite(peak) else float(peak)
    times: list[float] = []
    for offset in OFFSETS:
        t = min(max(0.0, centre + offset), duration)
        if all(abs(t - other) >= 0.2 for other in times):
            times.append(round(t, 3))
        if len(times) >= min(n, MAX_FRAMES):
            break
    return times


def decode_at(path: str | Path, times: list[float]) -> list[np.ndarray]:
    """The first decoded frame at or after each time (the last frame for a time past the
    end), RGB ``uint8`` at full resolution. Raises :class:`~media.MediaError`."""
    import av

    wanted = sorted(range(len(times)), key=lambda i: times[i])
    out: list[np.ndarray | None] = [None] * len(times)
    with media._open(path) as container:
        if not container.streams.video:
            raise media.MediaError(f"no video stream in {Path(path).name}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        last = None
        position = 0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else 0.0
                last = frame
                while position < len(wanted) and t + 1e-3 >= times[wanted[position]]:
                    out[wanted[position]] = frame.to_ndarray(format="rgb24")
                    position += 1
                if position >= len(wanted):
                    break
        except av.FFmpegError as error:
            if last is None:
                raise media.MediaError(f"cannot decode video of {Path(path).name}: {error}") from error
        if last is None:
            raise media.MediaError(f"no decodable frames in {Path(path).name}")
        tail = last.to_ndarray(format="rgb24")
    return [image if image is not None else tail for image in out]


def save_keyframes(
    video: str | Path, *, peak: float | None, duration: float, n: int, folder: str | Path,
    max_side: int = MAX_IMAGE_SIDE,
) -> list[Path]:
    """JPEG files of the clip's key frames in ``folder`` (see the module docstring)."""
    folder = Path(folder)
    times = frame_times(peak, duration, n)
    digest = media.file_digest(video)
    paths = [
        folder / (hashlib.sha256(f"{KEYFRAME_VERSION}|{digest}|{t:.3f}|{max_side}".encode()).hexdigest()[:32] + ".jpg")
        for t in times
    ]
    missing = [i for i, path in enumerate(paths) if not path.is_file()]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        images = decode_at(video, [times[i] for i in missing])
        for i, image in zip(missing, images, strict=True):
            tmp = paths[i].with_name(f".{paths[i].name}.{os.getpid()}.tmp")
            tmp.write_bytes(encode_jpeg(image, max_side=max_side))
            os.replace(tmp, paths[i])
    return paths
