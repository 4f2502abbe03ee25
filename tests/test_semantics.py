"""Hand-computed cases for every rule of the foundation issue (fusion, audit, rates)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import MELD, record

from modsab.contract.errors import InputError
from modsab.core.diagnosis import diagnose


def run(write_jsonl, records, **options):
    options.setdefault("labels", ",".join(MELD))
    options.setdefault("bootstrap", 0)
    return diagnose(write_jsonl(records), **options)


def test_paper_rule_contributor_potential_successful(write_jsonl):
    # i1: text says joy .80 (gold), audio says anger .90 -> fused anger 1.55 vs joy .80
    # i2: text neutral .75 (wrong, confident), audio joy .60 (gold) -> fused neutral
    records = [
        record("i1", "text", [("joy", 80), ("anger", 65)], gold="joy"),
        record("i1", "audio", [("anger", 90)]),
        record("i2", "text", [("neutral", 75)], gold="joy"),
        record("i2", "audio", [("joy", 60)]),
    ]
    d = run(write_jsonl, records).to_dict()
    assert d["fusion_topk"] == {"1": 0.0, "2": 1.0, "3": 1.0, "4": 1.0, "5": 1.0}
    text, audio = d["agents"]["text"], d["agents"]["audio"]
    assert (text["contributors"], text["potential_sabotage"], text["successful_sabotage"]) == (1, 1, 1)
    assert (audio["contributors"], audio["potential_sabotage"], audio["successful_sabotage"]) == (1, 1, 1)
    assert text["contributor_rate"] == 0.5 and audio["successful_sabotage_rate"] == 0.5
    assert text["successful_sabotage_share"] == 0.5


def test_potential_but_not_successful_when_fusion_goes_elsewhere(write_jsonl):
    # audio anger .70 (exactly tau) is wrong; text joy .60 + vision joy .50 = 1.10 wins
    records = [
        record("i1", "text", [("joy", 60)], gold="joy"),
        record("i1", "vision", [("joy", 50)]),
        record("i1", "audio", [("anger", 70)]),
    ]
    result = run(write_jsonl, records)
    d = result.to_dict()
    assert d["agents"]["audio"]["potential_sabotage"] == 1
    assert d["agents"]["audio"]["successful_sabotage"] == 0
    assert d["fusion_topk"]["1"] == 1.0
    assert result.instances()["audio.role"].tolist() == ["potential_sabotage"]


def test_confidence_below_tau_is_only_wrong(write_jsonl):
    records = [record("i1", "text", [("anger", 69)], gold="joy")]
    result = run(write_jsonl, records)
    assert result.instances()["text.role"].tolist() == ["wrong"]
    assert result.to_dict()["agents"]["text"]["potential_sabotage"] == 0
    # a lower tau makes the same answer a (successful) saboteur
    lower = run(write_jsonl, records, tau=0.5).to_dict()["agents"]["text"]
    assert lower["successful_sabotage"] == 1


def test_agent_top_label_ties_go_to_the_earlier_label(write_jsonl):
    # anger and joy tie at 80; joy comes before anger in the MELD order -> joy is the top label
    records = [record("i1", "text", [("anger", 80), ("joy", 80)], gold="joy")]
    result = run(write_jsonl, records)
    assert result.instances()["text.top"].tolist() == ["joy"]
    assert result.to_dict()["agents"]["text"]["contributors"] == 1
    # the same answer with the label order reversed makes anger the top label
    reordered = run(write_jsonl, records, labels="anger,joy,neutral")
    assert reordered.instances()["text.top"].tolist() == ["anger"]


def test_fused_ties_go_to_the_earlier_label_and_count_for_top_k(write_jsonl):
    # fused: sadness .5 + .3 = .8, anger .8 -> tie; anger (index 3) before sadness (4)
    records = [
        record("i1", "a", [("sadness", 50), ("anger", 80)], gold="sadness"),
        record("i1", "b", [("sadness", 30)]),
    ]
    result = run(write_jsonl, records)
    row = result.instances().iloc[0]
    assert row["fused_ranking"] == ["anger", "sadness"]
    assert row["fused_top1"] == "anger"
    assert result.to_dict()["fusion_topk"]["1"] == 0.0
    assert result.to_dict()["fusion_topk"]["2"] == 1.0


def test_float_summation_order_does_not_break_ties(write_jsonl):
    # .1 + .2 + .3 and .3 + .2 + .1 differ in floating point; both must tie with .6
    records = [
        record("i1", "a", [("joy", 10), ("fear", 60)], gold="fear"),
        record("i1", "b", [("joy", 20)]),
        record("i1", "c", [("joy", 30)]),
    ]
    result = run(write_jsonl, records)
    assert result.instances().iloc[0]["fused_ranking"] == ["joy", "fear"]


def test_labels_with_zero_fused_score_are_not_ranked(write_jsonl):
    records = [record("i1", "text", [("joy", 0), ("anger", 40)], gold="joy")]
    result = run(write_jsonl, records)
    row = result.instances().iloc[0]
    assert row["fused_ranking"] == ["anger"]
    assert result.to_dict()["fusion_topk"]["5"] == 0.0  # gold joy scored 0: never a hit
    assert row["gold_rank"] == 0
    # a zero-confidence candidate is still an answer: top label anger (40 > 0)
    assert row["text.top"] == "anger"


def test_abstention_is_left_out_of_denominators_and_counted(write_jsonl):
    records = [
        record("i1", "text", [("joy", 90)], gold="joy"),
        record("i1", "audio", [("confusion", 90)]),  # no valid candidate -> abstains
        record("i2", "text", [("joy", 90)], gold="anger"),
        record("i2", "audio", [("anger", 40)]),
        record("i3", "text", [], gold="fear"),  # empty answer -> abstains
    ]
    d = run(write_jsonl, records).to_dict()
    audio, text = d["agents"]["audio"], d["agents"]["text"]
    # audio: i1 abstained, i2 answered, i3 has no record
    assert (audio["n"], audio["abstained"], audio["missing_records"]) == (1, 2, 1)
    assert audio["invalid_labels"] == 1
    assert audio["contributor_rate"] == 1.0
    assert (text["n"], text["abstained"]) == (2, 1)
    assert text["contributor_rate"] == 0.5
    assert text["potential_sabotage_rate"] == 0.5
    # fusion top-k is over every instance: i1 hit, i2 miss (joy .9 > anger .4), i3 nothing fused
    assert d["fusion_topk"]["1"] == pytest.approx(1 / 3)
    assert d["fusion_topk"]["2"] == pytest.approx(2 / 3)


def test_invalid_labels_are_dropped_counted_and_strict_fails(write_jsonl):
    records = [
        record("i1", "text", [("concern", 95), ("Happy ", 40)], gold="joy"),
        record("i1", "audio", [('{"label": "joy"}', 50), ("frustration", 10)]),
    ]
    result = run(write_jsonl, records)
    d = result.to_dict()
    assert d["invalid_labels"] == {"text": 1, "audio": 2}
    assert d["agents"]["text"]["invalid_labels"] == 1
    assert result.instances()["text.top"].tolist() == ["joy"]  # 'Happy ' -> joy; 'concern' dropped
    assert "concern" in d["invalid_label_examples"]["text"]
    with pytest.raises(InputError, match="concern"):
        run(write_jsonl, records, strict=True)


def test_synonyms_map_onto_the_label_set_in_use(write_jsonl, tmp_path):
    records = [record("i1", "text", [("happiness", 80)], gold="Joy"), record("i2", "text", [("glad", 80)], gold="joy")]
    d = run(write_jsonl, records).to_dict()
    assert d["agents"]["text"]["contributors"] == 1 and d["invalid_labels"]["text"] == 1
    syn = tmp_path / "syn.json"
    syn.write_text('{"glad": "joy"}')
    d = run(write_jsonl, records, synonyms=syn).to_dict()
    assert d["agents"]["text"]["contributors"] == 2 and d["invalid_labels"]["text"] == 0
    # for the RAVDESS set, joy maps the other way, onto happy
    rav = run(write_jsonl, [record("i1", "t", [("joy", 80)], gold="happy")], labels="ravdess").to_dict()
    assert rav["agents"]["t"]["contributors"] == 1


def test_quality_weights_change_the_fused_answer(write_jsonl):
    # uniform: anger .9 beats joy .8; quality: anger .9*.2 = .18 vs joy .8*.9 = .72
    records = [
        record("i1", "text", [("joy", 80)], gold="joy", quality=90),
        record("i1", "audio", [("anger", 90)], quality=20),
    ]
    uniform = run(write_jsonl, records).to_dict()
    quality = run(write_jsonl, records, weights="quality").to_dict()
    assert uniform["fusion_topk"]["1"] == 0.0 and uniform["agents"]["audio"]["successful_sabotage"] == 1
    assert quality["fusion_topk"]["1"] == 1.0 and quality["agents"]["audio"]["successful_sabotage"] == 0
    assert quality["weights"] == "quality"


def test_quality_weights_need_quality(write_jsonl):
    records = [record("i1", "text", [("joy", 80)], gold="joy")]
    with pytest.raises(InputError, match="quality") as info:
        run(write_jsonl, records, weights="quality")
    assert "i1" in str(info.value) and ":1" in str(info.value)


def test_baseline_is_reported_and_left_out_of_fusion(write_jsonl):
    records = [
        record("i1", "text", [("joy", 80)], gold="joy"),
        record("i1", "tav", [("anger", 99)]),
        record("i2", "text", [("fear", 80)], gold="anger"),
        record("i2", "tav", [("anger", 99)]),
    ]
    d = run(write_jsonl, records, baseline="tav").to_dict()
    assert d["fused_agents"] == ["text"]
    assert d["baseline_top1"] == 0.5
    assert d["fusion_topk"]["1"] == 0.5
    assert d["agents"]["tav"]["fused"] is False and d["agents"]["tav"]["successful_sabotage_share"] is None
    # named in --fuse, the baseline is fused too
    both = run(write_jsonl, records, baseline="tav", fuse=["text", "tav"]).to_dict()
    assert both["fused_agents"] == ["tav", "text"] and both["fusion_topk"]["1"] == 0.5  # agents sorted


def test_fuse_subset_and_unknown_agent(write_jsonl):
    records = [record("i1", "text", [("joy", 80)], gold="joy"), record("i1", "audio", [("anger", 90)])]
    d = run(write_jsonl, records, fuse=["text"]).to_dict()
    assert d["fused_agents"] == ["text"] and d["fusion_topk"]["1"] == 1.0
    with pytest.raises(InputError, match="unknown agent 'video'"):
        run(write_jsonl, records, fuse=["video"])
    with pytest.raises(InputError, match="unknown agent"):
        run(write_jsonl, records, baseline="joint")


def test_unit_scale(write_jsonl):
    records = [record("i1", "text", [("joy", 0.8)], gold="joy", quality=0.5), record("i1", "a", [("fear", 0.7)])]
    d = run(write_jsonl, records, scale="unit").to_dict()
    assert d["agents"]["a"]["potential_sabotage"] == 1 and d["fusion_topk"]["1"] == 1.0
    with pytest.raises(InputError, match="outside 0-1"):
        run(write_jsonl, [record("i1", "t", [("joy", 80)], gold="joy")], scale="unit")


def test_labels_default_to_sorted_gold_and_say_so(write_jsonl):
    records = [record("i1", "t", [("b", 80)], gold="b"), record("i2", "t", [("a", 80)], gold="a")]
    d = diagnose(write_jsonl(records), bootstrap=0).to_dict()
    assert d["labels"] == ["a", "b"] and "sorted set of gold" in d["label_source"]


def test_k_is_capped_by_the_number_of_labels(write_jsonl):
    d = run(write_jsonl, [record("i1", "t", [("b", 80)], gold="a")], labels="a,b,c").to_dict()
    assert list(d["fusion_topk"]) == ["1", "2", "3"] and d["fusion_topk"]["3"] == 0.0


def test_instances_without_gold_are_left_out_and_counted(write_jsonl):
    records = [record("i1", "t", [("joy", 80)], gold="joy"), record("i2", "t", [("joy", 80)])]
    d = run(write_jsonl, records).to_dict()
    assert d["n_instances"] == 1 and d["n_without_gold"] == 1


def test_gold_on_one_record_is_enough_and_case_insensitive(write_jsonl):
    records = [
        record("i1", "t", [("joy", 80)]),
        record("i1", "a", [("joy", 80)], gold=" JOY"),
        record("i1", "v", [("joy", 80)], gold="happy"),
    ]
    d = run(write_jsonl, records).to_dict()
    assert d["n_instances"] == 1 and d["fusion_topk"]["1"] == 1.0


def test_per_dataset_tables(write_jsonl):
    records = [
        record("m1", "t", [("joy", 80)], gold="joy", dataset="meld"),
        record("m2", "t", [("joy", 80)], gold="fear", dataset="meld"),
        record("r1", "t", [("fear", 80)], gold="fear", dataset="ravdess"),
    ]
    d = run(write_jsonl, records, bootstrap=200).to_dict()
    assert set(d["by_dataset"]) == {"meld", "ravdess"}
    assert d["by_dataset"]["meld"]["fusion_topk"]["1"] == 0.5
    assert d["by_dataset"]["ravdess"]["fusion_topk"]["1"] == 1.0
    assert d["by_dataset"]["meld"]["n_instances"] == 2
    assert "fusion_topk.1" in d["by_dataset"]["meld"]["ci"]


def test_bootstrap_is_reproducible_and_brackets_the_estimate(write_jsonl):
    rng = np.random.default_rng(3)
    records = []
    for i in range(300):
        gold = MELD[rng.integers(7)]
        for agent in ("text", "audio", "vision"):
            label = gold if rng.random() < 0.5 else MELD[rng.integers(7)]
            records.append(record(f"i{i}", agent, [(label, int(rng.integers(1, 101)))], gold=gold))
    path = write_jsonl(records)
    one = diagnose(path, labels="meld", bootstrap=500, seed=7).to_dict()
    two = diagnose(path, labels="meld", bootstrap=500, seed=7).to_dict()
    other = diagnose(path, labels="meld", bootstrap=500, seed=8).to_dict()
    assert one["ci"] == two["ci"]
    assert one["ci"] != other["ci"]
    low, high = one["ci"]["fusion_topk.1"]
    assert low < one["fusion_topk"]["1"] < high
    # a 95% interval of a proportion over 300 instances is roughly +-2 standard errors
    p = one["fusion_topk"]["1"]
    assert high - low == pytest.approx(2 * 1.96 * math.sqrt(p * (1 - p) / 300), rel=0.25)
    assert one["ci"]["agents.audio.successful_sabotage_share"][0] is not None
