"""``modsab report``: one self-contained HTML page for a run, and static figures."""

from __future__ import annotations

from pathlib import Path

import typer


def report_command(
    run: Path = typer.Argument(
        ...,
        help="Predictions file (.jsonl, .csv, .parquet) or a run directory (predictions.*, and when present "
        "diagnosis.json, descriptors.parquet, a SQLite store of raw answers, run.json/config.json).",
    ),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    figures: Path = typer.Option(
        None, "--figures", help="Also write each figure as PNG and SVG (matplotlib) into this directory."
    ),
    labels: str = typer.Option(
        None, "--labels", help="Comma-separated label set in tie-break order, or a preset (meld, ravdess, iemocap4...)."
    ),
    scale: str = typer.Option("percent", "--scale", help="'percent' reads 0-100, 'unit' reads 0-1."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip invalid records instead of failing."),
    weights: str = typer.Option("uniform", "--weights", help="'uniform' (w=1) or 'quality' (w=q/100)."),
    fuse: str = typer.Option(None, "--fuse", help="Comma-separated agents to fuse. Default: all but the baseline."),
    baseline: str = typer.Option(None, "--baseline", help="Agent whose own top-1 is reported as Base T1."),
    tau: float = typer.Option(0.70, "--tau", help="Confidence threshold of potential sabotage."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the intervals (0: none)."),
    title: str = typer.Option(None, "--title", help="Page title. Default: from the run directory name."),
) -> None:
    """Write one offline HTML report: headline, reliability profile, sabotage heatmap, instance browser."""
    from rich.console import Console

    from modsab.report import report_from_path

    err = Console(stderr=True)
    with err.status("building the report", spinner="dots"):
        written = report_from_path(
            run,
            out,
            figures=figures,
            title=title,
            labels=labels,
            scale=scale,
            skip_invalid=skip_invalid,
            weights=weights,
            fuse=[a.strip() for a in fuse.split(",") if a.strip()] if fuse else None,
            baseline=baseline,
            tau=tau,
            bootstrap=bootstrap,
        )
    size = written.stat().st_size / 1e6
    err.print(f"report written to {written} ({size:.1f} MB)")
    if figures is not None:
        err.print(f"figures (PNG, SVG, figures.json) written to {figures}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
