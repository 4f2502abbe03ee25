"""Counterfactual sabotage, Shapley shares and the paper's rule on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modsab.core.fusion import FusionRule
from modsab.data.synth import prediction_set
from modsab.diagnostics import shapley
from modsab.diagnostics.attribution import Coalitions, PaperRule
from modsab.diagnostics.causal import LeaveOneOut, agent_pairs, causal_report, pair_effects
from modsab.diagnostics.shapley import Shapley, shapley_matrix, shapley_report, subset_masks


def coalitions(scores, gold, tau=0.70):
    pset = prediction_set(np.asarray(scores, dtype=float), gold)
    return Coalitions.from_rule(pset, FusionRule(), range(pset.scores.shape[1]), tau=tau)


# labels: 0 = gold, 1 = the wrong label two agents back
TWO_BACK_WRONG = [
    [[0.4, 0, 0], [0.3, 0, 0], [0, 0.8, 0], [0, 0.75, 0]],  # gold 0.7 loses to 1.55, to 0.8 and to 0.75
]


def test_two_agents_backing_the_same_wrong_label_are_successful_but_not_causal():
    c = coalitions(TWO_BACK_WRONG, [0])
    paper = PaperRule().attribute(c)
    assert paper.tolist() == [[1, 1, -1, -1]]  # both saboteurs "successful" by the paper
    loo = LeaveOneOut().attribute(c)
    assert loo.tolist() == [[0, 0, 0, 0]]  # without either one the other still wins
    joint, only = pair_effects(c)
    # pairs in order (0,1) (0,2) (0,3) (1,2) (1,3) (2,3): only removing both saboteurs helps
    assert joint.tolist() == [[False, False, False, False, False, True]]
    assert only.tolist() == [[False, False, False, False, False, True]]


def test_leave_one_out_single_causal_saboteur_and_contributor():
    # agent 2 alone flips the answer: 0.5 + 0.3 gold vs 0.9 wrong; without it gold wins
    c = coalitions([[[0.5, 0, 0], [0.3, 0, 0], [0, 0.9, 0]]], [0])
    assert LeaveOneOut().attribute(c).tolist() == [[0, 0, -1]]
    # now gold wins 0.5 + 0.6 against 0.9; removing agent 1 makes it wrong: causal contributor
    c = coalitions([[[0.5, 0, 0], [0.6, 0, 0], [0, 0.9, 0]]], [0])
    assert LeaveOneOut().attribute(c).tolist() == [[1, 1, 0]]


def test_paper_rule_flags_confident_wrong_that_did_not_cause():
    # agents 1 and 2 confidently back label 1; agent 0 backs label 2 weakly. Fusion picks 1 (wrong).
    c = coalitions([[[0, 0, 0.4], [0.1, 0.9, 0], [0, 0.9, 0]]], [0])
    assert (PaperRule().saboteurs(c) == [[False, True, True]]).all()
    assert not LeaveOneOut().saboteurs(c).any()


def test_causal_report_counts_disagreement():
    c = coalitions(TWO_BACK_WRONG * 3, [0, 0, 0])
    report = causal_report(c, answered=np.ones((3, 4), dtype=bool), resamples=50, seed=1)
    entry = report["agents"]["agent2"]
    assert entry["paper_successful_sabotage_rate"] == 1.0
    assert entry["causal_sabotage_rate"] == 0.0
    assert entry["disagreement"] == {"both": 0, "paper_only": 3, "causal_only": 0}
    assert report["pairs"]["agent2+agent3"]["only_jointly_rate"] == 1.0


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


@settings(max_examples=40, deadline=None)
@given(
    scores=arrays(np.float64, (12, 4, 3), elements=st.sampled_from([0.0, 0.2, 0.5, 0.8])),
    gold=arrays(np.int64, 12, elements=st.integers(0, 2)),
    tau=st.sampled_from([0.5, 0.7]),
)
def test_causal_report_matches_the_attributions(scores, gold, tau):
    c = coalitions(scores, gold, tau)
    answered = c.top >= 0
    report = causal_report(c, answered=answered, resamples=30, seed=2)
    loo, paper = LeaveOneOut().attribute(c), PaperRule().attribute(c)
    for j, name in enumerate(c.agents):
        entry, n = report["agents"][name], int(answered[:, j].sum())
        causal, contribution, successful = loo[:, j] < 0, loo[:, j] > 0, paper[:, j] < 0
        both = int((causal & successful).sum())
        assert entry["n"] == n
        assert entry["causal_sabotage_rate"] == _ratio(causal.sum(), n)
        assert entry["causal_contribution_rate"] == _ratio(contribution.sum(), n)
        assert entry["paper_successful_sabotage_rate"] == _ratio(successful.sum(), n)
        assert entry["causal_given_paper"] == _ratio(both, successful.sum())
        assert entry["disagreement"] == {
            "both": both,
            "paper_only": int(successful.sum()) - both,
            "causal_only": int(causal.sum()) - both,
        }
    # pairs against the coalition values read through the public table
    m, pairs = 4, agent_pairs(4)
    full = c.values(c.full_mask())[:, 0] == 1
    without = c.values(1 - np.eye(m, dtype=np.int8)) == 1
    without_pair = c.values(np.array([[int(i not in p) for i in range(m)] for p in pairs], dtype=np.int8)) == 1
    joint = ~full[:, None] & without_pair
    single = ~full[:, None] & without
    only = joint & ~single[:, [a for a, _ in pairs]] & ~single[:, [b for _, b in pairs]]
    got_joint, got_only = pair_effects(c)
    assert np.array_equal(got_joint, joint) and np.array_equal(got_only, only)
    for p, (a, b) in enumerate(pairs):
        entry = report["pairs"][f"{c.agents[a]}+{c.agents[b]}"]
        assert entry["jointly_causal"] == joint[:, p].sum() and entry["only_jointly"] == only[:, p].sum()
        assert entry["jointly_causal_rate"] == joint[:, p].mean()
        assert entry["only_jointly_rate"] == only[:, p].mean()
    for key, (low, high) in report["ci"].items():
        assert key.startswith(("agents.", "pairs.")) and (low is None or 0 <= low <= high <= 1)


def test_coalition_rows_are_the_value_table_columns_without_a_float_copy():
    c = coalitions(TWO_BACK_WRONG * 2, [0, 1])
    masks = subset_masks(4)
    correct, gold_probability = c.rows(masks)
    again, _ = c.rows(masks)
    table = c.value_table(masks)
    for s in range(len(masks)):
        assert correct[s].dtype == bool and np.array_equal(correct[s], table["correct"][:, s] == 1)
        assert np.array_equal(gold_probability[s], table["gold_probability"][:, s])
        assert again[s] is correct[s]  # remembered, fused once


def test_shapley_matrix_matches_two_agent_formula():
    # M = 2: phi_0 = 1/2 (v(0) - v()) + 1/2 (v(01) - v(1))
    a = shapley_matrix(2)
    assert subset_masks(2).tolist() == [[0, 0], [1, 0], [0, 1], [1, 1]]
    assert np.allclose(a[:, 0], [-0.5, 0.5, -0.5, 0.5])


@settings(max_examples=40, deadline=None)
@given(
    scores=arrays(np.float64, (6, 4, 5), elements=st.integers(0, 100).map(lambda v: v / 100)),
    gold=arrays(np.int64, 6, elements=st.integers(0, 4)),
)
def test_shapley_efficiency(scores, gold):
    c = coalitions(scores, gold)
    for value in ("correct", "gold_probability"):
        phi = Shapley(value).attribute(c)
        full = c.values(np.ones((1, 4), dtype=np.int8), value)[:, 0]
        empty = c.values(np.zeros((1, 4), dtype=np.int8), value)[:, 0]
        assert np.allclose(phi.sum(axis=1), full - empty)


@settings(max_examples=40, deadline=None)
@given(
    scores=arrays(np.float64, (5, 3, 4), elements=st.integers(0, 100).map(lambda v: v / 100)),
    gold=arrays(np.int64, 5, elements=st.integers(0, 3)),
)
def test_causal_saboteur_needs_a_wrong_fusion_and_a_wrong_agent(scores, gold):
    c = coalitions(scores, gold)
    loo = LeaveOneOut().attribute(c)
    correct = c.values(np.ones((1, 3), dtype=np.int8))[:, 0].astype(bool)
    assert not (loo < 0)[correct].any()
    assert not (loo > 0)[~correct].any()
    # an agent whose top label is gold can never be a causal saboteur
    assert not ((loo < 0) & (c.top == gold[:, None])).any()


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 5),
    scores=arrays(np.float64, (40, 5, 3), elements=st.sampled_from([0.0, 0.1, 0.3, 0.6, 0.9])),
    gold=arrays(np.int64, 40, elements=st.integers(0, 2)),
    split=st.integers(0, 40),
)
def test_shapley_report_means_are_the_plain_means_of_phi(m, scores, gold, split):
    c = coalitions(scores[:, :m], gold)
    groups = {"first": np.arange(split), "rest": np.arange(split, 40)}
    report = shapley_report(c, groups=groups, resamples=40, seed=5)
    plain = shapley._plain_report(c, groups=groups, resamples=40, seed=5)
    phis = {value: Shapley(value).attribute(c) for value in shapley.VALUES}
    for group, rows in ({"all": np.arange(40)} | groups).items():
        entry = report["groups"][group]
        assert entry["n_instances"] == plain["groups"][group]["n_instances"] == rows.size
        for value, phi in phis.items():
            for j, name in enumerate(c.agents):
                got = entry["agents"][name][value]
                if rows.size == 0:
                    assert got == {"mean": None, "ci": [None, None]}
                    continue
                assert got["mean"] == pytest.approx(phi[rows, j].mean(), abs=1e-12)
                assert got["mean"] == pytest.approx(plain["groups"][group]["agents"][name][value]["mean"], abs=1e-12)
                low, high = got["ci"]
                assert low <= high
                if np.ptp(phi[rows, j]) < 1e-12:  # every resample has the same mean
                    assert low == pytest.approx(got["mean"]) and high == pytest.approx(got["mean"])
            total = entry[f"total_{value}"]
            assert (total is None) if rows.size == 0 else total == pytest.approx(phi[rows].sum(axis=1).mean())


def test_shapley_report_without_packed_codes_is_the_plain_report(monkeypatch):
    c = coalitions(TWO_BACK_WRONG * 3 + [[[0.2, 0.5, 0], [0.3, 0, 0], [0, 0.1, 0], [0.9, 0, 0]]], [0, 0, 0, 1])
    monkeypatch.setattr(shapley, "PACKED_MAX_AGENTS", 0)
    assert shapley_report(c, resamples=30) == shapley._plain_report(c, resamples=30)


def test_gridded_phi_refuses_non_finite_values():
    rows = [np.array([0.0, 0.5]), np.array([np.nan, 1.0])]
    assert shapley._gridded_phi(rows, shapley_matrix(1)) == (None, None, None)
    phi, cells, grid = shapley._gridded_phi([np.zeros(3), np.array([0.0, 0.5, 1.0])], shapley_matrix(1))
    step = 1 / (shapley.GOLD_PROBABILITY_CELLS - 1)
    assert phi.tolist() == [[0.0, 0.5, 1.0]] and np.abs(grid[0, cells[0]] - phi[0]).max() <= step / 2 + 1e-15


def test_unknown_shapley_value():
    with pytest.raises(ValueError, match="unknown Shapley value"):
        Shapley("accuracy")


@settings(max_examples=40, deadline=None)
@given(
    scores=arrays(np.float64, (8, 3, 4), elements=st.integers(0, 20).map(lambda v: v / 20)),
    gold=arrays(np.int64, 8, elements=st.integers(0, 3)),
)
def test_coalition_fusion_matches_the_foundation_fusion_and_tie_rule(scores, gold):
    from modsab.core.fusion import fuse, gold_rank, top_label

    c = coalitions(scores, gold)
    fused = fuse(scores, np.ones((8, 3)))
    assert np.array_equal(c.fused_top(), top_label(fused))
    assert np.array_equal(c.values(c.full_mask())[:, 0] == 1, gold_rank(fused, gold) == 0)
