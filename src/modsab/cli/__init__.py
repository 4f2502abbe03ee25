"""The ``modsab`` command line.

Each sub-command lives in its own module with a ``register(app)`` function; heavy
imports (models, media) happen inside the commands, so ``modsab --help`` is instant.
Bad input ends with a one-line error and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from modsab.contract.errors import InputError

#: Modules under ``modsab.cli`` that add commands. Add one line per command module.
COMMAND_MODULES: tuple[str, ...] = ("run", "diagnose", "describe", "agents", "cache", "report", "synth", "schema", "view")

app = typer.Typer(
    name="modsab",
    help="Audit multimodal models one modality at a time: which modality sabotages the fused answer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from modsab import __version__

        typer.echo(f"modsab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Audit multimodal models one modality at a time."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"modsab.cli.{_name}").register(app)

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turn :class:`InputError` into exit 2."""
    try:
        app(args=argv, standalone_mode=False)
    except InputError as error:
        err_console.print(f"[bold red]error:[/] {escape(error.render())}", emoji=False)
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted; completed work is kept, run the same command to resume")
        sys.exit(130)
    except Exception as error:  # click usage errors carry their own exit codes
        if isinstance(error, _click_exceptions()):
            error.show()
            sys.exit(error.exit_code)
        raise


def _click_exceptions() -> tuple[type[Exception], ...]:
    """The ``ClickException`` classes typer may raise: its vendored copy of click
    (``typer._click``, typer >= 0.20) and the click package (older typer)."""
    found: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)
