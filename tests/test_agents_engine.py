"""The engine against a stub server that misbehaves on purpose."""

import json
import sqlite3
import time

import pytest

from modsab.agents.engine import Limits
from modsab.agents.inputs import Instance
from modsab.agents.run import AgentRunConfig, run_agents
from modsab.agents.testing import Reply, StubServer, chat_reply, default_answer
from modsab.contract.labels import LabelSet
from modsab.contract.records import PredictionRecord

MELD = LabelSet.parse("meld")
FAST = Limits(concurrency=4, max_retries=3, backoff_base=0.01, backoff_max=0.05)


def valid(label="anger", confidence=80):
    return json.dumps(
        {
            "candidates": [{"label": label, "confidence": confidence}],
            "primary_label": label,
            "quality": 70,
            "issues": [],
            "reason": "r",
        }
    )


def case_of(request):
    user = request["messages"][1]["content"]
    return user.split("CASE:", 1)[1].split()[0] if "CASE:" in user else "plain"


class Script:
    """Per-case behaviour; the n-th request of a case gets ``plan[case][n]`` (last repeats)."""

    def __init__(self, plan):
        self.plan, self.seen = plan, {}

    def __call__(self, request):
        case = case_of(request)
        n = self.seen.get(case, 0)
        self.seen[case] = n + 1
        steps = self.plan.get(case, [lambda r: chat_reply(valid())])
        return steps[min(n, len(steps) - 1)](request)


def ok(label="anger"):
    return lambda r: chat_reply(valid(label))


PLAN = {
    "rate": [
        lambda r: Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "0.3"}),
        ok(),
    ],
    "server": [lambda r: Reply(500, {"error": {"message": "boom"}}), ok()],
    "slow": [
        lambda r: Reply(delay=3.0, body=json.loads(json.dumps(chat_reply(valid()).body))),
        ok(),
    ],
    "truncated": [
        lambda r: chat_reply('{"candidates": [{"label": "joy", "confi', finish_reason="length"),
        ok("joy"),
    ],
    "outside": [lambda r: chat_reply(valid("confusion")), lambda r: chat_reply(valid("concern"))],
    "nested": [
        lambda r: chat_reply(
            json.dumps({"candidates": [{"label": valid("fear", 66), "confidence": 10}]})
        )
    ],
    "empty": [lambda r: chat_reply("")],
    "dead": [lambda r: Reply(503, {"error": {"message": "down"}})],
}


def instances(*cases):
    return [
        Instance(f"i_{case}", descriptors={"transcript": f"CASE:{case} words"}, gold="anger", dataset="t")
        for case in cases
    ]


def run(server, tmp_path, items, name="run", **overrides):
    config = AgentRunConfig(
        model="stub",
        labels=MELD,
        agents=["text"],
        base_url=server.url,
        cache_dir=str(tmp_path / "cache"),
        limits=overrides.pop("limits", FAST),
        timeout=overrides.pop("timeout", 1.0),
        **overrides,
    )
    return run_agents(items, config, tmp_path / name)


def rows(run_dir, sql):
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        return db.execute(sql).fetchall()


def test_every_misbehaviour_ends_as_retry_repair_or_invalid(tmp_path):
    script = Script(PLAN)
    items = instances(
        "rate", "server", "slow", "truncated", "outside", "nested", "empty", "dead", "plain"
    )
    with StubServer(responder=script) as server:
        started = time.monotonic()
        result = run(server, tmp_path, items)
        assert time.monotonic() - started >= 0.3  # Retry-After honoured
    answers = {
        row[0]: row[1:]
        for row in rows(result.run_dir, "SELECT instance_id, status, raw, error FROM answers")
    }
    status = {key: value[0] for key, value in answers.items()}
    assert status == {
        "i_rate": "ok",
        "i_server": "ok",
        "i_slow": "ok",
        "i_truncated": "ok",
        "i_outside": "invalid",
        "i_nested": "ok",
        "i_empty": "invalid",
        "i_dead": "error",
        "i_plain": "ok",
    }
    assert script.seen["rate"] == 2 and script.seen["server"] == 2 and script.seen["slow"] == 2
    assert (
        script.seen["truncated"] == 2 and script.seen["outside"] == 2 and script.seen["dead"] == 4
    )
    assert "concern" in answers["i_outside"][1]  # raw text of the repaired answer is kept
    assert answers["i_empty"][1] == ""
    repair = rows(
        result.run_dir,
        "SELECT request FROM calls WHERE purpose = 'repair' AND instance_id = 'i_truncated'",
    )
    assert "could not be used" in json.loads(repair[0][0])["messages"][-1]["content"]
    records = [
        PredictionRecord.model_validate_json(line)
        for line in result.predictions.read_text().splitlines()
    ]
    by_id = {record.instance_id: record for record in records}
    assert "i_dead" not in by_id  # a failed call is no answer: the next run retries it
    assert by_id["i_outside"].candidates == [] and by_id["i_outside"].status == "invalid"
    assert [c.label for c in by_id["i_nested"].candidates] == ["fear"]
    assert result.stats.failed == 1 and result.stats.invalid == 2


