"""Figure data: what every chart of the report shows, computed once from the typed diagnosis.

The inline SVG charts of the page (:mod:`modsab.views.report.svg`) and the static PNG/SVG
files for papers (:mod:`modsab.views.report.static`) both draw these objects, so the two
always show the same numbers. The figures read the typed result
(:class:`~modsab.views.report.data.ReportData`); a diagnostics section of another shape
than modsab's (``causal``, ``calibration``, ``tau_sweep``; :attr:`ReportData.foreign`) is
read defensively: a shape we do not recognise gives no figure (the page still lists it as
a table), never an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from modsab.core.result import Summary
from modsab.diagnostics.calibration import CalibrationFigures, CalibrationSection
from modsab.diagnostics.causal import CausalSection
from modsab.diagnostics.findings import MIN_ANSWERS
from modsab.diagnostics.fusion_compare import FusionCompareSection
from modsab.diagnostics.tau_sweep import TauSweepSection
from modsab.views.report.data import ReportData

#: Rates shown in the reliability profile, in this order, with their legend names.
PROFILE_RATES: tuple[tuple[str, str], ...] = (
    ("contributor_rate", "contributor"),
    ("potential_sabotage_rate", "potential sabotage"),
    ("successful_sabotage_rate", "successful sabotage"),
)


#: Said where Base T1 would be when no agent is the baseline.
NO_BASELINE = (
    "No Base T1: no baseline agent was named. Name one with --baseline NAME (or [fusion] baseline "
    "in a run config) to compare its own top-1 with the fusion."
)


@dataclass
class Bar:
    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass
class BarChart:
    """Grouped bars with optional intervals: ``values[group][series]``."""

    key: str
    title: str
    groups: list[str]
    series: list[str]
    values: list[list[Bar]]
    y_label: str = ""
    kind: str = "bars"
    #: A sentence shown under the figure (what was left out of it and why).
    note: str = ""


@dataclass
class Heatmap:
    key: str
    title: str
    rows: list[str]
    columns: list[str]
    values: list[list[float]]
    row_label: str = ""
    column_label: str = ""
    kind: str = "heatmap"
    note: str = ""


@dataclass
class Line:
    name: str
    x: list[float]
    y: list[float | None]
    low: list[float | None] = field(default_factory=list)
    high: list[float | None] = field(default_factory=list)
    count: list[int | None] = field(default_factory=list)


@dataclass
class LineChart:
    key: str
    title: str
    lines: list[Line]
    x_label: str = ""
    y_label: str = ""
    diagonal: bool = False
    x_range: tuple[float, float] = (0.0, 1.0)
    kind: str = "lines"
    #: An x value marked by a dashed vertical line (the audit's tau), and its label.
    marker: float | None = None
    marker_label: str = ""
    note: str = ""


Figure = BarChart | Heatmap | LineChart


def number(value: Any) -> float | None:
    """A finite float, or None (JSON nulls, NaN, strings and bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _interval(ci: Mapping[str, Any], key: str) -> tuple[float | None, float | None]:
    pair = ci.get(key) if isinstance(ci, Mapping) else None
    if isinstance(pair, list | tuple) and len(pair) == 2:
        return number(pair[0]), number(pair[1])
    return None, None


def _bar(summary: Summary, value: float | None, ci_key: str) -> Bar:
    low, high = _interval(summary.ci, ci_key)
    return Bar(number(value), low, high)


def _data(diagnosis: ReportData | Mapping[str, Any]) -> ReportData:
    """The typed diagnosis (a JSON dict, ``to_dict()`` and any sections, is validated)."""
    return diagnosis if isinstance(diagnosis, ReportData) else ReportData.read(diagnosis)


# -- headline -------------------------------------------------------------------------------


def _groups(data: ReportData) -> list[tuple[str, Summary]]:
    """All instances, then each dataset when there are several."""
    groups = data.result.groups()
    return groups if len(groups) > 2 else groups[:1]


def headline(diagnosis: ReportData | Mapping[str, Any]) -> BarChart:
    """Fused top-1..top-k coverage per dataset, beside the baseline's top-1 when there is one."""
    groups = _groups(_data(diagnosis))
    ks = sorted(groups[0][1].fusion_topk, key=int)
    has_baseline = any(number(s.baseline_top1) is not None for _, s in groups)
    series = (["Base T1"] if has_baseline else []) + [f"Fus T{k}" for k in ks]
    values = []
    for _, summary in groups:
        row = [_bar(summary, summary.baseline_top1, "baseline_top1")] if has_baseline else []
        row += [_bar(summary, summary.fusion_topk[k], f"fusion_topk.{k}") for k in ks]
        values.append(row)
    return BarChart(
        "headline",
        "Fused top-k vs baseline" if has_baseline else "Fused top-k",
        [name for name, _ in groups],
        series,
        values,
        y_label="share of instances",
        note="" if has_baseline else NO_BASELINE,
    )


# -- reliability profile --------------------------------------------------------------------


#: The causal section's rates in the reliability profile, with their legend names.
CAUSAL_RATES: tuple[tuple[str, str], ...] = (
    ("causal_sabotage_rate", "causal sabotage"),
    ("causal_contribution_rate", "causal contribution"),
)


def _causal_rates(data: ReportData) -> dict[str, dict[str, Bar]]:
    """``{agent: {rate name: Bar}}`` from the ``causal`` section (its answered agents' rates)."""
    causal = data.section("causal")
    if not isinstance(causal, CausalSection):
        return _foreign_causal_rates(causal)
    out: dict[str, dict[str, Bar]] = {}
    for agent, entry in causal.agents.items():
        for key, name in CAUSAL_RATES:
            value = number(getattr(entry, key))
            if value is not None:
                out.setdefault(agent, {})[name] = Bar(value, *_interval(causal.ci, f"agents.{agent}.{key}"))
    return out


def _foreign_causal_rates(causal: Any) -> dict[str, dict[str, Bar]]:
    """:func:`_causal_rates` of a ``causal`` section of another shape, when it holds per-agent rates."""
    if not isinstance(causal, dict):
        return {}
    agents = causal.get("agents", causal)
    ci = causal.get("ci") if isinstance(causal.get("ci"), dict) else {}
    out: dict[str, dict[str, Bar]] = {}
    if not isinstance(agents, dict):
        return {}
    for agent, entry in agents.items():
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            if key.endswith("_rate") and not key.startswith("paper_") and number(value) is not None:
                low, high = _interval(ci, f"agents.{agent}.{key}")
                if low is None and isinstance(entry.get(f"{key}_ci"), list):
                    low, high = _interval({"x": entry[f"{key}_ci"]}, "x")
                name = key[: -len("_rate")].replace("_", " ")
                out.setdefault(str(agent), {})[name if "causal" in name else f"causal {name}"] = Bar(
                    number(value), low, high
                )
    return out


def reliability(diagnosis: ReportData | Mapping[str, Any]) -> BarChart:
    """Per agent: contributor, potential and successful sabotage rates (and causal ones)."""
    data = _data(diagnosis)
    summary = data.result
    causal = _causal_rates(data)
    causal_names = sorted({name for rates in causal.values() for name in rates})
    series = [name for _, name in PROFILE_RATES] + causal_names
    values, shown, left_out = [], [], []
    for agent, entry in summary.agents.items():
        row = [_bar(summary, getattr(entry, key), f"agents.{agent}.{key}") for key, _ in PROFILE_RATES]
        row += [causal.get(agent, {}).get(name, Bar(None)) for name in causal_names]
        if not any(bar.value for bar in row):  # no answer, or every rate 0: nothing to draw
            left_out.append(f"{agent} ({entry.n} answered{', every rate 0' if entry.n else ''})")
            continue
        shown.append(agent)
        values.append(row)
    note = f"Not drawn, nothing to show: {', '.join(left_out)}." if left_out else ""
    return BarChart(
        "reliability", "Reliability profile per agent", shown, series, values, y_label="rate", note=note
    )


def causal_vs_paper(diagnosis: ReportData | Mapping[str, Any]) -> BarChart | None:
    """Per agent: the paper's successful sabotage rate beside the counterfactual (causal)
    sabotage rate, both over the instances it answered (the ``causal`` section)."""
    causal = _data(diagnosis).section("causal")
    if not isinstance(causal, CausalSection):
        return None
    keys = (("paper_successful_sabotage_rate", "paper: successful sabotage"), ("causal_sabotage_rate", "counterfactual: causal sabotage"))
    groups, values, left_out = [], [], []
    for agent, entry in causal.agents.items():
        row = [Bar(number(getattr(entry, key)), *_interval(causal.ci, f"agents.{agent}.{key}")) for key, _ in keys]
        if not any(bar.value for bar in row):
            left_out.append(agent)
            continue
        groups.append(agent)
        values.append(row)
    if not groups:
        return None
    note = f"Not drawn, both rates 0: {', '.join(left_out)}." if left_out else ""
    return BarChart(
        "causal_vs_paper",
        "Sabotage: paper's rule vs counterfactual test",
        groups,
        [name for _, name in keys],
        values,
        y_label="rate over answered",
        note=note,
    )


def fusion_strategies(diagnosis: ReportData | Mapping[str, Any]) -> BarChart | None:
    """Per fusion strategy: fused top-1 and the shares of instances with a successful and a
    causal saboteur (the ``fusion_compare`` section), with intervals."""
    section = _data(diagnosis).section("fusion_compare")
    if not isinstance(section, FusionCompareSection) or not section.strategies:
        return None
    keys = (("top1", "fused top-1"), ("successful_sabotage", "with a successful saboteur"), ("causal_sabotage", "with a causal saboteur"))
    values = []
    for entry in section.strategies.values():
        values.append([Bar(number(entry.rates.get(key)), *_interval(entry.ci, key)) for key, _ in keys])
    return BarChart(
        "fusion_strategies",
        "Fusion strategies: top-1 and sabotage",
        list(section.strategies),
        [name for _, name in keys],
        values,
        y_label="share of instances",
    )


def sabotage_heatmap(diagnosis: ReportData | Mapping[str, Any], which: str = "successful_by_gold") -> Heatmap | None:
    """Agent x label counts of successful sabotage (by gold label, or by the label pushed)."""
    result = _data(diagnosis).result
    breakdown, labels = result.sabotage_by_label, result.labels
    if not breakdown or not labels:
        return None
    rows = list(breakdown)
    values = [[float(getattr(breakdown[a], which)[label]) for label in labels] for a in rows]
    if not any(v for row in values for v in row):
        return None  # no successful sabotage at all: the page says so instead of a blank grid
    title = {
        "successful_by_gold": "Successful sabotage by gold label",
        "successful_by_pushed_label": "Successful sabotage by the label pushed",
    }.get(which, which)
    column = "gold label" if which.endswith("gold") else "label pushed"
    return Heatmap(f"heatmap_{which}", title, rows, labels, values, row_label="agent", column_label=column)


# -- later diagnostics: calibration --------------------------------------------------------


def _reliability_line(agent: str, figures: CalibrationFigures) -> Line | None:
    """The equal-width reliability diagram of one agent (bins without answers left out)."""
    if figures.reliability is None:  # the agent never answered
        return None
    bins = figures.reliability.equal_width
    line = Line(agent, [], [], [], [], [])
    for confidence, accuracy, count in zip(bins.confidence, bins.accuracy, bins.count, strict=True):
        if confidence is None:
            continue
        line.x.append(confidence)
        line.y.append(number(accuracy))
        line.low.append(None)
        line.high.append(None)
        line.count.append(count)
    return line if line.x else None


def calibration_left_out(diagnosis: ReportData | Mapping[str, Any]) -> list[tuple[str, int]]:
    """``(agent, answers)`` of the agents whose reliability diagram is not drawn: fewer than
    :data:`~modsab.diagnostics.findings.MIN_ANSWERS` answers (modsab's calibration section)."""
    section = _data(diagnosis).section("calibration")
    if not isinstance(section, CalibrationSection) or "all" not in section.groups:
        return []
    return [(agent, f.n) for agent, f in section.groups["all"].items() if f.n < MIN_ANSWERS]


def _calibration_chart(key: str, line: Line, title: str) -> LineChart:
    return LineChart(key, title, [line], x_label="confidence", y_label="accuracy", diagonal=True)


def calibration(diagnosis: ReportData | Mapping[str, Any]) -> list[LineChart]:
    """One reliability diagram per agent (all instances), with its ECE in the title."""
    data = _data(diagnosis)
    section = data.section("calibration")
    if not isinstance(section, CalibrationSection):
        return _foreign_calibration(section)
    charts = []
    for agent, figures in section.groups["all"].items():
        if figures.n < MIN_ANSWERS:
            continue  # a diagram of one to a few dots says nothing: calibration_left_out names it
        line = _reliability_line(agent, figures)
        if line is not None:
            title = agent
            ece = number(figures.ece)
            if ece is not None:
                low, high = _interval(figures.ci or {}, "ece")
                title += f" · ECE {ece:.3f}" + ("" if low is None else f" [{low:.3f}, {high:.3f}]")
            key = f"calibration_{re.sub(r'[^A-Za-z0-9_.-]', '_', agent)}_{len(charts)}"
            charts.append(_calibration_chart(key, line, title))
    return charts


# -- sections of another shape (read defensively) -------------------------------------------

_CONFIDENCE_KEYS = ("mean_confidence", "confidence", "avg_confidence", "conf", "mean_conf")
_ACCURACY_KEYS = ("accuracy", "acc", "frequency", "observed", "hit_rate", "empirical")
_COUNT_KEYS = ("count", "n", "n_instances", "support")


def _first(entry: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in entry:
            return entry[key]
    return None


def _bin_rows(bins: Any) -> list[dict[str, Any]]:
    """Bins as a list of dicts, from a list of dicts or a dict of parallel lists."""
    if isinstance(bins, list):
        return [b for b in bins if isinstance(b, dict)]
    if isinstance(bins, dict):
        lists = {k: v for k, v in bins.items() if isinstance(v, list)}
        if lists:
            n = min(len(v) for v in lists.values())
            return [{k: v[i] for k, v in lists.items()} for i in range(n)]
    return []


def _calibration_line(agent: str, entry: Any) -> Line | None:
    bins = entry.get("bins", entry.get("reliability")) if isinstance(entry, dict) else entry
    if isinstance(bins, dict) and isinstance(bins.get("equal_width"), dict):
        bins = bins["equal_width"]  # modsab calibration: {"equal_width": {...}, "equal_mass": {...}}
    line = Line(agent, [], [], [], [], [])
    for row in _bin_rows(bins):
        x = number(_first(row, _CONFIDENCE_KEYS))
        if x is None:
            lo, hi = (
                number(_first(row, ("lo", "low", "bin_lower", "lower"))),
                number(_first(row, ("hi", "high", "bin_upper", "upper"))),
            )
            x = None if lo is None or hi is None else (lo + hi) / 2
        y = number(_first(row, _ACCURACY_KEYS))
        if x is None:
            continue
        interval = _first(row, ("ci", "interval", "accuracy_ci"))
        low, high = _interval({"x": interval}, "x") if isinstance(interval, list) else (None, None)
        count = number(_first(row, _COUNT_KEYS))
        line.x.append(x / 100 if x > 1 else x)
        line.y.append(y)
        line.low.append(low)
        line.high.append(high)
        line.count.append(None if count is None else int(count))
    return line if line.x else None


def calibration_agents(section: Any) -> dict[str, Any]:
    """``{agent: entry}`` of a calibration section: ``groups.all`` (modsab), ``agents``, or itself."""
    if not isinstance(section, dict):
        return {}
    groups = section.get("groups")
    if isinstance(groups, dict) and groups:
        chosen = groups.get("all", next(iter(groups.values())))
        return chosen if isinstance(chosen, dict) else {}
    agents = section.get("agents", section)
    return agents if isinstance(agents, dict) else {}


def _foreign_calibration(section: Any) -> list[LineChart]:
    """One reliability diagram per agent of a ``calibration`` section of another shape, when it has bins."""
    agents = calibration_agents(section)
    charts = []
    for agent, entry in agents.items() if isinstance(agents, dict) else []:
        line = _calibration_line(str(agent), entry)
        if line is not None:
            title = str(agent)
            ece = number(entry.get("ece")) if isinstance(entry, dict) else None
            if ece is not None:
                low, high = _interval(entry.get("ci") or {}, "ece")
                title += f" · ECE {ece:.3f}" + ("" if low is None else f" [{low:.3f}, {high:.3f}]")
            key = f"calibration_{re.sub(r'[^A-Za-z0-9_.-]', '_', str(agent))}_{len(charts)}"
            charts.append(_calibration_chart(key, line, title))
    return charts


def table_rows(section: Any) -> list[dict[str, Any]]:
    """A diagnostics section as flat table rows: list of dicts, dict of dicts, or columns.

    Nested dicts are flattened one level with dotted names (``agents.audio``); lists
    and deeper values are left out of the row (they are in the JSON).
    """
    if isinstance(section, dict) and isinstance(section.get("agents"), dict):
        section = section["agents"]  # {"agents": {name: {...}}, ...}: one row per agent
    if isinstance(section, list):
        items = [(None, row) for row in section]
    elif isinstance(section, dict):
        if section and all(isinstance(v, list) for v in section.values()):
            return _bin_rows(section)
        if section and all(isinstance(v, dict) for v in section.values()):
            items = list(section.items())
        else:
            items = [(None, section)]
    else:
        return []
    rows = []
    for name, row in items:
        if not isinstance(row, dict):
            continue
        flat: dict[str, Any] = {} if name is None else {"name": str(name)}
        for key, value in row.items():
            if isinstance(value, dict):
                for sub, inner in value.items():
                    if not isinstance(inner, dict | list):
                        flat[f"{key}.{sub}"] = inner
            elif not isinstance(value, list):
                flat[str(key)] = value
        rows.append(flat)
    return rows


TAU_RATES = (
    ("successful_sabotage_rate", "Successful sabotage rate by tau"),
    ("potential_sabotage_rate", "Potential sabotage rate by tau"),
)


def _tau_charts(section: TauSweepSection, tau: float | None = None) -> list[LineChart]:
    """modsab's ``tau_sweep``: per rate, one line per agent against tau, with intervals, the
    audit's ``tau`` marked; then where roles change (share of all role changes per step)."""
    points = sorted(section.points, key=lambda p: p.tau)
    if len(points) < 2:
        return []
    marker = {"marker": tau, "marker_label": f"tau = {tau:.2f}"} if tau is not None else {}
    agents = list(points[0].agents)
    x = [p.tau for p in points]
    charts = []
    for key, title in TAU_RATES:
        lines = []
        for agent in agents:
            entries = [p.agents[agent] for p in points]
            intervals = [getattr(e.ci, key) for e in entries]
            line = Line(
                agent,
                x,
                [number(getattr(e, key)) for e in entries],
                [number(low) for low, _ in intervals],
                [number(high) for _, high in intervals],
            )
            if any(v is not None for v in line.y):
                lines.append(line)
        if lines:
            charts.append(
                LineChart(f"tau_{key}", title, lines, x_label="tau", y_label="rate", x_range=(x[0], x[-1]), **marker)
            )
    changes = [p.changed_from_previous.pairs if p.changed_from_previous else 0 for p in points[1:]]
    total = sum(changes)
    if total:
        mid = [round((a.tau + b.tau) / 2, 4) for a, b in zip(points, points[1:], strict=False)]
        line = Line("role changes", mid, [c / total for c in changes], count=changes)
        charts.append(
            LineChart(
                "tau_role_changes",
                f"Role changes per tau step (of {total})",
                [line],
                x_label="tau (between neighbouring values)",
                y_label="share of role changes",
                x_range=(x[0], x[-1]),
                **marker,
            )
        )
    return charts


def _tau_points(section: dict[str, Any]) -> list[LineChart]:
    """A ``tau_sweep`` of another shape with ``points: [{tau, agents: {name: {rate, ci: {rate: [lo, hi]}}}}]``."""
    points = sorted((p for p in section["points"] if number(p.get("tau")) is not None), key=lambda p: p["tau"])
    if len(points) < 2:
        return []
    agents = list(points[0].get("agents") or {})
    x = [float(p["tau"]) for p in points]
    charts = []
    for key, title in TAU_RATES:
        lines = []
        for agent in agents:
            entries = [(p.get("agents") or {}).get(agent) or {} for p in points]
            intervals = [_interval(e.get("ci") or {}, key) for e in entries]
            line = Line(
                agent, x, [number(e.get(key)) for e in entries], [i[0] for i in intervals], [i[1] for i in intervals]
            )
            if any(v is not None for v in line.y):
                lines.append(line)
        if lines:
            charts.append(LineChart(f"tau_{key}", title, lines, x_label="tau", y_label="rate", x_range=(x[0], x[-1])))
    return charts


def tau_sweep(diagnosis: ReportData | Mapping[str, Any]) -> list[LineChart]:
    """Rates against tau: per agent (modsab's ``points``), or one line per 0-1 column of rows."""
    data = _data(diagnosis)
    section = data.section("tau_sweep")
    if isinstance(section, TauSweepSection):
        return _tau_charts(section, data.result.tau)
    if isinstance(section, dict) and isinstance(section.get("points"), list):
        return _tau_points(section)
    rows = table_rows(section)
    rows = [r for r in rows if number(r.get("tau")) is not None]
    if len(rows) < 2:
        return []
    rows.sort(key=lambda r: r["tau"])
    columns = [c for c in rows[0] if c not in ("tau", "name") and all(number(r.get(c)) is not None for r in rows)]
    columns = [c for c in columns if all(0 <= r[c] <= 1 for r in rows)][:12]
    if not columns:
        return []
    x = [float(r["tau"]) for r in rows]
    lines = [Line(c, x, [float(r[c]) for r in rows]) for c in columns]
    return [LineChart("tau_sweep", "Rates against tau", lines, x_label="tau", y_label="rate", x_range=(x[0], x[-1]))]


def all_figures(diagnosis: ReportData | Mapping[str, Any]) -> list[Figure]:
    """Every figure the diagnosis supports, in page order (a JSON dict is validated first)."""
    data = _data(diagnosis)
    figures: list[Figure] = [headline(data), reliability(data)]
    for which in ("successful_by_gold", "successful_by_pushed_label"):
        heat = sabotage_heatmap(data, which)
        if heat is not None:
            figures.append(heat)
    figures += [f for f in (causal_vs_paper(data), fusion_strategies(data)) if f is not None]
    figures += calibration(data)
    figures += tau_sweep(data)
    return figures


def to_json(figures: list[Figure]) -> list[dict[str, Any]]:
    """The figures as plain JSON data (embedded in the page, written beside static files)."""
    return [asdict(f) for f in figures]
