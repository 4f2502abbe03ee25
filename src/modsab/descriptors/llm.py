"""Descriptors written by a multimodal model: the scene and the voice, in words.

Two optional descriptors, each asked of an OpenAI-compatible endpoint that the user names
(the media go there and nowhere else):

- ``scene`` -> column ``visual_objective_description`` (the name the paper's distributed
  descriptions use, so the vision agents' default fields pick it up): the AU-peak frame,
  and up to three neighbours (``frames``, 1-4), sent as JPEG ``image_url`` parts with a
  prompt that asks for an objective description of face, posture, gestures and scene
  and forbids naming an emotion or any other mental state (``prompts/scene.txt``);
- ``voice_llm`` -> column ``audio_llm_description``: the clip's audio as an
  ``input_audio`` part, asking for prosody and voice quality only (``prompts/voice_llm.txt``;
  the paper's audio-LLM descriptor).

Every answer goes through the label-leakage checker (the label words, their synonyms, and
:data:`MENTAL_STATE_WORDS`). A description that names one is kept in the descriptor's
run store, flagged in ``scene_status`` / ``voice_llm_status`` (``withheld: names ...``)
and left out of the column, so no agent reads it, unless ``allow_leaking`` is set (then
the column has it and the status says ``leaks: ...``).

The calls go through the agents' engine (:class:`~modsab.agents.engine.AgentRunner`):
concurrency, requests and tokens per minute, retries with backoff, a budget, a run store
(``<store>/run.sqlite``: every request, with the media as content hashes, and every raw
answer) and the shared response cache. The cache key is made of the endpoint, the model,
the prompt version and the media by content hash, so a description is asked once per
frame (or clip), model and prompt; a re-run is served from the store. A server that
refuses the media part stops the step at its first request, naming the endpoint and the part.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modsab.agents import media as media_parts
from modsab.agents.engine import (
    AgentRunner,
    Budget,
    BudgetExhausted,
    GenerationParams,
    Limits,
    PermanentError,
    Stats,
    check_media_support,
)
from modsab.contract.errors import InputError
from modsab.contract.instance import Instance
from modsab.contract.labels import PRESETS, LabelSet, LeakageChecker

#: Words naming a mental state beyond the label words and their synonyms: a description
#: that uses one attributes a state, which the descriptor prompt forbids.
MENTAL_STATE_WORDS = (
    "feeling", "feelings", "felt", "emotionally", "anxiously", "nervously", "nervousness",
    "stressed", "distressed", "distress", "bored", "boredom", "confused", "confusion",
    "frustrated", "frustration", "excited", "excitement", "enthusiastic", "interested",
    "worried", "concerned", "relieved", "hopeful", "hopeless", "lonely", "ashamed", "guilty",
    "embarrassed", "proud", "jealous", "envious", "grief", "grieving", "sorrowful",
    "melancholy", "melancholic", "pensive", "contemplative", "serene", "content",
    "contentment", "pleased", "displeased", "satisfied", "dissatisfied", "hostile",
    "amusement", "joy", "joyful", "glee", "gleeful", "rage", "enraged", "outraged", "panic",
    "panicked", "scared", "horrified", "shocked", "astonished", "amazed", "startled",
    "disappointed", "disappointment", "resentful", "bitter", "sorry", "empathetic",
    "sympathetic", "playful", "friendly", "unfriendly", "welcoming", "inviting",
)

DESCRIBERS = {
    "scene": {"column": "visual_objective_description", "status": "scene_status", "media": "frames"},
    "voice_llm": {"column": "audio_llm_description", "status": "voice_llm_status", "media": "audio"},
}


@dataclass(frozen=True)
class LLMDescriber:
    """One LLM descriptor: where to ask, what to send, the engine's limits."""

    kind: str  # "scene" or "voice_llm"
    #: one server's URL, or a list of them (an endpoint pool, :mod:`modsab.agents.pool`)
    base_url: str | Sequence[str] | None
    model: str
    api_key_env: str | None = None
    frames: int = 1  # scene: the peak frame and up to three neighbours
    allow_leaking: bool = False
    timeout: float = 120.0
    limits: Limits = field(default_factory=Limits)
    max_tokens_budget: int | None = None
    max_cost: float | None = None
    price: tuple[float, float] | None = None
    params: GenerationParams = field(default_factory=lambda: GenerationParams(max_tokens=300))
    prompts_dir: str | None = None
    #: an endpoint pool with per-server settings (``{url, concurrency, weight}``), instead of base_url
    endpoints: Sequence[Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.kind not in DESCRIBERS:
            raise ValueError(f"unknown LLM descriptor {self.kind!r}")
        if not 1 <= self.frames <= media_parts.MAX_FRAMES:
            raise InputError(f"frames must be 1-{media_parts.MAX_FRAMES}, got {self.frames}",
                             item=f"{self.kind}.frames")

    @property
    def column(self) -> str:
        return DESCRIBERS[self.kind]["column"]

    @property
    def status_column(self) -> str:
        return DESCRIBERS[self.kind]["status"]

    @property
    def media_kind(self) -> str:
        return DESCRIBERS[self.kind]["media"]


@dataclass
class Description:
    """What a descriptor gave for one instance."""

    text: str | None  # None when withheld, failed or not asked
    status: str  # ok | leaks: ... | withheld: ... | failed: ... | invalid: ... | not asked: ...


def leakage_checker(labels: Sequence[str] | None = None) -> LeakageChecker:
    """The label words of ``labels`` (default: every preset's), their synonyms, and
    :data:`MENTAL_STATE_WORDS`."""
    words = list(labels) if labels is not None else sorted({w for preset in PRESETS.values() for w in preset})
    return LeakageChecker(words, extra=MENTAL_STATE_WORDS)


class DescriptionRunner(AgentRunner):
    """The engine asked for free-text descriptions: no answer schema, no labels to
    parse; each answer is checked for leakage instead."""

    def __init__(self, backend, store, describer: LLMDescriber, *, checker: LeakageChecker, prompt: tuple[str, str],
                 cache=None, budget: Budget | None = None, on_update: Callable[[Stats], None] | None = None) -> None:
        from modsab.agents.prompts import PromptSet

        text, version = prompt
        super().__init__(
            backend, store, labels=LabelSet(("description",)), prompts=PromptSet({}, version), cache=cache,
            limits=describer.limits, budget=budget, params=describer.params, on_update=on_update,
            media={describer.kind: (describer.media_kind,)},
        )
        self.describer = describer
        self.checker = checker
        self.system = text
        self.formats = [None]  # free text

    def messages(self, instance: Instance, agent: str):
        paths = list(instance.media.get(self.describer.media_kind) or ())
        if not paths:
            return None
        if self.describer.kind == "scene":
            chosen = paths[: self.describer.frames]
            parts = [media_parts.image_part(Path(p).read_bytes()) for p in chosen]
            intro = ("The frame of strongest facial movement in a video clip." if len(chosen) == 1 else
                     f"{len(chosen)} frames of one video clip, the frame of strongest facial movement first, "
                     "then frames around it.")
        else:
            parts = media_parts.media_parts("audio", paths)
            intro = "A speech recording."
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": [media_parts.text_part(intro + " Describe it as instructed."), *parts]},
        ], self.params.as_dict()

    def check(self, agents: Sequence[str]) -> None:
        check_media_support(self.backend, {self.describer.kind: (self.describer.media_kind,)}, what="descriptor")

    def missing_reason(self, agent: str) -> str:
        return f"no {self.describer.media_kind} for this instance"

    async def answer(self, instance: Instance, agent: str) -> None:
        built = self.request(instance, agent)
        if built is None:
            return
        messages, params = built
        try:
            key, found = await self.call(instance, agent, "describe", messages, params)
        except BudgetExhausted:
            raise
        except PermanentError as error:
            if hasattr(error, "part"):
                error.agent = agent
            self.stats.failed += 1
            if len(self.stats.errors) < 20:
                self.stats.errors.append(f"{instance.instance_id}/{agent}: {error}")
            self.store.record_answer(instance.instance_id, agent, status="error", answer=None, raw=error.raw,
                                     call_key=None, error=str(error))
            return
        text = _clean(found.response)
        if not text:
            self.stats.invalid += 1
            self.store.record_answer(instance.instance_id, agent, status="invalid", answer=None,
                                     raw=found.response, call_key=key, error="empty description")
            return
        leaks = self.checker.find(text, field=self.describer.column)
        self.stats.done += 1
        self.store.record_answer(
            instance.instance_id, agent, status="ok", raw=found.response, call_key=key,
            answer={"description": text, "leaks": sorted({leak.term for leak in leaks}),
                    "contexts": [leak.context for leak in leaks][:5]},
        )

    async def run(self, instances: list[Instance], agents: list[str]) -> Stats:
        # every instance, every time: answered calls come back from the store at no cost, and a
        # changed model, prompt or frame is a new call (the key covers them), never a stale answer
        self.check(agents)
        self.stats.total = len(instances)
        await self.work([(instance, agents[0]) for instance in instances])
        failure = self.media_failure()
        if failure is not None:
            raise failure
        return self.stats


