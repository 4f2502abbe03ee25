"""The same predictions read from JSONL, CSV and Parquet give the same diagnosis; CLI outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import MELD, record
from typer.testing import CliRunner

from modsab.cli import app
from modsab.contract.predictions import load_predictions
from modsab.core.diagnosis import diagnose


@pytest.fixture
def records():
    rng = np.random.default_rng(11)
    out = []
    for i in range(60):
        gold = MELD[rng.integers(7)]
        for agent in ("text", "audio", "vision", "tav"):
            labels = rng.choice(MELD, size=int(rng.integers(0, 4)), replace=False)
            cands = [(str(lbl), int(rng.integers(0, 101))) for lbl in labels]
            if rng.random() < 0.05:
                cands.append(("confusion", 50))
            out.append(
                record(
                    f"dia{i}_utt{agent}",
                    agent,
                    cands,
                    gold=gold if agent == "text" else None,
                    quality=int(rng.integers(1, 101)),
                    dataset="meld" if i % 3 else "mer",
                )
            )
    return out


def as_csv(records, path):
    frame = pd.DataFrame(records)
    frame["candidates"] = [json.dumps(c) for c in frame["candidates"]]
    frame.to_csv(path, index=False)
    return path


def as_parquet(records, path):
    pd.DataFrame(records).to_parquet(path, index=False)
    return path


def test_jsonl_csv_parquet_agree(records, write_jsonl, tmp_path):
    paths = [write_jsonl(records), as_csv(records, tmp_path / "p.csv"), as_parquet(records, tmp_path / "p.parquet")]
    results = [diagnose(p, labels="meld", weights="quality", bootstrap=100).to_dict() for p in paths]
    for other in results[1:]:
        for key in ("fusion_topk", "agents", "ci", "by_dataset", "invalid_labels", "n_instances"):
            assert other[key] == results[0][key], key


def test_exact_reader_agrees_with_fast_reader(records, write_jsonl):
    fast = load_predictions(write_jsonl(records), labels="meld")
    # a blank line forces the exact (per-record) reader
    slow = load_predictions(write_jsonl([*records[:5], "", *records[5:]], name="blank.jsonl"), labels="meld")
    for name in ("scores", "candidate", "quality", "gold", "present"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    assert fast.invalid_labels == slow.invalid_labels
    assert list(fast.instance_ids) == list(slow.instance_ids)


def test_run_directory_is_accepted(records, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    as_parquet(records, run / "predictions.parquet")
    assert diagnose(run, labels="meld", bootstrap=0).to_dict()["n_instances"] == 60


def test_cli_json_has_the_contract_keys(records, write_jsonl):
    path = write_jsonl(records)
    result = CliRunner().invoke(
        app, ["diagnose", str(path), "--labels", "meld", "--json", "--bootstrap", "50", "--baseline", "tav"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in (
        "n_instances",
        "labels",
        "tau",
        "weights",
        "fused_agents",
        "baseline_top1",
        "fusion_topk",
        "agents",
        "ci",
        "by_dataset",
    ):
        assert key in out
    assert out["fused_agents"] == ["audio", "text", "vision"]  # sorted: the file's order does not show
    assert isinstance(out["baseline_top1"], float)
    audio = out["agents"]["audio"]
    for key in (
        "n",
        "abstained",
        "invalid_labels",
        "top1",
        "contributor_rate",
        "potential_sabotage_rate",
        "successful_sabotage_rate",
        "potential_sabotage_share",
        "successful_sabotage_share",
    ):
        assert key in audio
    assert audio["n"] + audio["abstained"] == out["n_instances"]
    assert out["ci"]["fusion_topk.1"][0] <= out["fusion_topk"]["1"] <= out["ci"]["fusion_topk.1"][1]
    assert "agents.audio.top1" in out["ci"]
    assert set(out["by_dataset"]) == {"meld", "mer"}


def test_cli_tables_show_the_figures(records, write_jsonl):
    result = CliRunner().invoke(app, ["diagnose", str(write_jsonl(records)), "--labels", "meld", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    assert "Fus T1" in result.stdout and "successful sabotage" in result.stdout
    assert "candidate labels outside the label set" in result.stdout


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_instances_table(records, write_jsonl, tmp_path, suffix):
    out = tmp_path / f"inst{suffix}"
    result = CliRunner().invoke(
        app, ["diagnose", str(write_jsonl(records)), "--labels", "meld", "--bootstrap", "0", "--instances", str(out)]
    )
    assert result.exit_code == 0, result.output
    frame = {".parquet": pd.read_parquet, ".csv": pd.read_csv}.get(suffix, lambda p: pd.read_json(p, lines=True))(out)
    assert len(frame) == 60
    for column in (
        "instance_id",
        "gold",
        "fused_top1",
        "fused_ranking",
        "hit_at_1",
        "audio.top",
        "audio.confidence",
        "audio.role",
        "text.role",
    ):
        assert column in frame.columns
    assert set(frame["audio.role"]) <= {
        "contributor",
        "wrong",
        "potential_sabotage",
        "successful_sabotage",
        "abstained",
    }
    first = frame["fused_ranking"].iloc[0]
    ranking = json.loads(first) if isinstance(first, str) else list(first)
    if ranking:
        assert frame["fused_top1"].iloc[0] == ranking[0]
    direct = diagnose(write_jsonl(records), labels="meld", bootstrap=0).to_dict()
    assert frame["hit_at_1"].mean() == pytest.approx(direct["fusion_topk"]["1"])


def test_run_directory_keeps_its_recorded_label_order(records, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    as_parquet(records, run / "predictions.parquet")
    order = ["fear", "disgust", "sadness", "anger", "surprise", "joy", "neutral"]
    (run / "dataset.json").write_text(json.dumps({"labels": order}))
    out = diagnose(run, bootstrap=0).to_dict()
    assert out["labels"] == order and "dataset.json" in out["label_source"]
    assert diagnose(run, labels="meld", bootstrap=0).to_dict()["labels"][0] == "neutral"  # --labels wins
