"""``diagnose``: fuse, audit and summarise a :class:`PredictionSet`.

The result object keeps the per-instance arrays (for the instances table and for
later diagnostics) and the summary (for the terminal tables, the JSON and the
report). The JSON keys documented in the README are the public contract.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modsab import registry
from modsab.contract import compact
from modsab.contract.errors import InputError
from modsab.contract.predictions import PredictionSet, load_predictions
from modsab.core import audit, fusion
from modsab.core.context import Context
from modsab.core.folds import Folds, check_folds
from modsab.core.options import AuditOptions
from modsab.core.result import SCHEMA_VERSION, DiagnosisResult, result_model
from modsab.stats import metrics

#: The options of a diagnosis (one model for the run config, the CLI and ``diagnose()``).
Options = AuditOptions


@dataclass
class Summary:
    """Figures for one group of instances (all, or one dataset)."""

    n_instances: int
    point: dict[str, float]
    ci: dict[str, list[float | None]]
    agent_counts: dict[str, dict[str, int]]
    breakdown: dict[str, Any]


def _clean(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    return value


@dataclass
class Diagnosis:
    """Everything ``diagnose`` found. ``to_dict()`` is the JSON; ``instances()`` the table."""

    pset: PredictionSet
    options: Options
    fused_agents: tuple[str, ...]
    fused: np.ndarray | None  # [n, k] fused scores (None: fused again when read, see below)
    fused_top: np.ndarray  # [n]
    rank: np.ndarray  # [n] gold rank in the fused ranking
    top: np.ndarray  # [n, m] agent top label
    confidence: np.ndarray  # [n, m]
    role: np.ndarray  # [n, m] audit.Role codes
    k: int
    overall: Summary
    by_dataset: dict[str, Summary] = field(default_factory=dict)
    rule: fusion.FusionRule | None = None
    #: Sections of the diagnostics beyond the paper, by JSON key (see :meth:`extend`): each
    #: the typed model its diagnostic registers (a plain dict for one that registers none).
    extras: dict[str, Any] = field(default_factory=dict)
    #: What the diagnostics share across :meth:`extend` calls (top labels, folds, groups,
    #: coalition fusions); lives and dies with this diagnosis.
    context: Context | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.context is None:
            self.context = Context(self.pset)
        every_agent = tuple(range(len(self.pset.agents)))
        self.context.remember(("agent_top", every_agent), lambda: (self.top, self.confidence))  # the audit has them
        if self.rule is None:
            self.rule = fusion.rule(self.options.weights, tau=self.options.tau, seed=self.options.seed)

    def extend(self, *names: str, n_folds: Folds | None = None) -> Diagnosis:
        """Run diagnostics beyond the paper (any of :data:`modsab.registry.diagnostics`:
        ``causal``, ``shapley``, ``calibration``, ``fusion_compare``, ``tau_sweep``, ...) and
        keep their sections for :meth:`to_dict`. ``n_folds`` is an int or a splitter for what
        they cross-fit (default: the options' ``folds``). Every name and check runs before
        anything is computed. Returns ``self``."""
        n_folds = self.options.folds if n_folds is None else check_folds(n_folds)
        entries = [(name, registry.diagnostics.get(name)) for name in names]
        for name, entry in entries:
            if entry.needs_agents and not self.fused_agents:
                raise InputError(
                    f"diagnostic '{name}' needs fused agents, and {self.pset.source} has model records only",
                    hint="its figures are per fused agent; the models' records are audited in the 'ablation' section",
                )
        for _, entry in entries:
            if entry.check is not None:
                entry.check(self)
        for name, entry in entries:
            section = entry.compute(self, folds=n_folds)
            # each diagnostic's section is its typed model (validated once, here)
            self.extras[name] = entry.section.model_validate(section) if entry.section is not None else section
        return self

    # -- JSON -----------------------------------------------------------------------

    def _summary_dict(self, summary: Summary) -> dict[str, Any]:
        o, p = self.options, summary.point
        agents: dict[str, Any] = {}
        for name in self.pset.agents:
            entry: dict[str, Any] = dict(summary.agent_counts[name])
            entry["fused"] = name in self.fused_agents
            for key in (
                "top1",
                "contributor_rate",
                "potential_sabotage_rate",
                "successful_sabotage_rate",
                "success_given_potential",
                "contributor_share",
                "potential_sabotage_share",
                "successful_sabotage_share",
            ):
                entry[key] = _clean(p.get(f"agents.{name}.{key}", math.nan))
            agents[name] = entry
        return {
            "n_instances": summary.n_instances,
            "labels": list(self.pset.labels),
            "tau": o.tau,
            "weights": o.weights,
            "fused_agents": list(self.fused_agents),
            "baseline": o.baseline,
            "baseline_top1": _clean(p["baseline_top1"]) if "baseline_top1" in p else None,
            "fusion_topk": {str(k + 1): _clean(p.get(f"fusion_topk.{k + 1}", math.nan)) for k in range(self.k)},
            "agents": agents,
            "ci": summary.ci,
            "sabotage_by_label": summary.breakdown,
        }

    def _payload(self) -> dict[str, Any]:
        """The diagnosis JSON as assembled from the summaries, the sections and the findings."""
        ps, o = self.pset, self.options
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **self._summary_dict(self.overall)}
        out.update(
            {
                "source": ps.source,
                "label_source": ps.labels.source,
                "scale": ps.scale,
                "k": self.k,
                "bootstrap": {"resamples": o.bootstrap, "seed": o.seed, "level": o.level},
                "n_without_gold": ps.n_without_gold,
                "invalid_labels": dict(ps.invalid_labels),
                "invalid_label_examples": dict(ps.invalid_examples),
                "skipped": [s.to_dict() for s in ps.skipped],
                "n_skipped": len(ps.skipped),
            }
        )
        if self.by_dataset:
            out["by_dataset"] = {name: self._summary_dict(s) for name, s in self.by_dataset.items()}
        out.update(self.extras)
        # what the audit concluded, read off the typed sections (modsab.diagnostics.findings,
        # imported here: findings come after every diagnostic)
        from modsab.diagnostics.findings import findings

        out["findings"] = findings(result_model().model_validate(out), self)
        return out

    def result(self) -> DiagnosisResult:
        """The diagnosis JSON as typed models (:class:`~modsab.core.result.DiagnosisResult`),
        validated: a key without a model, or a value of the wrong type, is an error."""
        return result_model().model_validate(self._payload())

    def to_dict(self) -> dict[str, Any]:
        """The JSON: :meth:`result` dumped (``schema_version``, then the README's keys)."""
        return self.result().model_dump(mode="json")

    # -- instances table ---------------------------------------------------------------

    def instances(self) -> pd.DataFrame:
        """One row per instance: fused ranking, every agent's top label, confidence, role."""
        ps = self.pset
        names = np.asarray([*ps.labels, None], dtype=object)  # index -1 -> None
        order, length = fusion.ranking(self.fused)
        ranked = names[order]
        scores = np.take_along_axis(self.fused, order, axis=1)
        columns: dict[str, Any] = {"instance_id": ps.instance_ids}
        if ps.dataset is not None:
            columns["dataset"] = ps.dataset
        columns["gold"] = names[ps.gold]
        columns["fused_top1"] = names[self.fused_top]
        columns["fused_ranking"] = [list(row[:n]) for row, n in zip(ranked, length, strict=True)]
        columns["fused_scores"] = [[round(float(v), 6) for v in row[:n]] for row, n in zip(scores, length, strict=True)]
        columns["gold_rank"] = np.where(self.rank < len(ps.labels), self.rank + 1, 0)
        for k in range(self.k):
            columns[f"hit_at_{k + 1}"] = self.rank < k + 1
        quality = np.round(ps.quality * 100, 6)
        for m, agent in enumerate(ps.agents):
            columns[f"{agent}.top"] = names[self.top[:, m]]
            columns[f"{agent}.confidence"] = self.confidence[:, m]
            columns[f"{agent}.quality"] = quality[:, m]
            columns[f"{agent}.role"] = audit.ROLE_NAMES[self.role[:, m]]
        columns.update(self._beyond_columns())
        return pd.DataFrame(columns)

    def _beyond_columns(self) -> dict[str, np.ndarray]:
        """Per-instance columns of the diagnostics that were run and have them (for example
        ``<agent>.causal`` and ``<agent>.shapley_<value>``), in registry order."""
        out: dict[str, np.ndarray] = {}
        for name, entry in registry.diagnostics.items():
            if name in self.extras and entry.columns is not None:
                out.update(entry.columns(self))
        return out

    def write_instances(self, path: str | Path) -> Path:
        """Write :meth:`instances` as Parquet, CSV (lists as JSON strings) or JSON Lines."""
        path = Path(path)
        frame = self.instances()
        suffix = path.suffix.lower()
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix in (".parquet", ".pq"):
            frame.to_parquet(path, index=False)
        elif suffix == ".csv":
            import json

            for column in ("fused_ranking", "fused_scores"):
                frame[column] = [json.dumps(v, ensure_ascii=False) for v in frame[column]]
            frame.to_csv(path, index=False)
        elif suffix in (".jsonl", ".ndjson"):
            frame.to_json(path, orient="records", lines=True, force_ascii=False)
        else:
            raise InputError(
                f"unknown instances file type '{suffix or path.name}'",
                path=path,
                hint="use .parquet, .csv or .jsonl",
            )
        return path


def _get_fused(self: Diagnosis) -> np.ndarray:
    if self._fused is None:  # a uniform rule's fused scores, not kept by diagnose(): fuse again
        agents = [self.pset.agents.index(name) for name in self.fused_agents]
        self._fused = self.rule.fuse(self.context, agents)
    return self._fused


def _set_fused(self: Diagnosis, value: np.ndarray | None) -> None:
    self._fused = value


#: ``fused[n, k]``: the fused scores. ``diagnose()`` keeps a uniform rule's only as the top
#: label and the gold's rank it reduced them to (``[n, k]`` float64 is 560 MB at ten million
#: instances); the first read fuses them again, the same arrays block for block.
Diagnosis.fused = property(_get_fused, _set_fused)  # type: ignore[assignment]


# -- the computation ------------------------------------------------------------------------


def _select_agents(pset: PredictionSet, options: Options) -> tuple[list[int], int | None]:
    baseline = None if options.baseline is None else pset.agent_index(options.baseline)
    if options.fuse:
        if len(set(options.fuse)) != len(options.fuse):
            raise InputError("--fuse names an agent twice", hint=", ".join(options.fuse))
        fused = [pset.agent_index(name) for name in options.fuse]
    else:
        fused = [m for m in range(len(pset.agents)) if m != baseline]
    if not fused and (pset.agents or pset.ablation is None):  # model records only: nothing to fuse
        raise InputError("no agent left to fuse", hint="name agents with --fuse")
    return sorted(fused), baseline


def _summarise(
    rank: np.ndarray,
    role: np.ndarray,
    top: np.ndarray,
    gold: np.ndarray,
    pset: PredictionSet,
    layout: metrics.Layout,
    options: Options,
    baseline: int | None,
    rows: np.ndarray | None = None,
) -> Summary:
    if rows is not None:
        rank, role, top, gold = rank[rows], role[rows], top[rows], gold[rows]
    p_rank, p_role, p_count = metrics.patterns(rank, role)
    pattern_indicators = metrics.indicators(p_rank, p_role, layout)
    counts = p_count @ pattern_indicators
    point = {key: float(v) for key, v in metrics.rates(counts, layout, baseline=baseline).items()}
    ci: dict[str, list[float | None]] = {}
    if options.bootstrap:
        draws = metrics.bootstrap_counts(p_count, pattern_indicators, resamples=options.bootstrap, seed=options.seed)
        ci = metrics.percentile_intervals(metrics.rates(draws, layout, baseline=baseline), level=options.level)
    present = pset.present if rows is None else pset.present[rows]
    invalid = pset.invalid_counts if rows is None else pset.invalid_counts[rows]
    agent_counts = {}
    for m, name in enumerate(pset.agents):
        answered, contributor, potential, successful = (int(c) for c in layout.agent(counts, m))
        agent_counts[name] = {
            "n": answered,
            "abstained": int(rank.shape[0] - answered),
            "missing_records": int((~present[:, m]).sum()),
            "invalid_labels": int(invalid[:, m].sum()),
            "contributors": contributor,
            "potential_sabotage": potential,
            "successful_sabotage": successful,
        }
    breakdown = metrics.label_breakdown(role, top, gold, pset.labels.labels, pset.agents)
    return Summary(int(rank.shape[0]), point, ci, agent_counts, breakdown)


def diagnose(
    predictions: PredictionSet | str | Path,
    *,
    weights: str | fusion.FusionRule = "uniform",
    fuse: Sequence[str] | None = None,
    baseline: str | None = None,
    tau: float = 0.70,
    k: int = 5,
    bootstrap: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
    diagnostics: Sequence[str] | str | None = None,
    n_folds: Folds = 5,
    agents_order: Sequence[str] | str | None = None,
    **options: Any,
) -> Diagnosis:
    """Fuse the agents, audit every instance and summarise, with bootstrap intervals.

    ``predictions`` is a :class:`PredictionSet` or a path for :func:`load_predictions`
    (its options go there: ``labels``, ``synonyms``, ``scale``, ``strict``,
    ``skip_invalid``, ...). ``weights`` is a registered fusion rule (``"uniform"``,
    ``"quality"``, ``"learned"``, ...; :data:`modsab.registry.fusion_rules`) or a
    :class:`~modsab.core.fusion.FusionRule`; ``fuse`` picks the fused agents (default: all
    but the baseline); ``baseline`` names the agent reported as Base T1. ``agents_order`` (a
    list or comma list naming every agent once) orders the agents everywhere in the result;
    by default a file's agents come in the order its run recorded, else sorted by name.

    Diagnostics beyond the paper (:data:`modsab.registry.diagnostics`) are added by name,
    ``diagnostics=["causal", "shapley"]`` or ``"all"``, or one flag each (``causal=True``,
    ``shapley=True``, ``calibration=True``, ``fusion_compare=True``, ``tau_sweep=True``);
    see :meth:`Diagnosis.extend`. ``n_folds`` (an int, or a splitter such as scikit-learn's
    ``GroupKFold``) deals the folds of their cross-fitted parts.
    """
    wanted = _wanted_diagnostics(diagnostics, options)
    given_rule = weights if isinstance(weights, fusion.FusionRule) else None
    settings = AuditOptions.parse(
        weights="uniform" if given_rule else weights,
        fuse=tuple(fuse) if fuse else None,
        baseline=baseline,
        tau=tau,
        k=k,
        bootstrap=bootstrap,
        seed=seed,
        level=level,
        diagnostics=wanted,
        folds=n_folds,
    )
    if given_rule is not None:
        settings = settings.model_copy(update={"weights": given_rule.name})
    if isinstance(predictions, PredictionSet):
        pset = predictions if agents_order is None else predictions.with_agent_order(agents_order)
    else:
        pset = load_predictions(predictions, agents_order=agents_order, **options)
    if isinstance(predictions, PredictionSet) and options:
        raise TypeError(f"diagnose() got unexpected keyword arguments {', '.join(sorted(options))}")
    context = Context(pset)
    rule = given_rule or fusion.rule(settings.weights, tau=settings.tau, folds=settings.folds, seed=settings.seed)
    options = settings
    fused_idx, baseline_idx = _select_agents(pset, options)
    k_eff = min(options.k, len(pset.labels))

    fused, fused_top, rank = _fusion(rule, context, fused_idx)
    top, confidence = context.agent_top(range(len(pset.agents)))
    role = _roles(top, confidence, pset.gold, fused_top, tau=options.tau)

    is_fused = tuple(m in fused_idx for m in range(len(pset.agents)))
    layout = metrics.Layout(pset.agents, is_fused, k_eff)
    args = (rank, role, top, pset.gold, pset, layout, options, baseline_idx)
    by_dataset = {}
    # model records only: no foundation audit (its figures null, its maps empty)
    overall = _summarise(*args) if fused_idx else Summary(pset.n_instances, {}, {}, {}, {})
    if pset.dataset is not None and fused_idx:
        for name in sorted(set(pset.dataset.tolist())):
            by_dataset[name] = _summarise(*args, rows=np.flatnonzero(pset.dataset == name))
    result = Diagnosis(
        pset=pset,
        options=options,
        fused_agents=tuple(pset.agents[m] for m in fused_idx),
        fused=fused,
        fused_top=fused_top,
        rank=rank,
        top=top,
        confidence=confidence,
        role=role,
        k=k_eff,
        overall=overall,
        by_dataset=by_dataset,
        rule=rule,
        context=context,
    )
    names = (*options.diagnostics, *_automatic(result, exclude=options.diagnostics))
    return result.extend(*names, n_folds=options.folds) if names else result


def _fusion(
    rule: fusion.FusionRule, context: Context, fused_idx: Sequence[int]
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``(fused, fused_top, rank)`` of the fused agents. A uniform rule's fused scores are
    reduced block by block to the top label and the gold's rank and not kept (``None``:
    :attr:`Diagnosis.fused` fuses them again, block for block the same, when it is read);
    any other rule's are kept, as they may cost a fit to make again."""
    pset = context.pset
    n, k = pset.n_instances, len(pset.labels)
    if not fused_idx:
        fused = np.zeros((n, k))
        return fused, fusion.top_label(fused), fusion.gold_rank(fused, pset.gold)
    fused_top = np.empty(n, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    kept = None if rule.uniform else np.empty((n, k), dtype=np.float64)
    for rows, block in rule.fuse_blocks(context, fused_idx):
        fused_top[rows] = fusion.top_label(block)
        rank[rows] = fusion.gold_rank(block, pset.gold[rows])
        if kept is not None:
            kept[rows] = block
    return kept, fused_top, rank


def _roles(top: np.ndarray, confidence: np.ndarray, gold: np.ndarray, fused_top: np.ndarray, *, tau: float):
    """:func:`modsab.core.audit.roles` a block of instances at a time (each row's roles are
    its own), so its temporaries stay the size of a block."""
    role = np.empty(top.shape, dtype=np.int8)
    for rows in compact.blocks(top.shape[0]):
        role[rows] = audit.roles(top[rows], confidence[rows], gold[rows], fused_top[rows], tau=tau)
    return role


def _automatic(result: Diagnosis, *, exclude: Sequence[str]) -> tuple[str, ...]:
    """The automatic diagnostics (``Diagnostic.automatic``) that apply to ``result``."""
    return tuple(
        name
        for name, entry in registry.diagnostics.items()
        if entry.automatic and name not in exclude and (entry.applies is None or entry.applies(result))
    )


def _wanted_diagnostics(names: Sequence[str] | str | None, flags: dict[str, Any]) -> tuple[str, ...]:
    """The diagnostics asked for by name (``"all"`` for every registered one) or by flag;
    flags are taken out of ``flags`` (the rest are loader options)."""
    registered = registry.diagnostics.names()
    wanted = [name for name in registered if flags.pop(name, False)]
    if names == "all":
        names = registry.requestable_diagnostics()
    elif isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    for name in names or ():
        if name not in wanted:
            wanted.append(name)
    return tuple(wanted)  # checked against the registry by AuditOptions
