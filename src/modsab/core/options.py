"""How to fuse and audit: one options model for the run config, the CLI and ``diagnose()``.

Each option is defined once here, with its default, bounds and help. The run config's
``[fusion]`` and ``[audit]`` sections are built from these fields (:func:`section_model`),
the ``diagnose`` / ``report`` command options take their defaults and help from them, and
``diagnose()`` validates its keywords through :class:`AuditOptions` once, at the boundary:
inner code trusts what it gets. Names of fusion rules and diagnostics are checked against
their registries.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from modsab import registry
from modsab.contract.errors import InputError
from modsab.core.folds import check_folds


def registered_name(which: registry.Registry, value: str) -> str:
    """``value`` when ``which`` has it; a ValueError that lists the valid names otherwise."""
    if value not in which:
        *first, last = (repr(name) for name in which.names())
        choices = f"{', '.join(first)} or {last}" if first else last
        raise ValueError(f"Input should be {choices} (unknown {which.what} '{value}')")
    return value


def _folds(value: Any) -> Any:
    try:
        return check_folds(value)
    except InputError as error:
        raise ValueError(error.message) from None


def _every_diagnostic(value: Any) -> Any:
    """``"all"`` is every registered diagnostic one asks for (the automatic ones run whenever they
    apply); a list keeps registry order (unknown names last)."""
    if value == "all":
        return registry.requestable_diagnostics()
    if isinstance(value, str):
        raise ValueError(f'give a list of {", ".join(registry.requestable_diagnostics())}, or "all"')
    if isinstance(value, list | tuple):
        known = [name for name in registry.diagnostics.names() if name in value]
        return tuple(known) + tuple(name for name in value if name not in known)
    return value


RuleName = Annotated[str, AfterValidator(lambda name: registered_name(registry.fusion_rules, name))]
DiagnosticName = Annotated[str, AfterValidator(lambda name: registered_name(registry.diagnostics, name))]
DiagnosticNames = Annotated[tuple[DiagnosticName, ...], BeforeValidator(_every_diagnostic)]


class AuditOptions(BaseModel):
    """Every option of a diagnosis (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    weights: RuleName = Field("uniform", description="Fusion rule (a registered name: uniform, quality, ...).")
    fuse: tuple[str, ...] | None = Field(None, description="Agents to fuse. Default: all but the baseline.")
    baseline: str | None = Field(None, description="Agent whose own top-1 is reported as Base T1.")
    tau: float = Field(0.70, ge=0, le=1, description="Confidence threshold of potential sabotage.")
    k: int = Field(5, ge=1, description="Largest k of fused top-k (capped at the number of labels).")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples (0: no intervals).")
    seed: int | None = Field(0, ge=0, description="Seed of the bootstrap and of the folds.")
    level: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    diagnostics: DiagnosticNames = Field(
        (), description='Diagnostics beyond the paper (registered names, or "all").'
    )
    folds: Annotated[Any, AfterValidator(_folds)] = Field(
        5, description="Seeded folds for cross-fitting (recalibration, learned weights): at least 2, or a splitter."
    )

    def __init__(self, **values: Any) -> None:
        """Validated options; an :class:`InputError` naming the option (as ``--flag``) otherwise."""
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise _option_error(error, values) from None

    @classmethod
    def parse(cls, **values: Any) -> AuditOptions:
        """The options from keyword values, or an :class:`InputError` naming the option."""
        return cls(**values)


def _option_error(error: ValidationError, values: dict[str, Any]) -> InputError:
    """The first problem of ``error`` as an :class:`InputError` that names the flag."""
    problem = error.errors()[0]
    key = str(problem["loc"][0]) if problem["loc"] else "options"
    given = values.get(key)
    message = BOUNDS.get(key) if problem["type"].startswith(("greater", "less")) else None
    if message is None:
        message = str(problem["msg"]).removeprefix("Value error, ")
    flag = f"--{key.replace('_', '-')}"
    text = f"{flag} {given}" if given is not None and not message.startswith("--") else flag
    if message.startswith("--"):
        full = message
    elif message[0].isupper():
        full = f"{text}: {message}"
    else:
        full = f"{text} {message}"
    return InputError(full, hint=AuditOptions.model_fields[key].description if key in AuditOptions.model_fields else None)


#: How a bound is said when an option is outside it.
BOUNDS = {
    "tau": "is outside 0-1",
    "k": "must be at least 1",
    "bootstrap": "must be 0 (no intervals) or more",
    "seed": "must be 0 or more (or None for fresh randomness)",
    "level": "(the confidence level) must be between 0 and 1",
}


def section_model(name: str, fields: tuple[str, ...], base: type[BaseModel]) -> type[BaseModel]:
    """A run-config section (``[fusion]``, ``[audit]``) made of these options' own fields, so a
    key's type, default, bounds and help are the ones ``diagnose()`` and the CLI use."""
    own = {key: (AuditOptions.model_fields[key].annotation, AuditOptions.model_fields[key]) for key in fields}
    return create_model(name, __base__=base, **own)
