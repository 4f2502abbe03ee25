"""Endpoint answers the client cannot read: one bad answer each, never a dead run.

Every test runs against the stub server on 127.0.0.1 (``modsab.agents.testing``).
"""

from __future__ import annotations

import json
import sqlite3

from typer.testing import CliRunner

from modsab.agents.engine import Limits
from modsab.agents.inputs import Instance
from modsab.agents.run import AgentRunConfig, run_agents
from modsab.agents.testing import StubServer, chat_reply, raw_reply
from modsab.cli import app
from modsab.contract.labels import LabelSet

MELD = LabelSet.parse("meld")
FAST = Limits(concurrency=2, max_retries=2, backoff_base=0.01, backoff_max=0.02)
HTML = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"


def valid(label="anger", extra=""):
    return json.dumps({"candidates": [{"label": label, "confidence": 80}], "primary_label": label,
                       "quality": 70, "issues": [], "reason": "r" + extra})


def case_of(request):
    user = request["messages"][-1]["content"]
    return user.split("CASE:", 1)[1].split()[0] if "CASE:" in user else "plain"


class Faulty:
    """Per-case replies: the n-th request of a case gets ``plan[case][n]`` (the last repeats)."""

    PLAN = {
        "garbled": [lambda: raw_reply('{"choices": [{"message": {"content": "{\\"cand')],
        "html": [lambda: raw_reply(HTML, content_type="text/html")],
        "list": [lambda: raw_reply("[1, 2, 3]")],
        "nomessage": [lambda: raw_reply('{"choices": [{"message": null}]}')],
        "flaky": [lambda: raw_reply(HTML, content_type="text/html"), lambda: chat_reply(valid("joy"))],
    }

    def __init__(self):
        self.seen: dict[str, int] = {}

    def __call__(self, request):
        case = case_of(request)
        n = self.seen.get(case, 0)
        self.seen[case] = n + 1
        steps = self.PLAN.get(case, [lambda: chat_reply(valid())])
        return steps[min(n, len(steps) - 1)]()


def items(*cases):
    return [Instance(f"i_{c}", descriptors={"transcript": f"CASE:{c} words"}, gold="anger") for c in cases]


def run(server, tmp_path, instances, **overrides):
    config = AgentRunConfig(model="stub", labels=MELD, agents=["text"], base_url=server.url,
                       cache_dir=str(tmp_path / "cache"), limits=overrides.pop("limits", FAST), timeout=2.0,
                       **overrides)
    return run_agents(instances, config, tmp_path / "run")


def test_unreadable_bodies_are_retried_then_stored_as_failed_calls_with_their_raw_body(tmp_path):
    """Malformed JSON, an HTML page with status 200, JSON without choices or message: each is a
    transient failure (retried with backoff), then a stored failure; the run finishes."""
    script = Faulty()
    with StubServer(responder=script) as server:
        result = run(server, tmp_path, items("garbled", "html", "list", "nomessage", "flaky", "plain"))
    stats = result.stats
    assert stats.failed == 4 and stats.done == 2
    assert script.seen["garbled"] == 3 and script.seen["html"] == 3  # 1 + max_retries each
    assert script.seen["flaky"] == 2  # one bad page, then a good answer
    assert stats.retries == 4 * 2 + 1
    with sqlite3.connect(result.run_dir / "run.sqlite") as db:
        answers = {row[0]: row[1:] for row in db.execute("SELECT instance_id, status, raw, error FROM answers")}
        calls = {row[0]: row[1:] for row in db.execute("SELECT instance_id, status, response, attempts FROM calls")}
    assert {k: v[0] for k, v in answers.items()} == {
        "i_garbled": "error", "i_html": "error", "i_list": "error", "i_nomessage": "error",
        "i_flaky": "ok", "i_plain": "ok",
    }
    assert answers["i_html"][1] == HTML and calls["i_html"] == ("error", HTML, 3)
    assert "text/html" in answers["i_html"][2] and "unreadable response" in answers["i_html"][2]
    assert answers["i_garbled"][1].startswith('{"choices"') and "not JSON" in answers["i_garbled"][2]
    assert calls["i_list"][1] == "[1, 2, 3]"
    records = [json.loads(line) for line in result.predictions.read_text().splitlines()]
    assert sorted(r["instance_id"] for r in records) == ["i_flaky", "i_plain"]


def test_a_rerun_retries_only_the_unreadable_calls(tmp_path):
    script = Faulty()
    with StubServer(responder=script) as server:
        run(server, tmp_path, items("html", "plain"))
        before = dict(script.seen)
        again = run(server, tmp_path, items("html", "plain"))
    assert again.stats.failed == 1 and again.stats.done == 0
    assert script.seen["html"] - before["html"] == 3 and script.seen.get("plain") == before.get("plain")


def test_agents_run_cli_finishes_and_says_how_many_calls_failed(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"instance_id": f"i{n}", "transcript": f"CASE:{c} words", "gold": "joy"})
                            + "\n" for n, c in enumerate(["garbled", "plain", "html", "plain", "flaky"])))
    with StubServer(responder=Faulty()) as server:
        result = CliRunner().invoke(app, [
            "agents", "run", str(rows), "--run", str(tmp_path / "run"), "--base-url", server.url,
            "--model", "stub", "--agents", "text", "--cache-dir", str(tmp_path / "cache"),
            "--max-retries", "1", "--no-progress", "--timeout", "2"])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    assert "3 answered, 0 invalid, 2 failed" in result.output
    assert "unreadable response" in result.output
    lines = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_a_key_the_server_echoes_is_scrubbed_from_every_stored_text(tmp_path, monkeypatch):
    """A server that puts the bearer token inside a 200 answer (and inside an unreadable body):
    the key never reaches run.sqlite, cache.sqlite or predictions.jsonl."""
    secret = "sk-echo-0123456789abcdef"
    monkeypatch.setenv("MODSAB_ECHO_KEY", secret)

    def echo(request, headers):
        token = headers.get("authorization", "")
        if case_of(request) == "broken":
            return raw_reply(f"<html>proxy error for {token}</html>", content_type="text/html")
        return chat_reply(valid(extra=f" seen {token}"))

    with StubServer(responder=echo) as server:
        result = run(server, tmp_path, items("plain", "broken"), api_key_env="MODSAB_ECHO_KEY")
    assert result.stats.done == 1 and result.stats.failed == 1
    with sqlite3.connect(result.run_dir / "run.sqlite") as db:
        stored = [row[0] for row in db.execute("SELECT response FROM calls")]
    assert any("seen Bearer ***" in text for text in stored)  # the answer is kept, the key is not
    files = [*result.run_dir.iterdir(), *(tmp_path / "cache").iterdir()]
    assert any(path.name == "cache.sqlite" for path in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    assert all(secret not in error for error in result.stats.errors)
