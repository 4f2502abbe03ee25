"""Real data's rough edges in ``modsab run``: empty transcripts, the dataset's name, splits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from modsab.agents.testing import StubServer, chat_reply
from modsab.cli import main

GOLDS = ["joy", "anger", "sadness", "neutral"]


def modsab(capsys, *args) -> tuple[int, str]:
    try:
        main(list(map(str, args)))
        code = 0
    except SystemExit as done:
        code = done.code or 0
    return code, capsys.readouterr().err


def descriptions(tmp_path: Path, name: str = "mer_annotation.json", n: int = 12) -> Path:
    """Clip descriptions as the paper distributes them; clip 3's transcript is empty, clip 5 has none."""
    rows = []
    for k in range(n):
        row = {"video_id": f"clip{k:02d}.mp4", "true_label": GOLDS[k % 4], "transcript": f"words of clip {k}",
               "audio_description": f"a voice {k}", "fine-grained_summary": "names the emotion"}
        if k == 3:
            row["transcript"] = ""
        if k == 5:
            del row["transcript"]
        rows.append(row)
    path = tmp_path / name
    path.write_text(json.dumps(rows))
    return path


def config(tmp_path: Path, data: Path, agents: str, dataset: str = "") -> Path:
    path = tmp_path / "run.toml"
    path.write_text(
        f'[run]\ndir = "{tmp_path / "run"}"\ncache_dir = "{tmp_path / "cache"}"\n'
        f'[dataset]\nloader = "descriptions"\npath = "{data}"\nlabels = "meld"\n{dataset}'
        f'{agents}[audit]\nbootstrap = 20\n[outputs]\nreport = ""\n'
    )
    return path


@pytest.fixture
def fake_encoder(monkeypatch):
    """The sentence encoder replaced by a hash of the text; like the real tokenizer it
    refuses anything that is not a string (NaN from a pandas string column included)."""
    from modsab.agents import probes

    def embed(texts, **kwargs):
        out = []
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"TextEncodeInput must be a string, got {text!r}")
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            out.append(np.random.default_rng(seed).normal(size=8))
        return np.asarray(out)

    monkeypatch.setattr(probes, "text_embeddings", embed)


def predictions(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]


def test_an_empty_or_missing_transcript_makes_the_text_probe_abstain_there(tmp_path, capsys, fake_encoder):
    agents = '[[agents]]\nname = "text_probe"\nkind = "probe"\nfeatures = "text"\noptions = { n_splits = 2 }\n'
    code, err = modsab(capsys, "run", config(tmp_path, descriptions(tmp_path), agents))
    assert code == 0, err
    by_id = {r["instance_id"]: r for r in predictions(tmp_path)}
    assert len(by_id) == 12
    assert by_id["clip03"]["candidates"] == [] and by_id["clip05"]["candidates"] == []
    assert all(r["candidates"] for iid, r in by_id.items() if iid not in ("clip03", "clip05"))


def test_an_llm_agent_whose_field_is_empty_or_missing_abstains_without_a_call(tmp_path, capsys):
    """Passes on the code before this branch too: pinned so it stays so (README documents it)."""
    answer = json.dumps({"candidates": [{"label": "joy", "confidence": 80}], "primary_label": "joy",
                         "quality": 70, "issues": [], "reason": "r"})
    with StubServer(responder=lambda request: chat_reply(answer)) as server:
        agents = (f'[[agents]]\nname = "text"\nkind = "llm"\nmodel = "stub"\nbase_url = "{server.url}"\n'
                  'reads = ["transcript"]\n')
        code, err = modsab(capsys, "run", config(tmp_path, descriptions(tmp_path), agents))
        sent = [request["messages"][-1]["content"] for request in server.requests]
    assert code == 0, err
    assert len(sent) == 10 and not any("clip 3" in text for text in sent)
    by_id = {r["instance_id"]: r for r in predictions(tmp_path)}
    for iid in ("clip03", "clip05"):
        assert by_id[iid]["candidates"] == [] and by_id[iid]["status"] == "missing"
    assert "agent text: 10 answered, 0 invalid, 0 failed, 2 without input" in err


@pytest.mark.parametrize(("file_name", "dataset_key", "expected"), [
    ("iemocap_annotation.json", "", "iemocap"),            # the file's stem, without _annotation
    ("mer_annotation.json", 'name = "mer2023"\n', "mer2023"),  # [dataset] name wins
])
def test_the_descriptions_loader_names_the_dataset_after_the_config_or_the_file(
        tmp_path, capsys, file_name, dataset_key, expected):
    precomputed = tmp_path / "base.jsonl"
    precomputed.write_text("".join(json.dumps({"instance_id": f"clip{k:02d}", "agent": "base",
                                               "candidates": [{"label": "joy", "confidence": 70}]}) + "\n"
                                   for k in range(12)))
    agents = f'[[agents]]\nname = "base"\nkind = "precomputed"\npath = "{precomputed}"\n'
    code, err = modsab(capsys, "run", config(tmp_path, descriptions(tmp_path, file_name), agents, dataset_key))
    assert code == 0, err
    assert {r["dataset"] for r in predictions(tmp_path)} == {expected}
    diagnosis = json.loads((tmp_path / "run" / "diagnosis.json").read_text())
    assert list(diagnosis["by_dataset"]) == [expected]


def test_dataset_name_fills_manifest_rows_without_their_own(tmp_path):
    from modsab.run.config import RunConfig
    from modsab.run.pipeline import load_instances

    data = tmp_path / "m.jsonl"
    data.write_text(json.dumps({"instance_id": "a", "gold": "joy", "dataset": "meld"}) + "\n"
                    + json.dumps({"instance_id": "b", "gold": "joy"}) + "\n")
    config = RunConfig.model_validate({"dataset": {"path": str(data), "name": "mine"},
                                       "agents": [{"name": "p", "kind": "precomputed", "path": "x"}]})
    assert [i.dataset for i in load_instances(config).instances] == ["meld", "mine"]


def test_a_split_that_matches_nothing_names_the_split_and_the_splits_there_are(tmp_path, capsys):
    data = tmp_path / "m.jsonl"
    data.write_text("".join(json.dumps({"instance_id": f"i{k}", "gold": "joy", "split": s}) + "\n"
                            for k, s in enumerate(["train", "test", "dev", "test"])))
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[run]\ndir = "{tmp_path / "run"}"\n[dataset]\nloader = "manifest"\npath = "{data}"\n'
                   f'split = "tset"\n[[agents]]\nname = "b"\nkind = "precomputed"\npath = "{data}"\n')
    code, err = modsab(capsys, "run", cfg)
    assert code == 2 and "split 'tset' matches no instance" in err and "splits: dev, test, train" in err
    from modsab.data.loaders import load_dataset

    assert len(load_dataset("manifest", data, split="test").instances) == 2  # a split that is there


def test_a_split_on_a_loader_without_splits_says_so(tmp_path, capsys):
    data = descriptions(tmp_path)
    cfg = config(tmp_path, data, f'[[agents]]\nname = "b"\nkind = "precomputed"\npath = "{data}"\n',
                 'split = "test"\n')
    code, err = modsab(capsys, "run", cfg)
    assert code == 2 and "split 'test' matches no instance" in err and "descriptions loader gives no split" in err
