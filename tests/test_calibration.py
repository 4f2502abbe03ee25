"""Calibration figures against plain reference implementations, and recalibration sanity."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from modsab.core.recalibration import fit_temperature
from modsab.core.rules.recalibrated import Recalibrated
from modsab.data.synth import SynthConfig, generate
from modsab.diagnostics.calibration import (
    PERCENT,
    _quantiles,
    agent_statistics,
    auroc,
    calibration_report,
    crossfit,
    expected_calibration_error,
)
from modsab.diagnostics.calibration import (
    distinct_codes as _codes,
)


def reference_ece(confidence, correct, bins=10):
    """Guo et al. (2017) eq. 3, written as a plain loop over bins [i/B, (i+1)/B), last closed."""
    n = len(confidence)
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i in range(n) if low <= confidence[i] < high or (b == bins - 1 and confidence[i] == 1.0)]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            mean_confidence = sum(confidence[i] for i in members) / len(members)
            total += len(members) / n * abs(accuracy - mean_confidence)
    return total


FIXED_CONFIDENCE = [0.95, 0.9, 0.85, 0.8, 0.72, 0.65, 0.6, 0.55, 0.45, 0.33, 0.3, 0.12, 1.0, 0.99]
FIXED_CORRECT = [1, 1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0]


def test_ece_matches_a_plain_loop_on_a_fixed_example():
    expected = reference_ece(FIXED_CONFIDENCE, FIXED_CORRECT)
    assert expected > 0.1
    assert np.isclose(expected_calibration_error(FIXED_CONFIDENCE, FIXED_CORRECT), expected)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 100), st.booleans()), min_size=1, max_size=60),
)
def test_ece_and_auroc_match_references(pairs):
    confidence = [c / 100 for c, _ in pairs]
    correct = [int(h) for _, h in pairs]
    assert np.isclose(expected_calibration_error(confidence, correct), reference_ece(confidence, correct))
    if 0 < sum(correct) < len(correct):
        assert np.isclose(auroc(confidence, correct), roc_auc_score(correct, confidence))


def test_agent_statistics_intervals_cover_the_point():
    pset, _ = generate(SynthConfig(n_instances=4000, sabotage_rate=0.0, overconfidence=2.5, seed=4))
    top = pset.scores.argmax(axis=2)
    conf = pset.scores.max(axis=2)[:, 0]
    stats = agent_statistics(conf, top[:, 0] == pset.gold, quality=pset.quality[:, 0], resamples=200, seed=1)
    assert stats["ece"] > 0.05  # overconfident by construction
    for key in ("ece", "brier", "confidence_auroc", "quality_auroc"):
        low, high = stats["ci"][key]
        assert low <= stats[key] <= high
    assert np.isclose(stats["ece"], expected_calibration_error(conf, top[:, 0] == pset.gold))
    assert sum(stats["reliability"]["equal_width"]["count"]) == 4000


def test_temperature_scaling_lowers_nll_of_an_overconfident_agent():
    pset, _ = generate(SynthConfig(n_instances=6000, sabotage_rate=0.0, overconfidence=3.0, seed=5))
    top = pset.scores.argmax(axis=2)
    correct = top == pset.gold[:, None]
    temperature = fit_temperature(pset.scores.max(axis=2)[:, 0], correct[:, 0])
    assert 2.0 < temperature < 4.0  # recovers the planted overconfidence
    report = calibration_report(pset, resamples=0)
    for name in pset.agents:
        entry = report["groups"]["all"][name]
        for method in ("temperature", "isotonic"):
            after = entry["recalibrated"][method]
            assert after["top_nll"] < entry["top_nll"]
            assert after["ece"] < entry["ece"]
    assert all(len(t) == 5 for t in report["temperatures"].values())


def test_recalibration_is_cross_fitted_and_keeps_candidates():
    pset, _ = generate(SynthConfig(n_instances=1000, seed=6))
    scores, _ = crossfit(pset, range(4), "isotonic", n_folds=4, seed=0)
    assert np.array_equal(scores > 0, pset.scores > 0)
    again = Recalibrated("isotonic", n_folds=4, seed=0).scores(pset, range(4))
    assert np.array_equal(scores, again)


def test_recalibration_of_off_grid_confidences_matches_the_table_path():
    pset, _ = generate(SynthConfig(n_instances=800, seed=8))
    table, _ = crossfit(pset, range(4), "temperature", n_folds=3, seed=1)
    pset.scores = pset.scores * (1 - 1e-5)  # no longer integer percent: the per-value path
    direct, _ = crossfit(pset, range(4), "temperature", n_folds=3, seed=1)
    assert np.allclose(table, direct, atol=1e-3)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 100), st.integers(1, 40)), min_size=1, max_size=30, unique_by=lambda p: p[0]),
    st.integers(1, 20),
)
def test_equal_mass_edges_from_counts_are_numpy_quantiles_to_the_last_bit(cells, bins):
    values = np.array(sorted(c / 100 for c, _ in cells))
    weight = np.array([w for _, w in sorted(cells)])
    q = np.linspace(0, 1, bins + 1)
    expected = np.quantile(np.repeat(values, weight), q)
    assert np.array_equal(_quantiles(values, weight, q), expected)
    continuous = np.sort(np.random.default_rng(bins).random(values.size))
    assert np.array_equal(_quantiles(continuous, weight, q), np.quantile(np.repeat(continuous, weight), q))


def test_integer_percent_values_are_coded_without_sorting_and_others_by_their_distinct_values():
    percent = np.array([0.07, 0.5, 1.0, 0.07, 0.0])
    valid = np.array([True, True, True, True, False])
    code, values = _codes(percent, valid)
    assert values is PERCENT and code.tolist() == [7, 50, 100, 7, PERCENT.size]
    code, values = _codes(percent * (1 - 1e-9), valid)  # off the grid: sorted distinct values
    assert np.array_equal(values, np.unique(percent[valid] * (1 - 1e-9))) and code.tolist() == [0, 1, 2, 0, 3]


def _mixed_set(n=3000, seed=11):
    """Synthetic answers with abstentions and missing self-reported quality."""
    pset, _ = generate(SynthConfig(n_instances=n, scenario="mixed", n_datasets=3, overconfidence=2.0, seed=seed))
    rng = np.random.default_rng(seed)
    pset.candidate = pset.candidate & (rng.random(pset.candidate.shape[:2]) > 0.05)[..., None]
    pset.quality = np.where(rng.random(pset.quality.shape) < 0.1, np.nan, pset.quality)
    pset.scores = pset.scores.copy()  # a new set for the cache
    return pset


def _direct_figures(conf, correct, quality, scores, gold, bins=10):
    """The figures of one agent's answered instances, computed on the raw arrays."""
    k = scores.shape[1]
    nll = -np.log((scores[np.arange(len(gold)), gold] + 0.01 / k) / (scores.sum(axis=1) + 0.01))
    p = np.clip(np.where(correct, conf, 1 - conf), 1e-4, 1)
    known = np.isfinite(quality)
    return {
        "n": conf.size,
        "ece": expected_calibration_error(conf, correct, bins=bins),
        "ece_equal_mass": expected_calibration_error(conf, correct, bins=bins, strategy="mass"),
        "brier": np.mean((conf - correct) ** 2),
        "top_nll": -np.mean(np.log(p)),
        "accuracy": np.mean(correct),
        "mean_confidence": np.mean(conf),
        "confidence_auroc": roc_auc_score(correct, conf),
        "quality_auroc": roc_auc_score(correct[known], quality[known]),
        "candidate_nll": np.mean(nll),
        "edges": np.quantile(conf, np.linspace(0, 1, bins + 1)),
    }


