"""Calibration figures against plain reference implementations, and recalibration sanity."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from modsab.calibration import (
    Recalibrated,
    agent_statistics,
    auroc,
    calibration_report,
    crossfit,
    expected_calibration_error,
    fit_temperature,
)
from modsab.synth import SynthConfig, generate


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