def test_rerun_makes_zero_requests_and_retries_only_failures(tmp_path):
    items = instances("plain", "truncated", "dead")
    script = Script(PLAN)
    with StubServer(responder=script) as server:
        run(server, tmp_path, items)
        before = len(server.requests)
        again = run(server, tmp_path, items)
        assert len(server.requests) - before == 4  # only the failed call, 1 + 3 retries
        assert again.stats.failed == 1
        other = run(server, tmp_path, items[:2], name="other")  # new run dir, shared cache
        assert len(server.requests) - before == 4 and other.stats.requests == 0
        assert other.stats.cached == 3


def test_response_format_falls_back_when_rejected(tmp_path):
    formats = []

    def picky(request):
        kind = (request.get("response_format") or {}).get("type")
        formats.append(kind)
        if kind == "json_schema":
            return Reply(400, {"error": {"message": "response_format json_schema not supported"}})
        return default_answer(request)

    with StubServer(responder=picky) as server:
        result = run(server, tmp_path, instances("a", "b", "c"), limits=Limits(concurrency=1))
    assert result.stats.done == 3 and formats == [
        "json_schema",
        "json_object",
        "json_object",
        "json_object",
    ]


def test_budget_stops_cleanly_and_resume_finishes(tmp_path):
    items = instances(*"abcdefgh")
    with StubServer() as server:
        first = run(server, tmp_path, items, max_tokens_budget=1500, limits=Limits(concurrency=2))
        assert first.stats.stopped == "budget reached" and 0 < first.stats.done < 8
        assert first.stats.tokens <= 1500
        made = len(server.requests)
        second = run(server, tmp_path, items)
        assert second.stats.done == 8 - first.stats.done
        assert len(server.requests) == made + second.stats.done


def test_api_key_is_never_stored(tmp_path, monkeypatch):
    secret = "sk-test-secret-0123456789"
    monkeypatch.setenv("MODSAB_TEST_KEY", secret)
    with StubServer(responder=Script(PLAN)) as server:
        result = run(server, tmp_path, instances("plain", "dead"), api_key_env="MODSAB_TEST_KEY")
    for path in [*result.run_dir.iterdir(), *(tmp_path / "cache").iterdir()]:
        assert secret.encode() not in path.read_bytes(), path
    assert all(secret not in error for error in result.stats.errors)


def test_rate_limit_spaces_requests(tmp_path):
    with StubServer() as server:
        started = time.monotonic()
        run(
            server,
            tmp_path,
            instances(*"abcd"),
            limits=Limits(concurrency=4, requests_per_minute=120),
        )
    assert time.monotonic() - started >= 0.4  # bucket of 2 per second: the 4th waits ~0.5 s


def test_changed_options_refuse_to_mix_runs(tmp_path):
    from modsab.contract.errors import InputError

    with StubServer() as server:
        run(server, tmp_path, instances("a"))
        with pytest.raises(InputError, match="different labels"):
            config = AgentRunConfig(
                model="stub",
                labels=LabelSet.parse("a,b"),
                agents=["text"],
                base_url=server.url,
                cache_dir=str(tmp_path / "cache"),
            )
            run_agents(instances("a"), config, tmp_path / "run")
