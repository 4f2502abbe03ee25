"""``modsab run``: from a dataset to an audited report, stage by stage.

Stages, each cached and resumable, each writing into the run directory:

1. **dataset**: a loader turns files into :class:`~modsab.data.loaders.Instance` records
   (``dataset.json`` lists what was skipped and why);
2. **describe**: media -> descriptors (``descriptors.parquet``; items cached by file
   content hash and extractor version, so a rerun describes nothing twice);
3. **agents**: LLM / scorer agents (one run store per agent, ``agents/<name>/``, every call
   cached), probe agents (cross-fitted by speaker), precomputed answers ->
   ``predictions.jsonl`` (the contract, agents in config order, instances in dataset
   order); a per-agent summary (answered, invalid, failed, retries) goes to ``run.json``;
4. **diagnose**: fusion + audit (+ the diagnostics asked for) -> ``diagnosis.json``,
   ``instances.parquet``, terminal tables;
5. **report**: ``report.html``.

Data flows one way; each stage reads what the previous one wrote, so a killed run picks
up where it stopped and ends with the same JSON as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from modsab.agents.kinds._base import KindInputs
from modsab.contract.errors import InputError
from modsab.contract.labels import LabelSet
from modsab.contract.task import JOINT_NAMES
from modsab.data.loaders import Instance, Loaded, load_dataset
from modsab.diskcache import CacheWarning  # noqa: F401  (re-exported)
from modsab.registry import agent_kinds
from modsab.run.config import AgentSection, RunConfig

#: Descriptor fields the LLM agents read, by modality (descriptor table names).
TEXT_FIELDS = ("transcript",)


@dataclass
class RunOutcome:
    run_dir: Path
    diagnosis: dict[str, Any]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _say(log: Callable[[str], None] | None, text: str) -> None:
    if log is not None:
        log(text)


# -- stage 1: dataset ---------------------------------------------------------------------


def load_instances(config: RunConfig) -> Loaded:
    """The dataset's instances; ``[dataset] name`` tags them (a manifest row's own
    ``dataset`` value wins; the descriptions loader otherwise names them after its file)."""
    ds = config.dataset
    options = dict(ds.options)
    if ds.loader == "descriptions" and ds.name:
        options["dataset"] = ds.name
    labels = ds.labels if ds.labels is not None else config.task_definition.label_set()
    loaded = load_dataset(ds.loader, ds.path, labels=labels, split=ds.split, limit=ds.limit, **options)
    if ds.name:
        loaded.instances = [
            i if ds.loader == "manifest" and i.dataset else i.model_copy(update={"dataset": ds.name})
            for i in loaded.instances
        ]
    return loaded


def _write_dataset_summary(run_dir: Path, loaded: Loaded) -> None:
    summary = {
        "n_instances": len(loaded.instances),
        "labels": list(loaded.labels),
        "label_source": loaded.labels.source,
        "skipped": [{"item": s.item, "reason": s.reason} for s in loaded.skipped],
        "skipped_by_reason": loaded.skipped_by_reason(),
        "notes": [{"item": s.item, "reason": s.reason} for s in loaded.notes],
    }
    _write_json(run_dir / "dataset.json", summary)


# -- stage 2: describe --------------------------------------------------------------------


def _describers(config: RunConfig) -> list:
    """The ``[describe] scene`` / ``voice_llm`` descriptors of the config."""
    from modsab.agents.engine import GenerationParams, Limits
    from modsab.descriptors.llm import LLMDescriber

    out = []
    for kind in ("scene", "voice_llm"):
        section = getattr(config.describe, kind)
        if section is None:
            continue
        limits = {key: getattr(section, key) for key in ("concurrency", "requests_per_minute", "tokens_per_minute",
                                                         "max_retries") if getattr(section, key) is not None}
        out.append(LLMDescriber(
            kind, base_url=section.base_url, model=section.model, api_key_env=section.api_key_env,
            endpoints=_endpoints(section.endpoints),
            frames=getattr(section, "frames", 1), allow_leaking=section.allow_leaking,
            limits=Limits(**limits), max_tokens_budget=section.max_tokens, max_cost=section.max_cost,
            price=None if section.price_in is None else (section.price_in, section.price_out),
            params=GenerationParams(max_tokens=section.max_output_tokens),
            **({"timeout": section.timeout} if section.timeout is not None else {}),
        ))
    return out


def _keyframes_needed(config: RunConfig) -> int:
    """Key frames to save per video: four when an agent is sent ``frames``, one for ``peak_frame``."""
    kinds = {kind for agent in config.agents for kind in agent.media}
    return 4 if "frames" in kinds else 1 if "peak_frame" in kinds else 0


def describe_instances(
    instances: list[Instance], config: RunConfig, run_dir: Path, *, progress: bool = True,
    labels: LabelSet | None = None, log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Descriptors for every instance: media extractors where there is media, plus the
    dataset's own text fields. One row per instance, in instance order. With ``[describe]
    scene`` / ``voice_llm`` the LLM descriptors follow (stores in ``describe/<kind>/``)."""
    base = pd.DataFrame(
        {
            "instance_id": [i.instance_id for i in instances],
            "speaker": [i.speaker for i in instances],
            "dataset": [i.dataset for i in instances],
        }
    )
    given = pd.DataFrame([{"instance_id": i.instance_id, **i.descriptors} for i in instances])
    media = [i for i in instances if i.audio_path is not None or i.video_path is not None]
    opts = config.describe
    if media and opts.enabled:
        from modsab.descriptors import DescribeConfig, describe

        items = media  # describe reads their media paths, speaker and transcript
        cache_dir = config.run.cache_dir or run_dir / "cache"
        cache_dir.mkdir(parents=True, exist_ok=True)
        summary: dict[str, Any] = {}

        def report(describer, stats) -> None:
            summary[describer.kind] = {"model": describer.model, "base_url": describer.base_url,
                                       **({"endpoints": list(describer.endpoints)} if describer.endpoints else {}),
                                       "requests": stats.requests, "cached": stats.cached, "retries": stats.retries,
                                       "failed": stats.failed, "stopped": stats.stopped, "errors": stats.errors[:3]}

        from modsab.run.executors import ExecutorSettings, make_executor

        executor = make_executor(config.run.executor, ExecutorSettings(workers=opts.workers,
                                                                       ray_address=config.run.ray_address))
        with executor:  # the driver: records come back here and only this process writes the cache
            table = describe(
                items,
                config=DescribeConfig(fps=opts.fps, asr=opts.asr, face=opts.face, asr_window=opts.asr_window),
                executor=executor,
                cache=cache_dir / "descriptors.sqlite",
                progress=progress,
                keyframes=_keyframes_needed(config),
                frames_dir=cache_dir / "frames",
                describers=_describers(config),
                llm_dir=run_dir / "describe",
                llm_cache_dir=cache_dir,
                labels=None if labels is None else list(labels),
                on_describer=report,
            )
        for kind, row in summary.items():
            status = table[f"{kind}_status"].fillna("")
            row.update(described=int((status == "ok").sum()), leaking=int(status.str.startswith("leaks").sum()),
                       withheld=int(status.str.startswith("withheld").sum()))
            _say(log, f"describe {kind} on {row['model']}: {row['described']} described, {row['withheld']} withheld "
                      f"(name a label or mental state), {row['failed']} failed, {row['requests']} requests, "
                      f"{row['cached']} from cache" + (f" (stopped: {row['stopped']})" if row["stopped"] else ""))
            for error in row["errors"][:1]:
                _say(log, f"  first failure: {error}")
        if summary:
            _write_json(run_dir / "describe" / "summary.json", summary)
        table = table.drop(columns=["speaker"], errors="ignore")
        merged = base.merge(table, on="instance_id", how="left")
    else:
        merged = base.copy()
    if "transcript" not in merged.columns:
        merged["transcript"] = None
    given_transcripts = {i.instance_id: i.transcript for i in instances if i.transcript}
    merged["transcript"] = [given_transcripts.get(iid, t) for iid, t in zip(merged["instance_id"],
                                                                              merged["transcript"], strict=True)]
    extra = [c for c in given.columns if c != "instance_id" and c not in merged.columns]
    if extra:
        merged = merged.merge(given[["instance_id", *extra]], on="instance_id", how="left")
    units = merged["face_units"] if "face_units" in merged.columns else pd.Series([None] * len(merged))
    au = pd.DataFrame([_parse_units(u) for u in units], index=merged.index)
    if not au.empty:
        merged = pd.concat([merged, au.add_prefix("au_")], axis=1)
    tmp = run_dir / f".descriptors.parquet.{os.getpid()}.tmp"
    merged.to_parquet(tmp, index=False)
    os.replace(tmp, run_dir / "descriptors.parquet")
    return merged


