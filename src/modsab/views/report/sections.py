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
from modsab.diagnostics.calibration import CalibrationSection
from modsab.diagnostics.causal import CausalSection
from modsab.diagnostics.fusion_compare import FusionCompareSection
from modsab.diagnostics.shapley import ShapleySection
from modsab.diagnostics.tau_sweep import TauSweepSection
from modsab.views.report.figures import calibration_agents, number, table_rows
from modsab.views.report.markup import rows_table, table

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
        parts.append(f"<h3>{escape(group)}</h3>" if len(section.groups) > 1 else "")
        parts.append(table(["agent", *[c.replace("_", " ") for c in CALIBRATION_COLUMNS]], rows))
    if section.split:
        parts.append(f'<p class="note">Recalibrated figures (+method) are held out: {escape(section.split)}.</p>')
    return "".join(parts)


def _tau_sweep(section: TauSweepSection) -> str:
    points = section.points
    agents = list(points[0].agents) if points else []
    headers = ["tau", *[f"{a}: successful / potential" for a in agents]]
    rows = []
    for point in points:
        row: list[Any] = [f"{point.tau:.2f}"]
        for agent in agents:
            entry = point.agents[agent]
            row.append(
                f"{with_ci(entry.successful_sabotage_rate, entry.ci.successful_sabotage_rate)} / "
                f"{with_ci(entry.potential_sabotage_rate, entry.ci.potential_sabotage_rate)}"
            )
        rows.append(row)
    return table(headers, rows)


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
    return table(["strategy", *[f.replace("_", " ") for f in figures]], rows) + f'<p class="note">{note}</p>'


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
    parts = [table(headers, rows), '<p class="note">Causal: fuse again without the agent; rates over answered.</p>']
    if section.pairs:
        pair_rows = [
            [
                n,
                with_ci(e.jointly_causal_rate, ci.get(f"pairs.{n}.jointly_causal_rate")),
                with_ci(e.only_jointly_rate, ci.get(f"pairs.{n}.only_jointly_rate")),
            ]
            for n, e in section.pairs.items()
        ]
        parts += ["<h3>Pairwise removal</h3>", table(["pair", "jointly causal", "only jointly"], pair_rows)]
    return "".join(parts)


def _shapley(section: ShapleySection) -> str:
    values = section.values
    parts = []
    for group, entry in section.groups.items():
        rows = [
            [a] + [with_ci(means.value(x).mean, means.value(x).ci) for x in values] for a, means in entry.agents.items()
        ]
        parts.append(f"<h3>{escape(group)} (n = {entry.n_instances}; mean per instance)</h3>")
        parts.append(table(["agent", *[f"phi({x})" for x in values]], rows))
    return "".join(parts)


ABLATION_KEYS = (
    ("top1_full", "top-1 full"),
    ("top1_without", "top-1 without"),
    ("top1_drop", "drop"),
    ("causal_sabotage_rate", "causal sabotage"),
    ("causal_contribution_rate", "causal contribution"),
    ("flip_rate", "flips"),
)


def _ablation_streams(group: dict[str, Any]) -> str:
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
    return table(headers, rows)


def _ablation(section: dict[str, Any]) -> str:
    """``ablation``: the models, what removing each stream does, per dataset, and which stream
    sabotages the agents' fusion beside which sabotages the model."""
    ci = section.get("ci") or {}
    model_rows = [
        [name, e.get("n"), e.get("abstained"), e.get("missing"), e.get("invalid_labels"),
         with_ci(e.get("top1_full"), ci.get(f"models.{name}.top1_full")), e.get("conditions")]
        for name, e in section["models"].items()
    ]
    parts = [
        table(["model", "n", "abstained", "missing", "invalid labels", "top-1 full", "conditions"], model_rows),
        "<h3>Each stream removed</h3>",
        _ablation_streams(section),
        '<p class="note">Rates over the instances where the full and the ablated answer are both valid; '
        "causal sabotage: full wrong, without the stream right; drop = top-1 full - top-1 without; "
        "perceptual score: the drop when the stream is taken from another instance.</p>",
    ]
    groups = section.get("by_dataset") or {}
    for name, group in groups.items() if len(groups) > 1 else ():  # one dataset: the table above
        heading = f"<h3>{escape(str(name))} (n = {escape(str(group.get('n_instances')))})</h3>"
        parts += [heading, _ablation_streams(group)]
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
            table(["stream", "agent", "fusion: causal sabotage", *[f"{m}: causal sabotage" for m in models]], rows),
            '<p class="note">Fusion: fuse again without the agent reading the stream (rates over the instances it '
            "answered). Model: ask it again without the stream.</p>",
        ]
    return "".join(parts)


def _generic_calibration(section: Any) -> str:
    return rows_table(table_rows(calibration_agents(section)))


READERS: dict[str, tuple[Callable[[Any], str], Callable[[Any], str]]] = {
    "calibration": (_calibration, _generic_calibration),
    "tau_sweep": (_tau_sweep, lambda s: rows_table(table_rows(s))),
    "fusion_compare": (_fusion_compare, lambda s: rows_table(table_rows(s))),
    "causal": (_causal, lambda s: rows_table(table_rows(s))),
    "shapley": (_shapley, lambda s: rows_table(table_rows(s))),
    "ablation": (_ablation, lambda s: rows_table(table_rows(s))),
}


def section_table(key: str, section: Model | Any) -> str:
    """The table(s) of one diagnostics section: its model's, or the generic table for a
    section of another shape (plain JSON)."""
    specific, generic = READERS[key]
    return specific(section) if isinstance(section, Model) else generic(section)
