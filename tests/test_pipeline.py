"""``modsab run`` end to end, on real data and real models (offline)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modsab.cli import app
from modsab.run.config import load_config

TREE = Path(__file__).resolve().parents[1]
EXAMPLE = TREE / "examples" / "ravdess-mini" / "run.toml"


def _needs(*modules):
    for name in modules:
        pytest.importorskip(name, reason=f"{name} is not installed (pip install -e '.[all]')")


def config_copy(tmp_path: Path, source: Path, *, run_dir: Path, cache_dir: Path, extra: str = "") -> Path:
    """The example config with its paths made absolute and the run and cache moved."""
    text = source.read_text()
    text = text.replace('dir = "../../runs/ravdess-mini"', f'dir = "{run_dir}"\ncache_dir = "{cache_dir}"')
    text = text.replace('path = "clips"', f'path = "{source.parent / "clips"}"')
    path = tmp_path / f"{run_dir.name}.toml"
    path.write_text(text + extra)
    return path


def test_print_config_shows_the_resolved_config():
    result = CliRunner().invoke(app, ["run", str(EXAMPLE), "--print-config", "--limit", "3", "--agents", "text"])
    assert result.exit_code == 0, result.output
    assert "limit = 3" in result.stdout and 'name = "text"' in result.stdout
    assert str(EXAMPLE.parent / "clips") in result.stdout
    assert 'name = "audio"' not in result.stdout


def test_bad_config_key_exits_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[dataset]\nloader = "ravdess"\npath = "x"\n[[agents]]\nname = "a"\nkind = "nope"\n')
    from modsab.cli import main

    with pytest.raises(SystemExit) as info:
        main(["run", str(path)])
    assert info.value.code == 2


@pytest.mark.slow
def test_the_example_runs_offline_and_reports_every_agent(tmp_path):
    _needs("xllamacpp", "opensmile", "faster_whisper", "mediapipe", "sentence_transformers")
    config = config_copy(tmp_path, EXAMPLE, run_dir=tmp_path / "full", cache_dir=tmp_path / "cache")
    result = CliRunner().invoke(app, ["run", str(config), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    names = {a.name for a in load_config(config).agents}
    assert set(out["agents"]) == names
    assert out["n_instances"] == 49
    for name in ("text", "audio", "tav", "audio_probe", "text_probe"):
        assert out["agents"][name]["n"] == 49, name  # every clip answered
    assert out["agents"]["vision"]["n"] == 1  # only the AV clip has a face
    run = tmp_path / "full"
    for name in ("diagnosis.json", "instances.parquet", "report.html", "descriptors.parquet", "predictions.jsonl",
                 "config.toml", "dataset.json"):
        assert (run / name).is_file(), name
    # the audio probe hears emotion in the voice: well above chance (1/8) across actors
    assert out["agents"]["audio_probe"]["top1"] > 0.25
    # the words are the same sentence for every emotion: the text probe cannot beat chance by much
    assert out["agents"]["text_probe"]["top1"] < out["agents"]["audio_probe"]["top1"]


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_json(tmp_path):
    _needs("xllamacpp", "opensmile", "faster_whisper", "sentence_transformers")
    narrow = ["--limit", "6", "--agents", "text,audio,audio_probe"]
    env = {**os.environ, "PYTHONPATH": str(TREE / "src")}
    killed = config_copy(tmp_path, EXAMPLE, run_dir=tmp_path / "killed", cache_dir=tmp_path / "cache-k")
    straight = config_copy(tmp_path, EXAMPLE, run_dir=tmp_path / "straight", cache_dir=tmp_path / "cache-s")
    process = subprocess.Popen([sys.executable, "-m", "modsab", "run", str(killed), *narrow],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = None
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:  # kill once some model answers are stored
        found = list((tmp_path / "killed" / "agents").glob("*/run.sqlite"))
        if found:
            store = found[0]
            try:
                with sqlite3.connect(store) as db:
                    if db.execute("select count(*) from answers").fetchone()[0] >= 3:
                        break
            except sqlite3.Error:
                pass
        time.sleep(0.2)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with sqlite3.connect(store) as db:
        kept = db.execute("select count(*) from answers").fetchone()[0]
    assert 0 < kept < 12
    for config in (killed, straight):
        done = subprocess.run([sys.executable, "-m", "modsab", "run", str(config), *narrow, "--json"],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    a = json.loads((tmp_path / "killed" / "diagnosis.json").read_text())
    b = json.loads((tmp_path / "straight" / "diagnosis.json").read_text())
    for d in (a, b):
        d.pop("source"), d.pop("run")
    assert a == b
    with sqlite3.connect(store) as db:  # the answers stored before the kill were not asked again
        calls = db.execute("select count(*) from calls where purpose = 'answer'").fetchone()[0]
    assert calls <= 12


@pytest.mark.slow
def test_meld_descriptions_with_the_offline_llm_agents(tmp_path, data_dir):
    _needs("xllamacpp")
    config = tmp_path / "meld.toml"
    config.write_text(f"""
