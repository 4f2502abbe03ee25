"""Fusion strategies side by side, including rules built to resist a saboteur.

Every strategy is a registered :class:`~modsab.core.fusion.FusionRule`
(:mod:`modsab.core.rules`, one module each: uniform, quality, recalibrated-temperature,
recalibrated-isotonic, learned, cap, agreement, reliability, and the quality-permuted
placebo), so the audit, the counterfactual test and the Shapley shares work on each alike.

:func:`compare` reports fused top-1..top-k, the share of instances with a successful
saboteur (paper's rule) and with a causal saboteur (leave-one-out), each with a
bootstrap interval, and the paired bootstrap interval of each figure's difference to
uniform (both rules evaluated on the same resampled instances).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import GetJsonSchemaHandler, SerializerFunctionWrapHandler, model_serializer, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema as cs

from modsab.contract import compact
from modsab.contract.errors import InputError
from modsab.contract.predictions import PredictionSet
from modsab.core import audit, fusion
from modsab.core.context import of
from modsab.core.folds import n_folds_of
from modsab.core.fusion import FusionRule
from modsab.core.typed import Interval, Model, absent
from modsab.diagnostics._base import Diagnostic, bootstrap_options, fused_indices
from modsab.registry import diagnostics, fusion_rules
from modsab.stats import metrics

# -- the section's typed model (the JSON it writes) ------------------------------

#: The figures of a strategy: ``top1``..``top<k>``, then the two sabotage shares.
FIGURE = re.compile(r"top[1-9][0-9]*|successful_sabotage|causal_sabotage")
REQUIRED_FIGURES = ("top1", "successful_sabotage", "causal_sabotage")


class FusionStrategy(Model):
    """``fusion_compare.strategies.<name>``. In the JSON the figures (``fusion_compare.figures``:
    ``top1``..``top<k>``, ``successful_sabotage``, ``causal_sabotage``) are keys of the
    object itself, beside ``ci``, ``diff`` and ``diff_ci``; here they are :attr:`rates`.
    ``diff`` (strategy - baseline) and ``diff_ci`` are absent for the baseline."""

    rates: dict[str, float]
    ci: dict[str, Interval]
    diff: dict[str, float] | None = absent()
    diff_ci: dict[str, Interval] | None = absent()

    @model_validator(mode="before")
    @classmethod
    def _gather_rates(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rates" not in data:
            data = dict(data)
            data["rates"] = {key: data.pop(key) for key in list(data) if FIGURE.fullmatch(key)}
        return data

    @model_validator(mode="after")
    def _every_strategy_has(self) -> FusionStrategy:
        missing = [figure for figure in REQUIRED_FIGURES if figure not in self.rates]
        if missing:
            raise ValueError(f"figure(s) {', '.join(missing)} missing")
        return self

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler: SerializerFunctionWrapHandler) -> Any:  # and flatten the rates
        data = handler(self)
        if isinstance(data, dict):
            data = {**data.pop("rates"), **data}
            for key in self.absent_keys - self.model_fields_set:
                data.pop(key, None)
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: cs.CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        reference = handler(schema)
        described = handler.resolve_ref_schema(reference)
        rate = described["properties"].pop("rates")["additionalProperties"]
        described["properties"] = {**dict.fromkeys(REQUIRED_FIGURES, rate), **described["properties"]}
        described["patternProperties"] = {"^top[1-9][0-9]*$": rate}
        described["required"] = [*REQUIRED_FIGURES, "ci"]
        return reference


class FusionCompareSection(Model):
    """``fusion_compare``: strategies side by side over all instances. ``skipped.<name>``:
    why a strategy was left out."""

    baseline: str
    figures: list[str]
    n_instances: int
    n_folds: int
    strategies: dict[str, FusionStrategy]
    skipped: dict[str, str]


def default_strategies(*, tau: float = 0.70, n_folds=5, seed: int | None = 0) -> list[FusionRule]:
    """The strategies ``modsab diagnose --fusion-compare`` puts side by side: every registered
    fusion rule with ``in_comparison`` (:data:`modsab.registry.fusion_rules`), uniform first."""
    rules = []
    for _, entry in fusion_rules.items():
        if entry.in_comparison:
            rules.append(entry.from_options(tau=tau, folds=n_folds, seed=seed))
    return rules


def _label_major(pset: PredictionSet, agents: list[int]) -> np.ndarray:
    """``[agents, labels, n]`` copy of the answers, remembered per set (copied in blocks of
    rows, each transposed in cache); of their one-byte codes when the set holds codes, each
    block decoded as it is read (the same floats)."""

    def compute() -> np.ndarray | compact.CompactScores:
        store = pset.score_store
        n, m, k = store.shape
        codes = isinstance(store, compact.CompactScores)  # a set of one-byte codes: a copy of its codes
        out = np.empty((len(agents), k, n), dtype=np.uint8 if codes else np.float64)
        every = agents == list(range(m))
        for start in range(0, n, BLOCK_ROWS):
            rows = slice(start, min(n, start + BLOCK_ROWS))
            block = store.codes[rows] if codes else store[rows]
            out[:, :, rows] = (block if every else block[:, agents]).transpose(1, 2, 0)
        return compact.CompactScores(out, store.divisor, store.top) if codes else out

    return of(pset).remember(("label_major", tuple(agents)), compute)


#: Rows fused at once by :func:`outcomes`: small enough that a block's arrays stay in cache.
BLOCK_ROWS = 1 << 13


def outcomes(
    pset: PredictionSet,
    rule: FusionRule,
    agents: Sequence[int],
    *,
    tau: float = 0.70,
    k: int = 5,
    agent_top: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``[n]`` small code of what ``rule`` does on each instance: ``min(gold rank, k)``
    (``rank < j`` is a top-j hit), ``+ (k + 1)`` when some agent is a successful saboteur
    (the paper's rule), ``+ 2 (k + 1)`` when some agent is a causal saboteur (the fused
    top-1 is wrong with all agents and right without that one).

    One pass over the set in blocks of :data:`BLOCK_ROWS` instances, label-major
    (``[labels, rows]``) so that every reduction over labels is an element-wise one.
    Each block's weighted answers are summed once and every leave-one-out fusion is that
    sum minus one agent's share. Fused scores are compared as the integers
    ``rint(s * 10^TIE_DECIMALS)`` (what :func:`~modsab.core.fusion.fuse` rounds to), each
    extended by the label's position so that equal scores rank the earlier label first:
    then "gold is the top-1" is one comparison with the largest key."""
    agents = list(agents)
    pset = of(pset)
    top, confidence = agent_top or pset.agent_top(agents)
    confident = confidence >= tau - audit.TAU_TOLERANCE  # NaN (abstained) is never confident
    weights = rule.weights(pset, agents)
    n, n_labels, m = pset.n_instances, len(pset.labels), len(agents)
    scale = 10.0**fusion.TIE_DECIMALS
    later = (n_labels - 1 - np.arange(n_labels, dtype=np.float64))[:, None]  # tie-break: earlier label wins

    def keys(raw: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``rint(raw * 10^d) * k + (k - 1 - label)``: a score above 0 is a key >= k."""
        np.multiply(raw, scale, out=out)
        np.rint(out, out=out)
        out *= n_labels
        out += later
        return out

    # rules that fuse the answers as given read them label-major, copied once per set for all such rules
    label_major = None if rule.transforms_answers else _label_major(pset, agents)
    out = np.empty(n, dtype=np.int16)
    for start in range(0, n, BLOCK_ROWS):
        rows = slice(start, min(n, start + BLOCK_ROWS))
        gold = pset.gold[rows]
        b = gold.size
        at_gold = gold * b + np.arange(b)  # flat index of (gold label, row) in a [labels, rows] array
        contrib = np.empty((m, n_labels, b))
        answers = label_major[:, :, rows] if label_major is not None else rule.block_scores(pset, agents, rows)
        if label_major is None:
            answers = answers.transpose(1, 2, 0)
        elif isinstance(answers, compact.CompactScores):
            answers = answers.decode()
        np.multiply(answers, weights[rows].T[:, None, :], out=contrib)
        raw = np.add.reduce(contrib, axis=0)
        key = keys(raw, np.empty_like(raw))
        best = key.max(axis=0)
        gold_key = key.ravel()[at_gold]
        rank = np.where(gold_key >= n_labels, (key > gold_key).sum(axis=0), n_labels)
        block_top, block_confident, row = top[rows], confident[rows], np.arange(b)
        successful = np.zeros(b, dtype=bool)
        causal = np.zeros(b, dtype=bool)
        without = np.empty_like(raw)
        for j in range(m):
            top_j = block_top[:, j]
            followed = key.ravel()[np.maximum(top_j, 0) * b + row] == best  # the fusion picked j's label
            successful |= followed & block_confident[:, j] & (top_j >= 0) & (top_j != gold)
            np.subtract(raw, contrib[j], out=without)
            key_j = keys(without, without)
            gold_j = key_j.ravel()[at_gold]
            causal |= (gold_j >= key_j.max(axis=0)) & (gold_j >= n_labels)
        successful &= best >= n_labels  # a fused answer exists
        causal &= rank > 0
        out[rows] = np.minimum(rank, k) + (k + 1) * (successful + 2 * causal)
    return out


def outcomes_reference(
    pset: PredictionSet, rule: FusionRule, agents: Sequence[int], *, tau: float = 0.70, k: int = 5
) -> np.ndarray:
    """What :func:`outcomes` codes, plainly: the rule's fusion of all agents and of all agents
    but one (:func:`~modsab.core.fusion.fuse`, :func:`~modsab.core.fusion.gold_rank`) and the
    paper's roles (:func:`~modsab.core.audit.roles`)."""
    agents = list(agents)
    data = of(pset)
    scores, weights = rule.scores(data, agents), rule.weights(data, agents)
    fused = fusion.fuse(scores, weights)
    rank = fusion.gold_rank(fused, pset.gold)
    top, confidence = audit.agent_top(pset.scores[:, agents], pset.candidate[:, agents])
    role = audit.roles(top, confidence, pset.gold, fusion.top_label(fused), tau=tau)
    successful = (role == audit.Role.SUCCESSFUL_SABOTAGE).any(axis=1)
    causal = np.zeros(pset.n_instances, dtype=bool)
    for j in range(len(agents)):
        others = [i for i in range(len(agents)) if i != j]
        causal |= fusion.gold_rank(fusion.fuse(scores[:, others], weights[:, others]), pset.gold) == 0
    causal &= rank > 0
    return np.minimum(rank, k) + (k + 1) * (successful + 2 * causal)


def compare(
    pset: PredictionSet,
    agents: Sequence[int],
    *,
    strategies: Sequence[FusionRule] | None = None,
    tau: float = 0.70,
    k: int = 5,
    n_folds: int = 5,
    resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
    outcome=None,
) -> dict:
    """The ``fusion_compare`` JSON section (see the module docstring). Rates are over all
    instances; ``diff`` is the strategy minus uniform, with a paired interval. ``outcome``
    codes each rule's instances (default :func:`outcomes`; the reference passes
    :func:`outcomes_reference`)."""
    agents = list(agents)
    pset = of(pset)  # one context: the rules share folds, top labels and the label-major copy
    strategies = list(strategies or default_strategies(tau=tau, n_folds=n_folds, seed=seed))
    k = min(k, len(pset.labels))
    figures = [f"top{j}" for j in range(1, k + 1)] + ["successful_sabotage", "causal_sabotage"]
    width = 4 * (k + 1)  # distinct outcome codes
    code = np.arange(width)
    indicator = np.column_stack(  # [code, figure] 0/1
        [(code % (k + 1)) < j for j in range(1, k + 1)] + [(code // (k + 1)) % 2 == 1, code // (2 * (k + 1)) == 1]
    ).astype(np.float64)
    agent_top = of(pset).agent_top(agents)
    codes, kept, skipped = [], [], {}
    for i, rule in enumerate(strategies):
        try:
            if outcome is None:
                codes.append(outcomes(pset, rule, agents, tau=tau, k=k, agent_top=agent_top))
            else:
                codes.append(outcome(pset, rule, agents, tau=tau, k=k))
        except InputError as error:  # e.g. quality weighting without quality scores: leave that rule out
            if i == 0:
                raise
            # the reason names the file, not the directory, so the JSON does not depend on where the run lives
            source = str(pset.source or "")
            skipped[rule.name] = str(error).replace(source, Path(source).name) if source else str(error)
            continue
        kept.append(rule)
    strategies = kept
    base = strategies[0].name
    tail = (1 - level) / 2 * 100
    point, ci = {}, {}
    for rule, own in zip(strategies, codes, strict=True):
        # each strategy resamples jointly with the baseline only: paired, over <= width^2 cells
        tally = np.bincount(own.astype(np.int64) * width + codes[0], minlength=width * width)
        cells = np.flatnonzero(tally)
        counts = tally[cells]
        mine, theirs = indicator[cells // width], indicator[cells % width]
        total = counts.sum()
        for f, figure in enumerate(figures):
            point[f"{rule.name}.{figure}"] = float(counts @ mine[:, f]) / total
            point[f"{rule.name}.diff.{figure}"] = float(counts @ (mine[:, f] - theirs[:, f])) / total
        if not resamples:
            continue
        draws = metrics.resample_counts(counts, resamples=resamples, seed=seed).astype(np.float64)
        rates, base_rates = draws @ mine / total, draws @ theirs / total
        bounds = np.percentile(rates, [tail, 100 - tail], axis=0)
        diff_bounds = np.percentile(rates - base_rates, [tail, 100 - tail], axis=0)
        for f, figure in enumerate(figures):
            ci[f"{rule.name}.{figure}"] = [float(bounds[0, f]), float(bounds[1, f])]
            if rule.name != base:
                ci[f"{rule.name}.diff.{figure}"] = [float(diff_bounds[0, f]), float(diff_bounds[1, f])]
    table = {}
    for rule in strategies:
        entry = {figure: point[f"{rule.name}.{figure}"] for figure in figures}
        entry["ci"] = {figure: ci.get(f"{rule.name}.{figure}", [None, None]) for figure in figures}
        if rule.name != base:
            entry["diff"] = {figure: point[f"{rule.name}.diff.{figure}"] for figure in figures}
            entry["diff_ci"] = {figure: ci.get(f"{rule.name}.diff.{figure}", [None, None]) for figure in figures}
        table[rule.name] = entry
    return {
        "baseline": base,
        "figures": figures,
        "n_instances": pset.n_instances,
        "n_folds": n_folds_of(n_folds),
        "strategies": table,
        "skipped": skipped,
    }


def _section(d, *, folds=5) -> dict:
    o = d.options
    return compare(d.context, fused_indices(d), tau=o.tau, k=d.k, n_folds=folds, **bootstrap_options(d))


diagnostics.register("fusion_compare", order=4)(
    Diagnostic(
        section=FusionCompareSection,
        help="Fusion strategies side by side, with paired differences to uniform.",
        compute=_section,
        reference=lambda d, folds=5: compare(
            d.context,
            fused_indices(d),
            tau=d.options.tau,
            k=d.k,
            n_folds=folds,
            resamples=0,
            seed=d.options.seed,
            outcome=outcomes_reference,
        ),
    )
)