def _parse_units(value: Any) -> dict[str, float]:
    if not isinstance(value, str) or not value.startswith("{"):
        return {}
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        return {}
    out = {}
    for key, item in data.items():
        number = item.get("intensity") if isinstance(item, dict) else item
        if isinstance(number, int | float):
            out[str(key)] = float(number)
    return out


# -- stage 3: agents ----------------------------------------------------------------------


def _agent_inputs(descriptors: pd.DataFrame, instances: list[Instance]):
    """The descriptor texts LLM / scorer agents read, one :class:`Instance` per row; empty and
    missing values are left out (an agent with none of its fields abstains)."""
    from modsab.agents.inputs import MEDIA_COLUMNS, media_from_row

    by_id = {i.instance_id: i for i in instances}
    skip = ("instance_id", "speaker", "dataset", "error", "asr_words", *MEDIA_COLUMNS)
    text_columns = [c for c in descriptors.columns if c not in skip and
                    (descriptors[c].dtype == object or pd.api.types.is_string_dtype(descriptors[c]))]
    media_columns = [c for c in ("peak_frame_path", "frame_paths") if c in descriptors.columns]
    rows = descriptors[["instance_id", *text_columns, *media_columns]].to_dict("records")
    out = []
    for row in rows:
        instance = by_id.get(row["instance_id"])
        clip = {"audio_path": None if instance is None or instance.audio_path is None else str(instance.audio_path),
                "video_path": None if instance is None or instance.video_path is None else str(instance.video_path)}
        out.append(Instance(
            instance_id=row["instance_id"],
            descriptors={k: v for k, v in row.items()
                    if k in text_columns and isinstance(v, str) and v.strip()},
            gold=None if instance is None else instance.gold,
            dataset=None if instance is None else instance.dataset,
            media=media_from_row({**{c: row.get(c) for c in media_columns}, **clip}),
        ))
    return out


