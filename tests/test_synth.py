"""The synthetic benchmark: planted truth, files, and the detectors scored against it."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from modsab.cli import app
from modsab.contract.predictions import load_predictions
from modsab.data.synth import MELD_LABELS, SynthConfig, detector_scores, generate, load_truth

CLEAR_CUT = SynthConfig(n_instances=3000, accuracy=(0.95,) * 4, scenario="clear", sabotage_rate=0.2, seed=3)


def test_counterfactual_finds_planted_saboteurs_in_the_clear_cut_setting():
    pset, planted = generate(CLEAR_CUT)
    assert planted[:, 1].mean() > 0.15 and not planted[:, [0, 2, 3]].any()
    scores = detector_scores(pset, planted, resamples=100)
    assert scores["counterfactual"]["precision"] >= 0.95
    assert scores["counterfactual"]["recall"] >= 0.95
    low, high = scores["counterfactual"]["ci"]["precision"]
    assert low <= scores["counterfactual"]["precision"] <= high


def test_mixed_scenario_planted_answers_flip_the_fusion_only_sometimes():
    pset, planted = generate(SynthConfig(n_instances=3000, scenario="mixed", seed=1))
    scores = detector_scores(pset, planted, resamples=0)
    assert 0.05 < scores["counterfactual"]["recall"] < 0.6
    # the paper's rule flags at least every causal flip of a confident planted answer
    assert scores["paper"]["recall"] >= scores["counterfactual"]["recall"]


def test_generation_is_seeded_and_calibrated():
    a, _ = generate(SynthConfig(n_instances=500, seed=7))
    b, _ = generate(SynthConfig(n_instances=500, seed=7))
    assert np.array_equal(a.scores, b.scores)
    pset, planted = generate(SynthConfig(n_instances=20000, sabotage_rate=0.0, accuracy=(0.8, 0.6, 0.7, 0.5)))
    top = pset.scores.argmax(axis=2)
    accuracy = (top == pset.gold[:, None]).mean(axis=0)
    assert np.allclose(accuracy, [0.8, 0.6, 0.7, 0.5], atol=0.02)
    assert np.allclose(pset.scores.max(axis=2).mean(axis=0), accuracy, atol=0.03)  # calibrated by construction


def test_synth_cli_writes_the_contract_and_the_truth(tmp_path):
    result = CliRunner().invoke(app, ["synth", str(tmp_path), "--n", "300", "--seed", "2", "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    assert "counterfactual" in result.stdout
    record = json.loads((tmp_path / "predictions.jsonl").read_text().splitlines()[0])
    assert set(record) == {"instance_id", "agent", "gold", "candidates", "quality", "dataset"}
    assert all(isinstance(c["confidence"], int) and 0 <= c["confidence"] <= 100 for c in record["candidates"])
    pset = load_predictions(tmp_path / "predictions.jsonl", labels=",".join(MELD_LABELS))
    planted = load_truth(tmp_path / "truth.jsonl", pset)
    again, truth = generate(SynthConfig(n_instances=300, seed=2))
    order = np.argsort([int(i[1:]) for i in pset.instance_ids])
    assert np.array_equal(planted[order], truth[:, [again.agents.index(a) for a in pset.agents]])
    assert np.allclose(pset.scores[order], again.scores[:, [again.agents.index(a) for a in pset.agents]])


def _plain_records(pset):
    """The predictions file record by record with json.dumps (what the fast writer must equal)."""
    labels = list(pset.labels)
    order = np.argsort(-pset.scores, axis=2, kind="stable")
    length = pset.candidate.sum(axis=2)
    for i in range(pset.n_instances):
        for j, agent in enumerate(pset.agents):
            yield json.dumps(
                {
                    "instance_id": str(pset.instance_ids[i]),
                    "agent": agent,
                    "gold": labels[pset.gold[i]],
                    "candidates": [
                        {"label": labels[y], "confidence": int(round(pset.scores[i, j, y] * 100))}
                        for y in order[i, j, : length[i, j]]
                    ],
                    "quality": int(round(pset.quality[i, j] * 100)),
                    "dataset": "synth" if pset.dataset is None else str(pset.dataset[i]),
                }
            )


def test_written_predictions_are_exactly_json_dumps_of_each_record(tmp_path, monkeypatch):
    from modsab.data import synth

    monkeypatch.setattr(synth, "_CHUNK", 70)  # several chunks, the last one partial
    odd = ("ang\u00e9r", 'say "hi"', "<b>x</b>")
    for config in (
        SynthConfig(n_instances=250, seed=5),
        SynthConfig(
            n_instances=250,
            seed=6,
            n_datasets=3,
            labels=odd,
            agents=("t\u00ebxt", "a"),
            accuracy=(0.6, 0.5),
            saboteur="a",
        ),
    ):
        pset, planted = generate(config)
        pset.scores[0, 0] = 0.0  # an abstention: no candidates
        pset.candidate[0, 0] = False
        out = tmp_path / str(config.seed)
        synth.write(pset, planted, out, config)
        written = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
        assert written == list(_plain_records(pset))
        assert '"candidates": []' in written[0]
