"""Endpoint pools: one agent's requests spread over several OpenAI-compatible servers.

An agent given ``base_url = [url, url, ...]`` or ``endpoints = [{url, concurrency, weight}]``
sends each request to the endpoint with the fewest requests outstanding relative to its
``concurrency`` (its slots); ``weight`` breaks ties (the higher first, then the list order), so
it says which server to prefer when two are equally busy, while ``concurrency`` says how much
each takes. At most ``concurrency`` requests are in flight on an endpoint, so the pool's total
is the sum of its endpoints'.

Each endpoint keeps its own health. A connection error, or ``failures`` 5xx answers or
time-outs in a row, sets it aside: no request goes there until its backoff has passed
(``backoff_base`` doubling up to ``backoff_max``, at most 1 s: :data:`PROBE_MAX`), then one
real request probes it; an answer
brings it back at full concurrency, a failure sets it aside again for twice as long. A 429
pauses only the endpoint that sent it, for its ``Retry-After`` (else the backoff), while the
others carry on. A request that met a failure which set its endpoint aside or paused it is sent
on at once to an endpoint it has not tried (a failover, not an engine retry); any other
transient failure is retried with the engine's backoff.

Answers do not depend on which endpoint served them: the cache key of a pool covers the model
and the request, not the URLs (:attr:`PoolBackend.cache_url`), so pools of different servers
share cached answers; a pool of one endpoint keys as that URL alone does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modsab.agents.backends import Backend, BackendError, TransientError
from modsab.contract.errors import InputError


@dataclass(frozen=True)
class Endpoint:
    url: str
    #: requests in flight on this endpoint at once (its server's slots)
    concurrency: int = 4
    #: tie-break between equally busy endpoints: the higher is asked first
    weight: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "concurrency": self.concurrency, "weight": self.weight}


def pool_problem(urls: Sequence[str]) -> str | None:
    """What is wrong with a pool's URLs (none, not http(s), one listed twice), or ``None``."""
    if not urls:
        return "lists no endpoint: give at least one URL"
    seen: set[str] = set()
    for index, url in enumerate(urls):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return f"endpoint {index + 1} is not an http(s) URL: {url!r} (e.g. http://localhost:8080/v1)"
        if url.rstrip("/") in seen:
            return f"endpoint {url} is listed twice"
        seen.add(url.rstrip("/"))
    return None


def endpoints_of(
    base_url: str | Sequence[str] | None,
    endpoints: Sequence[Endpoint | Mapping[str, Any]] | None,
    concurrency: int,
    *,
    where: str = "base_url",
) -> list[Endpoint] | None:
    """The pool an agent asked for (``None`` for one plain ``base_url`` string, or none at all).

    A list of URLs gets ``concurrency`` each; ``endpoints`` entries default to it."""
    if endpoints and base_url:
        raise InputError("give either 'base_url' or 'endpoints', not both", item=where,
                         hint="list the URLs in one of them")
    if endpoints:
        out = [item if isinstance(item, Endpoint) else
               Endpoint(**{key: value for key, value in {"concurrency": concurrency, **item}.items()
                           if value is not None})
               for item in endpoints]
    elif base_url is None or isinstance(base_url, str):
        return None
    else:
        out = [Endpoint(url, concurrency) for url in base_url]
    problem = pool_problem([endpoint.url for endpoint in out])
    if problem is not None:
        raise InputError(f"the endpoint pool {problem}", item=where)
    return out


def chat_backend(
    base_url: str | Sequence[str] | None,
    endpoints: Sequence[Endpoint | Mapping[str, Any]] | None,
    *,
    model: str,
    api_key: str | None,
    timeout: float,
    limits: Any,
    where: str = "base_url",
) -> Backend:
    """The backend of an OpenAI-compatible agent or describer: one server for a ``base_url``
    string (as always), a :class:`PoolBackend` for a list of URLs or ``endpoints``."""
    from modsab.agents.backends import OpenAIBackend

    pool = endpoints_of(base_url, endpoints, limits.concurrency, where=where)
    if pool is None:
        return OpenAIBackend(base_url=base_url, model=model, api_key=api_key, timeout=timeout)
    backends = [OpenAIBackend(base_url=e.url, model=model, api_key=api_key, timeout=timeout) for e in pool]
    return PoolBackend(pool, backends, backoff_base=limits.backoff_base,
                       backoff_max=min(PROBE_MAX, limits.backoff_max))