def _check_agents_can_start(config: RunConfig) -> None:
    """What would stop an LLM / scorer agent, found before any stage runs: no ``reads`` and
    no stream name, a missing API key, a budget in dollars for a model without a known price."""
    for kind in ("scene", "voice_llm"):
        section = getattr(config.describe, kind)
        if section is not None:
            _check_model_section(section, config, where=f"[describe] {kind}", key=f"describe.{kind}")
    for agent in config.agents:
        if agent_kinds.get(agent.kind).calls_a_model:
            agent_reading(agent, config)  # an agent that reads nothing it can name stops the run here
        if agent_kinds.get(agent.kind).calls_a_model and (agent.base_url or agent.endpoints):
            _check_model_section(agent, config, where=f"agent '{agent.name}'", key=agent.key)


def _check_model_section(section, config: RunConfig, *, where: str, key: str) -> None:
    """One model-calling section (a describer or an agent): its API key is set, and a dollar
    budget has a price to count against."""
    from modsab.agents.engine import PRICES

    if section.api_key_env and not os.environ.get(section.api_key_env):
        raise InputError(
            f"environment variable {section.api_key_env} is not set ({where})",
            path=config.source, item=f"key '{key}.api_key_env'",
            hint=f"export {section.api_key_env}=..., or drop api_key_env for a server without keys",
        )
    if section.max_cost is not None and section.price_in is None and (section.model or "") not in PRICES:
        raise InputError(
            f"no price known for model '{section.model}' ({where})",
            path=config.source, item=f"key '{key}.max_cost'",
            hint="give price_in and price_out (USD per million tokens)",
        )


