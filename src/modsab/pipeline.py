"""``modsab run``: from a dataset to an audited report, stage by stage.

Stages, each cached and resumable, each writing into the run directory:

1. **dataset**: a loader turns files into :class:`~modsab.datasets.Instance` records
   (``dataset.json`` lists what was skipped and why);
2. **describe**: media -> descriptors (``descriptors.parquet``; items cached by file
   content hash and extractor version, so a rerun describes nothing twice);
3. **agents**: LLM / scorer agents (run store per model, every call cached), probe agents
   (cross-fitted by speaker), precomputed answers -> ``predictions.jsonl`` (the contract);
4. **diagnose**: fusion + audit (+ the diagnostics asked for) -> ``diagnosis.json``,
   ``instances.parquet``, terminal tables;
5. **report**: ``report.html``.

Data flows one way; each stage reads what the previous one wrote, so a killed run picks
up where it stopped and ends with the same JSON as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modsab.config import AgentSection, RunConfig
from modsab.datasets import Instance, Loaded, load_dataset
from modsab.errors import InputError
from modsab.labels import LabelSet

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
    ds = config.dataset
    return load_dataset(ds.loader, ds.path, labels=ds.labels, split=ds.split, limit=ds.limit, **ds.options)


def _write_dataset_summary(run_dir: Path, loaded: Loaded) -> None:
    summary = {
        "n_instances": len(loaded.instances),
        "labels": list(loaded.labels),
        "label_source": loaded.labels.source,
        "skipped": [{"item": s.item, "reason": s.reason} for s in loaded.skipped],
        "skipped_by_reason": loaded.skipped_by_reason(),
        "notes": [{"item": s.item, "reason": s.reason} for s in loaded.notes],
    }
    (run_dir / "dataset.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- stage 2: describe --------------------------------------------------------------------


def describe_instances(
    instances: list[Instance], config: RunConfig, run_dir: Path, *, progress: bool = True
) -> pd.DataFrame:
    """Descriptors for every instance: media extractors where there is media, plus the
    dataset's own text fields. One row per instance, in instance order."""
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
        from modsab.descriptors import DescribeConfig, MediaItem, describe

        items = [
            MediaItem(i.instance_id, audio_path=i.audio_path, video_path=i.video_path, speaker=i.speaker,
                      transcript=i.transcript)
            for i in media
        ]
        cache_dir = config.run.cache_dir or run_dir / "cache"
        cache_dir.mkdir(parents=True, exist_ok=True)
        table = describe(
            items,
            config=DescribeConfig(fps=opts.fps, asr=opts.asr, face=opts.face),
            workers=opts.workers,
            cache=cache_dir / "descriptors.sqlite",
            progress=progress,
        )
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
    merged.to_parquet(run_dir / "descriptors.parquet", index=False)
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


def _records_for_llm(
    agents: list[AgentSection], descriptors: pd.DataFrame, instances: list[Instance], labels: LabelSet,
    run_dir: Path, config: RunConfig, log,
) -> list[dict[str, Any]]:
    """Run LLM / scorer agents, one run store per (model, endpoint)."""
    from modsab.agents.inputs import FieldConfig
    from modsab.agents.inputs import Instance as AgentInstance
    from modsab.agents.local import DEFAULT_MODEL
    from modsab.agents.run import RunConfig as AgentRunConfig
    from modsab.agents.run import run_agents

    gold = {i.instance_id: i.gold for i in instances}
    dataset = {i.instance_id: i.dataset for i in instances}
    skip = ("instance_id", "speaker", "dataset", "audio_path", "video_path", "error", "asr_words")
    text_columns = [c for c in descriptors.columns if c not in skip and
                    (descriptors[c].dtype == object or pd.api.types.is_string_dtype(descriptors[c]))]
    rows = descriptors[["instance_id", *text_columns]].to_dict("records")
    agent_inputs = [
        AgentInstance(
            instance_id=row["instance_id"],
            fields={k: str(v) for k, v in row.items() if k != "instance_id" and isinstance(v, str) and v},
            gold=gold.get(row["instance_id"]),
            dataset=dataset.get(row["instance_id"]),
        )
        for row in rows
    ]
    groups: dict[tuple[str, str | None, str | None], list[AgentSection]] = {}
    for agent in agents:
        groups.setdefault((agent.model or DEFAULT_MODEL, agent.base_url, agent.api_key_env), []).append(agent)
    records: list[dict[str, Any]] = []
    for (model, base_url, key_env), members in groups.items():
        specs = [f"{a.name}={','.join(a.reads)}" for a in members if a.reads]
        slug = "".join(ch if ch.isalnum() else "-" for ch in model).strip("-")
        agent_config = AgentRunConfig(
            model=model,
            labels=labels,
            agents=[a.name for a in members],
            base_url=base_url,
            api_key_env=key_env,
            fields=FieldConfig.parse(specs),
            cache_dir=str(config.run.cache_dir) if config.run.cache_dir else str(run_dir / "cache"),
        )
        _say(log, f"agents {', '.join(a.name for a in members)} on {model}")
        result = run_agents(agent_inputs, agent_config, run_dir / "agents" / slug)
        with result.predictions.open(encoding="utf-8") as handle:
            records.extend(json.loads(line) for line in handle if line.strip())
    return records


