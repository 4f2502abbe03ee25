"""The async runner: every (instance, agent) pair through cache, limits, retries, repair.

For each pair the runner builds the agent's messages, looks the call up in the run
store and then the shared cache, and only then sends it, under a concurrency bound,
requests/min and tokens/min limits and a run budget. Transient failures (429, 5xx,
time-outs, connection errors) are retried with exponential backoff and full jitter,
waiting at least the server's ``Retry-After``; so is a body the client cannot read
(malformed JSON, an HTML page with status 200), which, still unreadable after the
retries, is stored as a failed call with its raw body. A server that rejects a
``response_format`` mode is asked again with the next weaker one (json_schema ->
json_object -> plain text); the first accepted mode is kept for the run. An answer
that does not parse gets one repair round with the validation error; still invalid,
its raw text is stored with status ``invalid`` (an abstention, never a guess).
Calls and answers are written in batches, one transaction per :data:`~modsab.agents.store.FLUSH_SECONDS`
(:meth:`~modsab.agents.store.RunStore.batching`), and all of them when the run ends, fails or is
cancelled: a killed run loses at most that last batch, which it asks again on resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from modsab.agents import media as media_parts
from modsab.agents.answer import AgentAnswer, AnswerError, answer_schema, parse_answer
from modsab.agents.backends import (
    Backend,
    FormatRejected,
    PermanentError,
    TransientError,
    cache_url,
    response_formats,
)
from modsab.agents.inputs import FieldConfig
from modsab.agents.prompts import MODALITY_NAMES, STREAMS_TEMPLATE, PromptSet, delimit
from modsab.agents.store import CachedResponse, ResponseCache, RunStore, cache_key
from modsab.contract.errors import InputError
from modsab.contract.instance import Instance
from modsab.contract.labels import LabelSet

#: US dollars per million (prompt, completion) tokens; ``--price-in/--price-out`` override.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
}


@dataclass(frozen=True)
class Limits:
    concurrency: int = 4
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0


@dataclass
class Budget:
    """A run-level spending limit. Each request reserves its worst case (prompt estimate +
    max output tokens) before it is sent, so concurrent calls never overshoot."""

    max_tokens: int | None = None
    max_cost: float | None = None
    price: tuple[float, float] = (0.0, 0.0)
    spent_tokens: int = 0
    spent_cost: float = 0.0
    reserved_tokens: int = 0
    reserved_cost: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price[0] + completion_tokens * self.price[1]) / 1e6

    def reserve(self, prompt_estimate: int, max_output: int) -> bool:
        tokens = prompt_estimate + max_output
        cost = self.cost(prompt_estimate, max_output)
        if (
            self.max_tokens is not None
            and self.spent_tokens + self.reserved_tokens + tokens > self.max_tokens
        ):
            return False
        if (
            self.max_cost is not None
            and self.spent_cost + self.reserved_cost + cost > self.max_cost
        ):
            return False
        self.reserved_tokens += tokens
        self.reserved_cost += cost
        return True

    def settle(
        self, prompt_estimate: int, max_output: int, prompt_tokens: int, completion_tokens: int
    ) -> None:
        self.reserved_tokens -= prompt_estimate + max_output
        self.reserved_cost -= self.cost(prompt_estimate, max_output)
        self.spent_tokens += prompt_tokens + completion_tokens
        self.spent_cost += self.cost(prompt_tokens, completion_tokens)


class BudgetExhausted(Exception):
    pass


class MediaRejected(PermanentError):
    """The endpoint refused a request because of a media part it cannot take: the run
    stops at this first call with an error naming the endpoint and the part."""

    def __init__(self, message: str, *, part: str, raw: str | None = None, attempts: int = 0) -> None:
        super().__init__(message, raw=raw, attempts=attempts)
        self.part = part


#: Words in an error body that say the server does not take a media part.
_MEDIA_WORDS = {
    "image_url": ("image", "vision", "mmproj", "multimodal", "clip"),
    "input_audio": ("audio", "input_audio", "multimodal"),
}


def _names_part(message: str, part: str) -> bool:
    text = message.lower()
    return any(word in text for word in _MEDIA_WORDS.get(part, (part,)))


def check_media_support(backend: Backend, wanted: Mapping[str, Any], *, what: str = "agent") -> None:
    """An error before any call when a backend says it cannot take a wanted part.

    ``wanted`` maps a name (agent or descriptor) to the media kinds it sends. Backends may
    declare ``accepts`` (content-part types they take); servers that do not are asked."""
    accepts = getattr(backend, "accepts", None)
    if accepts is None:
        return
    for name, kinds in wanted.items():
        for kind in kinds:
            part = media_parts.PART_TYPE[kind]
            if part not in accepts:
                raise InputError(
                    f"{backend.base_url} (model {backend.model}) cannot take {media_parts.PART_NAMES[part]} "
                    f"parts, which {what} '{name}' sends ('{kind}')",
                    hint="use an OpenAI-compatible endpoint whose model accepts them (base_url), or drop the media",
                )


class RateLimiter:
    """Requests/min and tokens/min as two token buckets refilled continuously."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self.rates = {"requests": requests_per_minute, "tokens": tokens_per_minute}
        #: burst size: one second's worth (at least one request), so the rate holds from the start
        self.capacity = {name: max(1.0, rate / 60.0) for name, rate in self.rates.items() if rate}
        self.level = dict(self.capacity)
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if not any(self.rates.values()):
            return
        need = {"requests": 1.0, "tokens": float(tokens)}
        async with self.lock:
            while True:
                now = time.monotonic()
                elapsed, self.stamp = now - self.stamp, now
                wait = 0.0
                for name, rate in self.rates.items():
                    if not rate:
                        continue
                    capacity = self.capacity[name]
                    self.level[name] = min(capacity, self.level[name] + elapsed * rate / 60.0)
                    amount = min(need[name], capacity)
                    if self.level[name] < amount:
                        wait = max(wait, (amount - self.level[name]) * 60.0 / rate)
                if wait <= 0:
                    for name, rate in self.rates.items():
                        if rate:
                            self.level[name] -= min(need[name], self.capacity[name])
                    return
                await asyncio.sleep(wait)


