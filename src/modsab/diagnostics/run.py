"""The diagnostics beyond the paper, run on a finished :class:`~modsab.core.diagnosis.Diagnosis`.

Each lands in the JSON under its own stable top-level key (documented in the README,
"Diagnostics beyond the paper"): ``causal``, ``shapley``, ``calibration``,
``fusion_compare``, ``tau_sweep``. All reuse the diagnosis' fusion rule, fused agents,
tau, k, bootstrap resamples, seed and level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from modsab.core.diagnosis import Diagnosis

DIAGNOSTICS = ("causal", "shapley", "calibration", "fusion_compare", "tau_sweep")


def _groups(diagnosis: Diagnosis) -> dict[str, np.ndarray]:
    """``{dataset: rows}``, once per diagnosis."""
    if "groups" not in diagnosis.workspace:
        dataset = diagnosis.pset.dataset
        groups = {}
        if dataset is not None:
            names, codes = np.unique(dataset.astype(str), return_inverse=True)
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
            groups = {str(name): order[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)}
        diagnosis.workspace["groups"] = groups
    return diagnosis.workspace["groups"]


def run(diagnosis: Diagnosis, names: tuple[str, ...], *, n_folds: int = 5) -> dict[str, Any]:
    """``{key: section}`` for each diagnostic in ``names`` (a subset of :data:`DIAGNOSTICS`)."""
    from modsab.core import cache, fusion
    from modsab.diagnostics.attribution import Coalitions
    from modsab.contract.errors import InputError

    unknown = [name for name in names if name not in DIAGNOSTICS]
    if unknown:
        raise InputError(f"unknown diagnostic {', '.join(unknown)}", hint=f"choose from {', '.join(DIAGNOSTICS)}")
    d, o = diagnosis, diagnosis.options
    pset = d.pset
    agents = [pset.agent_index(name) for name in d.fused_agents]
    from modsab.diagnostics.shapley import MAX_AGENTS

    if "shapley" in names and len(agents) > MAX_AGENTS:  # before anything is computed
        raise InputError(
            f"exact Shapley values fuse every subset of agents (2^{len(agents)} here); "
            f"{len(agents)} fused agents is more than {MAX_AGENTS}",
            hint="fuse at most 10 agents (--fuse), or name the diagnostics you want instead of --all / --shapley",
        )
    rule = d.rule or fusion.rule(o.weights)
    every_agent = tuple(range(len(pset.agents)))
    cache.remember(pset, ("agent_top", every_agent), lambda: (d.top, d.confidence))  # the audit has them
    stats = {"resamples": o.bootstrap, "seed": o.seed, "level": o.level}
    out: dict[str, Any] = {}
    coalitions = None
    if {"causal", "shapley"} & set(names):  # one set of coalition fusions per diagnosis, across extend() calls
        if "coalitions" not in d.workspace:
            known = {"agent_top": (d.top[:, agents], d.confidence[:, agents]), "fused_top": d.fused_top}
            d.workspace["coalitions"] = Coalitions.from_rule(pset, rule, agents, tau=o.tau, **known)
        coalitions = d.workspace["coalitions"]
    if "causal" in names:
        from modsab.diagnostics.causal import causal_report

        out["causal"] = causal_report(coalitions, answered=d.top[:, agents] >= 0, **stats)
    if "shapley" in names:
        from modsab.diagnostics.shapley import shapley_report

        out["shapley"] = shapley_report(coalitions, groups=_groups(d), **stats)
    if "calibration" in names:
        from modsab.diagnostics.calibration import calibration_report

        out["calibration"] = calibration_report(pset, groups=_groups(d), n_folds=n_folds, **stats)
    if "fusion_compare" in names:
        from modsab.diagnostics.fusion_compare import compare

        out["fusion_compare"] = compare(pset, agents, tau=o.tau, k=d.k, n_folds=n_folds, **stats)
    if "tau_sweep" in names:
        from modsab.diagnostics.tau_sweep import tau_sweep

        out["tau_sweep"] = tau_sweep(
            d.top[:, agents], d.confidence[:, agents], pset.gold, d.fused_top, d.fused_agents, **stats
        )
    return out
