"""Folds: an int or a splitter, whole speakers together, one splitter for every cross-fit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold

from modsab.contract.errors import InputError
from modsab.core.diagnosis import diagnose
from modsab.core.folds import SpeakerFolds, assign_folds, grouped_folds, seeded_folds
from modsab.data.synth import SynthConfig, generate


def test_grouped_folds_keep_each_speaker_in_one_fold_and_balance_sizes():
    speakers = np.repeat([f"s{i}" for i in range(10)], [30, 5, 5, 20, 10, 10, 5, 5, 5, 5])
    fold = grouped_folds(speakers, 3, seed=1)
    for speaker in set(speakers):
        assert len(set(fold[speakers == speaker])) == 1
    sizes = np.bincount(fold, minlength=3)
    assert sizes.max() - sizes.min() <= 10  # largest first to the emptiest fold
    assert np.array_equal(fold, grouped_folds(speakers, 3, seed=1))


def test_speaker_folds_is_a_splitter_that_tests_every_instance_once():
    speakers = np.repeat(["a", "b", "c", "d"], 5)
    seen = np.zeros(20, dtype=int)
    for train, test in SpeakerFolds(2, seed=0).split(np.zeros((20, 1)), None, speakers):
        assert not set(speakers[train]) & set(speakers[test])
        seen[test] += 1
    assert (seen == 1).all()


def test_a_set_with_speakers_deals_whole_speakers_and_a_splitter_is_used_as_given():
    pset, _ = generate(SynthConfig(n_instances=300, seed=4))
    plain = assign_folds(pset, 5, seed=0)
    assert np.array_equal(plain, seeded_folds(300, 5, 0))
    pset.speaker = np.asarray([f"spk{i % 12}" for i in range(300)], dtype=object)
    grouped = assign_folds(pset, 5, seed=0)
    for speaker in set(pset.speaker):
        assert len(set(grouped[pset.speaker == speaker])) == 1
    given = assign_folds(pset, KFold(3), seed=0)
    assert sorted(set(given.tolist())) == [0, 1, 2]


def test_diagnose_takes_a_splitter_for_its_cross_fitted_parts():
    pset, _ = generate(SynthConfig(n_instances=400, seed=5))
    d = diagnose(pset, bootstrap=0, calibration=True, fusion_compare=True, n_folds=KFold(4))
    out = d.to_dict()
    assert out["calibration"]["n_folds"] == 4 and out["fusion_compare"]["n_folds"] == 4
    assert "KFold" in out["calibration"]["split"]


@pytest.mark.parametrize("folds", [0, 1, "five", object()])
def test_bad_folds_are_input_errors(folds):
    pset, _ = generate(SynthConfig(n_instances=50, seed=6))
    with pytest.raises(InputError):
        diagnose(pset, bootstrap=0, calibration=True, n_folds=folds)