def test_report_figures_equal_direct_computations_on_every_group_and_after_recalibration():
    pset = _mixed_set()
    groups = {name: np.flatnonzero(pset.dataset == name) for name in sorted(set(pset.dataset.tolist()))}
    report = calibration_report(pset, groups=groups, resamples=50, seed=3)
    top = np.where(pset.candidate.any(axis=2), pset.scores.argmax(axis=2), -1)
    conf = pset.scores.max(axis=2)
    assert (top < 0).any() and np.isnan(pset.quality).any()
    for group, rows in ({"all": np.arange(pset.n_instances)} | groups).items():
        for m, name in enumerate(pset.agents):
            answered = rows[top[rows, m] >= 0]
            correct = top[answered, m] == pset.gold[answered]
            entry = report["groups"][group][name]
            direct = _direct_figures(
                conf[answered, m], correct, pset.quality[answered, m], pset.scores[answered, m], pset.gold[answered]
            )
            assert np.array_equal(entry["reliability"]["equal_mass"]["edges"], direct.pop("edges"))
            for key, value in direct.items():
                assert np.isclose(entry[key], value, rtol=0, atol=1e-12), (group, name, key)
            counts = np.bincount(np.minimum((conf[answered, m] * 10).astype(int), 9), minlength=10)
            assert entry["reliability"]["equal_width"]["count"] == counts.tolist()
            if group != "all":
                continue
            for method in ("temperature", "isotonic"):
                after = crossfit(pset, range(4), method, seed=3)[0][answered, m, top[answered, m]]
                exact = np.round(after / 1e-6) * 1e-6  # continuous: the points are on a 1e-6 grid
                figures = entry["recalibrated"][method]
                assert np.isclose(figures["ece"], expected_calibration_error(exact, correct), rtol=0, atol=1e-12)
                assert np.isclose(figures["confidence_auroc"], roc_auc_score(correct, exact), rtol=0, atol=1e-12)
                assert np.isclose(figures["brier"], np.mean((exact - correct) ** 2), rtol=0, atol=1e-12)