def _check_reads(agents: list[AgentSection], inputs: list, config: RunConfig) -> None:
    """Every stream an agent ``reads`` has a field set on at least one instance, and so has
    every field it names (a typo would make every answer "missing")."""
    task = config.task_definition
    available = sorted({name for instance in inputs for name in instance.descriptors})
    streams = ", ".join(task.streams)
    for agent in agents:
        for name in agent.reads or ():
            fields = task.streams.get(name, [name])
            if any(instance.descriptors.get(field) for instance in inputs for field in fields):
                continue
            if name in task.streams:
                message = (f"agent '{agent.name}' reads the stream '{name}', whose fields "
                           f"({', '.join(fields)}) no instance has")
            else:
                message = (f"agent '{agent.name}' reads '{name}', which no instance has "
                           f"(nor is it a stream of the task '{task.name}')")
            raise InputError(
                message, path=config.source, item=f"key '{agent.key}.reads'",
                hint=f"streams: {streams}; fields: {', '.join(available) or 'none'}",
            )


def agent_reading(agent: AgentSection, config: RunConfig) -> tuple[tuple[str, ...], str, str | None]:
    """The fields an LLM / scorer agent reads, its prompt template and, on the ``streams``
    template, what it sees in words. ``reads`` names streams of the task (each its fields)
    and fields; unset, an agent named after a stream (or a built-in prompt) reads that
    stream, and ``tav`` / ``joint`` read every stream (the joint agent)."""
    from modsab.agents.prompts import MODALITY_NAMES, STREAMS_TEMPLATE

    task = config.task_definition
    defaults = task.default_fields()
    template = agent.prompt or (agent.name if agent.name in MODALITY_NAMES else STREAMS_TEMPLATE)
    if agent.reads is not None:
        fields = task.expand(agent.reads)
    elif agent.name in defaults or template in defaults:
        fields = defaults.get(agent.name) or defaults[template]
    else:
        raise InputError(
            f"agent '{agent.name}' is named after no stream of the task '{task.name}', so it needs 'reads'",
            path=config.source, item=f"key '{agent.key}.reads'",
            hint=f"streams: {', '.join(task.streams)} (or {' / '.join(JOINT_NAMES)} for all); or field names",
        )
    if template != STREAMS_TEMPLATE:
        return fields, template, None
    read = task.streams_read(agent.reads if agent.reads is not None else fields)
    return fields, template, " and ".join(read) if read else ", ".join(fields)


def _endpoints(sections) -> list | None:
    """``endpoints = [{url, concurrency, weight}]`` of the config as the pool's endpoints."""
    if sections is None:
        return None
    return [{key: value for key, value in section.model_dump().items() if value is not None} for section in sections]


