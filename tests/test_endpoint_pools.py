"""Endpoint pools: routing, health, 429s, the cache and the config forms.

Every run goes over HTTP to real stub servers on 127.0.0.1 (``modsab.agents.testing``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
from typer.testing import CliRunner

from modsab.agents import media
from modsab.agents.backends import OpenAIBackend
from modsab.agents.engine import AgentRunner, Limits
from modsab.agents.inputs import Instance
from modsab.agents.pool import Endpoint, EndpointPool, EndpointState
from modsab.agents.prompts import PromptSet
from modsab.agents.run import AgentRunConfig, run_agents
from modsab.agents.store import RunStore, cache_key
from modsab.agents.testing import Reply, StubServer, default_answer
from modsab.cli import app
from modsab.contract.errors import InputError
from modsab.contract.labels import LabelSet
from modsab.run.config import load_config

MELD = LabelSet.parse("meld")
FAST = Limits(concurrency=2, max_retries=4, backoff_base=0.02, backoff_max=0.05)


def items(n: int, tag: str = "u") -> list[Instance]:
    return [Instance(f"{tag}{i}", descriptors={"transcript": f"utterance number {i}"}, gold="anger") for i in range(n)]


def run(base_url, tmp_path, instances, name="run", **overrides):
    config = AgentRunConfig(model="stub", labels=MELD, agents=["text"], base_url=base_url,
                            cache_dir=str(tmp_path / "cache"), limits=overrides.pop("limits", FAST),
                            timeout=5.0, **overrides)
    return run_agents(instances, config, tmp_path / name)


def answers(result) -> list[tuple[str, str]]:
    with sqlite3.connect(result.run_dir / "run.sqlite") as db:
        return db.execute("SELECT instance_id, status FROM answers").fetchall()


def stopped_url() -> str:
    """The URL of a port where nothing listens (connections are refused)."""
    server = StubServer().start()
    url = server.url
    server.stop()
    return url


def test_routing_takes_the_endpoint_with_fewest_outstanding_relative_to_its_concurrency():
    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="stub", api_key=None)
    a, b = (EndpointState(Endpoint(f"http://{n}/v1", concurrency=c), backend, i)
            for i, (n, c) in enumerate((("a", 4), ("b", 2))))
    pool = EndpointPool([a, b])
    now = time.monotonic()
    assert pool.choose(now) is a  # both idle: the first
    a.outstanding = 1
    assert pool.choose(now) is b  # b is idle
    b.outstanding = 1
    assert pool.choose(now) is a  # 1/4 busy against 1/2
    a.outstanding, b.outstanding = 4, 1
    assert pool.choose(now) is b  # a is full
    b.outstanding = 2
    assert pool.choose(now) is None
    heavy = EndpointState(Endpoint("http://c/v1", concurrency=4, weight=2.0), backend, 2)
    light = EndpointState(Endpoint("http://d/v1", concurrency=4, weight=1.0), backend, 3)
    assert EndpointPool([light, heavy]).choose(now) is heavy  # equally busy: the higher weight


def test_requests_go_to_the_idle_endpoint_and_every_answer_arrives_once(tmp_path):
    with StubServer(latency=1.5, validate=True) as slow, StubServer(latency=0.01, validate=True) as fast:
        result = run([slow.url, fast.url], tmp_path, items(40))
    rows = answers(result)
    assert sorted(rows) == sorted((f"u{i}", "ok") for i in range(40))
    assert len(slow.requests) + len(fast.requests) == 40  # nothing asked twice
    # both idle at first: one each, then the busy slow one only takes a request when the fast one
    # has as many outstanding relative to its slots; the fast one answers the rest meanwhile
    assert 1 <= len(slow.requests) <= 2 * FAST.concurrency and len(fast.requests) >= 32
    assert not slow.invalid and not fast.invalid
    assert [e["url"] for e in result.config["endpoints"]] == [slow.url, fast.url]
    assert result.config["endpoints"][0]["concurrency"] == FAST.concurrency


def test_a_down_endpoint_is_set_aside_and_rejoins_when_it_comes_back(tmp_path):
    down = stopped_url()
    port = int(down.rsplit(":", 1)[1].split("/")[0])
    revived: list[StubServer] = []
    timer = threading.Timer(0.4, lambda: revived.append(StubServer(latency=0.02, port=port).start()))
    try:
        with StubServer(latency=0.05, capacity=2) as up:
            timer.start()
            result = run([down, up.url], tmp_path, items(60))
        timer.join()
        back = revived[0]
        assert sorted(answers(result)) == sorted((f"u{i}", "ok") for i in range(60))
        assert len(up.requests) + len(back.requests) == 60  # refused connections asked no server
        assert back.requests, "the endpoint did not rejoin after it came back"
        down_summary = result.endpoints[0]
        assert down_summary["set_aside"] >= 1 and down_summary["served"] == len(back.requests)
    finally:
        for server in revived:
            server.stop()


def test_a_429_pauses_only_the_endpoint_that_sent_it(tmp_path):
    seen: dict[str, list[tuple[float, int]]] = {"a": [], "b": []}

    def limited(request):
        first = not seen["a"]
        seen["a"].append((time.monotonic(), 429 if first else 200))
        if first:
            return Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "1"}, immediate=True)
        return default_answer(request)

    def steady(request):
        seen["b"].append((time.monotonic(), 200))
        return default_answer(request)

    with StubServer(latency=0.02, responder=limited) as a, StubServer(latency=0.02, responder=steady) as b:
        result = run([a.url, b.url], tmp_path, items(80))
    assert sorted(answers(result)) == sorted((f"u{i}", "ok") for i in range(80))
    limited_at = seen["a"][0][0]
    # Retry-After honoured on a: only the request already in flight beside the 429 came before 1 s
    assert sum(1 for t, _ in seen["a"][1:] if t - limited_at < 0.95) <= FAST.concurrency - 1
    assert sum(1 for t, _ in seen["b"] if limited_at < t < limited_at + 0.9) >= 10  # b carried on
    assert result.endpoints[0]["rate_limited"] == 1 and result.endpoints[0]["failed_over"] == 1
    assert result.stats.retries == 0  # sent on to b at once, not retried after a backoff


def test_pools_of_different_servers_share_cached_answers(tmp_path):
    instances = items(12)
    with StubServer() as a, StubServer() as b:
        first = run([a.url, b.url], tmp_path, instances, name="first")
    with StubServer() as c, StubServer() as d:
        second = run([c.url, d.url], tmp_path, instances, name="second")
        assert not c.requests and not d.requests
    assert first.stats.requests == 12 and second.stats.requests == 0 and second.stats.cached == 12


def test_one_url_keeps_its_cache_key_and_a_pool_of_one_keys_as_it(tmp_path):
    instance = items(1)[0]
    with StubServer() as server:
        plain = run(server.url, tmp_path, [instance], name="plain")
        pooled = run(None, tmp_path, [instance], name="pooled", endpoints=[Endpoint(server.url, 2)])
        assert len(server.requests) == 1  # the pool of one found the plain run's answer
    store = RunStore(plain.run_dir)
    runner = AgentRunner(OpenAIBackend(base_url=server.url, model="stub", api_key=None), store, labels=MELD)
    messages, params = runner.messages(instance, "text")
    expected = cache_key(base_url=server.url, model="stub", messages=media.redact(messages), params=params,
                         prompt_version=PromptSet.load().version)
    store.close()
    with sqlite3.connect(plain.run_dir / "run.sqlite") as db:
        [(key,)] = db.execute("SELECT cache_key FROM calls").fetchall()
    assert key == expected
    assert pooled.stats.cached == 1 and pooled.stats.requests == 0


def test_the_cli_takes_base_url_more_than_once(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": f"r{i}", "transcript": f"words {i}", "label": "anger"}) + "\n"
                            for i in range(6)))
    with StubServer() as a, StubServer() as b:
        result = CliRunner().invoke(app, [
            "agents", "run", str(rows), "--model", "stub", "--agents", "text", "--run", str(tmp_path / "run"),
            "--base-url", a.url, "--base-url", b.url, "--no-progress", "--cache-dir", str(tmp_path / "c")])
        assert result.exit_code == 0, result.output
        assert a.requests and b.requests and len(a.requests) + len(b.requests) == 6
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [e["url"] for e in meta["endpoints"]] == [a.url, b.url]


AGENT = """
[dataset]
loader = "manifest"
path = "m.csv"

