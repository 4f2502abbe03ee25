"""The ablation audit of end-to-end models: which input stream sabotages the model.

An end-to-end model is asked again with one stream removed (``without:<stream>``), kept
alone (``only:<stream>``) or taken from another instance (``shuffled:<stream>``); its records
are one model's answers under those conditions (:mod:`modsab.contract.ablation`). Per model
and stream, over the instances where both the full and the ablated answer are valid:

- ``causal_sabotage_rate``: full answer wrong, ablated answer right (the stream caused the error);
- ``causal_contribution_rate``: full right, ablated wrong (the stream was needed);
- ``flip_rate``: the top-1 label changes; ``top1_full`` and ``top1_without`` on those instances,
  ``top1_drop = top1_full - top1_without``; for ``shuffled:`` the drop is the **perceptual
  score** (how much the model uses the stream's content, not just its presence).

This is the model-side twin of the agents' leave-one-out test (``causal``): there a fused
agent is removed by fusing again without it; here the stream is removed from the model's
input. When the set also has fused agents, ``fusion`` gives each agent's leave-one-out causal
rates beside the stream it reads (an agent named ``<stream>``, ``<stream>_...`` or
``..._<stream>``), so the report can put "which stream sabotages the agents' fusion" beside
"which stream sabotages the model". Top-1 of an answer: its highest-confidence valid
candidate, ties to the earlier label (:func:`modsab.core.audit.agent_top`); "right" = gold.

Intervals are paired: for each (model, condition) every instance is reduced to four bits
(pair valid, full right, ablated right, flipped), and a resample is one multinomial draw over
those (at most 16) codes, so full and ablated figures come from the same resampled instances.
The section runs automatically whenever the set carries conditions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modsab.contract.ablation import FULL, KINDS, AblationSet, split_condition
from modsab.contract.errors import InputError
from modsab.core import audit, fusion
from modsab.diagnostics._base import Diagnostic, bootstrap_options, coalitions, fused_indices
from modsab.registry import diagnostics
from modsab.stats import metrics

#: Per kind of condition: the key of the model's top-1 under it, and of the drop from full.
CONDITION_TOP1 = {"without": "top1_without", "only": "top1_only", "shuffled": "top1_shuffled"}
CONDITION_DROP = {"without": "top1_drop", "only": "top1_drop", "shuffled": "perceptual_score"}
RATES = ("causal_sabotage_rate", "causal_contribution_rate", "flip_rate")


#: Each stream's figures in the order and words the terminal and the report show them.
STREAM_FIGURES = (
    ("top1_full", "top-1 full"),
    ("top1_without", "top-1 without"),
    ("top1_drop", "drop"),
    ("causal_sabotage_rate", "causal sabotage"),
    ("causal_contribution_rate", "causal contribution"),
    ("flip_rate", "flips"),
)


def condition_keys(kind: str) -> tuple[str, ...]:
    """The figures of one condition kind, in JSON order (after ``n``)."""
    return ("top1_full", CONDITION_TOP1[kind], CONDITION_DROP[kind], *RATES)


def agent_stream(agent: str, streams: Sequence[str]) -> str | None:
    """The stream an agent reads, from its name: the stream itself, or ``<stream>`` followed
    or preceded by ``_``, ``-`` or ``.`` (``audio_probe`` -> ``audio``); the longest match wins."""
    if agent in streams:
        return agent
    matches = [
        s for s in streams if any(agent.startswith(s + sep) or agent.endswith(sep + s) for sep in ("_", "-", "."))
    ]
    return max(matches, key=len) if matches else None


# -- fast ------------------------------------------------------------------------------------


def _figures(
    flags: list[np.ndarray],
    ratios: dict[str, tuple[Any, int]],
    differences: dict[str, tuple[str, str]],
    *,
    resamples: int,
    rng: np.random.Generator,
    level: float,
) -> tuple[dict[str, float | None], dict[str, list[float | None]]]:
    """Ratios of per-instance bits and paired differences of two ratios, with percentile
    intervals from one multinomial draw over the distinct bit patterns. ``ratios`` maps a
    figure to ``(numerator, denominator column)``; a numerator is a column index or a function
    of the pattern rows."""
    rows, counts = metrics.column_patterns(flags, [2] * len(flags))
    names = list(ratios)
    numerators = np.column_stack(
        [num(rows) if callable(num) else rows[:, num] for num, _ in (ratios[k] for k in names)]
    ).astype(np.float64)
    denominators = np.column_stack([rows[:, ratios[k][1]] for k in names]).astype(np.float64)

    def evaluate(sums_num: np.ndarray, sums_den: np.ndarray) -> np.ndarray:
        values = metrics._ratio(sums_num, sums_den)
        extra = [values[..., names.index(a)] - values[..., names.index(b)] for a, b in differences.values()]
        return np.concatenate([values, np.stack(extra, axis=-1)], axis=-1) if extra else values

    keys = names + list(differences)
    point_values = evaluate(counts @ numerators, counts @ denominators)
    point = {k: metrics._nan_to_none(float(v)) for k, v in zip(keys, point_values, strict=True)}
    ci: dict[str, list[float | None]] = {}
    if resamples:
        draws = metrics.draw_counts(counts, resamples=resamples, rng=rng).astype(np.float64)
        samples = evaluate(draws @ numerators, draws @ denominators)
        ci = dict(zip(keys, metrics.percentile_columns(samples, level=level), strict=True))
    return point, ci


def _models(
    aset: AblationSet, top: np.ndarray, rows: np.ndarray | None, *, resamples: int, rng, level: float, overall: bool
) -> tuple[dict[str, Any], dict[str, list[float | None]]]:
    """``models`` and ``ci`` of one group of instances (``rows``; all when None)."""
    gold = aset.gold if rows is None else aset.gold[rows]
    top = top if rows is None else top[rows]
    present = aset.present if rows is None else aset.present[rows]
    models: dict[str, Any] = {}
    ci: dict[str, list[float | None]] = {}
    for model in aset.models:
        f = aset.column(model, FULL)
        top_full = top[:, f]
        valid_full = top_full >= 0
        right_full = valid_full & (top_full == gold)
        point, c = _figures(
            [valid_full, right_full], {"top1_full": (1, 0)}, {}, resamples=resamples, rng=rng, level=level
        )
        ci |= {f"models.{model}.{k}": v for k, v in c.items()}
        entry: dict[str, Any] = {
            "n": int(valid_full.sum()),
            "abstained": int((present[:, f] & ~valid_full).sum()),
            "missing": int((~present[:, f]).sum()),
        }
        if overall:
            entry["invalid_labels"] = int(aset.invalid_labels.get(model, 0))
        entry["top1_full"] = point["top1_full"]
        entry["ci"] = c
        entry["conditions"] = list(aset.conditions(model))
        streams: dict[str, Any] = {}
        for stream in aset.streams(model):
            block: dict[str, Any] = {}
            for kind in KINDS:
                c_index = aset.column(model, f"{kind}:{stream}")
                if c_index is None:
                    continue
                top_c = top[:, c_index]
                pair = valid_full & (top_c >= 0)
                right_c = pair & (top_c == gold)
                flips = pair & (top_c != top_full)
                drop_key, top_key = CONDITION_DROP[kind], CONDITION_TOP1[kind]
                point, c = _figures(
                    [pair, pair & right_full, right_c, flips],
                    {
                        "top1_full": (1, 0),
                        top_key: (2, 0),
                        "causal_sabotage_rate": (lambda r: (1 - r[:, 1]) * r[:, 2], 0),
                        "causal_contribution_rate": (lambda r: r[:, 1] * (1 - r[:, 2]), 0),
                        "flip_rate": (3, 0),
                    },
                    {drop_key: ("top1_full", top_key)},
                    resamples=resamples,
                    rng=rng,
                    level=level,
                )
                keys = condition_keys(kind)
                figures = {"n": int(pair.sum()), **{k: point[k] for k in keys}, "ci": {k: c[k] for k in keys if k in c}}
                prefix = f"models.{model}.streams.{stream}." + ("" if kind == "without" else f"{kind}.")
                ci |= {prefix + k: figures["ci"][k] for k in keys if k in c}
                if kind == "without":
                    block = {**figures, **block}
                else:
                    block[kind] = figures
            if "n" not in block:  # no without:<stream>: the removal figures are empty
                block = {"n": 0, **dict.fromkeys(condition_keys("without")), "ci": {}, **block}
            shuffled = block.get("shuffled")  # the perceptual score, on the stream itself too
            block["perceptual_score"] = None if shuffled is None else shuffled["perceptual_score"]
            if shuffled is not None and "perceptual_score" in shuffled["ci"]:
                block["ci"] = {**block["ci"], "perceptual_score": shuffled["ci"]["perceptual_score"]}
            block["conditions"] = [c for c in aset.conditions(model) if split_condition(c)[1] == stream]
            streams[stream] = _ordered_block(block)
        entry["streams"] = streams
        models[model] = entry
    return models, ci


def _ordered_block(block: dict[str, Any]) -> dict[str, Any]:
    """A stream's keys in JSON order: n, the removal figures, the perceptual score, their
    intervals, conditions, then only / shuffled."""
    order = ["n", *condition_keys("without"), "perceptual_score", "ci", "conditions", "only", "shuffled"]
    return {key: block[key] for key in order if key in block}


def _fusion(d, streams: Sequence[str], *, resamples: int, rng, level: float) -> tuple[dict, dict]:
    """Each fused agent's leave-one-out causal rates (over the instances it answered)."""
    from modsab.diagnostics.causal import LeaveOneOut

    agents = fused_indices(d)
    effect = LeaveOneOut().attribute(coalitions(d))
    answered = d.top[:, agents] >= 0
    out, ci = {}, {}
    for j, name in enumerate(d.fused_agents):
        point, c = _figures(
            [answered[:, j], effect[:, j] < 0, effect[:, j] > 0],
            {"causal_sabotage_rate": (1, 0), "causal_contribution_rate": (2, 0)},
            {},
            resamples=resamples,
            rng=rng,
            level=level,
        )
        ci |= {f"fusion.agents.{name}.{k}": v for k, v in c.items()}
        out[name] = {"stream": agent_stream(name, streams), "n": int(answered[:, j].sum()), **point, "ci": c}
    return {"agents": out}, ci


