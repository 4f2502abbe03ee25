"""Probe agents: calibrated, and cross-fitted so no speaker predicts itself."""

from __future__ import annotations

import numpy as np
import pytest

from modsab.agents.probes import ProbeAgent, probe_records
from modsab.contract.errors import InputError
from modsab.contract.records import PredictionRecord


def test_probe_learns_a_real_signal_across_speakers():
    rng = np.random.default_rng(0)
    n, k = 600, 3
    y = rng.integers(0, k, n)
    features = rng.normal(size=(n, 5))
    features[:, 0] += 2.0 * y  # the label shows in feature 0 for every speaker
    groups = rng.integers(0, 12, n)
    probe = ProbeAgent()
    proba = probe.cross_fit_predict(features, y, groups, n_labels=k)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == y).mean() > 0.7
    for g in np.unique(groups):  # each speaker's answers come from one held-out fold
        assert len(set(probe.fold_of_[groups == g].tolist())) == 1


def test_probe_cannot_memorise_speakers():
    # each speaker always has the same label and the features identify the speaker:
    # a model that saw the speaker would be perfect; cross-fitting by speaker must not be.
    rng = np.random.default_rng(1)
    speakers = np.repeat(np.arange(20), 30)
    label_of = rng.integers(0, 4, 20)
    y = label_of[speakers]
    features = np.eye(20)[speakers] + rng.normal(scale=0.01, size=(600, 20))
    proba = ProbeAgent().cross_fit_predict(features, y, speakers, n_labels=4)
    assert (proba.argmax(axis=1) == y).mean() < 0.6


def test_probe_needs_two_groups():
    with pytest.raises(InputError, match="at least 2 speakers"):
        ProbeAgent().cross_fit_predict(np.zeros((4, 2)), np.array([0, 1, 0, 1]), ["a"] * 4, n_labels=2)


def test_probe_records_follow_the_contract(tmp_path):
    proba = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]])
    records = probe_records(["a", "b"], proba, ["x", "y", "z"], agent="audio", gold=["y", "x"], quality=[80, None])
    for rec in records:
        PredictionRecord.model_validate(rec)
    assert [c["label"] for c in records[0]["candidates"]] == ["y", "z", "x"]
    assert records[0]["candidates"][0]["confidence"] == 70 and records[0]["quality"] == 80
    assert "quality" not in records[1]
    # ties keep the label order: y and z tie at 25 -> y first
    assert [c["label"] for c in records[1]["candidates"]] == ["x", "y", "z"]
    import json

    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    from modsab.core.diagnosis import diagnose

    assert diagnose(path, labels="x,y,z", bootstrap=0).to_dict()["fusion_topk"]["1"] == 1.0


def test_probe_fits_are_cached_by_everything_they_depend_on(tmp_path, monkeypatch):
    from modsab.agents.kinds.probe import _cached_cross_fit
    from modsab.agents.probes import ProbeAgent

    rng = np.random.default_rng(0)
    features, y = rng.normal(size=(60, 4)), np.arange(60) % 3
    groups = np.array([f"s{i % 6}" for i in range(60)])
    first = _cached_cross_fit(ProbeAgent(), features, y, groups, n_labels=3, cache_dir=tmp_path)

    def no_fit(*args, **kwargs):
        raise AssertionError("refitted although nothing changed")

    monkeypatch.setattr(ProbeAgent, "cross_fit_predict", no_fit)
    assert np.array_equal(_cached_cross_fit(ProbeAgent(), features, y, groups, n_labels=3, cache_dir=tmp_path), first)
    for changed in ({"C": 0.5}, {}):
        with pytest.raises(AssertionError, match="refitted"):
            other_y = y if changed else (y + 1) % 3
            _cached_cross_fit(ProbeAgent(**changed), features, other_y, groups, n_labels=3, cache_dir=tmp_path)