def test_overlapping_groups_and_off_grid_scores_take_the_general_paths_with_the_same_figures():
    pset = _mixed_set(n=1500, seed=12)
    groups = {name: np.flatnonzero(pset.dataset == name) for name in sorted(set(pset.dataset.tolist()))}
    keyed = calibration_report(pset, groups=groups, resamples=40, seed=2)
    overlapping = calibration_report(pset, groups=groups | {"both": np.arange(0, 1000)}, resamples=40, seed=2)
    for group in ("all", *groups):
        assert overlapping["groups"][group] == keyed["groups"][group]
    off = _mixed_set(n=1500, seed=12)
    off.scores = off.scores * (1 - 1e-7)  # not integer percents: distinct values sorted, NLL per instance
    moved = calibration_report(off, groups=groups, resamples=0)
    for group in ("all", *groups):
        for name in pset.agents:
            before, after = keyed["groups"][group][name], moved["groups"][group][name]
            for key in ("ece", "brier", "accuracy", "confidence_auroc", "quality_auroc", "candidate_nll"):
                assert np.isclose(before[key], after[key], rtol=0, atol=1e-5), (group, name, key)
            assert before["n"] == after["n"] == sum(after["reliability"]["equal_mass"]["count"])


def test_crossfit_of_some_agents_is_those_columns_of_every_agent():
    pset = _mixed_set(n=1200, seed=13)
    every, fitted = crossfit(pset, range(4), "temperature", n_folds=3, seed=5)
    some, some_fitted = crossfit(pset, [3, 1], "temperature", n_folds=3, seed=5)
    assert np.array_equal(some, every[:, [3, 1]])
    assert some_fitted == {pset.agents[m]: fitted[pset.agents[m]] for m in (3, 1)}


def test_a_given_all_group_is_those_rows_recalibrated_by_maps_fitted_on_every_instance():
    pset = _mixed_set(n=1200, seed=14)
    rows = np.arange(100, 700)
    report = calibration_report(pset, groups={"all": rows}, resamples=0, n_folds=3, seed=1)
    top = np.where(pset.candidate.any(axis=2), pset.scores.argmax(axis=2), -1)
    for m, name in enumerate(pset.agents):
        answered = rows[top[rows, m] >= 0]
        correct = top[answered, m] == pset.gold[answered]
        entry = report["groups"]["all"][name]
        assert entry["n"] == answered.size
        assert np.isclose(entry["ece"], expected_calibration_error(pset.scores[answered, m].max(axis=1), correct))
        after = crossfit(pset, range(4), "isotonic", n_folds=3, seed=1)[0][answered, m, top[answered, m]]
        exact = np.round(after / 1e-6) * 1e-6
        assert np.isclose(entry["recalibrated"]["isotonic"]["ece"], expected_calibration_error(exact, correct))
