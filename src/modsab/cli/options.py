"""Options shared by the commands that fuse and audit predictions (``diagnose``, ``report``).

One definition each, so the commands cannot drift apart in name, default or help; the audit
options take theirs from :class:`modsab.core.options.AuditOptions`, which the run config and
``diagnose()`` use too, and the diagnostic flags come from the registry.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path

import typer

from modsab import registry
from modsab.core.options import AuditOptions

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
AGENTS_ORDER = typer.Option(
    None,
    "--agents-order",
    help="Comma-separated order of the agents in every table and key (name each once). "
    "Default: the order a run directory recorded, else sorted names.",
)

EXECUTOR = typer.Option(
    "local", "--executor", help="Where a directory of Parquet files is reduced: local (here) or ray (one task a "
    "file on a Ray cluster, merged here; the same result)."
)
RAY_ADDRESS = typer.Option(
    None, "--ray-address", help="With --executor ray: an existing cluster (auto, ray://host:10001, host:6379). "
    "Default: start a local Ray."
)
WORKERS = typer.Option(
    None, "--workers", min=1, help="Worker processes (local) or Ray actors. Default: 1 here; on Ray one per CPU "
    "of the cluster."
)


def _audit_option(name: str, help: str | None = None) -> typer.models.OptionInfo:
    """A command option for one field of :class:`~modsab.core.options.AuditOptions`: its
    default and help come from the one definition there."""
    field = AuditOptions.model_fields[name]
    return typer.Option(field.default, f"--{name.replace('_', '-')}", help=help or field.description)


WEIGHTS = _audit_option(
    "weights", "Fusion rule: " + ", ".join(registry.fusion_rules.names()) + " ('uniform': w=1, 'quality': w=q/100)."
)
FUSE = _audit_option("fuse", "Comma-separated agents to fuse. Default: all but the baseline.")
BASELINE = _audit_option("baseline")
TAU = _audit_option("tau")
K = _audit_option("k")
BOOTSTRAP = _audit_option("bootstrap")
SEED = _audit_option("seed")
FOLDS = _audit_option("folds")
ALL = typer.Option(False, "--all", help="Every diagnostic beyond the paper (each also has its own flag).")


_PLAIN = (
    "labels", "scale", "synonyms", "strict", "skip_invalid", "weights", "baseline", "tau", "k", "bootstrap", "seed",
    "agents_order",
)


def flag(name: str) -> str:
    """The command-line flag of a diagnostic: ``fusion_compare`` -> ``--fusion-compare``."""
    return "--" + name.replace("_", "-")


#: The options ``diagnose`` and ``report`` share, in the order their ``--help`` lists them,
#: with their annotations (each command declares only its own and takes these as ``**options``).
SHARED: tuple[tuple[str, type, typer.models.OptionInfo], ...] = (
    ("labels", str, LABELS),
    ("scale", str, SCALE),
    ("synonyms", Path, SYNONYMS),
    ("strict", bool, STRICT),
    ("skip_invalid", bool, SKIP_INVALID),
    ("weights", str, WEIGHTS),
    ("fuse", str, FUSE),
    ("baseline", str, BASELINE),
    ("agents_order", str, AGENTS_ORDER),
    ("tau", float, TAU),
    ("k", int, K),
    ("bootstrap", int, BOOTSTRAP),
    ("seed", int, SEED),
    ("run_all", bool, ALL),
    ("folds", int, FOLDS),
)


def with_diagnose_options(command: Callable) -> Callable:
    """``command`` with the :data:`SHARED` audit options and one ``--<diagnostic>`` flag per
    registered diagnostic (read from :data:`modsab.registry.diagnostics`, so a new diagnostic
    needs no edit here). They reach ``command`` as keyword arguments by name; it takes them as
    ``**options`` and hands them to :func:`diagnose_kwargs`."""
    signature = inspect.signature(command)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    annotations = dict(getattr(command, "__annotations__", {}))
    keyword = inspect.Parameter.KEYWORD_ONLY
    added = [(name, annotation, option) for name, annotation, option in SHARED]
    added += [
        (name, bool, typer.Option(False, flag(name), help=entry.help))
        for name, entry in registry.diagnostics.items()
        if not entry.automatic  # an automatic one runs whenever it applies: nothing to ask for
    ]
    for name, annotation, option in added:
        params.append(inspect.Parameter(name, keyword, default=option, annotation=annotation))
        annotations[name] = annotation
    positional = [p for p in params if p.kind is not keyword]
    params = positional + [p for p in params if p.kind is keyword]

    @functools.wraps(command)
    def wrapper(**kwargs):
        return command(**kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = annotations
    return wrapper


def diagnose_kwargs(params: dict) -> dict:
    """``diagnose()`` keywords from the options :func:`with_diagnose_options` adds (``run_all``
    is ``--all``, ``folds`` is ``--folds``; the rest are the diagnostic flags)."""
    out = {name: params[name] for name in _PLAIN}
    out["fuse"] = agent_list(params["fuse"])
    out["n_folds"] = params["folds"]
    out["diagnostics"] = [
        name for name in registry.requestable_diagnostics() if params["run_all"] or params.get(name)
    ]
    return out


def agent_list(text: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None or empty -> None (the default)."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    return names or None
