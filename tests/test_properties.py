"""Properties that hold for any predictions (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modsab.contract.predictions import PredictionSet
from modsab.core.audit import Role
from modsab.core.diagnosis import diagnose
from modsab.registry import fusion_rules

LABELS = ("neutral", "joy", "surprise", "anger")
AGENTS = ("text", "audio", "vision")


@st.composite
def prediction_sets(draw, n_agents=3):
    n = draw(st.integers(1, 40))
    # integer confidences 0-100 as real agents give them, many ties
    conf = draw(arrays(np.int64, (n, n_agents, len(LABELS)), elements=st.integers(0, 100)))
    named = draw(arrays(np.bool_, (n, n_agents, len(LABELS))))
    gold = draw(arrays(np.int64, n, elements=st.integers(0, len(LABELS) - 1)))
    quality = draw(arrays(np.int64, (n, n_agents), elements=st.integers(1, 100)))
    return PredictionSet.from_arrays(
        np.where(named, conf, 0) / 100,
        gold,
        labels=LABELS,
        agents=AGENTS[:n_agents],
        candidate=named,
        quality=quality / 100,
    )


def summary(pset, **options):
    options.setdefault("bootstrap", 0)
    return diagnose(pset, **options).to_dict()


def permuted(pset, order):
    return PredictionSet.from_arrays(
        pset.scores[:, order],
        pset.gold,
        labels=pset.labels,
        agents=[pset.agents[i] for i in order],
        candidate=pset.candidate[:, order],
        quality=pset.quality[:, order],
    )


@settings(max_examples=60, deadline=None)
@given(prediction_sets(), st.permutations(range(3)))
def test_agent_order_does_not_change_results(pset, order):
    a, b = summary(pset), summary(permuted(pset, list(order)))
    assert a["fusion_topk"] == b["fusion_topk"]
    assert a["agents"] == {name: b["agents"][name] for name in a["agents"]}


@settings(max_examples=60, deadline=None)
@given(prediction_sets(), st.integers(1, 100))
def test_uniform_equals_quality_when_all_qualities_are_equal(pset, q):
    pset.quality[:] = q / 100
    uniform, quality = summary(pset), summary(pset, weights="quality")
    assert uniform["fusion_topk"] == quality["fusion_topk"]
    assert uniform["agents"] == quality["agents"]


@settings(max_examples=60, deadline=None)
@given(prediction_sets())
def test_an_all_zero_agent_changes_nothing(pset):
    n, m, k = pset.scores.shape
    extra = PredictionSet.from_arrays(
        np.concatenate([pset.scores, np.zeros((n, 1, k))], axis=1),
        pset.gold,
        labels=pset.labels,
        agents=[*pset.agents, "silent"],
        candidate=np.concatenate([pset.candidate, np.ones((n, 1, k), bool)], 1),
        quality=np.concatenate([pset.quality, np.full((n, 1), 0.5)], axis=1),
    )
    before, after = summary(pset), summary(extra)
    assert before["fusion_topk"] == after["fusion_topk"]
    for name in pset.agents:
        for key in ("n", "contributors", "potential_sabotage", "successful_sabotage"):
            assert before["agents"][name][key] == after["agents"][name][key]


@settings(max_examples=60, deadline=None)
@given(prediction_sets(), st.floats(0.0, 1.0))
def test_roles_are_consistent_with_their_definitions(pset, tau):
    result = diagnose(pset, bootstrap=0, tau=tau)
    role, top, conf = result.role, result.top, result.confidence
    contributor = role == Role.CONTRIBUTOR
    potential = role >= Role.POTENTIAL_SABOTAGE
    successful = role == Role.SUCCESSFUL_SABOTAGE
    assert not np.any(successful & ~potential)  # successful is a subset of potential
    assert not np.any(contributor & potential)  # contributor and saboteur are exclusive
    answered = pset.candidate.any(axis=2)
    np.testing.assert_array_equal(contributor, answered & (top == pset.gold[:, None]))
    np.testing.assert_array_equal(potential, answered & (top != pset.gold[:, None]) & (conf >= tau - 1e-9))
    np.testing.assert_array_equal(successful, potential & (top == result.fused_top[:, None]))


@settings(max_examples=60, deadline=None)
@given(prediction_sets())
def test_top_k_is_non_decreasing_in_k(pset):
    topk = list(summary(pset)["fusion_topk"].values())
    assert all(a <= b for a, b in zip(topk, topk[1:], strict=False))


@settings(max_examples=40, deadline=None)
@given(prediction_sets(), st.integers(0, 2**31))
def test_bootstrap_interval_contains_the_point_estimate(pset, seed):
    d = summary(pset, bootstrap=400, seed=seed)
    for key, (low, high) in d["ci"].items():
        if low is None:
            continue
        section, _, rest = key.partition(".")
        value = (
            d[section][rest]
            if section == "fusion_topk"
            else (
                d["baseline_top1"]
                if section == "baseline_top1"
                else d["agents"][rest.split(".")[0]][rest.split(".")[1]]
            )
        )
        if value is not None:
            assert low - 1e-12 <= value <= high + 1e-12, key


@st.composite
def coarse_sets(draw):
    """Confidences on a coarse grid: fused ties (and ties after dropping an agent) are common."""
    n = draw(st.integers(1, 30))
    conf = draw(arrays(np.int64, (n, 3, len(LABELS)), elements=st.sampled_from([0, 10, 20, 30, 50, 70, 100])))
    gold = draw(arrays(np.int64, n, elements=st.integers(0, len(LABELS) - 1)))
    quality = draw(arrays(np.int64, (n, 3), elements=st.sampled_from([10, 50, 100])))
    return PredictionSet.from_arrays(conf / 100, gold, labels=LABELS, agents=AGENTS, quality=quality / 100)


@pytest.mark.parametrize("name", fusion_rules.names())
@given(pset=coarse_sets(), k=st.integers(1, 4), missing_quality=st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_blocked_strategy_outcomes_equal_the_plain_reference_for_every_registered_rule(
    name, pset, k, missing_quality, monkeypatch
):
    """Every fusion rule in the registry (one added later too): the block fast path of
    ``fusion_compare`` codes exactly what the plain fusion + audit gives, on tie-heavy sets in
    several blocks, with abstentions, and with self-reported quality missing."""
    from modsab.contract.errors import InputError
    from modsab.core.context import Context
    from modsab.diagnostics import fusion_compare

    if missing_quality:
        pset.quality = np.where(np.arange(pset.n_instances)[:, None] % 3 == 0, np.nan, pset.quality)
    rule = fusion_rules.get(name).from_options(tau=0.7, folds=2, seed=1)
    monkeypatch.setattr(fusion_compare, "BLOCK_ROWS", 7)  # several blocks, a short last one
    try:
        expected = fusion_compare.outcomes_reference(Context(pset), rule, range(3), k=k)
    except InputError:  # e.g. quality weights without quality: the fast path refuses alike
        with pytest.raises(InputError):
            fusion_compare.outcomes(Context(pset), rule, range(3), k=k)
        return
    got = fusion_compare.outcomes(Context(pset), rule, range(3), k=k)
    assert got.tolist() == expected.tolist(), name
