"""A small OpenAI-compatible stub server for tests and benchmarks (stdlib asyncio only).

It answers ``POST .../chat/completions`` after a fixed latency, at most ``capacity``
requests at a time (the rest queue, as on a real server with C slots), and lets a
``responder`` decide each answer, so tests can script misbehaviour: 429 with
``Retry-After``, 500, slow or truncated answers, a body that is not JSON or an HTML page
with status 200 (:func:`raw_reply`). A responder that takes a ``headers`` keyword also
gets the request's headers (lower-cased names), e.g. to echo the bearer token.

``validate=True`` checks every request against the OpenAI API schema: the ``openai``
package's own types of a chat-completions request (messages, content parts such as
``ChatCompletionContentPartImageParam`` and ``ChatCompletionContentPartInputAudioParam``);
a request that does not match gets a 400 naming what is wrong and is kept in
``invalid``. ``refuse_parts={"image_url"}`` plays a text-only model: a request with such a
part gets ``refuse_status`` (400, or 500 as llama.cpp's server answers without a
projector) saying the model does not take it. Runs in a background thread
(:meth:`StubServer.start`) or as a process::

    python -m modsab.agents.testing --port 8000 --latency 0.05 --capacity 16 --rate-429 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import random
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: answer at once, outside the capacity slots (as servers do for 429s)
    immediate: bool = False
    #: e.g. "text/html" for a proxy's error page sent with status 200
    content_type: str = "application/json"


def chat_reply(
    content: str,
    *,
    prompt_tokens: int = 50,
    completion_tokens: int = 20,
    finish_reason: str = "stop",
) -> Reply:
    return Reply(
        body={
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "stub",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish_reason,
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def raw_reply(body: str | bytes, *, status: int = 200, content_type: str = "application/json") -> Reply:
    """A reply whose body is sent exactly as given (malformed JSON, an HTML page, ...)."""
    return Reply(status=status, body=body if isinstance(body, bytes) else body.encode(), content_type=content_type)


def default_answer(request: dict[str, Any]) -> Reply:
    """A valid answer naming the first label of the system prompt's label list."""
    text = request.get("messages", [{}])[0].get("content", "")
    marker = "Choose from these labels only: "
    label = text.split(marker, 1)[1].split(",")[0].strip(" .\n") if marker in text else "neutral"
    return chat_reply(
        json.dumps(
            {
                "candidates": [{"label": label, "confidence": 70}],
                "primary_label": label,
                "quality": 80,
                "issues": [],
                "reason": "stub",
            }
        )
    )


_VALIDATOR = None


def request_errors(request: dict[str, Any]) -> str | None:
    """Why a chat-completions request body does not match the OpenAI API schema (the
    ``openai`` package's ``CompletionCreateParamsNonStreaming``, content parts included),
    or ``None`` when it does."""
    global _VALIDATOR
    from pydantic import TypeAdapter, ValidationError

    if _VALIDATOR is None:
        from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming

        _VALIDATOR = TypeAdapter(CompletionCreateParamsNonStreaming)
    try:
        checked = _VALIDATOR.validate_python(request)
        for index, message in enumerate(checked["messages"]):  # iterables validate lazily
            content = message.get("content")
            if content is not None and not isinstance(content, str):
                try:
                    list(content)
                except ValidationError as error:
                    first = _member_error(error.errors(), request["messages"][index].get("content"))
                    where = ".".join(str(part) for part in first["loc"])
                    return f"messages.{index}.content.{where}: {first['msg']}"
    except ValidationError as error:
        first = error.errors()[0]
        return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    return None


#: union member of a content part, by its ``type``
_MEMBERS = {"text": "TextParam", "image_url": "ImageParam", "input_audio": "InputAudioParam", "file": "File"}


