"""``modsab report``: one self-contained HTML page for a run, and static figures."""

from __future__ import annotations

from pathlib import Path

import typer

from modsab.cli import options


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
    title: str = typer.Option(None, "--title", help="Page title. Default: from the run directory name."),
    **audit_options,
) -> None:
    """Write one offline HTML report: headline, reliability profile, sabotage heatmap, instance browser.

    --causal, --shapley, --calibration, --fusion-compare, --tau-sweep (or --all) add those
    sections (a run directory's diagnosis.json adds the ones it holds)."""
    from rich.console import Console

    from modsab.views.report import report_from_path

    err = Console(stderr=True)
    with err.status("building the report", spinner="dots"):
        written = report_from_path(
            run,
            out,
            figures=figures,
            title=title,
            **options.diagnose_kwargs(audit_options),
        )
    size = written.stat().st_size / 1e6
    err.print(f"report written to {written} ({size:.1f} MB)")
    if figures is not None:
        err.print(f"figures (PNG, SVG, figures.json) written to {figures}")


def register(app: typer.Typer) -> None:
    app.command("report")(options.with_diagnose_options(report_command))