[[agents]]
name = "text"
kind = "llm"
model = "stub"
"""


@pytest.mark.parametrize("line", [
    'base_url = "http://a/v1"',
    'base_url = ["http://a/v1", "http://b/v1"]',
    'endpoints = [{url = "http://a/v1", concurrency = 8, weight = 2}, {url = "http://b/v1"}]',
])
def test_config_takes_one_url_a_list_or_endpoints(tmp_path, line):
    path = tmp_path / "run.toml"
    path.write_text(AGENT + line + "\n")
    agent = load_config(path).agents[0]
    urls = [agent.base_url] if isinstance(agent.base_url, str) else agent.base_url or [
        e.url for e in agent.endpoints]
    assert urls[0] == "http://a/v1"
    if agent.endpoints:
        assert (agent.endpoints[0].concurrency, agent.endpoints[0].weight) == (8, 2.0)
        assert agent.endpoints[1].concurrency is None  # the agent's concurrency


@pytest.mark.parametrize(("line", "key", "words"), [
    ('base_url = []', "agents[0]", "lists no endpoint"),
    ('base_url = ["http://a/v1", "http://a/v1/"]', "agents[0]", "listed twice"),
    ('base_url = ["ftp://a"]', "agents[0]", "not an http(s) URL"),
    ('base_url = "http://a/v1"\nendpoints = [{url = "http://b/v1"}]', "agents[0]", "not both"),
    ('endpoints = [{url = "http://a/v1", concurrency = 0}]', "agents[0].endpoints[0].concurrency", "greater"),
    ('endpoints = [{url = "http://a/v1", weight = 0}]', "agents[0].endpoints[0].weight", "greater"),
    ('endpoints = [{url = "http://a/v1", slots = 3}]', "agents[0].endpoints[0].slots", "unknown key"),
])
def test_config_errors_name_the_key(tmp_path, line, key, words):
    path = tmp_path / "run.toml"
    path.write_text(AGENT + line + "\n")
    with pytest.raises(InputError) as caught:
        load_config(path)
    assert caught.value.item == f"key '{key}'" and words in caught.value.message


def test_describers_take_a_pool_too(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(AGENT + '\n[describe]\nvoice_llm = { base_url = ["http://a/v1", "http://b/v1"], model = "m" }\n')
    assert load_config(path).describe.voice_llm.base_url == ["http://a/v1", "http://b/v1"]
    path.write_text(AGENT + '\n[describe]\nscene = { endpoints = [{url = "http://a/v1", concurrency = 2}], '
                    'model = "m" }\n')
    assert load_config(path).describe.scene.endpoints[0].concurrency == 2
    path.write_text(AGENT + '\n[describe]\nvoice_llm = { model = "m", endpoints = [] }\n')
    with pytest.raises(InputError) as caught:
        load_config(path)
    assert "no endpoint" in caught.value.message and caught.value.item == "key 'describe.voice_llm'"


def test_a_describer_runs_on_a_pool_through_the_engines_workers(tmp_path):
    from PIL import Image

    from modsab.agents.testing import chat_reply
    from modsab.descriptors.llm import LLMDescriber, run_describer

    media = {}
    for i in range(8):
        path = tmp_path / f"f{i}.jpg"
        Image.new("RGB", (32, 24), (30 * i, 0, 0)).save(path)
        media[f"c{i}"] = [str(path)]
    reply = "A person faces the camera in a dim room."
    with StubServer(latency=0.05, validate=True, responder=lambda r: chat_reply(reply)) as a, \
            StubServer(latency=0.05, validate=True, responder=lambda r: chat_reply(reply)) as b:
        describer = LLMDescriber("scene", base_url=[a.url, b.url], model="vlm", limits=FAST)
        results, stats = run_describer(describer, media, store_dir=tmp_path / "store")
        assert a.requests and b.requests and len(a.requests) + len(b.requests) == 8
        assert not a.invalid and not b.invalid
    assert {r.status for r in results.values()} == {"ok"} and stats.done == 8
    store = RunStore(tmp_path / "store")
    assert [e["url"] for e in store.config()["endpoints"]] == [a.url, b.url]
    store.close()


def test_repeated_5xx_set_an_endpoint_aside_while_the_others_answer(tmp_path):
    failing = lambda request: Reply(503, {"error": {"message": "overloaded"}}, immediate=True)  # noqa: E731
    with StubServer(responder=failing) as sick, StubServer(latency=0.02) as well:
        result = run([sick.url, well.url], tmp_path, items(40), limits=Limits(
            concurrency=2, max_retries=6, backoff_base=0.2, backoff_max=0.4))
    assert sorted(answers(result)) == sorted((f"u{i}", "ok") for i in range(40))
    assert len(well.requests) == 40
    summary = result.endpoints[0]
    assert summary["set_aside"] >= 1 and summary["served"] == 0
    # 3 in a row set it aside; afterwards one probe per backoff, not a share of the traffic
    assert len(sick.requests) <= 3 + 2 + 2 * summary["set_aside"]


def test_modsab_run_takes_an_agent_on_endpoints(tmp_path):
    rows = [{"instance_id": f"c{i}", "gold": gold, "speaker": f"s{i % 2}", "transcript": f"words {i}"}
            for i, gold in enumerate(["anger", "joy", "anger", "sadness"])]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with StubServer(validate=True) as a, StubServer(validate=True) as b:
        path = tmp_path / "run.toml"
        path.write_text(
            f'[run]\ndir = "{tmp_path / "run"}"\ncache_dir = "{tmp_path / "cache"}"\n'
            f'[dataset]\nloader = "manifest"\npath = "{tmp_path / "m.jsonl"}"\nlabels = "meld"\n'
            '[[agents]]\nname = "text"\nkind = "llm"\nmodel = "stub"\nreads = ["transcript"]\n'
            f'endpoints = [{{url = "{a.url}", concurrency = 1}}, {{url = "{b.url}", concurrency = 1, weight = 2}}]\n'
            '[outputs]\nreport = ""\n')
        result = CliRunner().invoke(app, ["run", str(path), "--json"])
        assert result.exit_code == 0, result.output
        assert b.requests and len(a.requests) + len(b.requests) == 4 and not a.invalid + b.invalid
    meta = json.loads((tmp_path / "run" / "agents" / "text" / "run.json").read_text())
    assert meta["endpoints"] == [{"url": a.url, "concurrency": 1, "weight": 1.0},
                                 {"url": b.url, "concurrency": 1, "weight": 2.0}]
    assert json.loads(result.stdout)["agents"]["text"]["top1"] is not None
