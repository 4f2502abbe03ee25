"""``modsab diagnose``: the paper's tables for predictions a user already has."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def diagnose_command(
    predictions: Path = typer.Argument(
        ..., help="Predictions file (.jsonl, .csv, .parquet) or a run directory holding predictions.*"
    ),
    labels: str = typer.Option(
        None,
        "--labels",
        help="Comma-separated label set in tie-break order, or a preset (meld, ravdess, iemocap4, "
        "iemocap6). Default: the sorted set of gold values.",
    ),
    scale: str = typer.Option("percent", "--scale", help="'percent' reads 0-100, 'unit' reads 0-1."),
    synonyms: Path = typer.Option(None, "--synonyms", help="JSON map of extra label synonyms."),
    strict: bool = typer.Option(False, "--strict", help="A candidate label outside the set is an error."),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Skip invalid records (counted and listed) instead of failing."
    ),
    weights: str = typer.Option("uniform", "--weights", help="'uniform' (w=1) or 'quality' (w=q/100)."),
    fuse: str = typer.Option(None, "--fuse", help="Comma-separated agents to fuse. Default: all."),
    baseline: str = typer.Option(None, "--baseline", help="Agent whose own top-1 is reported as Base T1."),
    tau: float = typer.Option(0.70, "--tau", help="Confidence threshold of potential sabotage."),
    k: int = typer.Option(5, "--k", help="Largest k of fused top-k (capped at the number of labels)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples (0: no intervals)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables."),
    instances: Path = typer.Option(None, "--instances", help="Write one row per instance to .parquet, .csv or .jsonl."),
) -> None:
    """Fuse per-modality answers, audit every instance, print the paper's tables."""
    from rich.console import Console

    from modsab.diagnosis import diagnose
    from modsab.render import print_summary

    err = Console(stderr=True)
    with err.status("loading and auditing predictions", spinner="dots"):
        result = diagnose(
            predictions,
            labels=labels,
            scale=scale,
            synonyms=synonyms,
            strict=strict,
            skip_invalid=skip_invalid,
            weights=weights,
            fuse=[a.strip() for a in fuse.split(",") if a.strip()] if fuse else None,
            baseline=baseline,
            tau=tau,
            k=k,
            bootstrap=bootstrap,
            seed=seed,
        )
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
    diagnose_command(
        path,
        labels="meld",
        scale="percent",
        synonyms=None,
        strict=False,
        skip_invalid=False,
        weights="uniform",
        fuse="text,audio,vision,tav",
        baseline="tav",
        tau=0.70,
        k=5,
        bootstrap=1000,
        seed=0,
        as_json=as_json,
        instances=instances,
    )


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose_command)
    app.command("demo")(demo_command)
