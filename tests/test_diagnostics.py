"""The diagnostics beyond the paper through ``diagnose``, the JSON and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from typer.testing import CliRunner

from modsab.cli import app
from modsab.contract.errors import InputError
from modsab.core.audit import Role, roles
from modsab.core.diagnosis import diagnose
from modsab.core.fusion import FusionRule
from modsab.core.rules.agreement import AgreementOverride
from modsab.core.rules.cap import CappedInfluence
from modsab.data.synth import MELD_LABELS, SynthConfig, generate, prediction_set, write
from modsab.diagnostics.attribution import Coalitions, PaperRule
from modsab.diagnostics.fusion_compare import compare
from modsab.diagnostics.tau_sweep import tau_sweep
from modsab.registry import requestable_diagnostics
from modsab.stats import metrics

DIAGNOSTICS = requestable_diagnostics()  # the ones asked for; ablation runs by itself when it applies

FOUNDATION_KEYS = {"n_instances", "fusion_topk", "agents", "ci", "sabotage_by_label", "source", "bootstrap"}


@pytest.fixture(scope="module")
def mixed():
    return generate(SynthConfig(n_instances=1500, scenario="mixed", n_datasets=2, seed=11))[0]


def test_diagnose_adds_every_section_and_keeps_the_foundation_keys(mixed):
    plain = diagnose(mixed, bootstrap=50).to_dict()
    full = diagnose(
        mixed, bootstrap=50, causal=True, shapley=True, calibration=True, fusion_compare=True, tau_sweep=True
    ).to_dict()
    assert set(plain) >= FOUNDATION_KEYS and set(DIAGNOSTICS) <= set(full)
    # findings read the sections too: the foundation's own findings stay, the sections add theirs
    assert {k: v for k, v in full.items() if k not in (*DIAGNOSTICS, "findings")} == {
        k: v for k, v in plain.items() if k != "findings"
    }
    assert all(finding in full["findings"] for finding in plain["findings"])
    json.dumps(full, allow_nan=False)
    assert set(full["shapley"]["groups"]) == {"all", "synth0", "synth1"}
    assert set(full["calibration"]["groups"]) == {"all", "synth0", "synth1"}
    uniform = full["fusion_compare"]["strategies"]["uniform"]
    assert uniform["top1"] == pytest.approx(plain["fusion_topk"]["1"])
    tau = full["tau_sweep"]["points"][full["tau_sweep"]["grid"].index(0.7)]
    for name, entry in plain["agents"].items():
        assert tau["agents"][name]["successful_sabotage_rate"] == pytest.approx(entry["successful_sabotage_rate"])
        assert full["causal"]["agents"][name]["paper_successful_sabotage_rate"] == pytest.approx(
            entry["successful_sabotage_rate"]
        )


def test_paper_rule_attribution_agrees_with_the_foundation_audit(mixed):
    d = diagnose(mixed, bootstrap=0)
    c = Coalitions.from_rule(mixed, FusionRule(), range(4), tau=0.7)
    paper = PaperRule().attribute(c)
    assert np.array_equal(paper < 0, d.role == Role.SUCCESSFUL_SABOTAGE)
    assert np.array_equal(paper > 0, d.role == Role.CONTRIBUTOR)


def test_shapley_averages_sum_to_fused_accuracy(mixed):
    section = diagnose(mixed, bootstrap=20, shapley=True).to_dict()
    group = section["shapley"]["groups"]["all"]
    total = sum(entry["correct"]["mean"] for entry in group["agents"].values())
    assert total == pytest.approx(section["fusion_topk"]["1"])


def test_unknown_diagnostic_is_an_input_error(mixed):
    with pytest.raises(InputError, match="unknown diagnostic"):
        diagnose(mixed, bootstrap=0).extend("gradients")


def test_paired_difference_of_uniform_to_itself_is_zero(mixed):
    class Same(FusionRule):
        name = "same"

    section = compare(mixed, range(4), strategies=[FusionRule(), Same()], resamples=100)
    entry = section["strategies"]["same"]
    assert entry["diff"]["top1"] == 0 and entry["diff_ci"]["top1"] == [0.0, 0.0]


def test_sabotage_resistant_rules_reduce_causal_sabotage_when_planted_answers_are_lone():
    pset, _ = generate(SynthConfig(n_instances=2000, scenario="clear", accuracy=(0.9,) * 4, seed=12))
    section = compare(pset, range(4), strategies=[FusionRule(), CappedInfluence(), AgreementOverride()], resamples=100)
    for name in ("cap", "agreement"):
        entry = section["strategies"][name]
        assert entry["diff"]["causal_sabotage"] < 0 and entry["diff_ci"]["causal_sabotage"][1] < 0
        assert entry["diff"]["top1"] > 0


def test_cap_and_agreement_on_hand_cases():
    # agent 2 alone names label 1 at 0.95; the others are unsure about label 0
    pset = prediction_set(np.array([[[0.3, 0, 0], [0.25, 0, 0.1], [0, 0.95, 0]]]), [0])
    capped = CappedInfluence().scores(pset, [0, 1, 2])
    assert capped[0, 2, 1] == pytest.approx((0.3 + 0.25) / 2)
    assert AgreementOverride(lone_weight=0.25).weights(pset, [0, 1, 2]).tolist() == [[1, 1, 0.25]]


def test_tau_sweep_rates_fall_with_tau_and_role_changes_add_up(mixed):
    d = diagnose(mixed, bootstrap=0)
    section = tau_sweep(d.top, d.confidence, mixed.gold, d.fused_top, mixed.agents, resamples=0)
    for name in mixed.agents:
        rates = [p["agents"][name]["potential_sabotage_rate"] for p in section["points"]]
        assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    # raising tau only moves pairs out of the sabotage roles; changes are counted per pair
    for point in section["points"][1:]:
        change = point["changed_from_previous"]
        assert change["pairs"] == sum(change["per_agent"].values()) >= change["instances"]
    # against the foundation audit run at each tau
    for before, after in zip(section["points"], section["points"][1:], strict=False):
        old = roles(d.top, d.confidence, mixed.gold, d.fused_top, tau=before["tau"])
        new = roles(d.top, d.confidence, mixed.gold, d.fused_top, tau=after["tau"])
        assert after["changed_from_previous"]["pairs"] == int((old != new).sum())
        for j, name in enumerate(mixed.agents):
            answered = (new[:, j] != Role.ABSTAINED).sum()
            rate = (new[:, j] == Role.SUCCESSFUL_SABOTAGE).sum() / answered
            assert after["agents"][name]["successful_sabotage_rate"] == pytest.approx(rate)


@settings(max_examples=60, deadline=None)
@given(
    top=arrays(np.int64, (30, 3), elements=st.integers(-1, 2)),
    confidence=arrays(np.float64, (30, 3), elements=st.sampled_from([np.nan, 0.3, 0.5, 0.55, 0.7, 0.95, 1.0])),
    gold=arrays(np.int64, 30, elements=st.integers(0, 2)),
    fused_top=arrays(np.int64, 30, elements=st.integers(-1, 2)),
)
def test_tau_sweep_matches_the_audit_at_every_tau(top, confidence, gold, fused_top):
    agents = ("a", "b", "c")
    grid = (0.5, 0.7, 0.95, 0.6)
    section = tau_sweep(top, confidence, gold, fused_top, agents, grid=grid, resamples=40, seed=3)
    assert section["grid"] == sorted(grid)
    previous = None
    for point in section["points"]:
        role = roles(top, confidence, gold, fused_top, tau=point["tau"])
        successful = role == Role.SUCCESSFUL_SABOTAGE
        answered = (role != Role.ABSTAINED).sum(axis=0)
        for j, name in enumerate(agents):
            entry = point["agents"][name]
            with np.errstate(invalid="ignore"):
                expected = {
                    "potential_sabotage_rate": (role[:, j] >= Role.POTENTIAL_SABOTAGE).sum() / answered[j],
                    "successful_sabotage_rate": successful[:, j].sum() / answered[j],
                    "successful_sabotage_share": successful[:, j].sum() / successful.sum(),
                }
            for key, value in expected.items():
                if np.isfinite(value):
                    assert entry[key] == pytest.approx(value, abs=1e-12)
                    low, high = entry["ci"][key]
                    assert 0 <= low <= high <= 1
                else:
                    assert entry[key] is None
        if previous is not None:
            change = point["changed_from_previous"]
            assert change["pairs"] == int((role != previous).sum())
            assert change["instances"] == int((role != previous).any(axis=1).sum())
            assert list(change["per_agent"].values()) == (role != previous).sum(axis=0).tolist()
        previous = role


def test_tau_sweep_interval_is_the_point_when_every_instance_is_alike():
    top = np.array([[1, 0]] * 50)
    confidence = np.full((50, 2), 0.9)
    section = tau_sweep(top, confidence, np.zeros(50, dtype=np.int64), np.ones(50, dtype=np.int64), ("a", "b"))
    point = section["points"][0]["agents"]["a"]
    assert point["successful_sabotage_rate"] == 1.0 and point["ci"]["successful_sabotage_rate"] == [1.0, 1.0]
    assert point["ci"]["successful_sabotage_share"] == [1.0, 1.0]
    assert section["points"][0]["agents"]["b"]["ci"]["potential_sabotage_rate"] == [0.0, 0.0]


@settings(max_examples=60, deadline=None)
@given(rows=arrays(np.int64, st.tuples(st.integers(1, 60), st.integers(1, 4)), elements=st.integers(0, 5)))
def test_column_patterns_are_the_distinct_rows(rows):
    spans = [6] * rows.shape[1]
    unique, counts = metrics.column_patterns([rows[:, f] for f in range(rows.shape[1])], spans)
    expected, expected_counts = np.unique(rows, axis=0, return_counts=True)
    order = np.lexsort(unique.T[::-1])
    assert np.array_equal(unique[order], expected) and np.array_equal(counts[order], expected_counts)
    code = metrics.pack_columns([rows[:, f] == 1 for f in range(rows.shape[1])], [2] * rows.shape[1])
    assert np.array_equal(code, (rows == 1) @ (1 << np.arange(rows.shape[1])))


@settings(max_examples=40, deadline=None)
@given(
    samples=arrays(
        np.float64,
        st.tuples(st.integers(1, 30), st.integers(1, 5)),
        elements=st.one_of(st.floats(-1, 1), st.sampled_from([np.nan, np.inf])),
    )
)
def test_percentile_columns_match_percentile_intervals(samples):
    expected = metrics.percentile_intervals({str(i): samples[:, i] for i in range(samples.shape[1])}, level=0.9)
    assert metrics.percentile_columns(samples, level=0.9) == list(expected.values())


def test_cli_all_json(tmp_path):
    pset, planted = generate(SynthConfig(n_instances=400, seed=13))
    write(pset, planted, tmp_path)
    args = ["diagnose", str(tmp_path), "--labels", ",".join(MELD_LABELS), "--bootstrap", "30"]
    result = CliRunner().invoke(app, [*args, "--all", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(DIAGNOSTICS) <= set(payload)
    tables = CliRunner().invoke(app, [*args, "--causal"])
    assert tables.exit_code == 0 and "Counterfactual sabotage" in tables.stdout and "Shapley" not in tables.stdout
