"""Decoding: any common container to 16 kHz mono float32 audio and sampled RGB frames.

PyAV (FFmpeg) reads wav, flac, mp3, mp4, mkv, avi, webm and still images alike, so one
code path serves every format. A file that cannot be decoded raises :class:`MediaError`
with the reason; the orchestrator records it against the item and goes on.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modsab.contract.errors import ModsabError

SAMPLE_RATE = 16_000


class MediaError(ModsabError):
    """One media file could not be used; the message says why, for the item's error."""


@dataclass(frozen=True)
class Frames:
    """Frames sampled from a video (or one still image), RGB uint8, with their times."""

    times: np.ndarray  # seconds, shape (n,)
    images: list[np.ndarray]  # each (height, width, 3) uint8
    width: int  # of the original video
    height: int
    duration: float  # seconds; 0 for a still image

    def __len__(self) -> int:
        return len(self.images)


def require(module: str, purpose: str):
    """Import an optional dependency of the ``describe`` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{purpose} needs '{module}': pip install 'modsab[describe]'") from error


def file_digest(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes: the cache key part that changes when the media does."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.exists():
        raise MediaError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise MediaError(f"empty file (0 bytes): {path.name}")
    try:
        return av.open(str(path))
    except av.FFmpegError as error:
        raise MediaError(f"cannot open {path.name}: {error.strerror or error}") from error


def _declared_seconds(container, stream) -> float | None:
    """Duration the file claims for a stream (or the container), when it claims one."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _check_complete(path: str | Path, what: str, decoded: float, declared: float | None) -> None:
    """A file that decodes to much less than it declares is truncated or damaged."""
    if declared and decoded < 0.9 * declared - 0.1:
        raise MediaError(
            f"{what} of {Path(path).name} is truncated or damaged: decoded {decoded:.1f} s "
            f"of the {declared:.1f} s the file declares"
        )


def load_audio(path: str | Path) -> np.ndarray | None:
    """Decode the first audio stream to 16 kHz mono float32 in [-1, 1].

    Returns ``None`` when the container has no audio stream (a silent video, an image);
    raises :class:`MediaError` when the file is broken, truncated or holds no samples.
    """
    import av

    with _open(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray()[0] for out in resampler.resample(frame))
        except av.FFmpegError as error:
            if not chunks:
                raise MediaError(f"cannot decode audio of {Path(path).name}: {error}") from error
            # a damaged tail: keep what decoded
        chunks.extend(out.to_ndarray()[0] for out in resampler.resample(None))
        if not chunks:
            raise MediaError(f"no audio samples in {Path(path).name}")
        audio = np.concatenate(chunks).astype(np.float32, copy=False)
        _check_complete(path, "audio", audio.size / SAMPLE_RATE, _declared_seconds(container, stream))
    return np.clip(audio, -1.0, 1.0)


def load_frames(path: str | Path, *, fps: float = 5.0, max_side: int = 640) -> Frames:
    """Decode the first video stream and keep about ``fps`` frames per second.

    Frames are scaled so the longer side is at most ``max_side`` pixels (MediaPipe works
    on a small input anyway; this keeps conversion cheap). A still image gives one frame;
    a truncated file raises :class:`MediaError`.

    Speed: the decoder first skips non-reference frames (about half the work for h264
    with B-frames); when the reference frames alone are too sparse for ``fps``, it decodes
    again with every frame.
    """
    if fps <= 0:
        raise ValueError("fps must be positive")
    frames = _decode_frames(path, fps, max_side, skip_nonref=True)
    gaps = np.diff(np.append(frames.times, frames.duration))
    if len(frames) > 1 and gaps.max(initial=0) > 1.5 / fps:
        frames = _decode_frames(path, fps, max_side, skip_nonref=False)
    return frames


def _decode_frames(path: str | Path, fps: float, max_side: int, *, skip_nonref: bool) -> Frames:
    import av

    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"no video stream in {Path(path).name}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if skip_nonref:
            stream.codec_context.skip_frame = "NONREF"
        width, height = stream.codec_context.width, stream.codec_context.height
        scale = min(1.0, max_side / max(width, height, 1))
        out_w, out_h = max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
        times: list[float] = []
        images: list[np.ndarray] = []
        next_time = 0.0
        last_time = 0.0
        try:
            for frame in container.decode(stream):
                time = float(frame.time) if frame.time is not None else 0.0
                last_time = max(last_time, time)
                if time + 1e-6 < next_time:
                    continue
                images.append(frame.reformat(width=out_w, height=out_h, format="rgb24").to_ndarray())
                times.append(time)
                next_time = (math.floor(time * fps + 1e-6) + 1) / fps  # on a fixed grid
        except av.FFmpegError as error:
            if not images:
                raise MediaError(f"cannot decode video of {Path(path).name}: {error}") from error
        if not images:
            raise MediaError(f"no decodable frames in {Path(path).name}")
        rate = float(stream.average_rate or 0) or fps
        _check_complete(path, "video", last_time + 1 / rate, _declared_seconds(container, stream))
    return Frames(np.asarray(times), images, width, height, last_time)