def all_streams(aset: AblationSet) -> list[str]:
    return list(dict.fromkeys(s for model in aset.models for s in aset.streams(model)))


def ablation_section(d, *, resamples: int = 1000, seed: int | None = 0, level: float = 0.95) -> dict[str, Any]:
    """The ``ablation`` JSON section of a diagnosis whose set carries conditions."""
    aset = d.pset.ablation
    top, _ = audit.agent_top(aset.scores, aset.candidate)
    rng = np.random.default_rng(seed)
    options = {"resamples": resamples, "rng": rng, "level": level}
    models, ci = _models(aset, top, None, overall=True, **options)
    out: dict[str, Any] = {"n_instances": aset.n_instances, "models": models}
    if d.fused_agents:
        out["fusion"], fusion_ci = _fusion(d, all_streams(aset), **options)
        ci |= fusion_ci
    out["ci"] = ci
    if aset.dataset is not None:
        out["by_dataset"] = {}
        for name in sorted(set(aset.dataset.tolist())):
            rows = np.flatnonzero(aset.dataset == name)
            group, group_ci = _models(aset, top, rows, overall=False, **options)
            out["by_dataset"][name] = {"n_instances": int(rows.size), "models": group, "ci": group_ci}
    return out


def _section(d, *, folds=5) -> dict[str, Any]:
    return ablation_section(d, **bootstrap_options(d))


