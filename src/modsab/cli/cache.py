"""``modsab cache ls / stats / clear``: inspect the shared agent response cache."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from pathlib import Path

import typer

cache_app = typer.Typer(
    help="Inspect or clear the shared agent response cache.", no_args_is_help=True
)

CACHE_DIR = typer.Option(
    None, "--cache-dir", help="Cache folder (default $MODSAB_CACHE_DIR or ~/.cache/modsab)."
)


def _open(cache_dir: Path | None):
    """The cache, or ``None`` (after saying so) when there is none: looking never creates one."""
    from modsab.agents.run import default_cache_dir
    from modsab.agents.store import ResponseCache

    folder = Path(cache_dir or default_cache_dir())
    if not (folder / ResponseCache.FILENAME).is_file():
        typer.echo(f"no cache at {folder / ResponseCache.FILENAME}")
        return None
    return ResponseCache(folder)


@contextmanager
def _reading(cache):
    """Close the cache afterwards; a corrupt database is an error naming the file."""
    import sqlite3

    from modsab.agents.store import unreadable

    try:
        yield cache
    except sqlite3.DatabaseError as error:
        raise unreadable(cache.path, error) from None
    finally:
        cache.close()


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


@cache_app.command("ls")
def ls(cache_dir: Path = CACHE_DIR) -> None:
    """One line per (endpoint, model, prompt version): entries, tokens, hits, dates."""
    from rich.console import Console
    from rich.table import Table

    cache = _open(cache_dir)
    if cache is None:
        return
    table = Table("base url", "model", "prompt", "entries", "tokens", "hits", "first", "last")
    with _reading(cache):
        groups = cache.groups()
    for group in groups:
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


@cache_app.command("stats")
def stats(cache_dir: Path = CACHE_DIR) -> None:
    """Totals: entries, tokens, hits, size on disk."""
    cache = _open(cache_dir)
    if cache is None:
        return
    with _reading(cache):
        groups = cache.groups()
    entries = sum(g["entries"] for g in groups)
    tokens = sum(g["prompt_tokens"] + g["completion_tokens"] for g in groups)
    hits = sum(g["hits"] for g in groups)
    size = sum(p.stat().st_size for p in cache.path.parent.glob(cache.path.name + "*"))
    typer.echo(
        f"cache {cache.path}\nentries {entries}\nmodels {len({g['model'] for g in groups})}\n"
        f"tokens {tokens}\nhits {hits}\nbytes {size}"
    )


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
    cache = _open(cache_dir)
    if cache is None:
        typer.echo("nothing to clear")
        return
    if not yes and not typer.confirm("Delete cached responses?"):
        cache.close()
        raise typer.Abort()
    with _reading(cache):
        removed = cache.clear(
            model=model, older_than_s=None if older_than_days is None else older_than_days * 86400
        )
    typer.echo(f"removed {removed} entries")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
