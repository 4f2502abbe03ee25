"""``modsab run``: the whole study from one TOML config (see modsab.run.pipeline)."""

from __future__ import annotations

from pathlib import Path

import typer


def run_command(
    config: Path = typer.Argument(..., help="Run configuration (TOML); see the README, 'Run configuration'."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
    limit: int = typer.Option(None, "--limit", help="Only the first N instances of the dataset."),
    split: str = typer.Option(None, "--split", help="Only this split (loader-specific, e.g. test, actor01)."),
    agents: str = typer.Option(None, "--agents", help="Comma-separated subset of the config's agents."),
    as_json: bool = typer.Option(False, "--json", help="Print the diagnosis JSON on stdout instead of tables."),
    wait: bool = typer.Option(False, "--wait", help="If another run holds the run directory, wait for it to end "
                              "(default: stop with an error naming it)."),
) -> None:
    """Describe, run the agents, fuse, audit and report: every stage cached and resumable."""
    import json
    import warnings

    from rich.console import Console
    from rich.markup import escape

    from modsab.run.config import load_config
    from modsab.run.pipeline import CacheWarning, run_pipeline
    from modsab.views.terminal import print_summary

    resolved = load_config(config).narrowed(
        limit=limit, split=split, agents=[a.strip() for a in agents.split(",") if a.strip()] if agents else None
    )
    if print_config:
        typer.echo(resolved.to_toml())
        return
    err = Console(stderr=True)
    with warnings.catch_warnings():
        show = warnings.showwarning

        def show_cache_warning(message, category, *args, **kwargs):
            if issubclass(category, CacheWarning):
                err.print(f"warning: {escape(str(message))}", style="yellow", soft_wrap=True)
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = show_cache_warning
        outcome = run_pipeline(
            resolved, log=lambda text: err.print(escape(text), style="dim", soft_wrap=True),
            progress=err.is_terminal, wait=wait,
        )
    if as_json:
        typer.echo(json.dumps(outcome.diagnosis, ensure_ascii=False))
    else:
        print_summary(outcome.diagnosis)
    stages = ", ".join(f"{name} {sec:.1f} s" for name, sec in outcome.stage_seconds.items())
    err.print(f"run directory: {outcome.run_dir}  ({stages})")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