#: longest a set-aside endpoint waits for its next probe (seconds): a probe is one request, and
#: an endpoint back from an outage should not stay idle for long
PROBE_MAX = 1.0


@dataclass
class EndpointState:
    """One endpoint's live state in a pool (mutated only on the event loop)."""

    endpoint: Endpoint
    backend: Backend
    index: int
    outstanding: int = 0
    #: set aside until this time (``None``: healthy)
    down_until: float | None = None
    down_backoff: float = 0.0
    #: 5xx answers / time-outs in a row
    failures: int = 0
    #: a 429 paused it until this time
    paused_until: float = 0.0
    pause_backoff: float = 0.0
    served: int = 0
    set_aside: int = 0
    rate_limited: int = 0
    #: requests that failed here and were sent on to another endpoint
    failed_over: int = 0

    def slots(self, now: float) -> int:
        """Requests it may have in flight now: none while paused or set aside, one to probe
        it once its backoff has passed, else its concurrency."""
        if now < self.paused_until:
            return 0
        if self.down_until is not None:
            return 0 if now < self.down_until else 1
        return self.endpoint.concurrency

    def summary(self) -> dict[str, Any]:
        return {**self.endpoint.as_dict(), "served": self.served, "set_aside": self.set_aside,
                "rate_limited": self.rate_limited, "failed_over": self.failed_over}


