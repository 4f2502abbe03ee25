"""``modsab diagnose``: the paper's tables for predictions a user already has."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from modsab.cli import options


def diagnose_command(
    predictions: Path = typer.Argument(..., help=options.PREDICTIONS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables."),
    instances: Path = typer.Option(None, "--instances", help="Write one row per instance to .parquet, .csv or .jsonl."),
    executor: str = options.EXECUTOR,
    ray_address: str = options.RAY_ADDRESS,
    workers: int = options.WORKERS,
    **audit_options,
) -> None:
    """Fuse per-modality answers, audit every instance, print the paper's tables.

    --causal, --shapley, --calibration, --fusion-compare and --tau-sweep (or --all; one flag
    per registered diagnostic) add the diagnostics beyond the paper; cross-fitted parts use
    --folds seeded folds. With --executor ray a directory of Parquet files is reduced file by
    file on the cluster (each file read where its task runs) and merged here: the same result.
    """
    from modsab.run.executors import command_executor

    kwargs = options.diagnose_kwargs(audit_options)
    with command_executor(executor, workers=workers, ray_address=ray_address, batch_size=1) as pool:
        extra = {} if pool is None else {"executor": pool}
        _diagnose_and_print(predictions, as_json=as_json, instances=instances, **kwargs, **extra)


def _diagnose_and_print(predictions: Path, *, as_json: bool, instances: Path | None, **diagnose_options) -> None:
    """Diagnose, then print tables (or the JSON) and write the instances table when asked."""
    from rich.console import Console

    from modsab.core.diagnosis import diagnose
    from modsab.views.terminal import print_summary

    err = Console(stderr=True)
    with err.status("loading and auditing predictions", spinner="dots"):
        result = diagnose(predictions, **diagnose_options)
        payload = result.to_dict()
        if instances is not None:
            written = result.write_instances(instances)
    if as_json:
        typer.echo(json.dumps(payload, ensure_ascii=False, allow_nan=False))
    else:
        print_summary(payload)
    if instances is not None:
        err.print(f"instances written to {written}")


def demo_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables."),
    instances: Path = typer.Option(None, "--instances", help="Also write the per-instance table here."),
) -> None:
    """Diagnose the bundled demo predictions (synthetic, MELD labels, four agents, TAV as Base T1)."""
    from importlib.resources import files

    path = Path(str(files("modsab") / "data" / "demo_predictions.jsonl"))
    _diagnose_and_print(
        path,
        as_json=as_json,
        instances=instances,
        labels="meld",
        agents_order=["text", "audio", "vision", "tav"],
        fuse=["text", "audio", "vision", "tav"],
        baseline="tav",
        bootstrap=1000,
        seed=0,
    )


def register(app: typer.Typer) -> None:
    app.command("diagnose")(options.with_diagnose_options(diagnose_command))
    app.command("demo")(demo_command)
