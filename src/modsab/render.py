"""Terminal view of a diagnosis: the paper's tables, each figure with its interval."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text


def _figure(value: float | None, interval: list[float | None] | None) -> Text:
    if value is None:
        return Text("-", style="dim")
    text = Text(f"{value:.2f}")
    if interval and interval[0] is not None:
        text.append(f" [{interval[0]:.2f}–{interval[1]:.2f}]", style="dim")
    return text


def _table(title: str) -> Table:
    return Table(title=Text(title, style="bold"), title_justify="left", show_edge=False, pad_edge=False)


def fusion_table(summary: dict[str, Any], title: str) -> Table:
    table = _table(title)
    ci = summary["ci"]
    table.add_column("Base T1" + (f" ({summary['baseline']})" if summary.get("baseline") else ""))
    for k in summary["fusion_topk"]:
        table.add_column(f"Fus T{k}")
    row = [_figure(summary["baseline_top1"], ci.get("baseline_top1"))]
    row += [_figure(v, ci.get(f"fusion_topk.{k}")) for k, v in summary["fusion_topk"].items()]
    table.add_row(*row)
    return table


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


def agents_table(summary: dict[str, Any], title: str) -> Table:
    """Per-agent rates over the instances each agent answered."""
    table = _table(title)
    for header in ("agent", "n", "abstained", "invalid labels"):
        table.add_column(header, justify="left" if header == "agent" else "right")
    for _, header in RATE_COLUMNS:
        table.add_column(header)
    ci = summary["ci"]
    for name, entry in summary["agents"].items():
        label = name if entry["fused"] else f"{name} (not fused)"
        row: list[Any] = [label, str(entry["n"]), str(entry["abstained"]), str(entry["invalid_labels"])]
        row += [_figure(entry[key], ci.get(f"agents.{name}.{key}")) for key, _ in RATE_COLUMNS]
        table.add_row(*row)
    return table


def shares_table(summary: dict[str, Any], title: str) -> Table:
    """Each fused agent's part of all fused agents' events."""
    table = _table(title)
    table.add_column("agent")
    for _, header in SHARE_COLUMNS:
        table.add_column(header)
    ci = summary["ci"]
    for name, entry in summary["agents"].items():
        if entry["fused"]:
            row: list[Any] = [name]
            row += [_figure(entry[key], ci.get(f"agents.{name}.{key}")) for key, _ in SHARE_COLUMNS]
            table.add_row(*row)
    return table


def summary_renderable(result: dict[str, Any]) -> Group:
    """The whole terminal report for ``Diagnosis.to_dict()``."""
    level = int(round(result["bootstrap"]["level"] * 100))
    head = Text()
    head.append(f"{result['n_instances']} instances", style="bold")
    head.append(f" from {result['source']}\n")
    head.append(f"labels ({result['label_source']}): {', '.join(result['labels'])}\n")
    head.append(
        f"fusion: {result['weights']} weights over {', '.join(result['fused_agents'])}; tau = {result['tau']:.2f}"
    )
    if result["bootstrap"]["resamples"]:
        head.append(f"; [{level}% bootstrap interval, {result['bootstrap']['resamples']} resamples]")
    notes = []
    if result["n_without_gold"]:
        notes.append(f"{result['n_without_gold']} instances without gold left out")
    if result["n_skipped"]:
        notes.append(f"{result['n_skipped']} invalid records skipped (see --json 'skipped')")
    invalid = {a: c for a, c in result["invalid_labels"].items() if c}
    if invalid:
        examples = result["invalid_label_examples"]
        notes.append(
            "candidate labels outside the label set, dropped: "
            + "; ".join(f"{a} {c} (e.g. {', '.join(examples.get(a, [])[:3])})" for a, c in invalid.items())
        )
    parts: list[Any] = [head]
    if notes:
        parts.append(Text("\n".join("note: " + n for n in notes), style="yellow"))
    parts.append(Text(""))
    parts.append(fusion_table(result, "Fusion top-k"))
    parts.append(Text(""))
    parts.append(agents_table(result, "Per-agent audit (rates over the instances each agent answered)"))
    parts.append(Text(""))
    parts.append(shares_table(result, "Shares of all fused agents' events"))
    for name, summary in result.get("by_dataset", {}).items():
        parts.append(Text(""))
        parts.append(fusion_table(summary, f"{name}: fusion top-k (n = {summary['n_instances']})"))
        parts.append(Text(""))
        parts.append(agents_table(summary, f"{name}: per-agent audit"))
        parts.append(Text(""))
        parts.append(shares_table(summary, f"{name}: shares"))
    return Group(*parts)


def print_summary(result: dict[str, Any], console: Console | None = None) -> None:
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
