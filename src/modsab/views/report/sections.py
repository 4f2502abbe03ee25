"""Tables of the diagnostics that other commands add to the diagnosis JSON.

Each reader takes the section's typed model (``causal``, ``shapley``, ``calibration``,
``fusion_compare``, ``tau_sweep``, as ``modsab diagnose --all`` writes them); a section
of another shape (:attr:`~modsab.views.report.data.ReportData.foreign`) gets a plain
flattened table instead, so a newer or foreign section still shows its numbers instead
of breaking the report.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

from modsab.core.typed import Model
from modsab.diagnostics.ablation import STREAM_FIGURES
from modsab.diagnostics.calibration import CalibrationSection
from modsab.diagnostics.causal import CausalSection
from modsab.diagnostics.fusion_compare import FusionCompareSection
from modsab.diagnostics.shapley import ShapleySection
from modsab.diagnostics.tau_sweep import TauSweepSection
from modsab.views.report.figures import calibration_agents, number, table_rows
from modsab.views.report.markup import data_rows_table, data_table

CALIBRATION_COLUMNS = ("n", "accuracy", "mean_confidence", "ece", "mce", "brier", "confidence_auroc", "quality_auroc")


def with_ci(value: Any, interval: Any) -> str:
    """``0.412 [0.380, 0.441]``, or the value alone, or a dash."""
    value = number(value)
    if value is None:
        return "–"
    if isinstance(interval, list | tuple) and len(interval) == 2 and None not in interval:
        return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
    return f"{value:.3f}"


def _calibration(section: CalibrationSection) -> str:
    parts = []
    for group, agents in section.groups.items():
        rows = []
        for name, entry in agents.items():
            variants = [(name, entry)] + [(f"{name} +{m}", e) for m, e in (entry.recalibrated or {}).items()]
            for label, stats in variants:
                ci = stats.ci or {}  # absent when the agent never answered
                rows.append(
                    [label, stats.n] + [with_ci(getattr(stats, k), ci.get(k)) for k in CALIBRATION_COLUMNS[1:]]
                )
        headers = ["agent", *[c.replace("_", " ") for c in CALIBRATION_COLUMNS]]
        parts.append(data_table(f"calibration_{group}", f"calibration, {group}", headers, rows))
    if section.split:
        parts.append(f'<p class="note">Recalibrated figures (+method) are held out: {escape(section.split)}.</p>')
    return "".join(parts)


def _tau_sweep(section: TauSweepSection) -> str:
    """One row per (tau, agent), one figure per cell (the curves above draw the same numbers),
    and the role changes per step."""
    rows, changes = [], []
    for point in section.points:
        for agent, entry in point.agents.items():
            ci = entry.ci
            rows.append(
                [
                    f"{point.tau:.2f}",
                    agent,
                    with_ci(entry.successful_sabotage_rate, ci.successful_sabotage_rate),
                    with_ci(entry.potential_sabotage_rate, ci.potential_sabotage_rate),
                    with_ci(entry.successful_sabotage_share, ci.successful_sabotage_share),
                ]
            )
        changed = point.changed_from_previous
        if changed is not None:
            changes.append([f"{point.tau:.2f}", changed.pairs, changed.instances, *changed.per_agent.values()])
    headers = ["tau", "agent", "successful sabotage rate", "potential sabotage rate", "successful sabotage share"]
    parts = [data_table("tau_sweep", "rates by tau and agent", headers, rows)]
    if changes:
        agents = list(next(p for p in section.points if p.changed_from_previous).changed_from_previous.per_agent)
        parts.append(
            data_table(
                "tau_role_changes",
                "role changes since the previous tau",
                ["tau", "pairs", "instances", *[f"{a} pairs" for a in agents]],
                changes,
            )
        )
    return "".join(parts)


def _fusion_compare(section: FusionCompareSection) -> str:
    figures = section.figures
    rows = []
    for name, entry in section.strategies.items():
        rows.append([name] + [with_ci(entry.rates[f], entry.ci[f]) for f in figures])
        if entry.diff is not None and entry.diff_ci is not None:
            diff, diff_ci = entry.diff, entry.diff_ci
            rows.append([f"  diff vs {section.baseline}"] + [with_ci(diff[f], diff_ci[f]) for f in figures])
    note = "Differences are paired over the same bootstrap resamples."
    for name, why in section.skipped.items():
        note += f" Left out: {escape(name)} ({escape(why)})."
    headers = ["strategy", *[f.replace("_", " ") for f in figures]]
    return data_table("fusion_compare", "fusion strategies", headers, rows) + f'<p class="note">{note}</p>'


def _causal(section: CausalSection) -> str:
    ci = section.ci
    keys = ("causal_sabotage_rate", "paper_successful_sabotage_rate", "causal_contribution_rate", "causal_given_paper")
    rows = []
    for name, entry in section.agents.items():
        disagreement = entry.disagreement
        rows.append(
            [name]
            + [with_ci(getattr(entry, k), ci.get(f"agents.{name}.{k}")) for k in keys]
            + [disagreement.both, disagreement.paper_only, disagreement.causal_only]
        )
    headers = [
        "agent",
        "causal sabotage",
        "paper successful",
        "causal contribution",
        "causal | paper",
        "both",
        "paper only",
        "causal only",
    ]
    parts = [
        data_table("causal", "counterfactual sabotage per agent", headers, rows),
        '<p class="note">Causal: fuse again without the agent; rates over answered.</p>',
    ]
    if section.pairs:
        pair_rows = [
            [
                n,
                with_ci(e.jointly_causal_rate, ci.get(f"pairs.{n}.jointly_causal_rate")),
                with_ci(e.only_jointly_rate, ci.get(f"pairs.{n}.only_jointly_rate")),
            ]
            for n, e in section.pairs.items()
        ]
        parts.append(
            data_table("causal_pairs", "pairwise removal", ["pair", "jointly causal", "only jointly"], pair_rows)
        )
    return "".join(parts)


def _shapley(section: ShapleySection) -> str:
    values = section.values
    parts = []
    for group, entry in section.groups.items():
        rows = [
            [a] + [with_ci(means.value(x).mean, means.value(x).ci) for x in values] for a, means in entry.agents.items()
        ]
        title = f"{group} (n = {entry.n_instances}; mean per instance)"
        parts.append(
            data_table(f"shapley_{group}", title, ["agent", *[f"phi({x})" for x in values]], rows, open_=True)
        )
    return "".join(parts)


ABLATION_KEYS = STREAM_FIGURES


def _ablation_streams(group: dict[str, Any], dataset: str | None = None) -> str:
    suffix, title = (f"_{dataset}", f", {dataset}") if dataset is not None else ("", "")
    ci = group.get("ci") or {}
    rows = []
    for model, entry in group["models"].items():
        for stream, figures in entry["streams"].items():
            prefix = f"models.{model}.streams.{stream}."
            shuffled = figures.get("shuffled") or {}
            rows.append(
                [model, stream, figures.get("n")]
                + [with_ci(figures.get(k), ci.get(prefix + k)) for k, _ in ABLATION_KEYS]
                + [with_ci(shuffled.get("perceptual_score"), ci.get(prefix + "shuffled.perceptual_score"))]
            )
    headers = ["model", "stream", "n", *[h for _, h in ABLATION_KEYS], "perceptual score (shuffled)"]
    return data_table(f"ablation_streams{suffix}", f"each stream removed{title}", headers, rows, open_=True)


def _ablation(section: dict[str, Any]) -> str:
    """``ablation``: the models, what removing each stream does, per dataset, and which stream
    sabotages the agents' fusion beside which sabotages the model. The section is plain JSON
    (its keys follow the models and streams of the run), typed or not."""
    if isinstance(section, Model):
        section = section.model_dump(mode="json", exclude_unset=True)
    ci = section.get("ci") or {}
    model_rows = [
        [name, e.get("n"), e.get("abstained"), e.get("missing"), e.get("invalid_labels"),
         with_ci(e.get("top1_full"), ci.get(f"models.{name}.top1_full")), e.get("conditions")]
        for name, e in section["models"].items()
    ]
    parts = [
        data_table("ablation_models", "models", ["model", "n", "abstained", "missing", "invalid labels", "top-1 full",
                                                 "conditions"], model_rows, open_=True),
        "<h3>Each stream removed</h3>",
        _ablation_streams(section),
        '<p class="note">Rates over the instances where the full and the ablated answer are both valid; '
        "causal sabotage: full wrong, without the stream right; drop = top-1 full - top-1 without; "
        "perceptual score: the drop when the stream is taken from another instance.</p>",
    ]
    groups = section.get("by_dataset") or {}
    for name, group in groups.items() if len(groups) > 1 else ():  # one dataset: the table above
        heading = f"<h3>{escape(str(name))} (n = {escape(str(group.get('n_instances')))})</h3>"
        parts += [heading, _ablation_streams(group, str(name))]
    fused = (section.get("fusion") or {}).get("agents") or {}
    if fused:
        models = list(section["models"])
        streams = list(dict.fromkeys(s for m in models for s in section["models"][m]["streams"]))
        streams += [a.get("stream") for a in fused.values() if a.get("stream") and a.get("stream") not in streams]
        rows = []
        for stream in [*streams, None]:
            readers = [n for n, a in fused.items() if a.get("stream") == stream] or ([None] if stream else [])
            for agent in readers:
                row: list[Any] = [stream or "(no stream)", agent or "–"]
                key = f"fusion.agents.{agent}.causal_sabotage_rate"
                row.append(with_ci(fused[agent].get("causal_sabotage_rate"), ci.get(key)) if agent else "–")
                for model in models:
                    figures = section["models"][model]["streams"].get(stream) if stream else None
                    key = f"models.{model}.streams.{stream}.causal_sabotage_rate"
                    row.append(with_ci(figures.get("causal_sabotage_rate"), ci.get(key)) if figures else "–")
                rows.append(row)
        parts += [
            "<h3>Which stream sabotages: the agents' fusion beside the model</h3>",
            data_table("ablation_fusion_vs_model", "fusion beside the model",
                       ["stream", "agent", "fusion: causal sabotage", *[f"{m}: causal sabotage" for m in models]], rows,
                       open_=True),
            '<p class="note">Fusion: fuse again without the agent reading the stream (rates over the instances it '
            "answered). Model: ask it again without the stream.</p>",
        ]
    return "".join(parts)


def _generic_calibration(section: Any) -> str:
    return data_rows_table("calibration", "calibration", table_rows(calibration_agents(section)), open_=True)


def _generic(key: str) -> Callable[[Any], str]:
    return lambda s: data_rows_table(key, key.replace("_", " "), table_rows(s), open_=True)


READERS: dict[str, tuple[Callable[[Any], str], Callable[[Any], str]]] = {
    "calibration": (_calibration, _generic_calibration),
    "tau_sweep": (_tau_sweep, _generic("tau_sweep")),
    "fusion_compare": (_fusion_compare, _generic("fusion_compare")),
    "causal": (_causal, _generic("causal")),
    "shapley": (_shapley, _generic("shapley")),
    "ablation": (_ablation, _ablation),
}


def section_table(key: str, section: Model | Any) -> str:
    """The table(s) of one diagnostics section: its model's, or the generic table for a
    section of another shape (plain JSON)."""
    specific, generic = READERS[key]
    return specific(section) if isinstance(section, Model) else generic(section)