@dataclass
class EndpointPool:
    """Routing and health of a pool's endpoints; :meth:`acquire` waits for a free slot."""

    states: list[EndpointState]
    backoff_base: float = 0.5
    backoff_max: float = 1.0
    #: 5xx answers or time-outs in a row that set an endpoint aside
    failures: int = 3
    _waiters: deque = field(default_factory=deque)

    @property
    def capacity(self) -> int:
        return sum(state.endpoint.concurrency for state in self.states)

    def choose(self, now: float, avoid: Collection[int] = ()) -> EndpointState | None:
        """The endpoint with the fewest outstanding relative to its concurrency, among those
        with a free slot and not in ``avoid`` (ties: the higher weight, then the list order)."""
        best, best_rank = None, None
        for state in self.states:
            if state.index in avoid or state.outstanding >= state.slots(now):
                continue
            rank = (state.outstanding / state.endpoint.concurrency, -state.endpoint.weight, state.index)
            if best_rank is None or rank < best_rank:
                best, best_rank = state, rank
        return best

    def _next_change(self, now: float) -> float | None:
        times = [t for state in self.states for t in (state.paused_until, state.down_until or 0.0) if t > now]
        return min(times) - now if times else None

    async def acquire(self, avoid: Collection[int] = ()) -> EndpointState:
        """A slot on the endpoint :meth:`choose` picks (not one in ``avoid``), waiting for one."""
        while True:
            now = time.monotonic()
            state = self.choose(now, avoid)
            if state is not None:
                state.outstanding += 1
                return state
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, self._next_change(now))
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # it was woken for a slot it will not take: pass that on
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Wake as many waiters as there are free slots now (each then takes one, or waits again)."""
        now = time.monotonic()
        free = sum(max(0, state.slots(now) - state.outstanding) for state in self.states)
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def release(self, state: EndpointState) -> None:
        state.outstanding -= 1
        self._wake()

    # -- what an answer says about an endpoint's health -----------------------------------------

    def answered(self, state: EndpointState) -> None:
        """The server answered (an answer, or a refusal that is about the request)."""
        state.served += 1
        state.failures = 0
        state.pause_backoff = 0.0
        if state.down_until is not None:
            state.down_until, state.down_backoff = None, 0.0

    def failed(self, state: EndpointState, error: TransientError) -> bool:
        """Account a transient failure to its endpoint; ``True`` when that set the endpoint
        aside or paused it (the request should go elsewhere at once)."""
        now = time.monotonic()
        if error.status == 429:
            state.rate_limited += 1
            state.pause_backoff = min(self.backoff_max, max(self.backoff_base, state.pause_backoff * 2))
            wait = error.retry_after if error.retry_after is not None else state.pause_backoff
            state.paused_until = max(state.paused_until, now + wait)
            return True
        if error.cause == "connection" or state.down_until is not None:
            self._set_aside(state, now)
            return True
        if error.cause == "timeout" or (error.status is not None and error.status >= 500):
            state.failures += 1
            if state.failures >= self.failures:
                self._set_aside(state, now)
                return True
        return False

    def _set_aside(self, state: EndpointState, now: float) -> None:
        if state.down_until is None or now >= state.down_until:  # not again for the same outage
            state.down_backoff = min(self.backoff_max, max(self.backoff_base, state.down_backoff * 2))
            state.set_aside += 1
        state.down_until = now + state.down_backoff
        state.failures = 0


class PoolBackend:
    """A :class:`~modsab.agents.backends.Backend` over an :class:`EndpointPool` of backends
    (one per endpoint, each with its own kept-alive connections)."""

    kind = "chat"
    accepts = None

    def __init__(self, endpoints: Sequence[Endpoint], backends: Sequence[Backend], *,
                 backoff_base: float = 0.5, backoff_max: float = 1.0) -> None:
        self.endpoints = list(endpoints)
        self.model = backends[0].model
        states = [EndpointState(e, b, i) for i, (e, b) in enumerate(zip(endpoints, backends, strict=True))]
        self.pool = EndpointPool(states, backoff_base=backoff_base, backoff_max=backoff_max)
        self.base_url = ", ".join(endpoint.url.rstrip("/") for endpoint in endpoints)
        #: the URL part of the cache key: none for a pool (answers do not depend on the server)
        self.cache_url = self.endpoints[0].url.rstrip("/") if len(self.endpoints) == 1 else ""
        #: the engine's workers: as many again as there are slots wait in the pool, so a freed
        #: slot is taken at once while the other requests are being stored
        self.workers = 2 * self.pool.capacity

    async def complete(self, messages, params, response_format):
        """Send on the least busy endpoint. A failure that sets it aside or pauses it sends the
        request on to an endpoint it has not tried yet (a failover, not one of the engine's
        retries: a request that meets a failing probe is not charged for it); after every
        endpoint failed once, the error goes to the engine, which counts a retry."""
        tried: set[int] = set()
        while True:
            state = await self.pool.acquire(tried)
            try:
                result = await state.backend.complete(messages, params, response_format)
            except TransientError as error:
                moved = self.pool.failed(state, error)
                self.pool.release(state)
                error.endpoint = state.endpoint.url
                if not moved:
                    raise
                tried.add(state.index)
                if len(tried) < len(self.pool.states):
                    state.failed_over += 1
                    continue
                error.retry_after = 0.0  # the pool waits for a free endpoint; the engine need not
                raise
            except BackendError as error:  # an answer that refuses the request: the server is up
                self.pool.answered(state)
                self.pool.release(state)
                error.endpoint = state.endpoint.url
                raise
            except BaseException:
                self.pool.release(state)
                raise
            self.pool.answered(state)
            self.pool.release(state)
            if self.pool._waiters:
                # let the request woken for the freed slot go out before this one's answer is
                # stored and parsed (~1 ms of CPU): the slot is not left idle meanwhile
                await asyncio.sleep(0)
            return result

    def summary(self) -> list[dict[str, Any]]:
        """Per endpoint: its settings, answers served, times set aside, 429s and requests it
        failed that another endpoint then took (the engine's ``requests`` counts each once)."""
        return [state.summary() for state in self.pool.states]

    async def aclose(self) -> None:
        for state in self.pool.states:
            await state.backend.aclose()

