"""One agents run end to end: config, store, backend, runner, predictions file.

``RUN_DIR`` holds ``run.sqlite`` (the store), ``run.json`` (the config, readable) and
``predictions.jsonl`` (the foundation's predictions contract, one line per
(instance, agent); ``modsab diagnose RUN_DIR`` reads it). Running the same command
again resumes: pairs with a final answer are skipped and every completed call is
served from the store, so nothing is asked twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modsab.agents.engine import AgentRunner, Budget, GenerationParams, Limits, Stats
from modsab.agents.inputs import FieldConfig, find_leaks
from modsab.agents.pool import Endpoint
from modsab.agents.prompts import PromptSet
from modsab.agents.store import ResponseCache, RunStore
from modsab.contract.errors import InputError
from modsab.contract.instance import Instance
from modsab.contract.labels import LabelSet
from modsab.contract.task import Task

PREDICTIONS = "predictions.jsonl"

#: Config keys that must match when a run directory is reused (resume); fields are
#: compared for the agents both runs share.
_IDENTITY = ("base_url", "model", "labels", "prompt_version", "params")


@dataclass
class AgentRunConfig:
    """What one ``modsab agents run`` needs (one model, its agents, fields, limits). The study's
    config is :class:`modsab.run.config.RunConfig`; ``modsab run`` makes one of these per
    ``[[agents]]`` entry of kind llm or scorer."""

    model: str
    labels: LabelSet
    agents: Sequence[str] = ("text", "audio", "vision", "tav")
    #: one server's URL, or a list of them (an endpoint pool, :mod:`modsab.agents.pool`)
    base_url: str | Sequence[str] | None = None
    #: an endpoint pool with per-server settings (instead of ``base_url``)
    endpoints: Sequence[Endpoint] | None = None
    api_key_env: str | None = None
    fields: FieldConfig = field(default_factory=FieldConfig)
    prompts_dir: str | None = None
    params: GenerationParams = field(default_factory=GenerationParams)
    limits: Limits = field(default_factory=Limits)
    max_tokens_budget: int | None = None
    max_cost: float | None = None
    price: tuple[float, float] | None = None
    timeout: float = 120.0
    cache_dir: str | None = None
    #: media kinds per agent sent beside its text (``peak_frame``, ``frames``, ``audio``)
    media: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: prompt template per agent, when it is not the agent's name (e.g. ``vision_media`` -> ``vision``)
    templates: Mapping[str, str] = field(default_factory=dict)
    #: what each agent sees, in words, for the system prompt (default: its template's modality)
    modalities: Mapping[str, str] = field(default_factory=dict)
    #: the task that words the prompts (default: the built-in emotion task)
    task: Task | None = None
    #: where an offline model runs: "local" (in this process) or "ray" (``workers`` actors;
    #: ``[run] executor``); an endpoint (``base_url``) is called from here either way
    executor: str = "local"
    ray_address: str | None = None
    workers: int = 1


def default_cache_dir() -> Path:
    """``$MODSAB_CACHE_DIR`` or ``~/.cache/modsab``."""
    return Path(os.environ.get("MODSAB_CACHE_DIR") or Path.home() / ".cache" / "modsab")


def make_backend(config: AgentRunConfig):
    """The registered backend (:data:`modsab.registry.backends`) that serves ``config``."""
    from modsab.agents.backends import backend_name
    from modsab.registry import backends

    return backends.get(backend_name(config))(config)


def _price(config: AgentRunConfig, backend) -> tuple[float, float]:
    from modsab.agents.engine import PRICES

    if config.price is not None:
        return config.price
    if backend.base_url.startswith("local:"):
        return (0.0, 0.0)
    if config.max_cost is not None and config.model not in PRICES:
        raise InputError(
            f"no price known for model '{config.model}'",
            item="--max-cost",
            hint="give --price-in and --price-out (USD per million tokens)",
        )
    return PRICES.get(config.model, (0.0, 0.0))


def _rows(store: RunStore, instances: Sequence[Instance], agents: Sequence[str] | None = None):
    """The store's answers for these instances (and agents), in instance then agent order
    (the store keeps completion order, which changes from run to run)."""
    position = {instance.instance_id: n for n, instance in enumerate(instances)}
    agent_position = None if agents is None else {agent: n for n, agent in enumerate(agents)}
    rows = [
        row for row in store.answers()
        if row["instance_id"] in position and (agent_position is None or row["agent"] in agent_position)
    ]
    return sorted(rows, key=lambda row: (position[row["instance_id"]],
                                         0 if agent_position is None else agent_position[row["agent"]],
                                         row["agent"]))


def answer_counts(
    store: RunStore, instances: Sequence[Instance], agents: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Per agent, the stored answers of these instances by status: ``ok`` (answered),
    ``invalid``, ``error`` (failed), ``missing`` (no input), and ``pending`` (not yet asked,
    e.g. after a budget stop)."""
    counts = {agent: dict.fromkeys(("ok", "invalid", "error", "missing"), 0) for agent in agents}
    for row in _rows(store, instances, agents):
        counts[row["agent"]][row["status"]] = counts[row["agent"]].get(row["status"], 0) + 1
    for agent in agents:
        counts[agent]["pending"] = len(instances) - sum(counts[agent].values())
    return counts


