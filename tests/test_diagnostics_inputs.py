"""The diagnostics beyond the paper on the inputs real users bring: optional fields missing, tiny label
sets, more agents than exact Shapley values allow."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from modsab.core.diagnosis import diagnose
from modsab.data.synth import prediction_set
from modsab.diagnostics.fusion_compare import compare


def _records(path, with_quality: bool) -> None:
    rows = []
    for i in range(6):
        text = {"label": "joy" if i % 2 else "anger", "confidence": 80}
        rows.append({"instance_id": f"i{i}", "agent": "text", "gold": "joy", "candidates": [text]})
        rows.append({"instance_id": f"i{i}", "agent": "audio", "candidates": [{"label": "anger", "confidence": 90}]})
        if with_quality:
            for row in rows[-2:]:
                row["quality"] = 70
    path.write_text("\n".join(json.dumps(r) for r in rows))


def test_quality_weighting_is_left_out_with_its_reason_when_answers_have_no_quality(tmp_path):
    path = tmp_path / "p.jsonl"
    _records(path, with_quality=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division-by-zero or NaN warnings either
        section = diagnose(path, labels="joy,anger", bootstrap=20, fusion_compare=True).to_dict()["fusion_compare"]
    assert "quality" not in section["strategies"]
    assert "quality weighting needs a quality score" in section["skipped"]["quality"]
    assert "p.jsonl:2" in section["skipped"]["quality"]  # i0's audio answer: agents come sorted
    assert {"uniform", "cap", "agreement", "reliability", "learned"} <= set(section["strategies"])
    _records(path, with_quality=True)
    section = diagnose(path, labels="joy,anger", bootstrap=20, fusion_compare=True).to_dict()["fusion_compare"]
    assert "quality" in section["strategies"] and section["skipped"] == {}


def test_one_label_sets_compare_without_warnings():
    pset = prediction_set(np.array([[[0.9], [0.4]], [[0.2], [0.0]]]), np.array([0, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        section = compare(pset, range(2), resamples=20)
    assert section["strategies"]["reliability"]["top1"] == 1.0


def test_shapley_over_more_than_ten_agents_is_a_clear_input_error(tmp_path, capsys):
    import pytest

    from modsab.cli import main

    rows = [
        {"instance_id": f"i{i}", "agent": f"a{a}", "gold": "joy", "candidates": [{"label": "joy", "confidence": 60}]}
        for i in range(4)
        for a in range(11)
    ]
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(SystemExit) as info:
        main(["diagnose", str(path), "--all", "--bootstrap", "0"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "11 fused agents is more than 10" in err and "Traceback" not in err
    result = diagnose(path, bootstrap=0, causal=True, tau_sweep=True).to_dict()
    assert len(result["causal"]["pairs"]) == 55


def test_same_seed_same_json_in_fresh_processes_whatever_the_hash_seed():
    """Intervals must not depend on Python's per-process string hashing (set or dict order)."""
    import os
    import subprocess
    import sys
    from importlib.resources import files

    path = str(files("modsab") / "data" / "demo_predictions.jsonl")
    outputs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        command = [sys.executable, "-m", "modsab", "diagnose", path, "--labels", "meld", "--all", "--json"]
        done = subprocess.run([*command, "--bootstrap", "200"], env=env, capture_output=True, text=True, check=True)
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]


def test_instances_table_carries_causal_flags_and_shapley_values_when_run(tmp_path):
    import pandas as pd

    from modsab.data.synth import SynthConfig, generate

    pset, _ = generate(SynthConfig(n_instances=400, scenario="mixed", seed=5))
    plain = diagnose(pset, bootstrap=0).instances()
    assert not any(c.endswith((".causal", ".shapley_correct")) for c in plain.columns)
    d = diagnose(pset, bootstrap=0, causal=True, shapley=True)
    d.write_instances(tmp_path / "i.parquet")
    table = pd.read_parquet(tmp_path / "i.parquet")
    section, causal = d.to_dict()["shapley"]["groups"]["all"]["agents"], d.to_dict()["causal"]["agents"]
    phi_sum = sum(table[f"{a}.shapley_correct"] for a in pset.agents)
    assert np.allclose(phi_sum, table["hit_at_1"].astype(float))  # efficiency, instance by instance
    for agent in pset.agents:
        mean = section[agent]["gold_probability"]["mean"]
        assert table[f"{agent}.shapley_gold_probability"].mean() == pytest.approx(mean)
        saboteur = (table[f"{agent}.causal"] == "saboteur").sum()
        answered = (table[f"{agent}.role"] != "abstained").sum()
        assert saboteur / answered == pytest.approx(causal[agent]["causal_sabotage_rate"])
        assert set(table[f"{agent}.causal"]) <= {"saboteur", "contributor", ""}


def test_demo_command_runs_and_prints_the_paper_tables(capsys):
    from modsab.cli import main

    main(["demo", "--json"])  # returns normally: exit 0
    out = json.loads(capsys.readouterr().out)
    assert out["baseline"] == "tav" and out["n_instances"] == 240 and "causal" not in out


def test_report_adds_the_diagnostics_it_is_asked_for(tmp_path):
    from importlib.resources import files

    from modsab.cli import main

    path = str(files("modsab") / "data" / "demo_predictions.jsonl")
    out = tmp_path / "r.html"
    main(["report", path, "--labels", "meld", "--bootstrap", "20", "--causal", "--shapley", "-o", str(out)])
    page = out.read_text()
    assert "Causal (counterfactual) sabotage" in page and "Shapley contributions" in page
    main(["report", path, "--labels", "meld", "--bootstrap", "20", "-o", str(out)])
    assert "Shapley contributions" not in out.read_text()


def test_the_json_does_not_depend_on_the_directory_a_file_lives_in(tmp_path):
    """A strategy left out (quality weighting without quality) names the file, not its folder:
    the same predictions in two run directories give the same fusion_compare section."""
    import shutil

    from modsab.core.diagnosis import diagnose as run_diagnose

    rows = [
        {"instance_id": f"i{i}", "agent": agent, "gold": "a", "candidates": [{"label": "a", "confidence": 60 + i}]}
        for i in range(8)
        for agent in ("x", "y")
    ]
    first = tmp_path / "one" / "predictions.jsonl"
    first.parent.mkdir()
    first.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    second = tmp_path / "two" / "elsewhere" / "predictions.jsonl"
    second.parent.mkdir(parents=True)
    shutil.copy(first, second)
    a, b = (run_diagnose(path, labels="a,b", bootstrap=0, fusion_compare=True).to_dict() for path in (first, second))
    assert a["fusion_compare"]["skipped"] and a["fusion_compare"] == b["fusion_compare"]