def agent_dir_name(name: str) -> str:
    """The folder of an agent's run store under ``agents/``: the name itself when it is a
    plain file name, else a slug plus a short hash (two names never share a folder)."""
    import hashlib
    import re

    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        return name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "agent"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _run_llm_agent(
    agent: AgentSection, inputs: list, labels: LabelSet, run_dir: Path, config: RunConfig, log,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One LLM / scorer agent into its own run store ``agents/<name>/`` (keyed by agent, so
    two agents on one model and different endpoints never share a store). Returns its
    records and its summary."""
    from modsab.agents.engine import Limits
    from modsab.agents.inputs import FieldConfig
    from modsab.agents.local import DEFAULT_MODEL
    from modsab.agents.run import AgentRunConfig, run_agents

    model = agent.model or DEFAULT_MODEL
    limits = {key: getattr(agent, key) for key in ("concurrency", "requests_per_minute", "tokens_per_minute",
                                                   "max_retries") if getattr(agent, key) is not None}
    names, template, sees = agent_reading(agent, config)
    try:
        fields = FieldConfig.parse([f"{agent.name}={','.join(names)}"] if names else [])
    except InputError as error:
        raise InputError(error.message, path=config.source, item=f"key '{agent.key}.reads'") from None
    if not names:  # media only (reads = [])
        fields = FieldConfig({**fields.fields, agent.name: ()})
    agent_config = AgentRunConfig(
        model=model,
        labels=labels,
        agents=[agent.name],
        base_url=agent.base_url,
        endpoints=_endpoints(agent.endpoints),
        api_key_env=agent.api_key_env,
        fields=fields,
        limits=Limits(**limits),
        max_tokens_budget=agent.max_tokens,
        max_cost=agent.max_cost,
        price=None if agent.price_in is None else (agent.price_in, agent.price_out),
        cache_dir=str(config.run.cache_dir) if config.run.cache_dir else str(run_dir / "cache"),
        media={agent.name: tuple(agent.media)} if agent.media else {},
        templates={agent.name: template} if template != agent.name else {},
        modalities={agent.name: sees} if sees else {},
        task=config.task_definition,
        executor=config.run.executor,
        ray_address=config.run.ray_address,
        workers=config.describe.workers,
        **({"timeout": agent.timeout} if agent.timeout is not None else {}),
    )
    where = agent.base_url if isinstance(agent.base_url, str) else ", ".join(
        agent.base_url or [endpoint.url for endpoint in agent.endpoints or []])
    _say(log, f"agent {agent.name} on {model}" + (f" at {where}" if where else "")
         + (f", sent {', '.join(agent.media)}" if agent.media else ""))
    try:
        result = run_agents(inputs, agent_config, run_dir / "agents" / agent_dir_name(agent.name))
    except InputError as error:
        if error.item is None or not error.item.startswith("agent '"):
            raise
        # a refusal of the agent's media: name the config key
        raise InputError(error.message, path=config.source, item=f"key '{agent.key}.media'", hint=error.hint) from None
    with result.predictions.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    counts, stats = result.counts.get(agent.name, {}), result.stats
    summary = {
        "kind": agent.kind,
        "answered": counts.get("ok", 0),
        "invalid": counts.get("invalid", 0),
        "failed": counts.get("error", 0),
        "missing": counts.get("missing", 0),
        "pending": counts.get("pending", 0),
        "retries": stats.retries,
        "requests": stats.requests,
        "cached": stats.cached,
        "stopped": stats.stopped,
        "errors": stats.errors[:3],
        "store": str(Path("agents") / agent_dir_name(agent.name) / "run.sqlite"),
        "reads": list(fields.for_agent(agent.name)),
        **({"media": list(agent.media)} if agent.media else {}),
    }
    return records, summary


def _raw_answers(run_dir: Path) -> dict[str, dict[str, str]]:
    """``{instance: {agent: raw model text}}`` from the agents' run stores, for the report."""
    stores = sorted((run_dir / "agents").glob("*/run.sqlite"))
    if not stores:
        return {}
    from modsab.agents.store import RunStore

    out: dict[str, dict[str, str]] = {}
    for path in stores:
        store = RunStore(path.parent)
        try:
            for row in store.answers():
                if row["raw"] is not None:
                    out.setdefault(row["instance_id"], {})[row["agent"]] = row["raw"]
        finally:
            store.close()
    return out


def _finish_agents_stage(
    config: RunConfig, run_dir: Path, summary: dict[str, dict[str, Any]], log: Callable[[str], None] | None,
    available: list[str],
) -> None:
    """Print the per-agent summary, write it to ``run.json`` (with the agents in config
    order), then fail on an LLM / scorer agent without a single valid answer."""
    for agent in config.agents:
        row = summary[agent.name]
        text = (f"agent {agent.name}: {row['answered']} answered, {row['invalid']} invalid, "
                f"{row['failed']} failed, {row['missing']} without input")
        if "retries" in row:
            text += f", {row['retries']} retries, {row['requests']} requests, {row['cached']} from cache"
        if row.get("pending"):
            text += f", {row['pending']} not asked"
        if row.get("stopped"):
            text += f" (stopped: {row['stopped']})"
        _say(log, text)
        for error in row.get("errors", [])[:1] if row["failed"] else []:
            _say(log, f"  first failure: {error}")
    _write_json(run_dir / "run.json", {
        "config": str(config.source) if config.source else None,
        "agents": [agent.name for agent in config.agents],
        "agent_summary": summary,
    })
    for agent in config.agents:
        row = summary[agent.name]
        if not agent_kinds.get(agent.kind).calls_a_model or row["answered"] > 0:
            continue
        counts = (f"{row['answered']} answered, {row['invalid']} invalid, {row['failed']} failed, "
                  f"{row['missing']} without input")
        if row["failed"]:
            hint = (f"first failure: {row['errors'][0] if row['errors'] else '?'}; check base_url, model and "
                    "key, then run the same command again (failed calls are retried, answers are kept)")
        elif row["invalid"]:
            hint = f"every answer was invalid: the raw answers are in {row['store']} (table answers)"
        elif row["missing"]:
            hint = (f"no instance has any of the fields it reads ({', '.join(row.get('reads', []))}); "
                    f"fields: {', '.join(available) or 'none'}; set its 'reads', or leave it out with --agents")
        else:
            hint = f"no call was made (stopped: {row.get('stopped') or 'nothing to ask'})"
        raise InputError(f"agent '{agent.name}' has no valid answer ({counts})", path=config.source,
                         item=f"key '{agent.key}'", hint=hint)


def _write_json(path: Path, data: Any) -> None:
    """JSON written to a temporary file and renamed: never a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# -- the whole run --------------------------------------------------------------------------


def run_pipeline(
    config: RunConfig, *, log: Callable[[str], None] | None = None, progress: bool = True, wait: bool = False
) -> RunOutcome:
    """Run every stage; see the module docstring. Returns the diagnosis JSON.

    One process per run directory (:class:`~modsab.run.lock.RunLock`): another run on the
    same directory is an error naming it, or, with ``wait``, is waited for."""
    from modsab.contract.errors import storage_error
    from modsab.run.lock import RunLock

    _check_agents_can_start(config)
    run_dir = config.run.dir
    try:
        with RunLock(run_dir, command="modsab run", wait=wait,
                     on_wait=lambda holder: _say(log, f"waiting for {holder} to finish with {run_dir}")):
            if config.run.executor != "ray":
                return _run_stages(config, log=log, progress=progress)
            from modsab.run.executors import ExecutorSettings
            from modsab.run.executors.ray import ray_session

            with ray_session(ExecutorSettings(workers=config.describe.workers, ray_address=config.run.ray_address)):
                return _run_stages(config, log=log, progress=progress)
    except (OSError, sqlite3.OperationalError) as error:  # disk full, read-only, a file where a folder goes
        raise storage_error(error, path=run_dir, what="read or write") from None


def _stage_executor(config: RunConfig):
    """The executor of the stages after describe (probe fits, one task a fold; the diagnose
    stage reads the run's one predictions.jsonl here): with ``executor = "ray"`` one actor per CPU of the
    cluster (describe's actors are gone by then), started on first use; else None (here)."""
    if config.run.executor != "ray":
        return contextlib.nullcontext()
    from modsab.run.executors import ExecutorSettings, make_executor
    from modsab.run.executors.ray import cluster_cpus

    return make_executor("ray", ExecutorSettings(workers=cluster_cpus(), ray_address=config.run.ray_address,
                                                 batch_size=1))


def _run_stages(config: RunConfig, *, log: Callable[[str], None] | None, progress: bool) -> RunOutcome:
    with _stage_executor(config) as executor:
        return _stages(config, executor, log=log, progress=progress)


def _stages(config: RunConfig, executor: Any, *, log: Callable[[str], None] | None, progress: bool) -> RunOutcome:
    from modsab.contract.predictions import agent_order
    from modsab.core.diagnosis import diagnose

    run_dir = config.run.dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(config.to_toml(), encoding="utf-8")
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    loaded = load_instances(config)
    if not loaded.instances:
        raise InputError("the dataset gave no instance", path=config.dataset.path,
                         hint=f"skipped: {loaded.skipped_by_reason() or 'nothing'}")
    _write_dataset_summary(run_dir, loaded)
    seconds["dataset"] = time.perf_counter() - start
    _say(log, f"dataset: {len(loaded.instances)} instances ({config.dataset.loader}), "
              f"{len(loaded.skipped)} skipped")

    start = time.perf_counter()
    descriptors = describe_instances(loaded.instances, config, run_dir, progress=progress, labels=loaded.labels,
                                     log=log)
    seconds["describe"] = time.perf_counter() - start

    by_agent: dict[str, list[dict[str, Any]]] = {}
    summary: dict[str, dict[str, Any]] = {}
    llm = [a for a in config.agents if agent_kinds.get(a.kind).calls_a_model]
    start = time.perf_counter()
    inputs = _agent_inputs(descriptors, loaded.instances) if llm else []
    if llm:
        _check_reads(llm, inputs, config)
        for agent in llm:
            by_agent[agent.name], summary[agent.name] = _run_llm_agent(
                agent, inputs, loaded.labels, run_dir, config, log)
    seconds["llm_agents"] = time.perf_counter() - start
    start = time.perf_counter()
    made_here = KindInputs(descriptors, loaded.instances, loaded.labels, config.run.cache_dir or run_dir / "cache",
                           config.task_definition, executor)
    for agent in config.agents:
        kind = agent_kinds.get(agent.kind)
        if kind.calls_a_model:
            continue
        try:
            by_agent[agent.name] = kind.records(agent, made_here)
        except InputError as error:
            if error.path is not None or error.item is not None:
                raise
            # e.g. a probe's features: name the agent's table in the config
            raise InputError(error.message, path=config.source, item=f"key '{agent.key}'", hint=error.hint) from None
        answered = sum(1 for record in by_agent[agent.name] if record.get("candidates"))
        summary[agent.name] = {"kind": agent.kind, "answered": answered, "invalid": 0, "failed": 0,
                               "missing": len(by_agent[agent.name]) - answered}
    seconds["probe_agents"] = time.perf_counter() - start
    _finish_agents_stage(config, run_dir, summary, log, sorted({name for i in inputs for name in i.descriptors}))

    position = {i.instance_id: n for n, i in enumerate(loaded.instances)}
    gold = {i.instance_id: i.gold for i in loaded.instances}
    dataset = {i.instance_id: i.dataset for i in loaded.instances}
    predictions = run_dir / "predictions.jsonl"
    tmp = predictions.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for agent in config.agents:  # the config's agent order, each in dataset order: the same bytes every run
            ordered = sorted(by_agent.get(agent.name, []),
                             key=lambda record: position.get(str(record["instance_id"]), len(position)))
            for record in ordered:
                iid = str(record["instance_id"])
                if gold.get(iid) is not None:
                    record["gold"] = gold[iid]
                if dataset.get(iid) and not record.get("dataset"):
                    record["dataset"] = dataset[iid]
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(predictions)

    start = time.perf_counter()
    audit, fusion = config.audit, config.fusion
    by_agent_answered = {name for name, records in by_agent.items() if records}
    result = diagnose(
        predictions, labels=loaded.labels, weights=fusion.weights, fuse=fusion.fuse, baseline=fusion.baseline,
        agents_order=agent_order(sorted(by_agent_answered), None, [a.name for a in config.agents]),  # the config's
        tau=audit.tau, k=audit.k, bootstrap=audit.bootstrap, seed=audit.seed, n_folds=audit.folds, **audit.wanted(),
    )
    payload = result.to_dict()
    payload["run"] = {"config": str(config.source) if config.source else None, "dataset": config.dataset.loader,
                      "agents": {a.name: a.kind for a in config.agents}}
    if config.task is not None:  # only when the config names one: diagnosis.json of older configs stays as it was
        payload["run"]["task"] = config.task.name
    _write_json(run_dir / config.outputs.json_file, payload)
    result.write_instances(run_dir / config.outputs.instances)
    seconds["diagnose"] = time.perf_counter() - start

    if config.outputs.report:
        start = time.perf_counter()
        from modsab.views.report import read_extras, write_report

        extras = read_extras(run_dir)
        extras.raw_answers = {**extras.raw_answers, **_raw_answers(run_dir)}
        write_report(result, run_dir / config.outputs.report, extras=extras)
        seconds["report"] = time.perf_counter() - start
    _write_json(run_dir / "timings.json", seconds)
    return RunOutcome(run_dir, payload, seconds)
