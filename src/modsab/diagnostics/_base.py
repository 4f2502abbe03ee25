"""What a diagnostic beyond the paper is: a JSON section computed from a finished diagnosis.

A diagnostic is one module in this package that registers a :class:`Diagnostic` (its
computation, its plain reference and the typed model of its section) in
:data:`modsab.registry.diagnostics` under its JSON key. The key names the section in
``diagnosis.json``, the ``--<key>`` flag of ``diagnose`` and ``report`` (underscores as
dashes), the entry of ``[audit] diagnostics`` in a run config and the choice of
``diagnose(diagnostics=[...])``; all of them are read from the registry. Every diagnostic
reuses the diagnosis' fusion rule, fused agents, tau, k, bootstrap resamples, seed and
level, and shares derived arrays through the diagnosis' :class:`~modsab.core.context.Context`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from modsab.core.diagnosis import Diagnosis
    from modsab.diagnostics.attribution import Coalitions


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic: ``compute(diagnosis, folds=...)`` returns its JSON section.

    ``check`` runs for every requested diagnostic before any is computed (to refuse early);
    ``columns`` adds per-instance columns to the instances table once the section exists;
    ``by_dataset`` says whether the section has per-dataset groups (for the property test
    that holds every group to a run on that dataset alone). ``reference(diagnosis)`` is the
    plain computation of the section's point figures (no intervals) that the fast
    ``compute`` must equal: a property test holds every registered diagnostic to it.

    An ``automatic`` diagnostic is not asked for: ``diagnose()`` runs it whenever
    ``applies(diagnosis)`` is true (ablation: when the set carries conditions); it has no
    ``--<key>`` flag and is not part of ``"all"``. ``needs_agents`` says the section reads
    the fused agents, so it is refused for a set without any (model records only)."""

    help: str
    compute: Callable[..., Any]
    reference: Callable[..., Any] | None = None
    #: The pydantic model of the section (:mod:`modsab.core.typed`); ``diagnosis.json``'s
    #: schema and the views read it. None: the section is kept as a plain JSON object.
    section: type | None = None
    check: Callable[[Diagnosis], None] | None = None
    columns: Callable[[Diagnosis], dict[str, np.ndarray]] | None = None
    by_dataset: bool = False
    automatic: bool = False
    applies: Callable[[Diagnosis], bool] | None = None
    needs_agents: bool = True



def fused_indices(diagnosis: Diagnosis) -> list[int]:
    """Indices of the fused agents in the set."""
    return [diagnosis.pset.agent_index(name) for name in diagnosis.fused_agents]


def bootstrap_options(diagnosis: Diagnosis) -> dict[str, Any]:
    """``resamples``, ``seed`` and ``level`` of the diagnosis, as the reports take them."""
    o = diagnosis.options
    return {"resamples": o.bootstrap, "seed": o.seed, "level": o.level}


def coalitions(diagnosis: Diagnosis) -> Coalitions:
    """The fused agents' weighted answers under the diagnosis' rule, made once per diagnosis
    (the causal test, Shapley values and their instance columns share them)."""
    from modsab.diagnostics.attribution import Coalitions

    d = diagnosis
    agents = fused_indices(d)

    def make() -> Coalitions:
        known = {"agent_top": (d.top[:, agents], d.confidence[:, agents]), "fused_top": d.fused_top}
        return Coalitions.from_rule(d.context, d.rule, agents, tau=d.options.tau, **known)

    return d.context.remember("coalitions", make)