def _member_error(errors: list[dict[str, Any]], content: Any) -> dict[str, Any]:
    """Of a union's errors, the one of the member the part's ``type`` names (else the first)."""
    for error in errors:
        index = error["loc"][0] if error["loc"] and isinstance(error["loc"][0], int) else None
        part = content[index] if isinstance(content, list) and index is not None and index < len(content) else {}
        member = _MEMBERS.get(part.get("type") if isinstance(part, dict) else None)
        if member and any(isinstance(loc, str) and loc.endswith(member) for loc in error["loc"]):
            return error
    return errors[0]


def _part_types(request: dict[str, Any]) -> set[str]:
    return {
        part.get("type")
        for message in request.get("messages", [])
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict)
    }


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class StubServer:
    def __init__(
        self,
        *,
        latency: float = 0.0,
        capacity: int | None = None,
        responder: Callable[[dict[str, Any]], Reply] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        validate: bool = False,
        refuse_parts: Collection[str] = (),
        refuse_status: int = 400,
    ) -> None:
        self.latency, self.capacity = latency, capacity
        self.validate, self.refuse_parts, self.refuse_status = validate, set(refuse_parts), refuse_status
        #: (request, why) of every request that did not match the schema
        self.invalid: list[tuple[dict[str, Any], str]] = []
        self.responder = responder or default_answer
        try:
            self._wants_headers = "headers" in inspect.signature(self.responder).parameters
        except (TypeError, ValueError):
            self._wants_headers = False
        self.host, self.port = host, port
        self.requests: list[dict[str, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", 0) or 0))
                reply = await self._reply(method, path, body, headers)
                payload = (
                    reply.body if isinstance(reply.body, str | bytes) else json.dumps(reply.body)
                )
                data = payload.encode() if isinstance(payload, str) else payload
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                writer.write(
                    (
                        f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}\r\n"
                        f"content-type: {reply.content_type}\r\ncontent-length: {len(data)}\r\n"
                        f"{extra}\r\n"
                    ).encode()
                    + data
                )
                await writer.drain()
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            asyncio.LimitOverrunError,
            asyncio.CancelledError,
        ):
            pass
        finally:
            writer.close()

    async def _reply(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return Reply(404, {"error": {"message": f"no route {method} {path}"}})
        request = json.loads(body or b"{}")
        self.requests.append(request)
        if self.validate:
            why = request_errors(request)
            if why is not None:
                self.invalid.append((request, why))
                return Reply(400, {"error": {"message": f"invalid request: {why}", "type": "invalid_request_error"}})
        refused = sorted(self.refuse_parts & _part_types(request))
        if refused:
            what = {"image_url": "image input", "input_audio": "audio input"}.get(refused[0], refused[0])
            return Reply(self.refuse_status, {"error": {
                "message": f"{what} is not supported by this model ({refused[0]} content part)",
                "type": "invalid_request_error"}})
        reply = self.responder(request, headers=headers) if self._wants_headers else self.responder(request)
        if reply.immediate:
            await asyncio.sleep(reply.delay)
            return reply
        async with self._slots:
            await asyncio.sleep(self.latency + reply.delay)
        return reply

    async def _serve(self) -> None:
        self._slots = asyncio.Semaphore(self.capacity or 1_000_000)
        server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._stopping = asyncio.Event()
        self._ready.set()
        async with server:
            await self._stopping.wait()
        current = asyncio.current_task()
        handlers = [task for task in asyncio.all_tasks() if task is not current]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def start(self) -> StubServer:
        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve())

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(5)

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible stub server")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument(
        "--rate-429", type=float, default=0.0, help="share of answers that are 429s"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    def responder(request: dict[str, Any]) -> Reply:
        if rng.random() < args.rate_429:
            return Reply(
                429, {"error": {"message": "slow down"}}, {"retry-after-ms": "50"}, immediate=True
            )
        return default_answer(request)

    server = StubServer(
        latency=args.latency, capacity=args.capacity, responder=responder, port=args.port
    )
    print(f"stub server on {server.host}:{args.port}", flush=True)
    asyncio.run(server._serve())


if __name__ == "__main__":
    main()
