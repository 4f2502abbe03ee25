"""Media content parts, checked against the OpenAI API schema of the ``openai`` package."""

from __future__ import annotations

import base64
import io
import json
import wave

import numpy as np
import pytest
from pydantic import TypeAdapter

from modsab.agents import media
from modsab.agents.store import cache_key
from modsab.agents.testing import StubServer, request_errors


def frame(width=1280, height=720, seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    image[..., 1] = rng.integers(0, 255, (height, width), dtype=np.uint8)
    return image


def test_an_image_part_is_a_jpeg_data_uri_of_at_most_768_px_that_the_openai_types_accept():
    from openai.types.chat import ChatCompletionContentPartImageParam
    from PIL import Image

    part = media.image_part(media.encode_jpeg(frame()))
    TypeAdapter(ChatCompletionContentPartImageParam).validate_python(part)
    url = part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert picture.format == "JPEG" and picture.size == (768, 432)
    small = Image.open(io.BytesIO(media.encode_jpeg(frame(320, 180))))
    assert small.size == (320, 180)  # never scaled up


def test_an_audio_part_is_16khz_mono_wav_that_the_openai_types_accept():
    from openai.types.chat import ChatCompletionContentPartInputAudioParam

    wav = media.wav_bytes(np.sin(np.linspace(0, 2000, 16_000)) * 0.5)
    part = media.audio_part(wav)
    TypeAdapter(ChatCompletionContentPartInputAudioParam).validate_python(part)
    assert part["input_audio"]["format"] == "wav"
    with wave.open(io.BytesIO(base64.b64decode(part["input_audio"]["data"]))) as handle:
        assert (handle.getframerate(), handle.getnchannels(), handle.getsampwidth(), handle.getnframes()) == (
            16_000, 1, 2, 16_000)


def _request(*parts):
    return [{"role": "system", "content": "s"}, {"role": "user", "content": [media.text_part("t"), *parts]}]


def test_redacted_requests_keep_a_content_hash_not_the_bytes_and_the_key_follows_the_bytes():
    one, two = media.encode_jpeg(frame(seed=1)), media.encode_jpeg(frame(seed=2))
    first = _request(media.image_part(one))
    redacted = media.redact(first)
    text = json.dumps(redacted)
    assert "base64" not in text and base64.b64encode(one).decode()[:40] not in text
    assert redacted[1]["content"][1]["image_url"]["bytes"] == len(one)
    assert first[1]["content"][1]["image_url"]["url"].startswith("data:")  # the original is untouched

    def key(messages):
        return cache_key(base_url="http://x/v1", model="m", messages=media.redact(messages), params={},
                         prompt_version="v")

    assert key(first) == key(_request(media.image_part(one)))
    assert key(first) != key(_request(media.image_part(two)))
    # text-only messages are keyed exactly as before media existed
    plain = [{"role": "user", "content": "hello"}]
    assert media.redact(plain) == plain


def test_token_estimates_count_images_and_seconds_of_audio():
    one_second = media.audio_part(media.wav_bytes(np.zeros(16_000)))
    messages = _request(media.image_part(media.encode_jpeg(frame(64, 64))), one_second)
    assert media.part_types(messages) == {"image_url", "input_audio"}
    assert media.estimate_tokens(messages) == len("s") // 4 + len("t") // 4 + 1 + media.IMAGE_TOKENS + (
        media.AUDIO_TOKENS_PER_SECOND + 1)


@pytest.mark.parametrize("part, why", [
    ({"type": "image", "image": "x"}, "content"),
    ({"type": "image_url", "image_url": {"uri": "data:"}}, "url"),
    ({"type": "input_audio", "input_audio": {"data": "x", "format": "flac"}}, "format"),
])
def test_the_stub_rejects_requests_that_do_not_match_the_openai_schema(part, why):
    request = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    error = request_errors(request)
    assert error is not None and why in error
    assert request_errors({"model": "m", "messages": _request(media.image_part(b"x"))}) is None
    # an image in a system message is not a valid OpenAI request either
    system_image = {"model": "m", "messages": [{"role": "system", "content": [media.image_part(b"x")]}]}
    assert request_errors(system_image) is not None


def test_a_validating_stub_answers_an_invalid_request_with_400_and_keeps_it():
    import urllib.error
    import urllib.request

    def post(url, body):
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    with StubServer(validate=True) as server:
        bad = {"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "image": "x"}]}]}
        status, body = post(server.url + "/chat/completions", bad)
        hello = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        good, _ = post(server.url + "/chat/completions", hello)
    assert status == 400 and "invalid request" in body["error"]["message"]
    assert good == 200
    assert len(server.invalid) == 1 and server.invalid[0][0] == bad
