"""Findings: one sentence per conclusion, each with its figures and section, only where the
diagnosis holds the evidence (modsab.diagnostics.findings states the rules; each kind is
tested here present and absent, decisive and not)."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from modsab.cli import app
from modsab.core.diagnosis import diagnose
from modsab.core.result import DiagnosisResult, Finding
from modsab.data.synth import SynthConfig, generate, prediction_set, write
from modsab.diagnostics import findings as F
from modsab.views.terminal import print_summary


def kinds(result) -> dict[str, Finding]:
    return {f.kind: f for f in result.findings}


def edited(result, key: str, change) -> DiagnosisResult:
    """The result with one section changed by ``change(section_dict)`` (validated again)."""
    data = result.model_dump(mode="json")
    change(data[key])
    return DiagnosisResult.model_validate(data)


@pytest.fixture(scope="module")
def planted():
    """Clear-cut planted saboteur (audio), every diagnostic."""
    pset, _ = generate(SynthConfig(n_instances=2000, accuracy=(0.95,) * 4, sabotage_rate=0.2, seed=3))
    return diagnose(pset, bootstrap=200, diagnostics="all", n_folds=3)


@pytest.fixture(scope="module")
def default_synth():
    """Default accuracies, audio planted at 15%, every diagnostic."""
    pset, _ = generate(SynthConfig(n_instances=2000, seed=0))
    return diagnose(pset, bootstrap=200, diagnostics="all", n_folds=3)


# -- sabotage: paper's rule, counterfactual test, and whether they disagree -----------------------------


def test_planted_saboteur_is_named_by_both_rules_and_they_agree(planted):
    result = planted.result()
    found = kinds(result)
    paper, causal, rules = found["paper_saboteur"], found["causal_saboteur"], found["saboteur_rules"]
    assert paper.text.startswith("audio sabotages most by the paper's rule (tau 0.70)")
    assert "next is" in paper.text  # clearly ahead of the runner-up
    assert paper.figures["audio.successful_sabotage_rate"] == result.agents["audio"].successful_sabotage_rate
    assert paper.figures["audio.successful_sabotage_rate.ci"] == result.ci["agents.audio.successful_sabotage_rate"]
    assert paper.section == "agents"
    assert causal.text.startswith("audio sabotages most by the counterfactual test")
    assert causal.figures["audio.causal_sabotage_rate"] == result.causal.agents["audio"].causal_sabotage_rate
    assert causal.section == "causal"
    assert rules.text.startswith("The paper's rule and the counterfactual test agree on audio")


def test_rules_disagree_when_one_flags_what_the_other_does_not(default_synth):
    rules = kinds(default_synth.result())["saboteur_rules"]
    assert "disagree" in rules.text and rules.section == "causal"
    # every agent it quotes is one the rule's condition holds for
    causal = default_synth.result().causal
    quoted = {key.split(".")[0] for key in rules.figures}
    for agent in quoted:
        paper_rate = causal.agents[agent].paper_successful_sabotage_rate
        causal_rate = causal.agents[agent].causal_sabotage_rate
        causal_lo = causal.ci[f"agents.{agent}.causal_sabotage_rate"][0]
        paper_lo = causal.ci[f"agents.{agent}.paper_successful_sabotage_rate"][0]
        assert (causal_lo > 0 and paper_rate < causal_lo) or (paper_lo > 0 and causal_rate < paper_lo)


def test_two_agents_backing_the_same_wrong_label_are_paper_saboteurs_but_not_causal():
    """Agents a and b both push label 1 at 0.9 while c is right at 0.8: the paper's rule flags
    a and b (successful sabotage), yet removing either alone leaves the other winning."""
    n, k = 200, 4
    gold = np.zeros(n, dtype=int)
    scores = np.zeros((n, 3, k))
    pushed = np.arange(n) < 100
    scores[:, 2, 0] = 0.8
    scores[pushed, 0, 1] = scores[pushed, 1, 1] = 0.9
    scores[~pushed, 0, 0] = scores[~pushed, 1, 0] = 0.6
    d = diagnose(prediction_set(scores, gold, agents=("a", "b", "c")), bootstrap=200, causal=True)
    found = kinds(d.result())
    assert found["paper_saboteur"].text.startswith("a sabotages most by the paper's rule")
    assert "not clearly more than b" in found["paper_saboteur"].text  # a and b tie
    assert found["causal_saboteur"].text == "No fused agent is a causal saboteur: removing any one agent fixes no instance."
    rules = found["saboteur_rules"].text
    assert "disagree" in rules and "the paper's rule flags a on 0.50" in rules and "removing it fixes only 0.00" in rules


def test_no_sabotage_and_undecided_sabotage():
    n, k = 60, 4
    gold = np.zeros(n, dtype=int)
    scores = np.zeros((n, 2, k))
    scores[:, 0, 0] = scores[:, 1, 0] = 0.9
    d = diagnose(prediction_set(scores, gold, agents=("a", "b")), bootstrap=200, causal=True)
    found = kinds(d.result())
    assert found["paper_saboteur"].text.startswith("No fused agent is a successful saboteur")
    assert "saboteur_rules" not in found  # neither rule is decisive: left out
    # one successful sabotage in 60 instances: the interval reaches 0, so nobody "sabotages most"
    scores[0, 0] = 0
    scores[0, 0, 2] = 0.95
    scores[0, 1, 0] = 0.5
    d = diagnose(prediction_set(scores, gold, agents=("a", "b")), bootstrap=200, causal=True)
    found = kinds(d.result())
    assert found["paper_saboteur"].text.startswith("No agent clearly sabotages by the paper's rule")
    assert found["paper_saboteur"].figures["a.successful_sabotage_rate.ci"][0] == 0
    assert "saboteur_rules" not in found


def test_without_intervals_only_counts_remain(planted):
    pset, _ = generate(SynthConfig(n_instances=500, seed=1))
    d = diagnose(pset, bootstrap=0, diagnostics="all", n_folds=2)
    assert {f.kind for f in d.result().findings} <= {"tau_cliff"}


def test_findings_need_their_sections():
    pset, _ = generate(SynthConfig(n_instances=300, seed=1))
    found = kinds(diagnose(pset, bootstrap=100).result())
    assert set(found) == {"paper_saboteur", "fusion_vs_best_agent"}  # no section beyond the paper


# -- fusion against the best single agent (a paired figure of its own) -----------------------------------


def test_fusion_vs_best_agent_beats_worse_and_no_clear_difference(planted):
    pset, _ = generate(SynthConfig(n_instances=2000, accuracy=(0.6,) * 4, sabotage_rate=0.0, seed=1))
    d = diagnose(pset, bootstrap=200)
    beats = kinds(d.result())["fusion_vs_best_agent"]
    assert beats.text.startswith("Fusion beats the best single agent") and beats.figures["diff.ci"][0] > 0
    worse = kinds(planted.result())["fusion_vs_best_agent"]
    assert worse.text.startswith("Fusion is worse than the best single agent, text") and worse.figures["diff.ci"][1] < 0
    best = F.fusion_vs_best(d)["agent"]  # fusing the best agent alone: the same answers
    same = kinds(diagnose(pset, bootstrap=200, fuse=[best]).result())["fusion_vs_best_agent"]
    assert same.text.startswith("No clear difference between fusion and the best single agent")
    assert same.figures["diff"] == 0 and same.section == "fusion_topk"


def test_fusion_vs_best_equals_its_plain_reference_and_a_plain_bootstrap():
    pset, _ = generate(SynthConfig(n_instances=1500, seed=4))
    d = diagnose(pset, bootstrap=2000, seed=7)
    fast, plain = F.fusion_vs_best(d), F.fusion_vs_best_reference(d)
    for key in ("agent", "fused_top1", "agent_top1"):
        assert fast[key] == plain[key]
    assert fast["diff"] == pytest.approx(plain["diff"], abs=1e-12)
    # the interval: a plain index bootstrap of the same paired difference agrees within Monte Carlo noise
    best = list(pset.agents).index(fast["agent"])
    fused = d.rank == 0
    agent = (d.top[:, best] == pset.gold) & (d.top[:, best] >= 0)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(fused), size=(2000, len(fused)))
    diffs = fused[idx].mean(axis=1) - agent[idx].mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    assert fast["diff_ci"][0] == pytest.approx(low, abs=0.01) and fast["diff_ci"][1] == pytest.approx(high, abs=0.01)
    # the same seed gives the same figure; it is remembered per diagnosis
    assert F.fusion_vs_best(d) is fast
    again = diagnose(pset, bootstrap=2000, seed=7)
    assert F.fusion_vs_best(again) == fast


def test_a_json_without_arrays_keeps_the_paired_finding():
    pset, _ = generate(SynthConfig(n_instances=400, seed=2))
    result = diagnose(pset, bootstrap=100).result()
    assert kinds(result)["fusion_vs_best_agent"] == kinds(
        DiagnosisResult.model_validate(json.loads(json.dumps(result.model_dump(mode="json"))))
    )["fusion_vs_best_agent"]
    recomputed = F.findings(result)  # no diagnosis: taken from the result's own findings
    assert [f.kind for f in recomputed] == [f.kind for f in result.findings]
    assert F.findings(result.model_copy(update={"findings": None})) == [kinds(result)["paper_saboteur"]]


# -- fusion strategies, quality and its placebo ------------------------------------------------------------


def test_best_strategy_beats_uniform_or_not(default_synth):
    result = default_synth.result()
    best = kinds(result)["best_strategy"]
    strategies = result.fusion_compare.strategies
    leader = max((n for n in strategies if n not in ("uniform", "quality-permuted")), key=lambda n: strategies[n].diff["top1"])
    assert best.text.startswith(f"The best fusion strategy, {leader}, beats uniform") and best.section == "fusion_compare"
    assert best.figures[f"strategies.{leader}.diff.top1"] == strategies[leader].diff["top1"]

    def undecided(section):
        for name, entry in section["strategies"].items():
            if "diff_ci" in entry:
                entry["diff_ci"]["top1"] = [-0.01, entry["diff"]["top1"] + 0.01]

    best = kinds(edited(result, "fusion_compare", undecided))
    assert F._best_strategy(edited(result, "fusion_compare", undecided)).text.startswith(
        f"No fusion strategy clearly beats uniform: the best, {leader}"
    )
    assert "best_strategy" in best


def test_the_placebo_is_never_the_best_strategy(default_synth):
    def placebo_wins(section):
        entry = section["strategies"]["quality-permuted"]
        entry["diff"]["top1"], entry["diff_ci"]["top1"] = 0.9, [0.8, 0.95]

    best = F._best_strategy(edited(default_synth.result(), "fusion_compare", placebo_wins))
    assert "quality-permuted" not in best.text and best.kind == "best_strategy"


def test_quality_against_its_placebo(default_synth):
    result = default_synth.result()
    placebo = kinds(result)["quality_placebo"]
    assert placebo.text.startswith("No clear difference between weighting by self-reported quality and its placebo")

    def quality_helps(section):
        section["strategies"]["quality"]["diff"]["top1"] = 0.1
        section["strategies"]["quality"]["diff_ci"]["top1"] = [0.08, 0.12]

    helped = F._quality_placebo(edited(result, "fusion_compare", quality_helps))
    assert helped.text.startswith("Self-reported quality carries information for the fusion: top-1 vs uniform +0.10")
    pset, _ = generate(SynthConfig(n_instances=300, seed=2))
    pset.quality[:] = np.nan  # no quality reported: the quality strategies are skipped
    found = kinds(diagnose(pset, bootstrap=50, diagnostics="all", n_folds=2).result())
    assert "quality_placebo" not in found and "quality_predicts_failure" not in found


def test_quality_predicts_failure_inverted_and_not(default_synth):
    result = default_synth.result()
    quality = kinds(result)["quality_predicts_failure"]
    assert quality.section == "calibration"
    # audio, the planted saboteur, reports high quality when it sabotages: inverted
    assert "for audio it is inverted" in quality.text
    assert quality.figures["audio.quality_auroc"] == result.calibration.groups["all"]["audio"].quality_auroc

    def uninformative(section):
        for figures in section["groups"]["all"].values():
            figures["quality_auroc"], figures["ci"]["quality_auroc"] = 0.52, [0.45, 0.6]

    text = F._quality_predicts(edited(result, "calibration", uninformative)).text
    assert text.startswith("Self-reported quality does not clearly predict failure: every AUROC interval reaches 0.5")


# -- calibration and the tau sweep ------------------------------------------------------------------------


def test_worst_calibrated_agent(default_synth):
    result = default_synth.result()
    worst = kinds(result)["worst_calibrated"]
    assert worst.text.startswith("audio is the worst calibrated agent: ECE")
    assert worst.figures["audio.ece"] == result.calibration.groups["all"]["audio"].ece

    def close(section):
        figures = section["groups"]["all"]
        figures["vision"]["ece"] = figures["audio"]["ece"] - 0.001

    assert F._worst_calibrated(edited(result, "calibration", close)).text.startswith(
        "No agent is clearly the worst calibrated"
    )


def test_calibration_findings_need_enough_answers():
    pset, _ = generate(SynthConfig(n_instances=15, seed=2))
    found = kinds(diagnose(pset, bootstrap=50, diagnostics="all", n_folds=2).result())
    assert "worst_calibrated" not in found and "quality_predicts_failure" not in found


def test_tau_cliff_and_no_cliff(default_synth):
    calm = kinds(default_synth.result())["tau_cliff"]
    assert "is not on a cliff" in calm.text and calm.section == "tau_sweep"
    # wrong answers whose confidence sits just around 0.70: their roles all change next to it
    rng = np.random.default_rng(0)
    n, k = 400, 5
    gold = np.zeros(n, dtype=int)
    scores = np.zeros((n, 3, k))
    scores[:, 0, 0] = 0.6
    wrong = rng.random(n) < 0.5
    scores[wrong, 1, 2] = rng.uniform(0.66, 0.74, wrong.sum())
    scores[~wrong, 1, 0] = 0.5
    scores[:, 2, 0] = 0.3
    d = diagnose(prediction_set(scores, gold, agents=("a", "b", "c")), bootstrap=100, tau_sweep=True)
    cliff = kinds(d.result())["tau_cliff"]
    assert cliff.text.startswith("The paper's threshold tau = 0.70 sits on a cliff")
    assert cliff.figures["share"] == 1.0 and "b's successful sabotage rate goes from" in cliff.text
    assert F._tau_cliff(d.result().model_copy(update={"tau": 0.72})) is None  # tau off the grid: no finding


# -- the JSON, the schema and the terminal -----------------------------------------------------------------


def test_json_has_findings_and_validates_against_the_printed_schema(default_synth, tmp_path):
    out = default_synth.to_dict()
    assert list(out)[-1] == "findings"
    assert all(set(f) == {"kind", "text", "figures", "section"} for f in out["findings"])
    schema = json.loads(CliRunner().invoke(app, ["schema", "diagnosis"]).output)
    jsonschema.validate(out, schema)
    assert "findings" in schema["properties"]
    wrong = json.loads(json.dumps(out))
    wrong["findings"][0]["figures"]["x"] = "text"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, schema)


def test_diagnose_json_and_terminal_show_the_findings(tmp_path):
    synth = SynthConfig(n_instances=300, seed=3)
    pset, planted = generate(synth)
    answers = write(pset, planted, tmp_path / "synth", synth)["predictions"]
    cli = CliRunner()
    as_json = json.loads(cli.invoke(app, ["diagnose", str(answers), "--labels", "meld", "--bootstrap", "50", "--json"]).output)
    texts = [f["text"] for f in as_json["findings"]]
    assert texts and as_json["findings"][0]["kind"] == "paper_saboteur"
    table = cli.invoke(app, ["diagnose", str(answers), "--labels", "meld", "--bootstrap", "50"])
    assert table.exit_code == 0, table.output
    assert table.output.lstrip().startswith("Findings")
    flat = " ".join(table.output.split())
    for text in texts:
        assert " ".join(text.split()) in flat
    assert flat.index("Findings") < flat.index("Fusion top-k")


def test_terminal_prints_findings_first_with_their_sections(default_synth):
    console = Console(record=True, width=200)
    print_summary(default_synth.result(), console=console)
    text = console.export_text()
    assert text.splitlines()[0] == "Findings"
    flat = " ".join(text.split())
    for finding in default_synth.result().findings:
        assert f"{finding.text} (see {finding.section})" in flat
    assert flat.index("Findings") < flat.index("instances from")
