"""``modsab view``: a local web app over a run directory (filters, sorting, paging on the server)."""

from __future__ import annotations

from pathlib import Path

import typer


def view_command(
    run: Path = typer.Argument(
        ...,
        help="Run directory with instances.parquet (and when present diagnosis.json, descriptors.parquet, "
        "the agents' run stores), or an instances .parquet file on its own.",
    ),
    port: int = typer.Option(8765, "--port", help="Port on 127.0.0.1 (0: any free port; the address is printed)."),
    memory: bool = typer.Option(
        None,
        "--memory/--no-memory",
        help="Copy the table into memory in the background after startup, for faster filters "
        "(default: when it has at most 100M cells).",
        show_default=False,
    ),
) -> None:
    """Browse every instance of a run in the browser: a server on 127.0.0.1 only, Ctrl-C stops it.

    Filters, sorting and paging run in DuckDB over instances.parquet: a million instances open
    in about a second. report.html stays the page to share."""
    from modsab.contract.errors import InputError

    if not 0 <= port <= 65535:
        raise InputError(f"--port {port} is not a port number", hint="0 to 65535 (0: any free port)")
    try:
        import duckdb  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise InputError(f"modsab view needs {error.name}", hint="pip install 'modsab[view]'") from None
    from modsab.views.viewer import serve

    serve(run, port=port, memory=memory)


def register(app: typer.Typer) -> None:
    app.command("view")(view_command)
