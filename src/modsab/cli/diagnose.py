"""``modsab diagnose``: the paper's tables for predictions a user already has."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from modsab.cli import options


def diagnose_command(
    predictions: Path = typer.Argument(..., help=options.PREDICTIONS_HELP),
    labels: str = options.LABELS,
    scale: str = options.SCALE,
    synonyms: Path = options.SYNONYMS,
    strict: bool = options.STRICT,
    skip_invalid: bool = options.SKIP_INVALID,
    weights: str = options.WEIGHTS,
    fuse: str = options.FUSE,
    baseline: str = options.BASELINE,
    tau: float = options.TAU,
    k: int = options.K,
    bootstrap: int = options.BOOTSTRAP,
    seed: int = options.SEED,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables."),
    instances: Path = typer.Option(None, "--instances", help="Write one row per instance to .parquet, .csv or .jsonl."),
    causal: bool = typer.Option(
        False, "--causal", help="Counterfactual sabotage: fuse again without each agent and each pair."
    ),
    shapley: bool = typer.Option(False, "--shapley", help="Exact Shapley shares of each agent (2^M fusions)."),
    calibration: bool = typer.Option(
        False, "--calibration", help="Calibration, self-assessment AUROC, cross-fitted recalibration."
    ),
    fusion_compare: bool = typer.Option(
        False, "--fusion-compare", help="Fusion strategies side by side, with paired differences to uniform."
    ),
    tau_sweep: bool = typer.Option(False, "--tau-sweep", help="Sabotage rates and role changes over tau 0.50-0.95."),
    run_all: bool = typer.Option(False, "--all", help="All five diagnostics above."),
    folds: int = typer.Option(
        5, "--folds", help="Seeded instance folds for cross-fitting (recalibration, learned weights)."
    ),
) -> None:
    """Fuse per-modality answers, audit every instance, print the paper's tables.

    --causal, --shapley, --calibration, --fusion-compare and --tau-sweep (or --all) add
    the diagnostics beyond the paper; cross-fitted parts use --folds seeded instance folds.
    """
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
            fuse=options.agent_list(fuse),
            baseline=baseline,
            tau=tau,
            k=k,
            bootstrap=bootstrap,
            seed=seed,
            causal=causal or run_all,
            shapley=shapley or run_all,
            calibration=calibration or run_all,
            fusion_compare=fusion_compare or run_all,
            tau_sweep=tau_sweep or run_all,
            n_folds=folds,
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
