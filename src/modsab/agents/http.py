"""A lean HTTP/1.1 client for chat-completions calls: asyncio streams and keep-alive connections.

Why not the ``openai`` client (httpx): there one request costs ~5 ms of CPU in this process
(request models, header objects, anyio layers), which caps one client at ~190 requests/s, below
what a server with 16 slots at 50 ms serves (320/s). This path costs ~0.3 ms a request: one
write of head and body, a status line, headers and a body read back (``Content-Length``,
chunked, or until the server closes), gzip/deflate decoded. The connections are kept open and
reused, one per request in flight, so the pool is as large as the engine's concurrency.

It speaks only what a chat-completions POST needs. A proxy configured for the URL (the
``*_proxy`` environment variables) is not spoken to: :func:`direct` says so, and the backend
then goes through the ``openai`` client, which honours it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass


class HttpConnectError(Exception):
    """No connection, or it dropped before a whole response came back."""


class HttpTimeout(Exception):
    """The response did not come back within the timeout."""


@dataclass(frozen=True)
class Response:
    status: int
    #: lower-cased names; repeated headers joined with ", "
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def direct(url: str) -> bool:
    """Whether ``url`` is reached without a proxy (so this client may be used for it)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return False
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname or ""))


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LeanClient:
    """POSTs to one server (``base_url``'s scheme, host and port), over reused connections."""

    def __init__(self, base_url: str, *, timeout: float, headers: Mapping[str, str]) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        default_port = self.port == (443 if self.https else 80)
        host = self.host if default_port else f"{self.host}:{self.port}"
        fixed = {"host": host, "accept": "application/json", "content-type": "application/json", **headers}
        self._head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._idle: list[_Connection] = []
        self._ssl = ssl.create_default_context() if self.https else None

    async def _open(self) -> _Connection:
        try:
            return await asyncio.open_connection(
                self.host, self.port, ssl=self._ssl, server_hostname=self.host if self.https else None
            )
        except (OSError, ssl.SSLError) as error:
            raise HttpConnectError(f"cannot connect to {self.host}:{self.port}: {error}") from None

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def post(self, path: str, body: bytes) -> Response:
        """``POST prefix + path`` with a JSON ``body``. A kept-alive connection the server has
        closed meanwhile is retried once on a new one (no byte of a response had come)."""
        head = (f"POST {self.prefix}{path} HTTP/1.1\r\n{self._head}content-length: {len(body)}\r\n\r\n").encode()
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    connection = self._take_idle()
                    reused = connection is not None
                    connection = connection or await self._open()
                    try:
                        response, keep = await _exchange(connection, head + body)
                    except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                            ValueError) as error:
                        connection[1].close()
                        if reused and isinstance(error, EOFError | asyncio.IncompleteReadError | ConnectionError):
                            continue
                        raise HttpConnectError(f"{self.host}:{self.port}: {type(error).__name__}: {error}") from None
                    except BaseException:  # cancelled or timed out mid-exchange: the connection is spent
                        connection[1].close()
                        raise
                    if keep:
                        self._idle.append(connection)
                    else:
                        connection[1].close()
                    return response
        except TimeoutError:
            raise HttpTimeout(f"no response from {self.host}:{self.port} within {self.timeout:g} s") from None

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


class _Closed(EOFError):
    """The server closed the connection before a status line."""


async def _exchange(connection: _Connection, request: bytes) -> tuple[Response, bool]:
    """One request on one connection: the response and whether the connection may be reused."""
    reader, writer = connection
    writer.write(request)
    await writer.drain()
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            raise _Closed("connection closed before a response") from None
        raise
    lines = raw.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:  # the body runs to the end of the connection
        body, keep = await reader.read(), False
    encoding = headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        body = zlib.decompress(body, 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    return Response(int(status), headers, body), keep


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
