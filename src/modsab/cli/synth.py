"""``modsab synth``: predictions with planted saboteurs, and how well each detector finds them."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def synth_command(
    out: Path = typer.Argument(..., help="Directory to write predictions.jsonl, truth.jsonl and synth.json into."),
    n: int = typer.Option(2000, "--n", help="Number of instances."),
    agents: str = typer.Option("text,audio,vision,joint", "--agents", help="Comma-separated agent names."),
    accuracy: str = typer.Option(
        "0.75,0.60,0.55,0.70", "--accuracy", help="Comma-separated accuracy of each agent (one per agent)."
    ),
    labels: str = typer.Option("anger,disgust,fear,joy,neutral,sadness,surprise", "--labels", help="Label set."),
    saboteur: str = typer.Option("audio", "--saboteur", help="The agent planted as a confident saboteur."),
    sabotage_rate: float = typer.Option(0.15, "--sabotage-rate", help="Share of instances where it is planted."),
    scenario: str = typer.Option(
        "clear", "--scenario", help="'clear': the others are right but unsure where planted; 'mixed': as usual."
    ),
    overconfidence: float = typer.Option(
        1.0, "--overconfidence", help="Reported confidence = sigmoid(x * logit(true probability)); 1 is calibrated."
    ),
    datasets: int = typer.Option(1, "--datasets", help="Split instances over this many dataset names."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator."),
    evaluate: bool = typer.Option(
        True, "--evaluate/--no-evaluate", help="Print precision and recall of each sabotage detector."
    ),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples of the detector scores."),
) -> None:
    """Generate predictions with known planted saboteurs and score the sabotage detectors."""
    from modsab.contract.errors import InputError
    from modsab.data import synth
    from modsab.views.terminal import print_detectors

    try:
        accuracies = tuple(float(a) for a in _split(accuracy))
    except ValueError:
        raise InputError(f"--accuracy '{accuracy}' is not a list of numbers", hint="e.g. 0.8,0.6,0.6,0.7") from None
    config = synth.SynthConfig(
        n_instances=n,
        agents=_split(agents),
        accuracy=accuracies,
        labels=_split(labels),
        saboteur=saboteur,
        sabotage_rate=sabotage_rate,
        scenario=scenario,
        overconfidence=overconfidence,
        n_datasets=datasets,
        seed=seed,
    )
    pset, planted = synth.generate(config)
    paths = synth.write(pset, planted, out, config)
    typer.echo(json.dumps({"written": paths, "planted_pairs": int(planted.sum())}), err=True)
    if evaluate:
        print_detectors(synth.detector_scores(pset, planted, resamples=bootstrap, seed=seed))


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_command)