def _check(d) -> None:
    if d.pset.ablation is None:
        raise InputError(
            f"no record of {d.pset.source} carries a condition: nothing to audit by ablation",
            hint="records of a model under conditions have condition 'without:<stream>' (see modsab.ablate); "
            "the ablation audit then runs by itself",
        )


def _columns(d) -> dict[str, np.ndarray]:
    """Per model and condition, ``<model>.<condition>.top`` (the label) and, for every condition
    but full, ``<model>.<condition>.causal``: ``saboteur`` (full wrong, this condition right: for
    ``without:<s>``, the stream s caused the error), ``contributor`` (full right, this condition
    wrong) or empty; aligned to the instances table (empty where the model has no record)."""
    import pandas as pd

    aset = d.pset.ablation
    rows = pd.Index(aset.instance_ids).get_indexer(d.pset.instance_ids)  # -1: the model has no record there
    top, _ = audit.agent_top(aset.scores, aset.candidate)
    top = np.where(rows[:, None] >= 0, top[np.maximum(rows, 0)], -1)
    gold = np.where(rows >= 0, aset.gold[np.maximum(rows, 0)], -2)
    names = np.asarray([*aset.labels, None], dtype=object)
    out: dict[str, np.ndarray] = {}
    for model in aset.models:
        f = aset.column(model, FULL)
        right_full = (top[:, f] >= 0) & (top[:, f] == gold)
        for condition in aset.conditions(model):
            c = aset.column(model, condition)
            out[f"{model}.{condition}.top"] = names[top[:, c]]
            if condition == FULL:
                continue
            pair = (top[:, f] >= 0) & (top[:, c] >= 0)
            right = top[:, c] == gold
            effect = np.where(
                pair & ~right_full & right, "saboteur", np.where(pair & right_full & ~right, "contributor", "")
            )
            out[f"{model}.{condition}.causal"] = effect.astype(object)
    return out


# -- plain reference ---------------------------------------------------------------------------


