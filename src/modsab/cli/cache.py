"""``modsab cache ls / stats / clear``: inspect the shared agent response cache."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

cache_app = typer.Typer(
    help="Inspect or clear the shared agent response cache.", no_args_is_help=True
)

CACHE_DIR = typer.Option(
    None, "--cache-dir", help="Cache folder (default $MODSAB_CACHE_DIR or ~/.cache/modsab)."
)


def _open(cache_dir: Path | None):
    from modsab.agents.run import default_cache_dir
    from modsab.agents.store import ResponseCache

    return ResponseCache(cache_dir or default_cache_dir())


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


@cache_app.command("ls")
def ls(cache_dir: Path = CACHE_DIR) -> None:
    """One line per (endpoint, model, prompt version): entries, tokens, hits, dates."""
    from rich.console import Console
    from rich.table import Table

    cache = _open(cache_dir)
    table = Table("base url", "model", "prompt", "entries", "tokens", "hits", "first", "last")
    for group in cache.groups():
        table.add_row(
            group["base_url"],
            group["model"],
            group["prompt_version"],
            str(group["entries"]),
            str(group["prompt_tokens"] + group["completion_tokens"]),
            str(group["hits"]),
            _when(group["first"]),
            _when(group["last"]),
        )
    Console().print(table)
    cache.close()


@cache_app.command("stats")
def stats(cache_dir: Path = CACHE_DIR) -> None:
    """Totals: entries, tokens, hits, size on disk."""
    cache = _open(cache_dir)
    groups = cache.groups()
    entries = sum(g["entries"] for g in groups)
    tokens = sum(g["prompt_tokens"] + g["completion_tokens"] for g in groups)
    hits = sum(g["hits"] for g in groups)
    size = sum(p.stat().st_size for p in cache.path.parent.glob(cache.path.name + "*"))
    typer.echo(
        f"cache {cache.path}\nentries {entries}\nmodels {len({g['model'] for g in groups})}\n"
        f"tokens {tokens}\nhits {hits}\nbytes {size}"
    )
    cache.close()


@cache_app.command("clear")
def clear(
    cache_dir: Path = CACHE_DIR,
    model: str = typer.Option(None, "--model", help="Only this model's entries."),
    older_than_days: float = typer.Option(
        None, "--older-than-days", help="Only entries older than this."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
) -> None:
    """Delete cached responses (all, or by model / age)."""
    if not yes:
        typer.confirm("Delete cached responses?", abort=True)
    cache = _open(cache_dir)
    removed = cache.clear(
        model=model, older_than_s=None if older_than_days is None else older_than_days * 86400
    )
    cache.close()
    typer.echo(f"removed {removed} entries")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
