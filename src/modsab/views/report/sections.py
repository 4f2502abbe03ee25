"""Tables of the diagnostics that other commands add to the diagnosis JSON.

Each reader knows the section's shape as ``modsab diagnose --all`` writes it
(``causal``, ``shapley``, ``calibration``, ``fusion_compare``, ``tau_sweep``) and
falls back to a plain flattened table for any other shape, so a newer or foreign
section still shows its numbers instead of breaking the report.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

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


def _calibration(section: dict[str, Any]) -> str:
    parts = []
    for group, agents in section["groups"].items():
        rows = []
        for name, entry in agents.items():
            variants = [(name, entry)] + [(f"{name} +{m}", e) for m, e in (entry.get("recalibrated") or {}).items()]
            for label, stats in variants:
                ci = stats.get("ci") or {}
                rows.append(
                    [label, stats.get("n")] + [with_ci(stats.get(k), ci.get(k)) for k in CALIBRATION_COLUMNS[1:]]
                )
        parts.append(f"<h3>{escape(str(group))}</h3>" if len(section["groups"]) > 1 else "")
        parts.append(table(["agent", *[c.replace("_", " ") for c in CALIBRATION_COLUMNS]], rows))
    if section.get("split"):
        parts.append(
            f'<p class="note">Recalibrated figures (+method) are held out: {escape(str(section["split"]))}.</p>'
        )
    return "".join(parts)


def _tau_sweep(section: dict[str, Any]) -> str:
    points = section["points"]
    agents = list(points[0]["agents"]) if points else []
    headers = ["tau", *[f"{a}: successful / potential" for a in agents]]
    rows = []
    for point in points:
        row: list[Any] = [f"{point['tau']:.2f}"]
        for agent in agents:
            entry = point["agents"][agent]
            ci = entry.get("ci") or {}
            row.append(
                f"{with_ci(entry.get('successful_sabotage_rate'), ci.get('successful_sabotage_rate'))} / "
                f"{with_ci(entry.get('potential_sabotage_rate'), ci.get('potential_sabotage_rate'))}"
            )
        rows.append(row)
    return table(headers, rows)


def _fusion_compare(section: dict[str, Any]) -> str:
    figures = section["figures"]
    rows = []
    for name, entry in section["strategies"].items():
        rows.append([name] + [with_ci(entry.get(f), (entry.get("ci") or {}).get(f)) for f in figures])
        if "diff" in entry:
            diff, diff_ci = entry["diff"], entry.get("diff_ci") or {}
            rows.append(
                [f"  diff vs {section.get('baseline')}"] + [with_ci(diff.get(f), diff_ci.get(f)) for f in figures]
            )
    note = "Differences are paired over the same bootstrap resamples."
    for name, why in (section.get("skipped") or {}).items():
        note += f" Left out: {escape(str(name))} ({escape(str(why))})."
    return table(["strategy", *[f.replace("_", " ") for f in figures]], rows) + f'<p class="note">{note}</p>'


def _causal(section: dict[str, Any]) -> str:
    ci = section.get("ci") or {}
    keys = ("causal_sabotage_rate", "paper_successful_sabotage_rate", "causal_contribution_rate", "causal_given_paper")
    rows = []
    for name, entry in section["agents"].items():
        disagreement = entry.get("disagreement") or {}
        rows.append(
            [name]
            + [with_ci(entry.get(k), ci.get(f"agents.{name}.{k}")) for k in keys]
            + [disagreement.get(k) for k in ("both", "paper_only", "causal_only")]
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
    pairs = section.get("pairs") or {}
    if pairs:
        pair_keys = ("jointly_causal_rate", "only_jointly_rate")
        pair_rows = [[n] + [with_ci(e.get(k), ci.get(f"pairs.{n}.{k}")) for k in pair_keys] for n, e in pairs.items()]
        parts += ["<h3>Pairwise removal</h3>", table(["pair", "jointly causal", "only jointly"], pair_rows)]
    return "".join(parts)


def _shapley(section: dict[str, Any]) -> str:
    values = section["values"]
    parts = []
    for group, entry in section["groups"].items():
        rows = [[a] + [with_ci(v[x]["mean"], v[x].get("ci")) for x in values] for a, v in entry["agents"].items()]
        parts.append(f"<h3>{escape(str(group))} (n = {escape(str(entry.get('n_instances')))}; mean per instance)</h3>")
        parts.append(table(["agent", *[f"phi({x})" for x in values]], rows))
    return "".join(parts)


def _generic_calibration(section: Any) -> str:
    return rows_table(table_rows(calibration_agents(section)))


READERS: dict[str, tuple[Callable[[Any], str], Callable[[Any], str]]] = {
    "calibration": (_calibration, _generic_calibration),
    "tau_sweep": (_tau_sweep, lambda s: rows_table(table_rows(s))),
    "fusion_compare": (_fusion_compare, lambda s: rows_table(table_rows(s))),
    "causal": (_causal, lambda s: rows_table(table_rows(s))),
    "shapley": (_shapley, lambda s: rows_table(table_rows(s))),
}


def section_table(key: str, section: Any) -> str:
    """The table(s) of one diagnostics section; the generic table when its shape is unknown."""
    specific, generic = READERS[key]
    try:
        return specific(section)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError):
        return generic(section)
