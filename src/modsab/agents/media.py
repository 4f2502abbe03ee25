"""Media content parts: images and audio beside the text of a chat request.

A request that carries media holds OpenAI chat-completions content parts::

    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}
    {"type": "input_audio", "input_audio": {"data": "<base64 WAV>", "format": "wav"}}

Images are JPEG with the longer side at most :data:`MAX_IMAGE_SIDE` pixels; audio is the
clip as 16 kHz mono 16-bit WAV. The bytes go only to the endpoint of the request: the
run store and the shared cache keep :func:`redact`-ed requests, where each part's data is
replaced by the SHA-256 and size of its bytes. The cache key is made from the redacted
request, so it covers the media bytes (a different frame is a different call) without
keeping them.

An agent's ``media`` names what it is sent (:data:`MEDIA_KINDS`):

- ``peak_frame``: the AU-peak frame of the clip's video (one image);
- ``frames``: the clip's key frames, the peak frame first (up to four images);
- ``audio``: the clip's audio (one ``input_audio`` part).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import wave
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from modsab.contract.errors import InputError

MEDIA_KINDS: tuple[str, ...] = ("peak_frame", "frames", "audio")
#: content-part type of each media kind
PART_TYPE = {"peak_frame": "image_url", "frames": "image_url", "audio": "input_audio"}
#: how a content-part type is named in messages to the user
PART_NAMES = {"image_url": "image (image_url)", "input_audio": "audio (input_audio)"}
MAX_IMAGE_SIDE = 768
MAX_FRAMES = 4
#: prompt-token estimates of one part, for the budget and the tokens/min limit (an image
#: at 768 px is 255-765 tokens on OpenAI models and 576-729 in llama.cpp's CLIP models)
IMAGE_TOKENS = 765
AUDIO_TOKENS_PER_SECOND = 25
WAV_RATE = 16_000


def image_part(jpeg: bytes) -> dict[str, Any]:
    """A JPEG as an ``image_url`` content part (a data URI)."""
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


def audio_part(wav: bytes) -> dict[str, Any]:
    """WAV bytes as an ``input_audio`` content part."""
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode("ascii"), "format": "wav"}}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _parts(messages: Iterable[Mapping[str, Any]]):
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            yield from (part for part in content if isinstance(part, Mapping))


def part_types(messages: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The media content-part types in these messages (``image_url``, ``input_audio``)."""
    return frozenset(part.get("type") for part in _parts(messages) if part.get("type") != "text")


def text_length(messages: Iterable[Mapping[str, Any]]) -> int:
    """Characters of text in the messages (string contents and text parts)."""
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return total


def _data_bytes(part: Mapping[str, Any]) -> bytes:
    if part.get("type") == "image_url":
        url = part.get("image_url", {}).get("url", "")
        return base64.b64decode(url.partition(",")[2]) if url.startswith("data:") else url.encode()
    if part.get("type") == "input_audio":
        return base64.b64decode(part.get("input_audio", {}).get("data", ""))
    return b""


def media_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """A prompt-token estimate for the media parts (see :data:`IMAGE_TOKENS`)."""
    tokens = 0
    for part in _parts(messages):
        if part.get("type") == "image_url":
            tokens += IMAGE_TOKENS
        elif part.get("type") == "input_audio":
            seconds = max(0, len(_data_bytes(part)) - 44) / (2 * WAV_RATE)
            tokens += int(seconds * AUDIO_TOKENS_PER_SECOND) + 1
    return tokens


def estimate_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Prompt tokens of a request: text characters / 4, plus the media parts."""
    messages = list(messages)
    return text_length(messages) // 4 + 1 + media_tokens(messages)


def redact(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The messages with every media part's data replaced by ``sha256:<hex>`` and its size:
    what the store and the cache keep, and what the cache key is made of."""
    if not any(isinstance(m.get("content"), list) for m in messages):
        return [dict(m) for m in messages]
    out = copy.deepcopy(list(messages))
    for message in out:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if part.get("type") in ("image_url", "input_audio"):
                data = _data_bytes(part)
                ref = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                if part["type"] == "image_url":
                    part["image_url"] = {**part["image_url"], "url": "sha256:" + ref["sha256"], "bytes": ref["bytes"]}
                else:
                    part["input_audio"] = {**part["input_audio"], "data": "sha256:" + ref["sha256"],
                                           "bytes": ref["bytes"]}
    return out


def without_media(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The messages with media parts dropped and text parts joined (what a text-only model sees)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            text = "\n".join(part.get("text", "") for part in content if part.get("type") == "text")
            out.append({**message, "content": text})
        else:
            out.append(dict(message))
    return out


# -- files -> bytes -------------------------------------------------------------------


def encode_jpeg(image, *, max_side: int = MAX_IMAGE_SIDE, quality: int = 85) -> bytes:
    """An RGB ``uint8`` array as JPEG, scaled so the longer side is at most ``max_side``."""
    from PIL import Image

    picture = Image.fromarray(image)
    scale = min(1.0, max_side / max(picture.size))
    if scale < 1.0:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def wav_bytes(samples, rate: int = WAV_RATE) -> bytes:
    """Float samples in [-1, 1] as 16-bit mono PCM WAV."""
    import numpy as np

    pcm = (np.clip(np.asarray(samples, dtype=np.float32), -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    return buffer.getvalue()


@lru_cache(maxsize=64)
def _clip_wav(path: str, mtime_ns: int, size: int) -> bytes:
    from modsab.descriptors.media import load_audio

    audio = load_audio(path)
    if audio is None:
        raise InputError("the file has no audio track", path=path)
    return wav_bytes(audio)


def clip_wav(path: str | Path) -> bytes:
    """The clip's audio (any container) as 16 kHz mono WAV; decoded once per file version."""
    from modsab.descriptors.media import MediaError

    stat = Path(path).stat()
    try:
        return _clip_wav(str(path), stat.st_mtime_ns, stat.st_size)
    except MediaError as error:
        raise InputError(str(error), path=path) from None


def media_parts(kind: str, paths: Sequence[str]) -> list[dict[str, Any]]:
    """Content parts of one media kind from its files (JPEG frames, an audio or video clip)."""
    if kind in ("peak_frame", "frames"):
        chosen = list(paths)[: 1 if kind == "peak_frame" else MAX_FRAMES]
        return [image_part(Path(path).read_bytes()) for path in chosen]
    if kind == "audio":
        return [audio_part(clip_wav(paths[0]))] if paths else []
    raise ValueError(f"unknown media kind {kind!r}")


_KIND_TEXT = {
    "peak_frame": "the clip's peak frame (one image: the video frame of strongest facial movement)",
    "frames": "key frames of the clip (images, the peak frame first)",
    "audio": "the clip's audio (one recording)",
}


def describe_kinds(kinds: Iterable[str]) -> list[str]:
    """How the attached media kinds are named in the agent's prompt."""
    return [_KIND_TEXT[kind] for kind in kinds]
