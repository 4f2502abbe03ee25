"""``modsab schema``: the JSON Schema of what modsab writes, generated from its typed models."""

from __future__ import annotations

import json

import typer

schema_app = typer.Typer(help="Print the JSON Schema of a file modsab writes.", no_args_is_help=True)


@schema_app.command("diagnosis")
def diagnosis_command() -> None:
    """The JSON Schema of diagnosis.json (`modsab diagnose --json`, `modsab run`), from the typed models."""
    from modsab.core.result import DiagnosisResult

    typer.echo(json.dumps(DiagnosisResult.model_json_schema(), indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    app.add_typer(schema_app, name="schema")