def _clean(text: str | None) -> str:
    """The description without code fences, a heading or surrounding whitespace."""
    text = (text or "").strip()
    if text.startswith("```"):
        text = text.strip("`").strip()
    for prefix in ("Description:", "**Description:**", "Description"):
        if text.startswith(prefix):
            text = text[len(prefix):].lstrip(" :\n")
            break
    return " ".join(text.split())


def _backend(describer: LLMDescriber):
    from modsab.agents.backends import api_key_from_env
    from modsab.agents.pool import chat_backend

    key = api_key_from_env(describer.api_key_env, option=f"{describer.kind}.api_key_env")
    return chat_backend(describer.base_url, describer.endpoints, model=describer.model, api_key=key,
                        timeout=describer.timeout, limits=describer.limits, where=f"{describer.kind}.base_url")


def _price(describer: LLMDescriber) -> tuple[float, float]:
    from modsab.agents.engine import PRICES

    if describer.price is not None:
        return describer.price
    if describer.max_cost is not None and describer.model not in PRICES:
        raise InputError(f"no price known for model '{describer.model}'", item=f"{describer.kind}.max_cost",
                         hint="give price_in and price_out (USD per million tokens)")
    return PRICES.get(describer.model, (0.0, 0.0))


def run_describer(
    describer: LLMDescriber,
    media: Mapping[str, Sequence[str]],
    *,
    store_dir: str | Path,
    cache_dir: str | Path | None = None,
    labels: Sequence[str] | None = None,
    on_update: Callable[[Stats], None] | None = None,
) -> tuple[dict[str, Description], Stats]:
    """Describe every instance of ``media`` (instance id -> its frame files, or its clip):
    one :class:`Description` per instance, and the engine's stats."""
    from modsab.agents.prompts import describer_prompt
    from modsab.agents.store import ResponseCache, RunStore

    prompt = describer_prompt(describer.kind, describer.prompts_dir)
    checker = leakage_checker(labels)
    budget = Budget(max_tokens=describer.max_tokens_budget, max_cost=describer.max_cost, price=_price(describer))
    backend = _backend(describer)
    store = RunStore(store_dir)
    cache = ResponseCache(cache_dir) if cache_dir is not None else None
    instances = [Instance(iid, media={describer.media_kind: tuple(paths)}) for iid, paths in media.items() if paths]
    try:
        pool = {"endpoints": [e.as_dict() for e in backend.endpoints]} if getattr(backend, "endpoints", None) else {}
        store.set_config({"descriptor": describer.kind, "base_url": backend.base_url, "model": backend.model, **pool,
                          "prompt_version": prompt[1], "frames": describer.frames,
                          "params": describer.params.as_dict(), "api_key_env": describer.api_key_env})
        runner = DescriptionRunner(backend, store, describer, checker=checker, prompt=prompt, cache=cache,
                                   budget=budget, on_update=on_update)
        store.clear_answers(describer.kind)  # this run's answers only (a budget stop leaves no stale one)

        async def main() -> Stats:
            try:
                return await runner.run(instances, [describer.kind])
            finally:
                await backend.aclose()

        from modsab.agents.engine import run_coroutine

        stats = run_coroutine(main())
        rows = {row["instance_id"]: row for row in store.answers() if row["agent"] == describer.kind}
    finally:
        store.close()
        if cache is not None:
            cache.close()
    out: dict[str, Description] = {}
    for iid in media:
        row = rows.get(iid)
        if not media[iid]:
            out[iid] = Description(None, f"no {describer.media_kind}")
        elif row is None:
            out[iid] = Description(None, f"not asked: {stats.stopped or 'stopped'}")
        elif row["status"] == "ok":
            answer = json.loads(row["answer"])
            leaks = answer.get("leaks") or []
            if not leaks:
                out[iid] = Description(answer["description"], "ok")
            elif describer.allow_leaking:
                out[iid] = Description(answer["description"], f"leaks: names {', '.join(leaks)}")
            else:
                out[iid] = Description(None, f"withheld: names {', '.join(leaks)} (kept in the run store)")
        else:
            out[iid] = Description(None, f"{'failed' if row['status'] == 'error' else row['status']}: {row['error']}")
    return out, stats