def _plain_top(scores: np.ndarray, candidate: np.ndarray) -> int:
    """The highest-confidence valid candidate, ties to the earlier label; -1 without one."""
    best = -1
    for label in range(len(scores)):
        if candidate[label] and (best < 0 or scores[label] > scores[best]):
            best = label
    return best


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def ablation_reference(d, *, folds=5) -> dict[str, Any]:
    """The point figures of the ``ablation`` section, plainly: a loop over instances per
    (model, condition), the top label found by scanning the candidates; the agents' part by
    fusing again without each agent (:func:`~modsab.core.fusion.fuse`), as ``causal`` does."""
    aset = d.pset.ablation
    n = aset.n_instances

    def answer(i: int, c: int) -> int:
        return _plain_top(aset.scores[i, c], aset.candidate[i, c])

    def group(rows: list[int], overall: bool) -> dict[str, Any]:
        models = {}
        for model in aset.models:
            f = aset.column(model, FULL)
            full = {i: answer(i, f) for i in rows}
            valid = [i for i in rows if full[i] >= 0]
            entry: dict[str, Any] = {
                "n": len(valid),
                "abstained": sum(1 for i in rows if aset.present[i, f] and full[i] < 0),
                "missing": sum(1 for i in rows if not aset.present[i, f]),
            }
            if overall:
                entry["invalid_labels"] = aset.invalid_labels.get(model, 0)
            entry["top1_full"] = _ratio(sum(full[i] == aset.gold[i] for i in valid), len(valid))
            entry["conditions"] = list(aset.conditions(model))
            streams = {}
            for stream in aset.streams(model):
                block: dict[str, Any] = {"n": 0, **dict.fromkeys(condition_keys("without"))}
                for kind in KINDS:
                    c = aset.column(model, f"{kind}:{stream}")
                    if c is None:
                        continue
                    pairs = [i for i in valid if answer(i, c) >= 0]
                    right_full = sum(full[i] == aset.gold[i] for i in pairs)
                    right = sum(answer(i, c) == aset.gold[i] for i in pairs)
                    m = len(pairs)
                    top1_full, top1 = _ratio(right_full, m), _ratio(right, m)
                    figures = {
                        "n": m,
                        "top1_full": top1_full,
                        CONDITION_TOP1[kind]: top1,
                        CONDITION_DROP[kind]: None if m == 0 else top1_full - top1,
                        "causal_sabotage_rate": _ratio(
                            sum(full[i] != aset.gold[i] and answer(i, c) == aset.gold[i] for i in pairs), m
                        ),
                        "causal_contribution_rate": _ratio(
                            sum(full[i] == aset.gold[i] and answer(i, c) != aset.gold[i] for i in pairs), m
                        ),
                        "flip_rate": _ratio(sum(full[i] != answer(i, c) for i in pairs), m),
                    }
                    if kind == "without":
                        block.update(figures)
                    else:
                        block[kind] = figures
                block["perceptual_score"] = block["shuffled"]["perceptual_score"] if "shuffled" in block else None
                block["conditions"] = [c for c in aset.conditions(model) if c.partition(":")[2] == stream]
                streams[stream] = block
            entry["streams"] = streams
            models[model] = entry
        return models

    out: dict[str, Any] = {"n_instances": n, "models": group(list(range(n)), True)}
    if d.fused_agents:
        agents = fused_indices(d)
        scores, weights = d.rule.scores(d.context, agents), d.rule.weights(d.context, agents)
        gold = d.pset.gold

        def right(keep: list[int]) -> np.ndarray:
            return fusion.gold_rank(fusion.fuse(scores[:, keep], weights[:, keep]), gold) == 0

        every = list(range(len(agents)))
        all_right = right(every)
        streams = all_streams(aset)
        fused = {}
        for j, name in enumerate(d.fused_agents):
            without = right([i for i in every if i != j])
            answered = d.top[:, agents[j]] >= 0
            count = int(answered.sum())
            fused[name] = {
                "stream": agent_stream(name, streams),
                "n": count,
                "causal_sabotage_rate": _ratio(int((~all_right & without).sum()), count),
                "causal_contribution_rate": _ratio(int((all_right & ~without).sum()), count),
            }
        out["fusion"] = {"agents": fused}
    if aset.dataset is not None:
        out["by_dataset"] = {}
        for name in sorted(set(aset.dataset.tolist())):
            rows = [i for i in range(n) if aset.dataset[i] == name]
            out["by_dataset"][name] = {"n_instances": len(rows), "models": group(rows, False)}
    return out


diagnostics.register("ablation", order=50)(
    Diagnostic(
        help="Ablation audit of end-to-end models (records with conditions): which input stream sabotages the model.",
        compute=_section,
        reference=ablation_reference,
        check=_check,
        columns=_columns,
        by_dataset=True,
        automatic=True,
        applies=lambda d: d.pset.ablation is not None,
        needs_agents=False,
    )
)