def prediction_records(
    store: RunStore, instances: Sequence[Instance], agents: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Answers in the predictions contract, in instance order then ``agents`` order; invalid
    and missing answers abstain (no candidates). ``quality`` is left out when the agent
    does not report one (scorer agents)."""
    by_id = {instance.instance_id: instance for instance in instances}
    records = []
    for row in _rows(store, instances, agents):
        if row["status"] == "error":
            continue
        instance = by_id[row["instance_id"]]
        answer = json.loads(row["answer"]) if row["answer"] else None
        record: dict[str, Any] = {
            "instance_id": instance.instance_id,
            "agent": row["agent"],
            "gold": instance.gold,
            "candidates": answer["candidates"] if answer else [],
            "dataset": instance.dataset,
            "status": row["status"],
            "raw_ref": row["call_key"],
        }
        if answer and answer.get("quality") is not None:
            record["quality"] = answer["quality"]
        if answer:
            record.update(
                primary_label=answer.get("primary_label"),
                issues=answer.get("issues", []),
                reason=answer.get("reason", ""),
            )
        records.append(record)
    return records


def write_predictions(run_dir: Path, records: list[dict[str, Any]]) -> Path:
    path = run_dir / PREDICTIONS
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


@dataclass
class RunResult:
    run_dir: Path
    stats: Stats
    predictions: Path
    leaks: dict[str, int]
    config: dict[str, Any]
    #: per agent, answers of these instances by status (see :func:`answer_counts`)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: an endpoint pool's servers: settings, answers served, times set aside, 429s
    endpoints: list[dict[str, Any]] = field(default_factory=list)


def run_agents(
    instances: Sequence[Instance],
    config: AgentRunConfig,
    run_dir: str | Path,
    *,
    on_update: Callable[[Stats], None] | None = None,
    use_cache: bool = True,
    wait: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> RunResult:
    """Run every agent on every instance into ``run_dir``; resumes what is there.

    One process per run directory (:class:`~modsab.run.lock.RunLock`): another one on the
    same directory is an error naming it, or, with ``wait``, is waited for."""
    from modsab.contract.errors import storage_error
    from modsab.run.lock import RunLock

    try:
        with RunLock(run_dir, command="modsab agents run", wait=wait, on_wait=on_wait):
            return _run_agents(instances, config, Path(run_dir), on_update=on_update, use_cache=use_cache)
    except OSError as error:  # disk full, read-only, a file where the folder goes
        raise storage_error(error, path=run_dir, what="read or write") from None


def _run_agents(
    instances: Sequence[Instance],
    config: AgentRunConfig,
    run_dir: Path,
    *,
    on_update: Callable[[Stats], None] | None,
    use_cache: bool,
) -> RunResult:
    prompts = PromptSet.load(config.prompts_dir, task=config.task)
    agents = list(dict.fromkeys(config.agents))
    used_fields = {agent: list(config.fields.for_agent(agent)) for agent in agents}
    leaks = find_leaks(
        instances, [f for names in used_fields.values() for f in names], config.labels, task=config.task
    )
    backend = make_backend(config)
    meta = {
        "base_url": backend.base_url,
        "model": backend.model,
        "backend_kind": backend.kind,
        "labels": list(config.labels.labels),
        "agents": agents,
        "fields": used_fields,
        "prompt_version": prompts.version,
        "params": config.params.as_dict(),
        "api_key_env": config.api_key_env,
        "limits": vars(config.limits),
        "max_tokens_budget": config.max_tokens_budget,
        "max_cost": config.max_cost,
        "leakage_warning": leaks,
        "n_instances": len(instances),
    }
    if getattr(backend, "endpoints", None):
        meta["endpoints"] = [endpoint.as_dict() for endpoint in backend.endpoints]
    media = {agent: list(config.media.get(agent, ())) for agent in agents if config.media.get(agent)}
    templates = {agent: config.templates[agent] for agent in agents if config.templates.get(agent, agent) != agent}
    if media:
        meta["media"] = media
    if templates:
        meta["templates"] = templates
    if config.task is not None:
        meta["task"] = config.task.name
    store = RunStore(run_dir)
    cache = ResponseCache(config.cache_dir or default_cache_dir()) if use_cache else None
    try:
        budget = Budget(
            max_tokens=config.max_tokens_budget,
            max_cost=config.max_cost,
            price=_price(config, backend),
        )
        runner = AgentRunner(
            backend,
            store,
            labels=config.labels,
            prompts=prompts,
            fields=config.fields,
            cache=cache,
            limits=config.limits,
            budget=budget,
            params=config.params,
            on_update=on_update,
            media=config.media,
            templates=config.templates,
            modalities=config.modalities,
        )

        runner.check(agents)  # before the config is stored: a refused option leaves nothing behind
        previous = store.config()
        if previous is not None:
            changed = [key for key in _IDENTITY if previous.get(key) != meta.get(key)]
            old_fields = previous.get("fields", {})
            if any(old_fields.get(agent, names) != names for agent, names in used_fields.items()):
                changed.append("fields")
            for key, mine in (("media", media), ("templates", templates)):
                old = previous.get(key, {})
                if any(old.get(agent) != mine.get(agent) for agent in agents if agent in previous.get("agents", [])):
                    changed.append(key)
            if changed:
                raise InputError(
                    f"this run directory was made with a different {', '.join(changed)}",
                    path=run_dir,
                    hint="use a new --run directory, or the same options",
                )
            meta["agents"] = list(dict.fromkeys([*previous.get("agents", []), *agents]))
            meta["fields"] = {**previous.get("fields", {}), **used_fields}
            for key, mine in (("media", media), ("templates", templates)):
                merged = {**previous.get(key, {}), **mine}
                for agent in agents:
                    if agent not in mine:
                        merged.pop(agent, None)
                if merged:
                    meta[key] = merged
        store.set_config(meta)
        (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        async def main() -> Stats:
            try:
                return await runner.run(list(instances), agents)
            finally:
                await backend.aclose()

        from modsab.agents.engine import run_coroutine

        stats = run_coroutine(main())
        path = write_predictions(run_dir, prediction_records(store, instances, meta["agents"]))
        counts = answer_counts(store, instances, agents)
    finally:
        store.close()
        if cache is not None:
            cache.close()
    served = backend.summary() if hasattr(backend, "summary") else []
    return RunResult(run_dir, stats, path, leaks, meta, counts, served)
