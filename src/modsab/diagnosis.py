"""``diagnose``: fuse, audit and summarise a :class:`PredictionSet`.

The result object keeps the per-instance arrays (for the instances table and for
later diagnostics) and the summary (for the terminal tables, the JSON and the
report). The JSON keys documented in the README are the public contract.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modsab import audit, fusion, metrics
from modsab.errors import InputError
from modsab.predictions import PredictionSet, load_predictions


@dataclass(frozen=True)
class Options:
    """How to fuse and audit; mirrors the ``modsab diagnose`` options."""

    weights: str = "uniform"
    fuse: tuple[str, ...] | None = None
    baseline: str | None = None
    tau: float = 0.70
    k: int = 5
    bootstrap: int = 1000
    seed: int | None = 0
    level: float = 0.95
    folds: int = 5

    def __post_init__(self) -> None:
        if not 0 <= self.tau <= 1:
            raise InputError(f"--tau {self.tau} is outside 0-1", hint="the paper uses 0.70")
        if self.k < 1:
            raise InputError(f"--k {self.k} must be at least 1")
        if self.bootstrap < 0:
            raise InputError(f"--bootstrap {self.bootstrap} must be 0 (no intervals) or more")
        if not 0 < self.level < 1:
            raise InputError(f"confidence level {self.level} must be between 0 and 1")
        if not _is_int(self.folds) or self.folds < 2:
            raise InputError(
                f"--folds {self.folds} must be 2 or more", hint="cross-fitting holds one fold out and fits on the rest"
            )
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            raise InputError(f"--seed {self.seed} must be 0 or more (or None: unseeded)")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


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
    fused: np.ndarray  # [n, k] fused scores
    fused_top: np.ndarray  # [n]
    rank: np.ndarray  # [n] gold rank in the fused ranking
    top: np.ndarray  # [n, m] agent top label
    confidence: np.ndarray  # [n, m]
    role: np.ndarray  # [n, m] audit.Role codes
    k: int
    overall: Summary
    by_dataset: dict[str, Summary] = field(default_factory=dict)
    rule: fusion.FusionRule | None = None
    #: Sections of the diagnostics beyond the paper, by JSON key (see :meth:`extend`).
    extras: dict[str, Any] = field(default_factory=dict)
    #: Arrays the diagnostics share across :meth:`extend` calls (coalition fusions, groups).
    workspace: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def extend(self, *names: str, n_folds: int | None = None) -> Diagnosis:
        """Run diagnostics beyond the paper (``causal``, ``shapley``, ``calibration``,
        ``fusion_compare``, ``tau_sweep``; see :mod:`modsab.beyond`) and keep their
        sections for :meth:`to_dict`; ``n_folds`` defaults to the options' ``folds``.
        Returns ``self``."""
        from modsab import beyond

        folds = self.options.folds if n_folds is None else replace(self.options, folds=n_folds).folds  # checked
        self.extras.update(beyond.run(self, names, n_folds=folds))
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
            "fusion_topk": {str(k + 1): _clean(p[f"fusion_topk.{k + 1}"]) for k in range(self.k)},
            "agents": agents,
            "ci": summary.ci,
            "sabotage_by_label": summary.breakdown,
        }

    def to_dict(self) -> dict[str, Any]:
        ps, o = self.pset, self.options
        out = self._summary_dict(self.overall)
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
        return out

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
        """Per-instance views of the causal and Shapley sections, when they were run:
        ``<agent>.causal`` (``saboteur``, ``contributor`` or empty) and
        ``<agent>.shapley_<value>`` for each fused agent."""
        coalitions = self.workspace.get("coalitions")
        if coalitions is None:
            return {}
        out: dict[str, np.ndarray] = {}
        if "causal" in self.extras:
            from modsab.counterfactual import LeaveOneOut

            effect = LeaveOneOut().attribute(coalitions)
            for j, agent in enumerate(coalitions.agents):
                out[f"{agent}.causal"] = np.where(
                    effect[:, j] < 0, "saboteur", np.where(effect[:, j] > 0, "contributor", "")
                ).astype(object)
        if "shapley" in self.extras:
            from modsab.shapley import VALUES, Shapley

            for value in VALUES:
                phi = Shapley(value).attribute(coalitions)
                for j, agent in enumerate(coalitions.agents):
                    out[f"{agent}.shapley_{value}"] = phi[:, j]
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


# -- the computation ------------------------------------------------------------------------


def _select_agents(pset: PredictionSet, options: Options) -> tuple[list[int], int | None]:
    baseline = None if options.baseline is None else pset.agent_index(options.baseline)
    if options.fuse:
        if len(set(options.fuse)) != len(options.fuse):
            raise InputError("--fuse names an agent twice", hint=", ".join(options.fuse))
        fused = [pset.agent_index(name) for name in options.fuse]
    else:
        fused = [m for m in range(len(pset.agents)) if m != baseline]
    if not fused:
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
    weights: str = "uniform",
    fuse: Sequence[str] | None = None,
    baseline: str | None = None,
    tau: float = 0.70,
    k: int = 5,
    bootstrap: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
    causal: bool = False,
    shapley: bool = False,
    calibration: bool = False,
    fusion_compare: bool = False,
    tau_sweep: bool = False,
    n_folds: int = 5,
    agents_order: Sequence[str] | str | None = None,
    **load_options: Any,
) -> Diagnosis:
    """Fuse the agents, audit every instance and summarise, with bootstrap intervals.

    ``predictions`` is a :class:`PredictionSet` or a path for :func:`load_predictions`
    (``load_options`` go there: ``labels``, ``synonyms``, ``scale``, ``strict``,
    ``skip_invalid``). ``agents_order`` (a list or comma list naming every agent once)
    orders the agents everywhere in the result; by default a file's agents come in the
    order its run recorded, else sorted by name. ``weights`` is ``"uniform"`` or
    ``"quality"`` (or a :class:`~modsab.fusion.FusionRule`); ``fuse`` picks the fused
    agents (default: all but the baseline); ``baseline`` names the agent reported as Base T1.

    ``causal``, ``shapley``, ``calibration``, ``fusion_compare`` and ``tau_sweep`` add the
    diagnostics beyond the paper (:meth:`Diagnosis.extend`); ``n_folds`` is the number of
    seeded instance folds of their cross-fitted parts.
    """
    rule = fusion.rule(weights)
    options = Options(
        weights=rule.name,
        fuse=tuple(fuse) if fuse else None,
        baseline=baseline,
        tau=tau,
        k=k,
        bootstrap=bootstrap,
        seed=seed,
        level=level,
        folds=n_folds,
    )  # checked before the file is read
    if isinstance(predictions, PredictionSet):
        pset = predictions if agents_order is None else predictions.with_agent_order(agents_order)
    else:
        pset = load_predictions(predictions, agents_order=agents_order, **load_options)
    fused_idx, baseline_idx = _select_agents(pset, options)
    k_eff = min(options.k, len(pset.labels))

    fused = rule.fuse(pset, fused_idx)
    fused_top = fusion.top_label(fused)
    rank = fusion.gold_rank(fused, pset.gold)
    top, confidence = audit.agent_top(pset.scores, pset.candidate)
    role = audit.roles(top, confidence, pset.gold, fused_top, tau=options.tau)

    is_fused = tuple(m in fused_idx for m in range(len(pset.agents)))
    layout = metrics.Layout(pset.agents, is_fused, k_eff)
    args = (rank, role, top, pset.gold, pset, layout, options, baseline_idx)
    overall = _summarise(*args)
    by_dataset = {}
    if pset.dataset is not None:
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
    )
    flags = {
        "causal": causal,
        "shapley": shapley,
        "calibration": calibration,
        "fusion_compare": fusion_compare,
        "tau_sweep": tau_sweep,
    }
    wanted = tuple(name for name, on in flags.items() if on)
    return result.extend(*wanted) if wanted else result