[run]
dir = "{tmp_path / 'run'}"
[dataset]
loader = "descriptions"
path = "{data_dir / 'meld_descriptions' / 'meld_annotation.json'}"
limit = 20
""" + "".join(f'\n[[agents]]\nname = "{a}"\nkind = "scorer"\n' for a in ("text", "audio", "vision", "tav")))
    result = CliRunner().invoke(app, ["run", str(config), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["n_instances"] == 20 and out["labels"][0] == "neutral"
    for agent in ("text", "audio", "vision", "tav"):
        assert out["agents"][agent]["n"] == 20
    descriptors = (tmp_path / "run" / "descriptors.parquet")
    import pandas as pd

    frame = pd.read_parquet(descriptors)
    assert "fine-grained_summary" not in frame.columns and "true_label" not in frame.columns


@pytest.mark.slow
def test_ravdess_audio_probe_on_all_clips_is_well_above_chance(tmp_path, data_dir):
    _needs("opensmile", "av")
    config = tmp_path / "rav.toml"
    config.write_text(f"""
[run]
dir = "{tmp_path / 'run'}"
[dataset]
loader = "ravdess"
path = "{data_dir / 'ravdess' / 'speech_16k'}"
[describe]
asr = false
face = false
workers = 2
[[agents]]
name = "audio_probe"
kind = "probe"
features = "audio"
[audit]
bootstrap = 200
[outputs]
report = ""
""")
    result = CliRunner().invoke(app, ["run", str(config), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    top1 = out["agents"]["audio_probe"]["top1"]
    low, high = out["ci"]["agents.audio_probe.top1"]
    print(f"\nRAVDESS audio probe, 1,440 clips, actor-grouped cross-fitting: top-1 {top1:.3f} [{low:.3f}, {high:.3f}]"
          f" (chance 0.125)")
    assert out["n_instances"] == 1440
    assert low > 0.25


def test_precomputed_agents_from_a_manifest_run_without_media(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps({"instance_id": f"i{i}", "gold": g}) for i, g in
                                  enumerate(["joy", "anger", "joy"])))
    answers = tmp_path / "answers.csv"
    answers.write_text(
        "instance_id,agent,candidates\n"
        'i0,base,"[{""label"": ""joy"", ""confidence"": 90}]"\n'
        'i1,base,"[{""label"": ""joy"", ""confidence"": 80}]"\n'
        'i2,base,"[{""label"": ""happy"", ""confidence"": 70}]"\n'
        'i0,other,"[{""label"": ""anger"", ""confidence"": 90}]"\n'
    )
    config = tmp_path / "run.toml"
    config.write_text(f'[run]\ndir = "{tmp_path / "run"}"\n[dataset]\nloader = "manifest"\npath = "{manifest}"\n'
                      f'labels = "meld"\n[[agents]]\nname = "base"\nkind = "precomputed"\npath = "{answers}"\n'
                      '[outputs]\nreport = ""\n')
    result = CliRunner().invoke(app, ["run", str(config), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert list(out["agents"]) == ["base"]  # the other agent's rows are not taken
    assert out["agents"]["base"]["n"] == 3 and out["fusion_topk"]["1"] == 2 / 3


def test_a_run_adds_the_diagnostics_its_config_asks_for(tmp_path):
    """``[audit] diagnostics`` puts the sections in diagnosis.json, the instances table and the report."""
    import pandas as pd

    manifest = tmp_path / "m.jsonl"
    golds = ["joy", "anger", "joy", "sadness", "neutral", "joy", "anger", "neutral", "joy", "sadness"]
    manifest.write_text("\n".join(json.dumps({"instance_id": f"i{i}", "gold": g}) for i, g in enumerate(golds)))
    answers = tmp_path / "answers.jsonl"
    lines = []
    for i, gold in enumerate(golds):
        lines.append({"instance_id": f"i{i}", "agent": "a", "candidates": [{"label": gold, "confidence": 60}]})
        lines.append({"instance_id": f"i{i}", "agent": "b", "candidates": [{"label": "anger", "confidence": 90}]})
    answers.write_text("\n".join(json.dumps(line) for line in lines))
    agents = "".join(f'[[agents]]\nname = "{a}"\nkind = "precomputed"\npath = "{answers}"\n' for a in "ab")
    config = tmp_path / "run.toml"
    config.write_text(
        f'[run]\ndir = "{tmp_path / "run"}"\n[dataset]\nloader = "manifest"\npath = "{manifest}"\nlabels = "meld"\n'
        f'{agents}[audit]\nbootstrap = 50\ndiagnostics = ["causal", "shapley", "tau_sweep"]\nfolds = 3\n'
    )
    result = CliRunner().invoke(app, ["run", str(config), "--json"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "diagnosis.json").read_text())
    assert {"causal", "shapley", "tau_sweep"} <= set(saved) and "calibration" not in saved
    # b's confident "anger" wins every tie-free instance it disagrees on: a causal saboteur there
    assert saved["causal"]["agents"]["b"]["causal_sabotage_rate"] > 0
    table = pd.read_parquet(tmp_path / "run" / "instances.parquet")
    assert {"b.causal", "a.shapley_correct", "b.shapley_gold_probability"} <= set(table.columns)
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Shapley contributions" in page and "Causal (counterfactual) sabotage" in page
