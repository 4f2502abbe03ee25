"""Backends: where an agent's messages go. One interface, any OpenAI-compatible server.

A backend turns ``messages`` into a :class:`Completion` or raises one of three errors
the engine acts on: :class:`TransientError` (retry, honouring ``retry_after``),
:class:`FormatRejected` (the server refused this ``response_format``: try the next
mode), :class:`PermanentError` (give up on this call). A body the client cannot read
(not JSON, an HTML page sent with status 200, JSON without the expected fields) is a
:class:`TransientError` carrying the raw body, so it is retried and, if it never
parses, stored as a failed call with that body. The API key is read once from the
environment and scrubbed from every text a backend returns (answers, raw bodies,
errors); it is never stored.
"""

from __future__ import annotations

import copy
import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from modsab.registry import backends


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


#: Longest raw body kept with a failed call (an HTML error page can be large).
MAX_RAW_BODY = 100_000


class BackendError(Exception):
    #: the URL of the endpoint that gave it, when an endpoint pool sent the request
    endpoint: str | None = None

    def __init__(self, message: str, *, raw: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        #: the response body as received, when there was one (stored with a failed call)
        self.raw = raw
        #: the HTTP status of the server's answer, when it answered
        self.status = status


class TransientError(BackendError):
    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        raw: str | None = None,
        status: int | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(message, raw=raw, status=status)
        self.retry_after = retry_after
        #: "connection" or "timeout" when the server did not answer (an endpoint pool sets such
        #: an endpoint aside); ``None`` when it answered (``status``) or its body was unreadable
        self.cause = cause


class FormatRejected(BackendError):
    pass


class PermanentError(BackendError):
    def __init__(
        self, message: str, *, raw: str | None = None, attempts: int = 0, status: int | None = None
    ) -> None:
        super().__init__(message, raw=raw, status=status)
        self.attempts = attempts


class Backend(Protocol):
    #: "chat" backends answer messages with JSON text; "scorer" backends score labels.
    kind: str
    base_url: str
    model: str
    #: content-part types it takes ("text", "image_url", "input_audio"); ``None``: unknown,
    #: the server says (its first request with a media part is sent alone, see the engine)
    accepts: frozenset[str] | None

    async def complete(
        self,
        messages: list[dict[str, str]],
        params: Mapping[str, Any],
        response_format: dict[str, Any] | None,
    ) -> Completion: ...

    async def aclose(self) -> None: ...


def cache_url(backend: Backend) -> str:
    """The URL part of a backend's cache keys: its ``base_url``, or what it says instead (an
    endpoint pool keys by model and request only: :mod:`modsab.agents.pool`)."""
    return getattr(backend, "cache_url", backend.base_url)


def response_formats(schema: dict[str, Any]) -> list[dict[str, Any] | None]:
    """Structured-output modes, strongest first: json_schema, json_object with the
    schema (llama.cpp), plain json_object, then none (extraction from text)."""
    return [
        {"type": "json_schema", "json_schema": {"name": "agent_answer", "schema": schema}},
        {"type": "json_object", "schema": schema},
        {"type": "json_object"},
        None,
    ]


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date)."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(
    status: int, body: str, headers: Mapping[str, str], response_format: dict[str, Any] | None, scrub
) -> BackendError:
    """The engine's error for an HTTP error status (the message as the ``openai`` client words it)."""
    message = f"Error code: {status}"
    try:
        data = json.loads(body)
    except ValueError:
        pass
    else:
        error = data.get("error", data) if isinstance(data, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        if isinstance(detail, str) and detail:
            message += f" - {detail}"
    message = scrub(f"HTTP {status}: {message}")
    raw = scrub(body[:MAX_RAW_BODY])
    if response_format is not None and (
        status in (400, 422) or (status >= 500 and "response_format" in message)
    ):  # llama.cpp's server answers an unsupported json_schema with a 500
        return FormatRejected(message, raw=raw, status=status)
    if status == 429 or status >= 500 or status == 408:
        return TransientError(message, retry_after=parse_retry_after(headers), raw=raw, status=status)
    return PermanentError(message, raw=raw, status=status)


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions server.

    Requests go through the lean HTTP path (:mod:`modsab.agents.http`, aiohttp: ~1 ms of CPU a
    request against ~5 ms through the ``openai`` client), or through the async ``openai`` client when a
    proxy is configured for the URL. Both send the same body and map answers to the same errors.
    The client's own retries are off: the engine retries, so that it can count, back off with
    jitter and honour ``Retry-After`` the same way for every server.
    """

    kind = "chat"
    accepts = None  # what a server's model takes is known only by asking it

    def __init__(
        self, *, base_url: str, model: str, api_key: str | None, timeout: float = 60.0, lean: bool | None = None
    ) -> None:
        from modsab.agents import http

        self.base_url = base_url.rstrip("/")
        self.model = model
        self._secret = api_key or ""
        self._http: http.LeanClient | None = None
        #: id -> (response format, a copy to see it unchanged, its JSON), for :meth:`_body`
        self._formats: dict[int, tuple[dict[str, Any], dict[str, Any], str]] = {}
        self.client = None
        if lean if lean is not None else http.direct(self.base_url):
            self._http = http.LeanClient(
                self.base_url, timeout=timeout,
                headers={"authorization": f"Bearer {api_key or 'not-needed'}", "user-agent": "modsab"},
            )
        else:
            from openai import AsyncOpenAI

            self.client = AsyncOpenAI(
                base_url=self.base_url, api_key=api_key or "not-needed", max_retries=0, timeout=timeout
            )

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _read(self, body: str, content_type: str | None) -> Completion:
        """A chat-completions body -> :class:`Completion`; anything else is a
        :class:`TransientError` that carries the (scrubbed) raw body."""

        def unreadable(why: str) -> TransientError:
            preview = " ".join(body.split())[:200]
            return TransientError(
                self._scrub(f"unreadable response ({why}; content-type {content_type or 'none'}): {preview!r}"),
                raw=self._scrub(body[:MAX_RAW_BODY]),
            )

        try:
            data = json.loads(body)
        except ValueError as error:
            raise unreadable(f"not JSON: {getattr(error, 'msg', error)}") from None
        if not isinstance(data, dict):
            raise unreadable("not a JSON object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise unreadable("the response has no choices")
        choice = choices[0]
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise unreadable("the first choice has no message")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise unreadable("the message content is not text")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}

        def count(name: str) -> int:
            value = usage.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

        reason = choice.get("finish_reason")
        return Completion(
            text=self._scrub(content or ""),
            prompt_tokens=count("prompt_tokens"),
            completion_tokens=count("completion_tokens"),
            finish_reason=reason if isinstance(reason, str) else None,
        )

    async def complete(self, messages, params, response_format):
        if self._http is None:
            return await self._complete_openai(messages, params, response_format)
        from modsab.agents import http

        try:
            response = await self._http.post("/chat/completions", self._body(messages, params, response_format))
        except http.HttpTimeout:
            raise TransientError("APITimeoutError: Request timed out.", cause="timeout") from None
        except http.HttpConnectError as error:
            raise TransientError(self._scrub(f"APIConnectionError: Connection error. ({error})"),
                                 cause="connection") from None
        body = response.text
        if response.status >= 400:
            raise status_error(response.status, body, response.headers, response_format, self._scrub)
        if response.status >= 300:
            raise PermanentError(
                f"HTTP {response.status}: redirected to {response.headers.get('location', '?')}; "
                "give that URL as base_url", raw=self._scrub(body[:MAX_RAW_BODY]), status=response.status)
        return self._read(body, response.headers.get("content-type"))

    def _body(self, messages, params, response_format) -> bytes:
        """``json.dumps`` of the request, with the response format's JSON (the same large schema on
        every call) made once and put in place: the same bytes (a test holds them equal)."""
        payload: dict[str, Any] = {"model": self.model, "messages": messages, **params}
        if response_format is None or "response_format" in payload:
            if response_format is not None:
                payload["response_format"] = response_format
            return json.dumps(payload).encode()
        made = self._formats.get(id(response_format))
        if made is None or made[0] is not response_format or made[1] != response_format:
            made = self._formats[id(response_format)] = (response_format, copy.deepcopy(response_format),
                                                         json.dumps(response_format))
        return (json.dumps(payload)[:-1] + ', "response_format": ' + made[2] + "}").encode()

    async def _complete_openai(self, messages, params, response_format):
        import openai

        # Messages and response_format go in extra_body, which the client sends as they
        # are: through the typed parameters it walks them against its TypedDicts on every
        # call (~20 ms of CPU per request here, the whole budget of a fast server).
        body: dict[str, Any] = {"messages": messages}
        if response_format is not None:
            body["response_format"] = response_format
        kwargs: dict[str, Any] = {"model": self.model, "messages": [], **params, "extra_body": body}
        try:
            # the raw response: the body is read here, so a body the client could not parse
            # (malformed JSON, an HTML page with status 200) is one failed call, not a crash
            response = await self.client.chat.completions.with_raw_response.create(**kwargs)
            body = response.text
        except openai.APIStatusError as error:
            raise status_error(error.status_code, error.response.text, error.response.headers, response_format,
                               self._scrub) from None
        except openai.APITimeoutError as error:
            raise TransientError(self._scrub(f"{type(error).__name__}: {error}"), cause="timeout") from None
        except openai.APIConnectionError as error:
            raise TransientError(self._scrub(f"{type(error).__name__}: {error}"), cause="connection") from None
        except openai.APIResponseValidationError as error:
            raise TransientError(self._scrub(f"bad response: {error}")) from None
        return self._read(body, response.headers.get("content-type"))

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        else:
            await self.client.close()


def api_key_from_env(name: str | None, *, option: str) -> str | None:
    """The API key in the environment variable ``name`` (None when no variable is named); an
    InputError naming ``option`` (the flag or config key that named it) when it is not set."""
    if not name:
        return None
    import os

    from modsab.contract.errors import InputError

    key = os.environ.get(name)
    if not key:
        raise InputError(f"environment variable {name} is not set", item=option,
                         hint=f"export it, or drop {option} for servers without keys")
    return key


# -- the registered backends (modsab.registry.backends) ---------------------------------------


@backends.register("openai", order=0)
def openai_backend(config) -> Backend:
    """Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp's server): ``base_url``
    (or a pool: a list of URLs, ``endpoints``) and ``model``; the key from ``api_key_env``
    (never stored)."""
    from modsab.agents.pool import chat_backend

    key = api_key_from_env(config.api_key_env, option="--api-key-env")

    return chat_backend(config.base_url, config.endpoints, model=config.model, api_key=key,
                        timeout=config.timeout, limits=config.limits)


@backends.register("local", order=1)
def local_backend_factory(config):
    """An offline model in-process (``local:<name>``: llama.cpp on a GGUF model a package ships)."""
    from modsab.agents.local import local_backend

    return local_backend(config.model, labels=config.labels, params=config.params)


@backends.register("ray", order=2)
def ray_backend_factory(config):
    """An offline model on Ray actors (``[run] executor = "ray"``), each loading it once."""
    from modsab.agents.ray_local import RayLocalBackend
    from modsab.run.executors import ExecutorSettings

    return RayLocalBackend(config.model, ExecutorSettings(workers=config.workers, ray_address=config.ray_address))


def backend_name(config) -> str:
    """Which registered backend serves ``config``: ``openai`` with a base URL (or endpoints), else
    ``ray`` for an offline model when the run's executor is Ray, else ``local``."""
    if config.base_url or getattr(config, "endpoints", None):
        return "openai"
    return "ray" if getattr(config, "executor", "local") == "ray" else "local"