def _quality_column(descriptors: pd.DataFrame, features: str | list[str]) -> pd.Series | None:
    from modsab.probes import QUALITY_COLUMNS

    if isinstance(features, str):
        for column in QUALITY_COLUMNS.get(features, ()):
            if column in descriptors.columns:
                return descriptors[column]
    return None


def _records_for_probe(
    agent: AgentSection, descriptors: pd.DataFrame, instances: list[Instance], labels: LabelSet, run_dir: Path,
    config: RunConfig,
) -> list[dict[str, Any]]:
    from modsab.probes import ProbeAgent, feature_columns, probe_records, text_embeddings

    by_id = {i.instance_id: i for i in instances}
    keep = np.array([by_id[i].gold is not None for i in descriptors["instance_id"]])
    table = descriptors[keep].reset_index(drop=True)
    if agent.features == "text":
        texts = table["transcript"].tolist()
        features = _cached_embeddings(texts, config.run.cache_dir or run_dir / "cache", text_embeddings)
    else:
        columns = feature_columns(table, agent.features)
        features = table[columns].to_numpy(dtype=np.float64)
    usable = ~np.all(np.isnan(features), axis=1) if features.size else np.zeros(len(table), bool)
    y = np.array([labels.index[by_id[i].gold] for i in table["instance_id"]])
    groups = [by_id[i].speaker or i for i in table["instance_id"]]
    probe = ProbeAgent(**agent.options)
    proba = np.zeros((len(table), len(labels)))
    if usable.sum() >= 2:
        proba[usable] = _cached_cross_fit(probe, features[usable], y[usable], np.asarray(groups)[usable],
                                          n_labels=len(labels), cache_dir=config.run.cache_dir or run_dir / "cache")
    quality = _quality_column(table, agent.features)
    records = probe_records(
        table["instance_id"].tolist(), proba, list(labels), agent=agent.name,
        gold=[by_id[i].gold for i in table["instance_id"]],
        quality=None if quality is None else quality.tolist(),
        dataset=[by_id[i].dataset for i in table["instance_id"]],
    )
    for record, ok in zip(records, usable, strict=True):
        if not ok:  # no features for this instance (e.g. no video): the probe abstains
            record["candidates"] = []
    return records


def _cached_cross_fit(probe, features: np.ndarray, y: np.ndarray, groups: np.ndarray, *, n_labels: int,
                      cache_dir: Path) -> np.ndarray:
    """:meth:`ProbeAgent.cross_fit_predict`, cached on disk by everything it depends on
    (features, labels, groups, options, scikit-learn version): a rerun refits nothing."""
    import dataclasses
    import hashlib

    import sklearn

    digest = hashlib.sha256()
    for part in (np.ascontiguousarray(features, dtype=np.float64), np.ascontiguousarray(y, dtype=np.int64)):
        digest.update(repr(part.shape).encode())
        digest.update(part.tobytes())
    meta = [[str(g) for g in groups], n_labels, dataclasses.asdict(probe), sklearn.__version__, "probe-v1"]
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return _npy_cached(cache_dir / f"probe-{digest.hexdigest()[:24]}.npy",
                       lambda: probe.cross_fit_predict(features, y, groups, n_labels=n_labels))


