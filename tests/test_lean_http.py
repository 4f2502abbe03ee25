"""The lean HTTP path (``modsab.agents.http``, aiohttp) against real sockets on 127.0.0.1: body framings,
kept-alive connections a server has closed, refused connections and time-outs."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest

from modsab.agents.backends import OpenAIBackend, TransientError
from modsab.agents.http import HttpConnectError, HttpTimeout, LeanClient, direct
from modsab.agents.testing import StubServer

ANSWER = {"choices": [{"message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 7, "completion_tokens": 2}}


async def serve_once(reply: bytes, *, stall: bool = False):
    """A server that reads one request and writes ``reply`` as given (then closes, or stalls)."""
    requests: list[bytes] = []

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length")))
        requests.append(head + await reader.readexactly(length))
        if stall:
            await asyncio.sleep(10)
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", requests


def chunked(body: bytes, size: int = 7) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["chunked", "gzip", "close"])
def test_bodies_read_whatever_their_framing(framing):
    body = json.dumps(ANSWER).encode()
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    reply = {
        "chunked": head + b"transfer-encoding: chunked\r\n\r\n" + chunked(body),
        "gzip": head + b"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(gzip.compress(body))
        + gzip.compress(body),
        "close": head + b"connection: close\r\n\r\n" + body,
    }[framing]

    async def main():
        server, url, requests = await serve_once(reply)
        async with server:
            backend = OpenAIBackend(base_url=url, model="m", api_key="sk-test", timeout=5)
            completion = await backend.complete([{"role": "user", "content": "hi"}], {"seed": 0}, None)
            await backend.aclose()
        return completion, requests

    completion, requests = asyncio.run(main())
    assert (completion.text, completion.prompt_tokens, completion.completion_tokens) == ("fine", 7, 2)
    head, _, sent = requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1") and b"authorization: Bearer sk-test" in head
    assert json.loads(sent) == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 0}


def test_a_kept_alive_connection_the_server_closed_is_retried_on_a_new_one():
    async def main():
        with StubServer() as first:
            client = LeanClient(first.url, timeout=5, headers={})
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
            assert (await client.post("/chat/completions", body)).status == 200
            port = first.port
        # the client keeps its connection to the server that has gone
        with StubServer(port=port) as second:
            assert (await client.post("/chat/completions", body)).status == 200
            assert len(second.requests) == 1
        await client.aclose()

    asyncio.run(main())


def test_refused_connections_and_time_outs_are_transient_errors_saying_so():
    async def main():
        with StubServer() as gone:
            url = gone.url
        backend = OpenAIBackend(base_url=url, model="m", api_key=None, timeout=5)
        with pytest.raises(TransientError) as refused:
            await backend.complete([{"role": "user", "content": "x"}], {}, None)
        server, slow_url, _ = await serve_once(b"", stall=True)
        async with server:
            slow = OpenAIBackend(base_url=slow_url, model="m", api_key=None, timeout=0.3)
            with pytest.raises(TransientError) as timed_out:
                await slow.complete([{"role": "user", "content": "x"}], {}, None)
            await slow.aclose()
        return refused.value, timed_out.value

    refused, timed_out = asyncio.run(main())
    assert refused.cause == "connection" and "Connection error" in str(refused)
    assert timed_out.cause == "timeout" and "timed out" in str(timed_out)
    assert HttpConnectError and HttpTimeout  # the client's own errors, mapped above


def test_a_proxy_for_the_url_sends_the_backend_through_the_openai_client(monkeypatch):
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert not direct("http://10.1.2.3:8080/v1")
    pytest.importorskip("openai")
    backend = OpenAIBackend(base_url="http://10.1.2.3:8080/v1", model="m", api_key=None)
    assert backend.client is not None and backend._http is None
    monkeypatch.setenv("no_proxy", "10.1.2.3")
    assert direct("http://10.1.2.3:8080/v1")


def test_the_lean_path_sends_what_the_openai_client_sends_and_reads_the_same_answer():
    pytest.importorskip("openai")
    messages = [{"role": "system", "content": "Choose from these labels only: anger, joy."},
                {"role": "user", "content": "é and ✓"}]
    fmt = {"type": "json_object"}

    async def ask(url, lean):
        backend = OpenAIBackend(base_url=url, model="stub", api_key="sk-x", timeout=5, lean=lean)
        try:
            return await backend.complete(messages, {"temperature": 0.0, "max_tokens": 40, "seed": 0}, fmt)
        finally:
            await backend.aclose()

    with StubServer(validate=True) as server:
        viaclient = asyncio.run(ask(server.url, False))
        lean = asyncio.run(ask(server.url, True))
    assert lean == viaclient and not server.invalid
    assert server.requests[0] == server.requests[1]
