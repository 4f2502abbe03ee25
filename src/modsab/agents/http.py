"""The HTTP path of chat-completions calls: aiohttp, with kept-alive connections.

Why not the ``openai`` client (httpx): there one request costs ~5 ms of CPU in this process
(request models, header objects, anyio layers), which caps one client at ~190 requests/s, below
what a server with 16 slots at 50 ms serves (320/s). aiohttp (a maintained asyncio client with
a C HTTP parser) costs ~1 ms a request, and speaks all of HTTP a server may answer with
(chunked bodies, gzip, TLS). A proxy configured for the URL sends the backend through the
``openai`` client instead (:func:`direct`). Both send the same body and map answers to the
same errors.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import urllib.request
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


#: How often a request that met a connection the server had closed is sent again.
STALE_RETRIES = 2
#: Idle connections are dropped before servers drop them (uvicorn: after 5 s).
KEEPALIVE_SECONDS = 4.0


class LeanClient:
    """POSTs to one server (``base_url``'s scheme, host, port and path prefix) over a pool of
    kept-alive connections, as many as requests in flight. The session belongs to the event
    loop it was opened in; a call from another loop (a later ``asyncio.run``) opens a new one."""

    def __init__(self, base_url: str, *, timeout: float, headers: Mapping[str, str]) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"accept": "application/json", "content-type": "application/json", **headers}
        self._session = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_here(self):
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS),  # the engine bounds
                # what is in flight
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                auto_decompress=True,
            )
            self._loop = loop
        return self._session

    async def post(self, path: str, body: bytes) -> Response:
        """``POST base_url + path`` with a JSON ``body``. A kept-alive connection the server
        closed meanwhile (uvicorn closes idle ones after 5 s) fails before any byte of a response
        came: the request is sent again, on another connection, a few times at most."""
        import aiohttp

        session = self._session_here()
        for attempt in range(STALE_RETRIES + 1):
            try:
                async with session.post(self.base_url + path, data=body) as response:
                    data = await response.read()
                    headers: dict[str, str] = {}
                    for name, value in response.headers.items():
                        name = name.lower()
                        headers[name] = f"{headers[name]}, {value}" if name in headers else value
                    return Response(response.status, headers, data)
            except aiohttp.ServerDisconnectedError as error:
                if attempt == STALE_RETRIES:
                    raise HttpConnectError(f"{self.base_url}: {type(error).__name__}: {error}") from None
            except TimeoutError:
                raise HttpTimeout(f"no response from {self.base_url} within {self.timeout:g} s") from None
            except aiohttp.ClientError as error:
                raise HttpConnectError(f"{self.base_url}: {type(error).__name__}: {error}") from None
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()