def _cached_embeddings(texts: list[str | None], cache_dir: Path, embed) -> np.ndarray:
    """Sentence embeddings, cached on disk by text (a rerun embeds nothing twice)."""
    import hashlib

    key = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()[:24]
    return _npy_cached(cache_dir / f"embeddings-minilm-{key}.npy", lambda: embed(texts))


def _npy_cached(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The array saved at ``path`` (a name made from a hash of the inputs), else ``compute()`` saved there."""
    if path.exists():
        return np.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = compute()
    np.save(path, values)
    return values


def _records_for_precomputed(agent: AgentSection) -> list[dict[str, Any]]:
    from modsab.predictions import records, resolve_path

    path = resolve_path(agent.path)
    out = []
    for line, raw in records(path):
        if isinstance(raw, dict) and raw.get("agent") in (agent.name, agent.options.get("source_agent")):
            out.append(dict(raw, agent=agent.name))
        elif isinstance(raw, Exception):
            raise InputError(str(raw), path=path, line=line)
    if not out:
        raise InputError(f"no records for agent '{agent.name}'", path=path, hint="check the agent name")
    return out


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


# -- the whole run --------------------------------------------------------------------------


def run_pipeline(
    config: RunConfig, *, log: Callable[[str], None] | None = None, progress: bool = True
) -> RunOutcome:
    """Run every stage; see the module docstring. Returns the diagnosis JSON."""
    from modsab.diagnosis import diagnose
    from modsab.predictions import agent_order

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
    descriptors = describe_instances(loaded.instances, config, run_dir, progress=progress)
    seconds["describe"] = time.perf_counter() - start

    records: list[dict[str, Any]] = []
    llm = [a for a in config.agents if a.kind in ("llm", "scorer")]
    start = time.perf_counter()
    if llm:
        records += _records_for_llm(llm, descriptors, loaded.instances, loaded.labels, run_dir, config, log)
    seconds["llm_agents"] = time.perf_counter() - start
    start = time.perf_counter()
    for agent in config.agents:
        if agent.kind == "probe":
            records += _records_for_probe(agent, descriptors, loaded.instances, loaded.labels, run_dir, config)
        elif agent.kind == "precomputed":
            records += _records_for_precomputed(agent)
    seconds["probe_agents"] = time.perf_counter() - start
    gold = {i.instance_id: i.gold for i in loaded.instances}
    dataset = {i.instance_id: i.dataset for i in loaded.instances}
    predictions = run_dir / "predictions.jsonl"
    tmp = predictions.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            iid = str(record["instance_id"])
            if gold.get(iid) is not None:
                record["gold"] = gold[iid]
            if dataset.get(iid) and not record.get("dataset"):
                record["dataset"] = dataset[iid]
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(predictions)

    start = time.perf_counter()
    audit, fusion = config.audit, config.fusion
    answered = {name for record in records if (name := str(record.get("agent", "")).strip())}
    result = diagnose(
        predictions, labels=loaded.labels, weights=fusion.weights, fuse=fusion.fuse, baseline=fusion.baseline,
        agents_order=agent_order(sorted(answered), None, [a.name for a in config.agents]),  # the config's order
        tau=audit.tau, k=audit.k, bootstrap=audit.bootstrap, seed=audit.seed, n_folds=audit.folds, **audit.wanted(),
    )
    payload = result.to_dict()
    payload["run"] = {"config": str(config.source) if config.source else None, "dataset": config.dataset.loader,
                      "agents": {a.name: a.kind for a in config.agents}}
    (run_dir / config.outputs.json_file).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n",
                                                    encoding="utf-8")
    result.write_instances(run_dir / config.outputs.instances)
    seconds["diagnose"] = time.perf_counter() - start

    if config.outputs.report:
        start = time.perf_counter()
        from modsab.report import read_extras, write_report

        extras = read_extras(run_dir)
        extras.raw_answers = {**extras.raw_answers, **_raw_answers(run_dir)}
        write_report(result, run_dir / config.outputs.report, extras=extras)
        seconds["report"] = time.perf_counter() - start
    (run_dir / "timings.json").write_text(json.dumps(seconds, indent=2) + "\n", encoding="utf-8")
    return RunOutcome(run_dir, payload, seconds)
