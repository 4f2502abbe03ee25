"""Terminal view of a diagnosis: the paper's tables, each figure with its interval.

The tables read the typed result (:class:`~modsab.core.result.DiagnosisResult`); a JSON
dict given to :func:`print_summary` or :func:`summary_renderable` is validated into it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from modsab.core.result import DiagnosisFields, DiagnosisResult, Summary
from modsab.diagnostics.ablation import STREAM_FIGURES
from modsab.diagnostics.calibration import CalibrationSection
from modsab.diagnostics.causal import CausalSection
from modsab.diagnostics.fusion_compare import FusionCompareSection
from modsab.diagnostics.shapley import ShapleySection
from modsab.diagnostics.tau_sweep import TauSweepSection


def _figure(value: float | None, interval: list[float | None] | None, *, fmt: str = ".2f", sep: str = "–") -> Text:
    if value is None:
        return Text("-", style="dim")
    text = Text(f"{value:{fmt}}")
    if interval and interval[0] is not None:
        text.append(f" [{interval[0]:{fmt}}{sep}{interval[1]:{fmt}}]", style="dim")
    return text


def _table(title: str) -> Table:
    return Table(title=Text(title, style="bold"), title_justify="left", show_edge=False, pad_edge=False)


#: Said under the fusion table when no agent is the baseline (instead of an empty Base T1).
NO_BASELINE = "no Base T1: no baseline agent was named (--baseline NAME, or [fusion] baseline in a run config)"


def fusion_table(summary: Summary, title: str) -> Table:
    """Base T1 (the baseline agent's top-1, when one is named) and fused top-1..top-k."""
    table = _table(title)
    ci = summary.ci
    row: list[Any] = []
    if summary.baseline:
        table.add_column(f"Base T1 ({summary.baseline})")
        row.append(_figure(summary.baseline_top1, ci.get("baseline_top1")))
    else:
        table.caption = Text(NO_BASELINE)  # a Text: the brackets are not markup
        table.caption_justify = "left"
    for k in summary.fusion_topk:
        table.add_column(f"Fus T{k}")
    row += [_figure(v, ci.get(f"fusion_topk.{k}")) for k, v in summary.fusion_topk.items()]
    table.add_row(*row)
    return table


def findings_block(result: DiagnosisFields) -> Group | None:
    """``findings``: what the audit concluded, one sentence each, with the JSON key of the
    section that supports it. None when there is no finding."""
    found = getattr(result, "findings", None)
    if not found:
        return None
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for finding in found:
        text = Text(finding.text)
        text.append(f" (see {finding.section})", style="dim")
        grid.add_row("•", text)
    return Group(Text("Findings", style="bold"), grid)


RATE_COLUMNS = (
    ("contributor_rate", "contributor (top-1)"),
    ("potential_sabotage_rate", "potential sabotage"),
    ("successful_sabotage_rate", "successful sabotage"),
)
SHARE_COLUMNS = (
    ("contributor_share", "contributor share"),
    ("potential_sabotage_share", "potential share"),
    ("successful_sabotage_share", "successful share"),
)


def agents_table(summary: Summary, title: str) -> Table:
    """Per-agent rates over the instances each agent answered."""
    table = _table(title)
    for header in ("agent", "n", "abstained", "invalid labels"):
        table.add_column(header, justify="left" if header == "agent" else "right")
    for _, header in RATE_COLUMNS:
        table.add_column(header)
    ci = summary.ci
    for name, entry in summary.agents.items():
        label = name if entry.fused else f"{name} (not fused)"
        row: list[Any] = [label, str(entry.n), str(entry.abstained), str(entry.invalid_labels)]
        row += [_figure(getattr(entry, key), ci.get(f"agents.{name}.{key}")) for key, _ in RATE_COLUMNS]
        table.add_row(*row)
    return table


def shares_table(summary: Summary, title: str) -> Table:
    """Each fused agent's part of all fused agents' events."""
    table = _table(title)
    table.add_column("agent")
    for _, header in SHARE_COLUMNS:
        table.add_column(header)
    ci = summary.ci
    for name, entry in summary.agents.items():
        if entry.fused:
            row: list[Any] = [name]
            row += [_figure(getattr(entry, key), ci.get(f"agents.{name}.{key}")) for key, _ in SHARE_COLUMNS]
            table.add_row(*row)
    return table


def as_result(result: DiagnosisResult | Mapping[str, Any]) -> DiagnosisResult:
    """The typed result: ``Diagnosis.result()``, or the JSON (``to_dict()``, a diagnosis.json) validated."""
    return result if isinstance(result, DiagnosisFields) else DiagnosisResult.model_validate(result)


def summary_renderable(result: DiagnosisResult | Mapping[str, Any]) -> Group:
    """The whole terminal report for ``Diagnosis.result()`` (or its JSON, ``to_dict()``)."""
    result = as_result(result)
    level = int(round(result.bootstrap.level * 100))
    head = Text()
    head.append(f"{result.n_instances} instances", style="bold")
    head.append(f" from {result.source}\n")
    head.append(f"labels ({result.label_source}): {', '.join(result.labels)}\n")
    if result.fused_agents:
        head.append(f"fusion: {result.weights} weights over {', '.join(result.fused_agents)}; tau = {result.tau:.2f}")
    else:
        head.append("no agent records to fuse (model records with conditions only: see the ablation audit)")
    if result.bootstrap.resamples:
        head.append(f"; [{level}% bootstrap interval, {result.bootstrap.resamples} resamples]")
    notes = []
    if result.n_without_gold:
        notes.append(f"{result.n_without_gold} instances without gold left out")
    if result.n_skipped:
        notes.append(f"{result.n_skipped} invalid records skipped (see --json 'skipped')")
    invalid = {a: c for a, c in result.invalid_labels.items() if c}
    if invalid:
        examples = result.invalid_label_examples
        notes.append(
            "candidate labels outside the label set, dropped: "
            + "; ".join(f"{a} {c} (e.g. {', '.join(examples.get(a, [])[:3])})" for a, c in invalid.items())
        )
    parts: list[Any] = []
    found = findings_block(result)
    if found is not None:
        parts += [found, Text("")]
    parts.append(head)
    if notes:
        parts.append(Text("\n".join("note: " + n for n in notes), style="yellow"))
    if result.fused_agents:
        parts.append(Text(""))
        parts.append(fusion_table(result, "Fusion top-k"))
        parts.append(Text(""))
        parts.append(agents_table(result, "Per-agent audit (rates over the instances each agent answered)"))
        parts.append(Text(""))
        parts.append(shares_table(result, "Shares of all fused agents' events"))
    for name, summary in (result.by_dataset or {}).items():
        parts.append(Text(""))
        parts.append(fusion_table(summary, f"{name}: fusion top-k (n = {summary.n_instances})"))
        parts.append(Text(""))
        parts.append(agents_table(summary, f"{name}: per-agent audit"))
        parts.append(Text(""))
        parts.append(shares_table(summary, f"{name}: shares"))
    for key, view in BEYOND_VIEWS.items():
        section = getattr(result, key)
        if section is not None:
            for table in view(section):
                parts.append(Text(""))
                parts.append(table)
    return Group(*parts)


def print_summary(result: DiagnosisResult | Mapping[str, Any], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
    console.print(summary_renderable(result))


# -- diagnostics beyond the paper ------------------------------------------------------------


def _console(console: Console | None) -> Console:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
    return console


def detectors_table(scores: dict[str, Any], title: str = "Sabotage detectors against planted truth") -> Table:
    """``modsab synth``: precision and recall of each detector over (instance, agent) pairs."""
    table = _table(title)
    for header in ("detector", "flagged", "planted", "hits", "precision", "recall"):
        table.add_column(header, justify="left" if header == "detector" else "right")
    for name, entry in scores.items():
        table.add_row(
            name,
            str(entry["flagged"]),
            str(entry["planted"]),
            str(entry["hits"]),
            _figure(entry["precision"], entry["ci"]["precision"]),
            _figure(entry["recall"], entry["ci"]["recall"]),
        )
    return table


def print_detectors(scores: dict[str, Any], console: Console | None = None) -> None:
    _console(console).print(detectors_table(scores))


def causal_tables(section: CausalSection) -> list[Table]:
    """``causal``: causal vs the paper's correlational sabotage per agent, and pairs."""
    ci = section.ci
    agents = _table("Counterfactual sabotage (fuse again without the agent; rates over answered)")
    for header in ("agent", "causal sabotage", "paper successful", "causal contribution", "causal | paper"):
        agents.add_column(header)
    for header in ("both", "paper only", "causal only"):
        agents.add_column(header, justify="right")
    for name, entry in section.agents.items():
        keys = (
            "causal_sabotage_rate",
            "paper_successful_sabotage_rate",
            "causal_contribution_rate",
            "causal_given_paper",
        )
        row: list[Any] = [name] + [_figure(getattr(entry, key), ci.get(f"agents.{name}.{key}")) for key in keys]
        disagreement = entry.disagreement
        row += [str(n) for n in (disagreement.both, disagreement.paper_only, disagreement.causal_only)]
        agents.add_row(*row)
    pairs = _table("Pairwise removal (rates over all instances)")
    for header in ("pair", "jointly causal", "only jointly (neither alone)"):
        pairs.add_column(header)
    for name, entry in section.pairs.items():
        pairs.add_row(
            name,
            _figure(entry.jointly_causal_rate, ci.get(f"pairs.{name}.jointly_causal_rate")),
            _figure(entry.only_jointly_rate, ci.get(f"pairs.{name}.only_jointly_rate")),
        )
    return [agents, pairs]


def shapley_tables(section: ShapleySection) -> list[Table]:
    """``shapley``: mean Shapley value per agent, per group."""
    tables = []
    for group, entry in section.groups.items():
        table = _table(f"Shapley shares, {group} (n = {entry.n_instances}; mean per instance)")
        table.add_column("agent")
        for value in section.values:
            table.add_column(f"phi({value})")
        for name, values in entry.agents.items():
            means = [values.value(v) for v in section.values]
            table.add_row(name, *[_figure(mean.mean, mean.ci) for mean in means])
        tables.append(table)
    return tables


CALIBRATION_COLUMNS = (
    "n",
    "accuracy",
    "mean_confidence",
    "ece",
    "mce",
    "brier",
    "top_nll",
    "candidate_nll",
    "confidence_auroc",
    "quality_auroc",
)


def calibration_tables(section: CalibrationSection) -> list[Table]:
    """``calibration``: per group and agent, raw figures and held-out recalibrated ones."""
    tables = []
    for group, agents in section.groups.items():
        table = _table(f"Calibration, {group} (top label; {section.split})")
        table.add_column("agent")
        for key in CALIBRATION_COLUMNS:
            table.add_column(key.replace("_", " "), justify="right" if key == "n" else "left")
        for name, entry in agents.items():
            variants = [("", entry)] + [(f" +{m}", e) for m, e in (entry.recalibrated or {}).items()]
            for suffix, stats in variants:
                row: list[Any] = [name + suffix]
                ci = stats.ci or {}  # absent when the agent never answered
                for key in CALIBRATION_COLUMNS:
                    if key == "n":
                        row.append(str(stats.n))
                    else:
                        row.append(_figure(getattr(stats, key), ci.get(key)))
                table.add_row(*row)
        tables.append(table)
    return tables


def fusion_compare_table(section: FusionCompareSection) -> list[Table]:
    """``fusion_compare``: every strategy's figures and paired differences to the baseline."""
    table = _table(f"Fusion strategies (rates over all instances; diff = strategy - {section.baseline}, paired)")
    table.add_column("strategy")
    for figure in section.figures:
        table.add_column(figure.replace("_", " "))
    for name, entry in section.strategies.items():
        table.add_row(name, *[_figure(entry.rates[f], entry.ci[f]) for f in section.figures])
        if entry.diff is not None and entry.diff_ci is not None:
            diffs = [_signed(entry.diff[f], entry.diff_ci[f]) for f in section.figures]
            table.add_row(Text("  diff", style="dim"), *diffs)
    if section.skipped:
        table.caption = "left out: " + "; ".join(f"{name} ({why})" for name, why in section.skipped.items())
    return [table]


def _signed(value: float | None, interval: list[float | None]) -> Text:
    return _figure(value, interval, fmt="+.3f", sep=", ")


def tau_sweep_tables(section: TauSweepSection) -> list[Table]:
    """``tau_sweep``: successful sabotage rate and share per agent at each tau, and role changes."""
    points = section.points
    agents = list(points[0].agents) if points else []
    tables = []
    for key, title in (
        ("successful_sabotage_rate", "Successful sabotage rate by tau"),
        ("potential_sabotage_rate", "Potential sabotage rate by tau"),
        ("successful_sabotage_share", "Share of successful sabotage by tau"),
    ):
        table = _table(title)
        table.add_column("tau")
        for name in agents:
            table.add_column(name)
        if key == "successful_sabotage_rate":
            table.add_column("pairs changing role", justify="right")
        for point in points:
            row: list[Any] = [f"{point.tau:.2f}"]
            row += [_figure(getattr(point.agents[n], key), getattr(point.agents[n].ci, key)) for n in agents]
            if key == "successful_sabotage_rate":
                changed = point.changed_from_previous
                row.append("-" if changed is None else str(changed.pairs))
            table.add_row(*row)
        tables.append(table)
    return tables


def ablation_tables(section: dict[str, Any]) -> list[Table]:
    """``ablation``: per model its full top-1, per stream what removing (or shuffling) it does,
    per dataset the same, and which stream sabotages the agents' fusion beside the model."""
    tables = [_ablation_models(section), _ablation_streams(section, "Ablation audit")]
    groups = section.get("by_dataset") or {}
    for name, group in groups.items() if len(groups) > 1 else ():  # one dataset: the table above
        tables.append(_ablation_streams(group, f"{name}: ablation audit (n = {group['n_instances']})"))
    if section.get("fusion"):
        tables.append(_ablation_beside(section))
    return tables


def _ablation_models(section: dict[str, Any]) -> Table:
    table = _table("Models audited by ablation (top-1 over the valid full answers)")
    for header in ("model", "n", "abstained", "missing", "invalid labels", "top-1 full", "conditions"):
        numeric = header in ("n", "abstained", "missing", "invalid labels")
        table.add_column(header, justify="right" if numeric else "left")
    for name, entry in section["models"].items():
        table.add_row(
            name,
            str(entry["n"]),
            str(entry["abstained"]),
            str(entry["missing"]),
            str(entry.get("invalid_labels", 0)),
            _figure(entry["top1_full"], section["ci"].get(f"models.{name}.top1_full")),
            ", ".join(entry["conditions"]),
        )
    return table


ABLATION_COLUMNS = STREAM_FIGURES


def _ablation_streams(group: dict[str, Any], title: str) -> Table:
    """One row per (model, stream): the stream removed (``without:``), then the perceptual score
    when it was also shuffled. Rates over the instances where both answers are valid."""
    table = _table(f"{title}: the model with each stream removed (rates over paired valid answers)")
    table.add_column("model")
    table.add_column("stream")
    table.add_column("n", justify="right")
    for _, header in ABLATION_COLUMNS:
        table.add_column(header, justify="left")
    table.add_column("perceptual (shuffled)")
    ci = group["ci"]
    for model, entry in group["models"].items():
        for stream, figures in entry["streams"].items():
            prefix = f"models.{model}.streams.{stream}."
            row: list[Any] = [model, stream, str(figures["n"])]
            row += [
                _figure(figures[key], ci.get(prefix + key), fmt="+.2f" if key == "top1_drop" else ".2f")
                for key, _ in ABLATION_COLUMNS
            ]
            shuffled = figures.get("shuffled")
            row.append(
                _figure(shuffled["perceptual_score"], ci.get(prefix + "shuffled.perceptual_score"), fmt="+.2f")
                if shuffled
                else Text("-", style="dim")
            )
            table.add_row(*row)
    return table


def _ablation_beside(section: dict[str, Any]) -> Table:
    """Per stream: the fused agents reading it (leave-one-out causal sabotage of the fusion)
    beside every model with that stream removed (causal sabotage of the model)."""
    models = list(section["models"])
    table = _table("Which stream sabotages: the agents' fusion (agent left out) beside the model (stream removed)")
    table.add_column("stream")
    table.add_column("agent")
    table.add_column("fusion: causal sabotage")
    for model in models:
        table.add_column(f"{model}: causal sabotage")
    ci = section["ci"]
    agents = section["fusion"]["agents"]
    streams = list(dict.fromkeys(s for m in models for s in section["models"][m]["streams"]))
    streams += [a["stream"] for a in agents.values() if a["stream"] and a["stream"] not in streams]
    for stream in [*streams, None]:
        readers = [name for name, a in agents.items() if a["stream"] == stream] or ([None] if stream else [])
        for agent in readers:
            row: list[Any] = [stream or "(no stream)", agent or "-"]
            row.append(
                _figure(agents[agent]["causal_sabotage_rate"], ci.get(f"fusion.agents.{agent}.causal_sabotage_rate"))
                if agent
                else Text("-", style="dim")
            )
            for model in models:
                figures = section["models"][model]["streams"].get(stream) if stream else None
                key = f"models.{model}.streams.{stream}.causal_sabotage_rate"
                row.append(_figure(figures["causal_sabotage_rate"], ci.get(key)) if figures else Text("-", style="dim"))
            table.add_row(*row)
    return table


BEYOND_VIEWS = {
    "causal": causal_tables,
    "shapley": shapley_tables,
    "calibration": calibration_tables,
    "fusion_compare": fusion_compare_table,
    "tau_sweep": tau_sweep_tables,
    "ablation": ablation_tables,
}