@dataclass
class Stats:
    total: int = 0
    done: int = 0
    invalid: int = 0
    failed: int = 0
    cached: int = 0
    requests: int = 0
    retries: int = 0
    repairs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    stopped: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class GenerationParams:
    temperature: float = 0.0
    max_tokens: int = 400
    seed: int | None = 0

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if value is not None}


def _rejected(message: str, raw: str | None, attempts: int, status: int | None) -> PermanentError:
    error = PermanentError(message, raw=raw, attempts=attempts, status=status)
    error.rejected = True
    return error


#: Passes of the event loop an answer lets go by before it is parsed and stored, once its slot is
#: free: the request waiting for that slot is woken (1), is built and handed to aiohttp, which
#: writes the body in a task of its own on Python 3.11 (2), and that task sends it (3). With fewer,
#: a wave of answers coming back together is parsed and stored before any next request goes out,
#: and a server with as many slots as requests in flight idles meanwhile.
_YIELDS_BEFORE_STORING = 3

#: statuses with which a server refuses a request it cannot take (bad or too large a part)
_REFUSALS = (400, 413, 415, 422, 500)


class AgentRunner:
    """Runs agents over instances with one backend, one store and an optional cache."""

    def __init__(
        self,
        backend: Backend,
        store: RunStore,
        *,
        labels: LabelSet,
        prompts: PromptSet | None = None,
        fields: FieldConfig | None = None,
        cache: ResponseCache | None = None,
        limits: Limits | None = None,
        budget: Budget | None = None,
        params: GenerationParams | None = None,
        on_update: Callable[[Stats], None] | None = None,
        media: Mapping[str, Sequence[str]] | None = None,
        templates: Mapping[str, str] | None = None,
        modalities: Mapping[str, str] | None = None,
    ) -> None:
        self.backend = backend
        self.store = store
        self.cache = cache
        self.labels = labels
        self.prompts = prompts or PromptSet.load()
        self.fields = fields or FieldConfig()
        self.limits = limits or Limits()
        self.budget = budget or Budget()
        self.params = params or GenerationParams()
        self.on_update = on_update or (lambda stats: None)
        self.stats = Stats()
        self.limiter = RateLimiter(self.limits.requests_per_minute, self.limits.tokens_per_minute)
        self.formats = response_formats(answer_schema(labels))
        self.format_index = 0
        self._stop = False
        #: media kinds each agent is sent beside its text (``peak_frame``, ``frames``, ``audio``)
        self.media = {agent: tuple(kinds) for agent, kinds in (media or {}).items() if kinds}
        #: prompt template per agent (default: the agent's name)
        self.templates = dict(templates or {})
        #: what each agent sees, in words (``image and question``); default: its template's modality
        self.modalities = dict(modalities or {})
        #: content-part types the endpoint has taken once; until then one request at a time
        self.verified_parts: set[str] = set()
        self._media_gate = asyncio.Lock()
        self.media_error: MediaRejected | None = None
        #: requests in flight, at most the limits' concurrency (set by :meth:`work`; ``None``: the
        #: backend bounds them itself, as an endpoint pool does per endpoint)
        self._slots: asyncio.Semaphore | None = None
        #: each agent's system prompt, by (agent, modality)
        self._systems: dict[tuple[str, str], str] = {}

    # -- messages -------------------------------------------------------------------

    def template(self, agent: str) -> str:
        """The prompt template an agent uses (its ``templates`` entry, else its name)."""
        return self.templates.get(agent, agent)

    def media_for(self, instance: Instance, agent: str) -> list[dict[str, Any]]:
        """The media content parts this agent is sent for this instance (files it has)."""
        parts: list[dict[str, Any]] = []
        for kind in self.media.get(agent, ()):
            paths = instance.media.get(kind) or ()
            if paths:
                parts += media_parts.media_parts(kind, list(paths))
        return parts

    def messages(
        self, instance: Instance, agent: str
    ) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
        """The agent's messages and generation params, or ``None`` when it has no input."""
        view = instance.view(self.fields.for_agent(agent))
        attached = self.media_for(instance, agent)
        if not view and not attached:
            return None
        labels = ", ".join(self.labels.labels)
        template = self.template(agent)
        if self.backend.kind == "scorer":
            prompt = self.prompts.render("scorer", descriptors=delimit(view))
            blank = self.prompts.render("scorer", descriptors=delimit(dict.fromkeys(view, "N/A")))
            params = {"labels": list(self.labels.labels), "content_free": blank}
            return [{"role": "user", "content": prompt}], params
        modality = self.modalities.get(agent) or MODALITY_NAMES.get(template, template)
        system = self._systems.get((agent, modality))
        if system is None:  # the same for every instance: rendered once per agent
            system = self._systems[agent, modality] = self.prompts.render(
                "system",
                agent_name=agent,
                modality=modality,
                labels=labels,
                max_candidates=len(self.labels),
            )
        # the streams template names what the agent sees; the others never took $modality
        seen = {"modality": modality} if template == STREAMS_TEMPLATE else {}
        user = self.prompts.render(template, descriptors=delimit(view) if view else "(no text descriptors)",
                                   labels=labels, **seen)
        content: str | list[dict[str, Any]] = user
        if attached:
            kinds = [kind for kind in self.media.get(agent, ()) if instance.media.get(kind)]
            note = self.prompts.render("media", attached=", ".join(media_parts.describe_kinds(kinds)))
            content = [media_parts.text_part(user + "\n" + note), *attached]
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": content},
        ], self.params.as_dict()

    def repair_messages(
        self, messages: list[dict[str, str]], raw: str, error: str
    ) -> list[dict[str, str]]:
        note = self.prompts.render("repair", error=error, labels=", ".join(self.labels.labels))
        return [*messages, {"role": "assistant", "content": raw}, {"role": "user", "content": note}]

    # -- one call -----------------------------------------------------------------------

    def _key(self, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> str:
        return self._keyed(media_parts.redact(messages), params)

    def _keyed(self, redacted: list[dict[str, Any]], params: Mapping[str, Any]) -> str:
        return cache_key(
            base_url=cache_url(self.backend),
            model=self.backend.model,
            messages=redacted,  # media by content hash: the key covers the bytes
            params=params,
            prompt_version=self.prompts.version,
        )

    async def call(
        self,
        instance: Instance,
        agent: str,
        purpose: str,
        messages: list[dict[str, str]],
        params: Mapping[str, Any],
    ) -> tuple[str, CachedResponse]:
        """One logical call: from the run store, the cache, or the server (with retries)."""
        redacted = media_parts.redact(messages)
        key = self._keyed(redacted, params)
        # serialised once, for the run store and the cache alike
        request = json.dumps({"messages": redacted, "params": dict(params)}, ensure_ascii=False)
        record = partial(
            self.store.record_call,
            key,
            instance_id=instance.instance_id,
            agent=agent,
            purpose=purpose,
            request=request,
        )
        found = self.store.cached_call(key)
        if found is None and self.cache is not None:
            found = self.cache.get(key)
            if found is not None:
                record(
                    response=found.response,
                    prompt_tokens=found.prompt_tokens,
                    completion_tokens=found.completion_tokens,
                    status="ok",
                    source="cache",
                )
        if found is not None:
            self.stats.cached += 1
            return key, found
        async with self._slots or contextlib.nullcontext():
            if self._stop:
                raise BudgetExhausted(self.stats.stopped or "stopped")
            estimate = media_parts.estimate_tokens(messages)
            max_output = int(params.get("max_tokens", 0))
            if not self.budget.reserve(estimate, max_output):
                self._stop = True
                self.stats.stopped = "budget reached"
                raise BudgetExhausted("budget reached")
            completion, started = None, time.monotonic()
            try:
                completion, attempts = await self._send_checked(messages, params)
            except PermanentError as error:
                record(
                    response=error.raw,  # the body as received (scrubbed), kept with the failure
                    latency_s=time.monotonic() - started,
                    attempts=error.attempts,
                    status="error",
                    error=str(error),
                )
                raise
            finally:
                used = (
                    (completion.prompt_tokens, completion.completion_tokens) if completion else (0, 0)
                )
                self.budget.settle(estimate, max_output, *used)
        # the request waiting for the slot just freed goes out before this answer is stored
        for _ in range(_YIELDS_BEFORE_STORING):
            await asyncio.sleep(0)
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        self.stats.cost = self.budget.spent_cost
        found = CachedResponse(
            completion.text, completion.prompt_tokens, completion.completion_tokens
        )
        record(
            response=completion.text,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_s=time.monotonic() - started,
            attempts=attempts,
            status="ok",
        )
        if self.cache is not None:
            self.cache.put(
                key,
                base_url=cache_url(self.backend) or self.backend.base_url,
                model=self.backend.model,
                prompt_version=self.prompts.version,
                request=request,
                response=completion.text,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
            )
        return key, found

    async def _send_checked(self, messages, params):
        """:meth:`_send`, with the first request of each media part type sent alone: a
        server that refuses it stops the run there (:class:`MediaRejected`), before the
        other instances are asked."""
        parts = media_parts.part_types(messages)
        if parts <= self.verified_parts:
            return await self._send(messages, params)
        async with self._media_gate:
            if self.media_error is not None:  # another request found it: stop quietly
                raise BudgetExhausted("media rejected")
            if parts <= self.verified_parts:
                unverified = None
            else:
                unverified = sorted(parts - self.verified_parts)
                try:
                    result = await self._send(messages, params)
                except PermanentError as error:
                    named = [p for p in unverified if _names_part(str(error), p)]
                    refused = getattr(error, "rejected", False) and (error.status in _REFUSALS or named)
                    if not refused:  # gave up after retries, a bad key, no such model: not the part
                        raise
                    part = (named or unverified)[0]
                    self.media_error = MediaRejected(
                        f"{self.backend.base_url} (model {self.backend.model}) rejected the first request "
                        f"with {media_parts.PART_NAMES.get(part, part)} parts: {error}",
                        part=part, raw=error.raw, attempts=error.attempts,
                    )
                    self._stop = True
                    self.stats.stopped = "media rejected"
                    raise self.media_error from None
                self.verified_parts |= parts
                return result
        return await self._send(messages, params)

    async def _send(self, messages, params):
        """Send with retries and response-format fallback; returns (completion, attempts)."""
        attempt = 0
        media = media_parts.part_types(messages)
        while True:
            attempt += 1
            estimate = media_parts.estimate_tokens(messages) + int(params.get("max_tokens", 0))
            await self.limiter.acquire(estimate)
            index = self.format_index
            self.stats.requests += 1
            try:
                completion = await self.backend.complete(messages, params, self.formats[index])
            except FormatRejected as error:
                if media and any(_names_part(str(error), part) for part in media):
                    # the server refused the media part, not the response format
                    raise _rejected(str(error), error.raw, attempt, error.status) from None
                if index + 1 >= len(self.formats):
                    raise _rejected(str(error), error.raw, attempt, error.status) from None
                self.format_index = max(self.format_index, index + 1)
                attempt -= 1
                continue
            except PermanentError as error:
                error.attempts = attempt
                error.rejected = True  # the server answered: it refused the request
                raise
            except TransientError as error:
                if media and error.status == 500 and any(_names_part(str(error), p) for p in media):
                    # llama.cpp's server answers an image it cannot take with a 500
                    raise _rejected(str(error), error.raw, attempt, error.status) from None
                if attempt > self.limits.max_retries:
                    raise PermanentError(
                        f"gave up after {attempt} attempts: {error}", raw=error.raw, attempts=attempt
                    ) from None
                self.stats.retries += 1
                if (
                    error.retry_after is not None
                ):  # the server said when: wait that, plus 0-10% jitter
                    delay = min(self.limits.backoff_max * 4, error.retry_after) * random.uniform(
                        1.0, 1.1
                    )
                else:  # exponential backoff with full jitter
                    backoff = min(
                        self.limits.backoff_max, self.limits.backoff_base * 2 ** (attempt - 1)
                    )
                    delay = random.uniform(0, backoff)
                await asyncio.sleep(delay)
                continue
            return completion, attempt

    # -- one answer ------------------------------------------------------------------------

    def _unreadable_media(self, instance: Instance, agent: str, error: Exception) -> None:
        """A media file that cannot be read (deleted, damaged) fails this answer, not the run."""
        self.stats.failed += 1
        message = f"cannot read the media: {getattr(error, 'message', None) or error}"
        if len(self.stats.errors) < 20:
            self.stats.errors.append(f"{instance.instance_id}/{agent}: {message}")
        self.store.record_answer(instance.instance_id, agent, status="error", answer=None, raw=None,
                                 call_key=None, error=message)

    def missing_reason(self, agent: str) -> str:
        """What a "missing" answer records when an instance gives ``agent`` nothing to send."""
        return "no descriptor for this agent"

    def request(self, instance: Instance, agent: str):
        """``(messages, params)`` of the call for ``instance`` and ``agent``, or None once the
        answer is recorded as missing (nothing to send) or failed (its media do not read)."""
        try:
            built = self.messages(instance, agent)
        except (OSError, InputError) as error:
            self._unreadable_media(instance, agent, error)
            return None
        if built is None:
            self.store.record_answer(instance.instance_id, agent, status="missing", answer=None, raw=None,
                                     call_key=None, error=self.missing_reason(agent))
        return built

    async def answer(self, instance: Instance, agent: str) -> None:
        built = self.request(instance, agent)
        if built is None:
            return
        messages, params = built
        try:
            key, found = await self.call(instance, agent, "answer", messages, params)
            try:
                parsed: AgentAnswer = parse_answer(found.response, self.labels)
            except AnswerError as first_error:
                self.stats.repairs += 1
                repair = self.repair_messages(messages, found.response, str(first_error))
                key, found = await self.call(instance, agent, "repair", repair, params)
                try:
                    parsed = parse_answer(found.response, self.labels)
                except AnswerError as error:
                    self.stats.invalid += 1
                    self.store.record_answer(
                        instance.instance_id,
                        agent,
                        status="invalid",
                        answer=None,
                        raw=found.response,
                        call_key=key,
                        error=str(error),
                    )
                    return
        except PermanentError as error:
            if isinstance(error, MediaRejected):
                error.agent = agent
            self.stats.failed += 1
            if len(self.stats.errors) < 20:
                self.stats.errors.append(f"{instance.instance_id}/{agent}: {error}")
            self.store.record_answer(
                instance.instance_id,
                agent,
                status="error",
                answer=None,
                raw=error.raw,
                call_key=None,
                error=str(error),
            )
            return
        self.stats.done += 1
        self.store.record_answer(
            instance.instance_id,
            agent,
            status="ok",
            answer=parsed.model_dump(),
            raw=found.response,
            call_key=key,
        )

    # -- all answers -------------------------------------------------------------------

    def check(self, agents: Sequence[str]) -> None:
        """What would stop the run, found before any call: fields, templates, media."""
        for agent in agents:
            self.fields.for_agent(agent)
            template = self.template(agent)
            if self.backend.kind != "scorer" and template not in self.prompts.templates:
                raise InputError(
                    f"no prompt template for agent '{agent}'",
                    hint=f"add {template}.txt to a --prompts folder",
                )
            if self.backend.kind == "scorer" and self.media.get(agent):
                raise InputError(
                    f"agent '{agent}' is sent media ({', '.join(self.media[agent])}), which a scorer "
                    f"({self.backend.model}) cannot read",
                    hint="use an llm agent on an endpoint whose model accepts the media",
                )
        check_media_support(self.backend, {a: self.media[a] for a in agents if self.media.get(a)})

    def media_failure(self) -> InputError | None:
        """The run's media rejection as an error for the user (``None`` when there was none)."""
        error = self.media_error
        if error is None:
            return None
        agent = getattr(error, "agent", None)
        kinds = [k for k in self.media.get(agent, ()) if media_parts.PART_TYPE[k] == error.part]
        return InputError(
            str(error),
            item=f"agent '{agent}'" if agent else None,
            hint=(f"use a model that accepts {media_parts.PART_NAMES.get(error.part, error.part)} input, "
                  f"or remove {', '.join(repr(k) for k in kinds) or 'the media'} from the agent's media"),
        )

    @property
    def workers(self) -> int:
        """Answers worked on at once: what the backend takes (an endpoint pool: twice its slots,
        the extra ones waiting in the pool for a free slot), else twice the limits' concurrency,
        the extra ones ready to go out (messages built, store and cache looked up) when a request
        in flight comes back: a server with as many slots as requests in flight does not wait
        while an answer is parsed and stored."""
        own = getattr(self.backend, "workers", None)
        return max(1, own or 2 * self.limits.concurrency)

    async def work(self, pending: Sequence[tuple[Instance, str]]) -> None:
        """Every (instance, agent) pair through :meth:`answer`, :attr:`workers` at a time, until
        all are answered or the run stops (budget, media rejected)."""
        queue: asyncio.Queue = asyncio.Queue()
        for item in pending:
            queue.put_nowait(item)

        async def worker() -> None:
            while not queue.empty() and not self._stop:
                instance, agent = queue.get_nowait()
                try:
                    await self.answer(instance, agent)
                except BudgetExhausted:
                    return
                self.on_update(self.stats)

        own_bound = getattr(self.backend, "workers", None)
        self._slots = None if own_bound else asyncio.Semaphore(max(1, self.limits.concurrency))
        with contextlib.ExitStack() as batches:
            for database in (self.store, self.cache):
                if database is not None:
                    batches.enter_context(database.batching())
            workers = [asyncio.create_task(worker()) for _ in range(self.workers)]
            try:
                await asyncio.gather(*workers)
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    async def run(self, instances: list[Instance], agents: list[str]) -> Stats:
        self.check(agents)
        finished = self.store.done()
        pending = [
            (instance, agent)
            for instance in instances
            for agent in agents
            if (instance.instance_id, agent) not in finished
        ]
        self.stats.total = len(pending)
        await self.work(pending)
        self.on_update(self.stats)
        failure = self.media_failure()
        if failure is not None:
            raise failure
        return self.stats


def run_coroutine(coroutine):
    """``asyncio.run(coroutine)``, also from a thread whose event loop is marked running while it
    calls us synchronously (a notebook cell; Playwright's sync API): that loop is set aside for the
    call and restored after, so the coroutine runs in this thread (the run stores' SQLite
    connections belong to it)."""
    import asyncio

    outer = asyncio.events._get_running_loop()
    if outer is None:
        return asyncio.run(coroutine)
    asyncio.events._set_running_loop(None)
    try:
        return asyncio.run(coroutine)
    finally:
        asyncio.events._set_running_loop(outer)
