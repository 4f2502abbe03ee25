"""Options shared by the commands that fuse and audit predictions (``diagnose``, ``report``).

One definition each, so the commands cannot drift apart in name, default or help.
"""

from __future__ import annotations

from pathlib import Path

import typer

PREDICTIONS_HELP = (
    "Predictions file (.jsonl, .csv, .parquet; .jsonl.gz, .csv.gz) or a run directory holding predictions.*"
)

LABELS = typer.Option(
    None,
    "--labels",
    help="Comma-separated label set in tie-break order, or a preset (meld, ravdess, iemocap4, "
    "iemocap6). Default: a run directory's recorded labels, else the sorted set of gold values.",
)
SCALE = typer.Option("percent", "--scale", help="'percent' reads 0-100, 'unit' reads 0-1.")
SYNONYMS: Path = typer.Option(None, "--synonyms", help="JSON map of extra label synonyms.")
STRICT = typer.Option(False, "--strict", help="A candidate label outside the set is an error.")
SKIP_INVALID = typer.Option(
    False, "--skip-invalid", help="Skip invalid records (counted and listed) instead of failing."
)
WEIGHTS = typer.Option("uniform", "--weights", help="'uniform' (w=1) or 'quality' (w=q/100).")
FUSE = typer.Option(None, "--fuse", help="Comma-separated agents to fuse. Default: all but the baseline.")
BASELINE = typer.Option(None, "--baseline", help="Agent whose own top-1 is reported as Base T1.")
AGENTS_ORDER = typer.Option(
    None,
    "--agents-order",
    help="Comma-separated order of the agents in every table and key (name each once). "
    "Default: the order a run directory recorded, else sorted names.",
)
TAU = typer.Option(0.70, "--tau", help="Confidence threshold of potential sabotage.")
K = typer.Option(5, "--k", help="Largest k of fused top-k (capped at the number of labels).")
BOOTSTRAP = typer.Option(1000, "--bootstrap", help="Bootstrap resamples (0: no intervals).")
SEED = typer.Option(0, "--seed", help="Seed of the bootstrap.")
CAUSAL = typer.Option(False, "--causal", help="Counterfactual sabotage: fuse again without each agent and each pair.")
SHAPLEY = typer.Option(False, "--shapley", help="Exact Shapley shares of each agent (2^M fusions).")
CALIBRATION = typer.Option(
    False, "--calibration", help="Calibration, self-assessment AUROC, cross-fitted recalibration."
)
FUSION_COMPARE = typer.Option(
    False, "--fusion-compare", help="Fusion strategies side by side, with paired differences to uniform."
)
TAU_SWEEP = typer.Option(False, "--tau-sweep", help="Sabotage rates and role changes over tau 0.50-0.95.")
ALL = typer.Option(False, "--all", help="All five diagnostics above.")
FOLDS = typer.Option(5, "--folds", help="Seeded instance folds for cross-fitting (recalibration, learned weights).")


DIAGNOSTICS = ("causal", "shapley", "calibration", "fusion_compare", "tau_sweep")
_PLAIN = (
    "labels", "scale", "synonyms", "strict", "skip_invalid", "weights", "baseline", "tau", "k", "bootstrap", "seed",
    "agents_order",
)


def diagnose_kwargs(params: dict) -> dict:
    """``diagnose()`` keywords from a command's parameters (``locals()`` of a command that
    takes the options above; ``run_all`` is ``--all``, ``folds`` is ``--folds``)."""
    out = {name: params[name] for name in _PLAIN}
    out["fuse"] = agent_list(params["fuse"])
    out["n_folds"] = params["folds"]
    out |= {name: bool(params[name] or params["run_all"]) for name in DIAGNOSTICS}
    return out


def agent_list(text: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None or empty -> None (the default)."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    return names or None
