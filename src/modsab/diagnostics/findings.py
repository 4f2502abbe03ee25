"""What the audit concluded: one sentence per finding, each with its figures and its section.

:func:`findings` reads the typed diagnosis (:class:`~modsab.core.result.DiagnosisFields`
with whichever diagnostics sections it has) and returns :class:`~modsab.core.result.Finding`
objects; ``Diagnosis.result()`` puts them under ``findings`` in ``diagnosis.json``, the
terminal prints them first and the report opens with them. Where this sits: findings read
every section, so they come after the diagnostics. ``core.result`` declares the
:class:`Finding` shape and imports nothing from here; this module imports the section models
of the other diagnostics; ``core.diagnosis`` imports it only inside ``Diagnosis`` methods (as
it reaches the diagnostics through the registry), so the imports stay acyclic. It registers
no diagnostic: findings are not a section one asks for, they are read off the others.

**The rules.** A finding is written only when its evidence is in the diagnosis; a sentence
that compares needs intervals, so with ``--bootstrap 0`` only the tau-sweep finding (counts)
remains. "Clearly" has one meaning throughout:

- *clearly above zero*: the interval's lower end is above 0;
- *clearly ahead* (most, worst, best): the leader's interval lies above the runner-up's
  point value (interval lower end > runner-up's value); otherwise the sentence says the
  ranking is not clear and names the runner-up;
- *beats* / *worse than*: a paired difference whose interval excludes 0 (above: beats;
  below: worse); otherwise the sentence says "no clear difference".

Per kind (``section`` is the JSON key of the evidence):

``paper_saboteur`` (``agents``)
    The fused agent with the highest successful-sabotage rate (paper's rule, over the
    instances it answered). Clearly above zero: "X sabotages most", plus "clearly ahead" or
    not; all rates 0: "no fused agent is a successful saboteur"; otherwise "no agent clearly
    sabotages". Left out without intervals or without an answering fused agent.
``causal_saboteur`` (``causal``)
    The same for the leave-one-out causal sabotage rate. Needs the ``causal`` section.
``saboteur_rules`` (``causal``)
    Whether the two rules disagree. They **disagree** when an agent that one rule clearly
    flags (its interval above 0) has, by the other rule, a rate below that interval's lower
    end (both rates from the ``causal`` section, over the same answered instances). They
    **agree** when both name the same top agent, each clearly above zero, and no agent shows
    a disagreement. Otherwise left out (neither is decisive).
``fusion_vs_best_agent`` (``fusion_topk``)
    Fused top-1 minus the top-1 of the best single agent, both over all instances (an
    abstention is a miss), with a paired percentile bootstrap over instances
    (:func:`fusion_vs_best`). The best agent is the one with the highest top-1 on the full
    data (any agent, the baseline included), fixed before resampling. Beats / worse / no
    clear difference by the paired interval. Needs the per-instance arrays of a
    :class:`~modsab.core.diagnosis.Diagnosis`; from a JSON alone the finding already there is
    kept (it depends only on the fusion, which adding sections does not change).
``best_strategy`` (``fusion_compare``)
    The strategy with the highest fused top-1 difference to the baseline strategy
    (uniform), the placebo ``quality-permuted`` excluded. Beats uniform when the paired
    interval of the top-1 difference is above 0; otherwise "no strategy clearly beats uniform"
    with the best one's difference.
``quality_predicts_failure`` (``calibration``)
    AUROC of self-reported quality for right vs wrong answers (all instances), per agent that
    reports quality and answered at least :data:`MIN_ANSWERS` instances. Predicts failure
    when the interval is above 0.5 (inverted when below); otherwise "does not clearly
    predict". Left out when no agent qualifies.
``quality_placebo`` (``fusion_compare``)
    Weighting by quality against the placebo (quality permuted among each agent's answers),
    each as its paired top-1 difference to uniform. Quality carries information when the
    two intervals do not overlap (conservative: two marginal intervals); otherwise "no clear
    difference from the placebo". Needs both strategies.
``worst_calibrated`` (``calibration``)
    The agent with the highest ECE among those with at least :data:`MIN_ANSWERS` answers;
    "clearly" per the rule above. Needs at least two such agents.
``tau_cliff`` (``tau_sweep``)
    Role changes between neighbouring tau values. With the audit's tau on the grid and at
    least :data:`MIN_CHANGES` (instance, agent) pairs changing role over the sweep: a
    **cliff** when the steps next to tau (into and out of it) hold at least
    :data:`CLIFF_FACTOR` times their even share of all changes and at least half of them;
    otherwise "not on a cliff", with the same counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modsab.core.audit import Role
from modsab.diagnostics.calibration import CalibrationSection
from modsab.diagnostics.causal import CausalSection
from modsab.diagnostics.fusion_compare import FusionCompareSection
from modsab.diagnostics.tau_sweep import TauSweepSection
from modsab.stats import metrics

if TYPE_CHECKING:
    from modsab.core.diagnosis import Diagnosis
    from modsab.core.result import DiagnosisFields, Finding


def Finding(**fields: Any) -> Finding:  # noqa: N802 - builds the model of that name
    """A :class:`~modsab.core.result.Finding`. (``core.result`` is imported here, not at import
    time: the registry imports this package's modules while ``core.result`` builds its model.)"""
    from modsab.core.result import Finding as Model

    return Model(**fields)

#: Calibration findings (ECE, AUROC) consider agents with at least this many answers.
MIN_ANSWERS = 20
#: The tau-sweep finding needs at least this many role changes over the sweep.
MIN_CHANGES = 10
#: A cliff: the steps next to tau hold at least this many times their even share of changes.
CLIFF_FACTOR = 2.0
#: The placebo of quality weighting (a fusion rule), left out of "best strategy".
PLACEBO = "quality-permuted"

Interval = list  # [low, high]


# -- formatting ----------------------------------------------------------------------------------


def _has(interval: Any) -> bool:
    return isinstance(interval, list | tuple) and len(interval) == 2 and None not in interval


def _fmt(value: float, interval: Any = None, *, signed: bool = False) -> str:
    f = "+.2f" if signed else ".2f"
    text = f"{value:{f}}"
    if _has(interval):
        text += f" [{interval[0]:{f}}, {interval[1]:{f}}]"
    return text


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _leader(values: dict[str, tuple[float, Any]]) -> tuple[str, str | None]:
    """``(leader, runner_up)`` by point value (ties: the first in order)."""
    order = sorted(values, key=lambda name: -values[name][0])
    return order[0], (order[1] if len(order) > 1 else None)


def _ahead(values: dict[str, tuple[float, Any]], leader: str, runner: str | None, *, what: str) -> str:
    """The "clearly ahead" clause: leader's interval above the runner-up's point value."""
    if runner is None:
        return ""
    value, interval = values[runner]
    if values[leader][1][0] > value:
        return f"; next is {runner} at {_fmt(value, interval)}"
    return f"; not clearly {what} than {runner} ({_fmt(value, interval)})"


# -- the paired figure: fused top-1 against the best single agent ----------------------------------


def _correct(diagnosis: Diagnosis) -> tuple[np.ndarray, np.ndarray]:
    """``fused[n]`` and ``agents[n, m]``: top-1 correct over all instances (abstention: a miss)."""
    return diagnosis.rank == 0, diagnosis.role == Role.CONTRIBUTOR


def fusion_vs_best(diagnosis: Diagnosis) -> dict[str, Any] | None:
    """Fused top-1 minus the best single agent's top-1, both over all instances, with the
    percentile interval of a paired bootstrap over instances (``--bootstrap`` resamples,
    ``--seed``, ``level``): each instance is one of four cells (fused right or not x agent
    right or not), and a resample is a multinomial draw over the cell counts, an instance
    bootstrap (as :mod:`modsab.stats.metrics` draws). ``{"agent", "fused_top1", "agent_top1",
    "diff", "fused_ci", "agent_ci", "diff_ci"}``; intervals None without resamples; None when
    no agent answered. Remembered per diagnosis."""

    def make() -> dict[str, Any] | None:
        fused, agents = _correct(diagnosis)
        n = fused.shape[0]
        if n == 0 or not (diagnosis.role != Role.ABSTAINED).any():
            return None
        top1 = agents.mean(axis=0)
        best = int(np.argmax(top1))  # ties: the first agent of the set
        cell = fused.astype(np.int64) * 2 + agents[:, best]
        counts = np.bincount(cell, minlength=4)
        out: dict[str, Any] = {
            "agent": diagnosis.pset.agents[best],
            "fused_top1": float(fused.mean()),
            "agent_top1": float(top1[best]),
            "diff": float(fused.mean() - top1[best]),
            "fused_ci": None,
            "agent_ci": None,
            "diff_ci": None,
        }
        o = diagnosis.options
        if o.bootstrap:
            draws = metrics.resample_counts(counts, resamples=o.bootstrap, seed=o.seed).astype(np.float64) / n
            fused_draw = draws[:, 2] + draws[:, 3]
            agent_draw = draws[:, 1] + draws[:, 3]
            ci = metrics.percentile_intervals(
                {"fused": fused_draw, "agent": agent_draw, "diff": fused_draw - agent_draw}, level=o.level
            )
            out.update(fused_ci=ci["fused"], agent_ci=ci["agent"], diff_ci=ci["diff"])
        return out

    return diagnosis.context.remember(("findings", "fusion_vs_best"), make)


def fusion_vs_best_reference(diagnosis: Diagnosis) -> dict[str, Any] | None:
    """The plain computation of :func:`fusion_vs_best`'s point figures, instance by instance."""
    ps = diagnosis.pset
    n, m = len(ps.gold), len(ps.agents)
    best, best_hits = None, -1
    for j in range(m):
        hits = sum(1 for i in range(n) if diagnosis.top[i, j] >= 0 and diagnosis.top[i, j] == ps.gold[i])
        if hits > best_hits:
            best, best_hits = j, hits
    if not any(diagnosis.top[i, j] >= 0 for i in range(n) for j in range(m)):
        return None
    fused_hits = sum(1 for i in range(n) if diagnosis.fused_top[i] == ps.gold[i] and diagnosis.fused[i].max() > 0)
    return {
        "agent": ps.agents[best],
        "fused_top1": fused_hits / n,
        "agent_top1": best_hits / n,
        "diff": (fused_hits - best_hits) / n,
    }


# -- each kind -----------------------------------------------------------------------------------------


def _sabotage_finding(
    kind: str,
    section: str,
    values: dict[str, tuple[float, Any]],
    figure: str,
    *,
    by: str,
    measure: str,
    none: str,
) -> Finding | None:
    """``paper_saboteur`` / ``causal_saboteur`` from ``{agent: (rate, interval)}``: ``by``
    names the rule, ``measure`` says what the rate counts (``{}`` for the figure), ``none``
    is the sentence when every rate is 0."""
    values = {a: v for a, v in values.items() if v[0] is not None}
    if not values or not all(_has(v[1]) for v in values.values()):
        return None
    leader, runner = _leader(values)
    rate, interval = values[leader]
    figures: dict[str, Any] = {f"{leader}.{figure}": rate, f"{leader}.{figure}.ci": list(interval)}
    if runner is not None:
        figures[f"{runner}.{figure}"] = values[runner][0]
        figures[f"{runner}.{figure}.ci"] = list(values[runner][1])
    if rate == 0:
        text = none
    elif interval[0] > 0:
        text = (
            f"{leader} sabotages most {by}: {measure.format(_fmt(rate, interval))}"
            + _ahead(values, leader, runner, what="more")
            + "."
        )
    else:
        text = (
            f"No agent clearly sabotages {by}: the highest rate, {leader}'s {_fmt(rate, interval)}, "
            "has an interval that reaches 0."
        )
    return Finding(kind=kind, text=text, figures=figures, section=section)


def _paper_saboteur(result: DiagnosisFields) -> Finding | None:
    values = {
        name: (entry.successful_sabotage_rate, result.ci.get(f"agents.{name}.successful_sabotage_rate"))
        for name, entry in result.agents.items()
        if entry.fused and entry.n > 0
    }
    by = f"by the paper's rule (tau {result.tau:.2f})"
    return _sabotage_finding(
        "paper_saboteur",
        "agents",
        values,
        "successful_sabotage_rate",
        by=by,
        measure="successful sabotage on {} of the instances it answered",
        none=f"No fused agent is a successful saboteur {by}: every rate is 0.00.",
    )


def _causal_values(causal: CausalSection, key: str) -> dict[str, tuple[float, Any]]:
    return {
        name: (getattr(entry, key), causal.ci.get(f"agents.{name}.{key}"))
        for name, entry in causal.agents.items()
        if entry.n > 0
    }


def _causal_saboteur(result: DiagnosisFields) -> Finding | None:
    causal = getattr(result, "causal", None)
    if not isinstance(causal, CausalSection):
        return None
    return _sabotage_finding(
        "causal_saboteur",
        "causal",
        _causal_values(causal, "causal_sabotage_rate"),
        "causal_sabotage_rate",
        by="by the counterfactual test",
        measure="removing it alone fixes the fused answer on {} of the instances it answered",
        none="No fused agent is a causal saboteur: removing any one agent fixes no instance.",
    )


def _saboteur_rules(result: DiagnosisFields) -> Finding | None:
    causal = getattr(result, "causal", None)
    if not isinstance(causal, CausalSection):
        return None
    paper = {a: v for a, v in _causal_values(causal, "paper_successful_sabotage_rate").items() if v[0] is not None}
    counter = {a: v for a, v in _causal_values(causal, "causal_sabotage_rate").items() if v[0] is not None}
    agents = [a for a in causal.agents if a in paper and a in counter]
    if not agents or not all(_has(paper[a][1]) and _has(counter[a][1]) for a in agents):
        return None
    figures: dict[str, Any] = {}

    def quote(agent: str) -> None:
        figures[f"{agent}.paper_successful_sabotage_rate"] = paper[agent][0]
        figures[f"{agent}.paper_successful_sabotage_rate.ci"] = list(paper[agent][1])
        figures[f"{agent}.causal_sabotage_rate"] = counter[agent][0]
        figures[f"{agent}.causal_sabotage_rate.ci"] = list(counter[agent][1])

    missed = [a for a in agents if counter[a][1][0] > 0 and paper[a][0] < counter[a][1][0]]
    spurious = [a for a in agents if paper[a][1][0] > 0 and counter[a][0] < paper[a][1][0]]
    clauses = []
    for a in sorted(missed, key=lambda a: -counter[a][0]):
        quote(a)
        clauses.append(
            f"removing {a} fixes {_fmt(*counter[a])} of its answered instances, while the paper's rule "
            f"flags {paper[a][0]:.2f}"
        )
    for a in sorted(spurious, key=lambda a: -paper[a][0]):
        quote(a)
        clauses.append(
            f"the paper's rule flags {a} on {_fmt(*paper[a])}, but removing it fixes only {counter[a][0]:.2f}"
        )
    p_lead, _ = _leader({a: paper[a] for a in agents})
    c_lead, _ = _leader({a: counter[a] for a in agents})
    if clauses:
        if p_lead == c_lead:
            head = f"The paper's rule and the counterfactual test both rank {p_lead} first but disagree elsewhere: "
        else:
            head = (
                f"The paper's rule and the counterfactual test disagree (highest rate: {p_lead} by the paper's "
                f"rule, {c_lead} by the counterfactual test): "
            )
        return Finding(kind="saboteur_rules", text=head + "; ".join(clauses) + ".", figures=figures, section="causal")
    if p_lead == c_lead and paper[p_lead][1][0] > 0 and counter[c_lead][1][0] > 0:
        quote(p_lead)
        text = (
            f"The paper's rule and the counterfactual test agree on {p_lead}: successful sabotage "
            f"{_fmt(*paper[p_lead])}, causal {_fmt(*counter[p_lead])}."
        )
        return Finding(kind="saboteur_rules", text=text, figures=figures, section="causal")
    return None


def _fusion_vs_best_finding(paired: dict[str, Any] | None) -> Finding | None:
    if paired is None or not _has(paired.get("diff_ci")):
        return None
    agent, diff, ci = paired["agent"], paired["diff"], paired["diff_ci"]
    both = (
        f"fused top-1 {_fmt(paired['fused_top1'], paired['fused_ci'])} against {agent}'s "
        f"{_fmt(paired['agent_top1'], paired['agent_ci'])} over all instances, paired difference "
        f"{_fmt(diff, ci, signed=True)}"
    )
    if ci[0] > 0:
        text = f"Fusion beats the best single agent, {agent}: {both}."
    elif ci[1] < 0:
        text = f"Fusion is worse than the best single agent, {agent}: {both}."
    else:
        text = f"No clear difference between fusion and the best single agent, {agent}: {both}."
    figures = {
        "fused_top1": paired["fused_top1"],
        "fused_top1.ci": paired["fused_ci"],
        f"{agent}.top1": paired["agent_top1"],
        f"{agent}.top1.ci": paired["agent_ci"],
        "diff": diff,
        "diff.ci": ci,
    }
    return Finding(kind="fusion_vs_best_agent", text=text, figures=figures, section="fusion_topk")


def _best_strategy(result: DiagnosisFields) -> Finding | None:
    section = getattr(result, "fusion_compare", None)
    if not isinstance(section, FusionCompareSection):
        return None
    diffs = {
        name: (entry.diff["top1"], entry.diff_ci["top1"])
        for name, entry in section.strategies.items()
        if name != PLACEBO and entry.diff is not None and entry.diff_ci is not None and "top1" in entry.diff
    }
    diffs = {name: v for name, v in diffs.items() if v[0] is not None and _has(v[1])}
    if not diffs:
        return None
    leader, _ = _leader(diffs)
    tied = [name for name, v in diffs.items() if abs(v[0] - diffs[leader][0]) < 1e-12]
    base = section.baseline
    figures: dict[str, Any] = {}
    for name in tied:
        entry = section.strategies[name]
        figures[f"strategies.{name}.top1"] = entry.rates["top1"]
        figures[f"strategies.{name}.top1.ci"] = entry.ci["top1"]
        figures[f"strategies.{name}.diff.top1"] = diffs[name][0]
        figures[f"strategies.{name}.diff.top1.ci"] = list(diffs[name][1])
    figures[f"strategies.{base}.top1"] = section.strategies[base].rates["top1"]
    entry, (diff, ci) = section.strategies[leader], diffs[leader]
    who = _names(tied) if len(tied) <= 2 else f"{len(tied)} strategies tied ({_names(tied)})"
    top1 = _fmt(entry.rates["top1"], entry.ci["top1"])
    base_top1 = section.strategies[base].rates["top1"]
    if ci[0] > 0:
        verb = "beat" if len(tied) > 1 else "beats"
        lead = "strategies" if len(tied) > 1 else "strategy"
        text = (
            f"The best fusion {lead}, {who}, {verb} {base}: fused top-1 {top1} against {base_top1:.2f}, "
            f"paired difference {_fmt(diff, ci, signed=True)}."
        )
    else:
        text = (
            f"No fusion strategy clearly beats {base}: the best, {who}, reaches top-1 {top1} against "
            f"{base_top1:.2f}, paired difference {_fmt(diff, ci, signed=True)}."
        )
    return Finding(kind="best_strategy", text=text, figures=figures, section="fusion_compare")


def _calibration_agents(result: DiagnosisFields) -> dict[str, Any]:
    section = getattr(result, "calibration", None)
    if not isinstance(section, CalibrationSection) or "all" not in section.groups:
        return {}
    return {name: f for name, f in section.groups["all"].items() if f.n >= MIN_ANSWERS}


def _quality_predicts(result: DiagnosisFields) -> Finding | None:
    agents = {
        name: (f.quality_auroc, (f.ci or {}).get("quality_auroc"))
        for name, f in _calibration_agents(result).items()
        if f.quality_auroc is not None
    }
    agents = {name: v for name, v in agents.items() if _has(v[1])}
    if not agents:
        return None
    figures: dict[str, Any] = {}
    for name, (value, ci) in agents.items():
        figures[f"{name}.quality_auroc"] = value
        figures[f"{name}.quality_auroc.ci"] = list(ci)
    above = [n for n, v in agents.items() if v[1][0] > 0.5]
    below = [n for n, v in agents.items() if v[1][1] < 0.5]
    quoted = lambda names: "; ".join(f"{n} {_fmt(*agents[n])}" for n in names)  # noqa: E731
    of = f"{len(agents)} agent{'s' if len(agents) > 1 else ''} reporting quality"
    if above:
        text = f"Self-reported quality predicts failure for {_names(above)} (AUROC {quoted(above)}; {of})"
        if below:
            text += f"; for {_names(below)} it is inverted ({quoted(below)})"
        text += "."
    elif below:
        text = f"Self-reported quality is inverted for {_names(below)}: AUROC {quoted(below)} ({of})."
    else:
        leader, _ = _leader(agents)
        text = (
            f"Self-reported quality does not clearly predict failure: every AUROC interval reaches 0.5 "
            f"(highest: {leader} {_fmt(*agents[leader])}; {of})."
        )
    return Finding(kind="quality_predicts_failure", text=text, figures=figures, section="calibration")


def _quality_placebo(result: DiagnosisFields) -> Finding | None:
    section = getattr(result, "fusion_compare", None)
    if not isinstance(section, FusionCompareSection):
        return None
    quality, placebo = section.strategies.get("quality"), section.strategies.get(PLACEBO)
    if quality is None or placebo is None or quality.diff is None or placebo.diff is None:
        return None
    (q, q_ci), (p, p_ci) = (quality.diff["top1"], quality.diff_ci["top1"]), (placebo.diff["top1"], placebo.diff_ci["top1"])
    if not (_has(q_ci) and _has(p_ci)):
        return None
    base = section.baseline
    both = (
        f"top-1 vs {base} {_fmt(q, q_ci, signed=True)} when weighting by self-reported quality, "
        f"{_fmt(p, p_ci, signed=True)} with the quality permuted (placebo)"
    )
    if q_ci[0] > p_ci[1]:
        text = f"Self-reported quality carries information for the fusion: {both}."
    elif q_ci[1] < p_ci[0]:
        text = f"Weighting by self-reported quality does worse than its placebo: {both}."
    else:
        text = f"No clear difference between weighting by self-reported quality and its placebo: {both}."
    figures = {
        "strategies.quality.diff.top1": q,
        "strategies.quality.diff.top1.ci": q_ci,
        f"strategies.{PLACEBO}.diff.top1": p,
        f"strategies.{PLACEBO}.diff.top1.ci": p_ci,
    }
    return Finding(kind="quality_placebo", text=text, figures=figures, section="fusion_compare")


def _worst_calibrated(result: DiagnosisFields) -> Finding | None:
    agents = {
        name: (f.ece, (f.ci or {}).get("ece")) for name, f in _calibration_agents(result).items() if f.ece is not None
    }
    agents = {name: v for name, v in agents.items() if _has(v[1])}
    if len(agents) < 2:
        return None
    leader, runner = _leader(agents)
    f = _calibration_agents(result)[leader]
    ece, ci = agents[leader]
    figures: dict[str, Any] = {
        f"{leader}.ece": ece,
        f"{leader}.ece.ci": list(ci),
        f"{runner}.ece": agents[runner][0],
        f"{runner}.ece.ci": list(agents[runner][1]),
        f"{leader}.accuracy": f.accuracy,
        f"{leader}.mean_confidence": f.mean_confidence,
    }
    detail = ""
    if f.accuracy is not None and f.mean_confidence is not None:
        detail = f", accuracy {f.accuracy:.2f} at mean confidence {f.mean_confidence:.2f}"
    if ci[0] > agents[runner][0]:
        text = (
            f"{leader} is the worst calibrated agent: ECE {_fmt(ece, ci)} over {f.n} answers{detail}"
            f"; next is {runner} at {_fmt(*agents[runner])}."
        )
    else:
        text = (
            f"No agent is clearly the worst calibrated: the highest ECE, {leader}'s {_fmt(ece, ci)}{detail}, "
            f"is not clearly above {runner}'s {_fmt(*agents[runner])}."
        )
    return Finding(kind="worst_calibrated", text=text, figures=figures, section="calibration")


def _tau_cliff(result: DiagnosisFields) -> Finding | None:
    section = getattr(result, "tau_sweep", None)
    if not isinstance(section, TauSweepSection) or len(section.points) < 3:
        return None
    points = sorted(section.points, key=lambda p: p.tau)
    grid = [p.tau for p in points]
    at = [i for i, t in enumerate(grid) if abs(t - result.tau) < 1e-9]
    if not at:
        return None
    i = at[0]
    steps = [(j, points[j].changed_from_previous) for j in range(1, len(points))]
    total = sum(c.pairs for _, c in steps if c is not None)
    if total < MIN_CHANGES:
        return None
    near_steps = [j for j in (i, i + 1) if 1 <= j < len(points)]
    near = sum(points[j].changed_from_previous.pairs for j in near_steps if points[j].changed_from_previous)
    share, even = near / total, len(near_steps) / len(steps)
    lo, hi = grid[near_steps[0] - 1], grid[near_steps[-1]]
    figures: dict[str, Any] = {"changes_next_to_tau": float(near), "changes": float(total), "share": share, "even_share": even}
    head = (
        f"{near} of the {total} (instance, agent) role changes over the tau sweep ({share:.0%}) happen between tau "
        f"{lo:.2f} and {hi:.2f}, against {even:.0%} if spread evenly over {grid[0]:.2f}-{grid[-1]:.2f}"
    )
    if share >= CLIFF_FACTOR * even and share >= 0.5:
        per_agent: dict[str, int] = {}
        for j in near_steps:
            for agent, count in points[j].changed_from_previous.per_agent.items():
                per_agent[agent] = per_agent.get(agent, 0) + count
        agent = max(per_agent, key=lambda a: per_agent[a])
        before = points[near_steps[0] - 1].agents[agent].successful_sabotage_rate
        after = points[near_steps[-1]].agents[agent].successful_sabotage_rate
        tail = ""
        if before is not None and after is not None:
            tail = f"; {agent}'s successful sabotage rate goes from {before:.2f} to {after:.2f} across it"
            figures[f"{agent}.successful_sabotage_rate@{lo:.2f}"] = before
            figures[f"{agent}.successful_sabotage_rate@{hi:.2f}"] = after
        text = f"The paper's threshold tau = {result.tau:.2f} sits on a cliff: {head}{tail}."
    else:
        text = f"The paper's threshold tau = {result.tau:.2f} is not on a cliff: {head}."
    return Finding(kind="tau_cliff", text=text, figures=figures, section="tau_sweep")


# -- all of them ---------------------------------------------------------------------------------------


def findings(result: DiagnosisFields, diagnosis: Diagnosis | None = None) -> list[Finding]:
    """Every finding the typed ``result`` supports, in reading order (see the module's rules).

    ``diagnosis`` gives the per-instance arrays of the fusion-vs-best-agent figure; without
    it the ``fusion_vs_best_agent`` finding already in ``result.findings`` is kept."""
    if diagnosis is not None:
        fusion = _fusion_vs_best_finding(fusion_vs_best(diagnosis))
    else:
        fusion = next((f for f in (result.findings or []) if f.kind == "fusion_vs_best_agent"), None)
    out = [
        _paper_saboteur(result),
        _causal_saboteur(result),
        _saboteur_rules(result),
        fusion,
        _best_strategy(result),
        _quality_predicts(result),
        _quality_placebo(result),
        _worst_calibrated(result),
        _tau_cliff(result),
    ]
    return [f for f in out if f is not None]
