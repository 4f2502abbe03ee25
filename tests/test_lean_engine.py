"""The engine's lean path keeps every record: batched writes, the bare-JSON answer reader.

Batched writes (one transaction per ``FLUSH_SECONDS``) must store exactly what one commit per row
stored, flush when the run ends however it ends, and lose at most the last batch to a SIGKILL,
which a resumed run asks again without repeating any stored call or duplicating an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modsab.agents import store as store_module
from modsab.agents.answer import AgentAnswer, AnswerError, extract_json, extract_json_reference
from modsab.agents.backends import OpenAIBackend
from modsab.agents.engine import AgentRunner, Limits
from modsab.agents.inputs import Instance
from modsab.agents.prompts import PromptSet
from modsab.agents.store import FLUSH_SECONDS, ResponseCache, RunStore, cache_key
from modsab.agents.testing import StubServer, default_answer
from modsab.contract.labels import LabelSet

MELD = LabelSet.parse("meld")
SRC = Path(__file__).resolve().parents[1] / "src"


# -- the bare-JSON reader against the step-by-step one -------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 200) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet='ab{}[]",:\\` \n', max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='ab{}"` ', max_size=4), inner,
                                                               max_size=3),
    max_leaves=8,
)


@st.composite
def raw_answers(draw):
    """What a model may send: an object alone, with whitespace, fences, prose, a trailing comma,
    cut short, or text that merely looks like it."""
    body = json.dumps(draw(st.dictionaries(st.text(alphabet='abc{}"`', max_size=4), json_values, max_size=4)),
                      indent=draw(st.sampled_from([None, 2])))
    shape = draw(st.sampled_from(["bare", "spaced", "fenced", "prose", "comma", "cut", "noise", "two"]))
    if shape == "spaced":
        body = draw(st.sampled_from([" ", "\n", "\t\x0b", "\x1c"])) + body + draw(st.sampled_from(["", " \n", "\x85"]))
    elif shape == "fenced":
        body = f"```json\n{body}\n```"
    elif shape == "prose":
        body = f"Here it is: {body} hope that helps {{"
    elif shape == "comma" and body.endswith("}") and len(body) > 2:
        body = body[:-1] + ",}"
    elif shape == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif shape == "noise":
        body = draw(st.text(alphabet='{}[]",:ab` \n\\', max_size=30))
    elif shape == "two":
        body = body + " " + body
    return body


def outcome(read, text):
    try:
        return ("ok", read(text))
    except AnswerError as error:
        return ("error", str(error))


@given(text=raw_answers())
@settings(max_examples=400, deadline=None)
def test_the_bare_json_reader_equals_the_reference_on_any_text(text):
    assert outcome(extract_json, text) == outcome(extract_json_reference, text)


# -- batched writes --------------------------------------------------------------------------------


def visible(path: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchone()[0]


def test_a_batch_is_read_back_before_it_is_written_and_written_within_its_interval(tmp_path):
    store = RunStore(tmp_path / "run")
    path = tmp_path / "run" / "run.sqlite"

    async def main():
        with store.batching():
            store.record_call("k", instance_id="i", agent="text", purpose="answer", request={"messages": []},
                              response="raw", status="ok")
            store.record_answer("i", "text", status="ok", answer={"a": 1}, raw="raw", call_key="k")
            waiting = visible(path, "SELECT COUNT(*) FROM calls")
            found = store.cached_call("k")  # a read of a waiting key writes its batch first
            assert visible(path, "SELECT COUNT(*) FROM answers") == 1
            store.record_answer("j", "text", status="ok", answer={"a": 2}, raw="raw", call_key="k")
            await asyncio.sleep(FLUSH_SECONDS * 3)  # the timed flush, while the run goes on
            timed = visible(path, "SELECT COUNT(*) FROM answers")
            store.record_answer("l", "text", status="ok", answer={"a": 3}, raw="raw", call_key="k")
        return waiting, found, timed

    waiting, found, timed = asyncio.run(main())
    assert waiting == 0 and found.response == "raw" and timed == 2
    assert visible(path, "SELECT COUNT(*) FROM answers") == 3  # leaving the batch wrote the last one
    store.close()


@pytest.mark.parametrize("ending", ["error", "cancel"])
def test_a_run_that_ends_badly_still_writes_every_answer_it_has(tmp_path, ending):
    """An error or a cancel (Ctrl-C) mid-run: every answer the engine counted is in the store."""
    with StubServer(latency=0.02) as server:
        store, cache = RunStore(tmp_path / "run"), ResponseCache(tmp_path / "cache")
        backend = OpenAIBackend(base_url=server.url, model="stub", api_key=None)
        seen = []

        def update(stats):
            seen.append(stats.done)
            if ending == "error" and stats.done >= 30:
                raise RuntimeError("stop here")

        runner = AgentRunner(backend, store, labels=MELD, cache=cache, limits=Limits(concurrency=4),
                             on_update=update)
        items = [Instance(f"i{n}", descriptors={"transcript": f"words {n}"}) for n in range(400)]

        async def main():
            task = asyncio.create_task(runner.run(items, ["text"]))
            if ending == "cancel":
                while runner.stats.done < 30:
                    await asyncio.sleep(0.01)
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await task
            await backend.aclose()

        asyncio.run(main())
        done = runner.stats.done
        store.close()
        cache.close()
    assert 30 <= done < 400
    path = tmp_path / "run" / "run.sqlite"
    assert visible(path, "SELECT COUNT(*) FROM answers WHERE status = 'ok'") == done
    assert visible(path, "SELECT COUNT(*) FROM calls WHERE status = 'ok'") >= done
    assert visible(tmp_path / "cache" / "cache.sqlite", "SELECT COUNT(*) FROM responses") >= done


def stored(run_dir: Path):
    """Every call and answer row but the clock's columns (created_at, latency)."""
    with contextlib.closing(sqlite3.connect(run_dir / "run.sqlite")) as db:
        calls = sorted(db.execute("SELECT cache_key, instance_id, agent, purpose, request, response, prompt_tokens, "
                                  "completion_tokens, attempts, status, error, source FROM calls"))
        answers = sorted(db.execute("SELECT instance_id, agent, status, answer, raw, call_key, error FROM answers"))
    return calls, answers


def test_batched_writes_store_exactly_what_one_commit_per_row_stored(tmp_path, monkeypatch):
    """The same run with and without batches: the same rows, byte for byte; the request is the JSON
    of what was sent and the key is the cache key of it."""
    items = [Instance(f"i{n}", descriptors={"transcript": f"words {n} ü"}) for n in range(60)]
    items.append(Instance("none", descriptors={}))  # a missing answer is recorded too

    def one_run(name):
        store, cache = RunStore(tmp_path / name), ResponseCache(tmp_path / f"cache-{name}")
        backend = OpenAIBackend(base_url=server.url, model="stub", api_key=None)
        runner = AgentRunner(backend, store, labels=MELD, cache=cache, limits=Limits(concurrency=4))

        async def main():
            try:
                await runner.run(items, ["text"])
            finally:
                await backend.aclose()

        asyncio.run(main())
        store.close()
        cache.close()
        return stored(tmp_path / name)

    with StubServer(latency=0.005) as server:
        batched = one_run("batched")
        with monkeypatch.context() as patch:
            patch.setattr(store_module._Database, "batching", lambda self: contextlib.nullcontext())
            plain = one_run("plain")
    assert batched == plain
    calls, answers = batched
    assert len(calls) == 60 and len(answers) == 61
    version = PromptSet.load().version
    for key, _, _, _, request, *_ in calls:
        sent = json.loads(request)
        assert request == json.dumps(sent, ensure_ascii=False)
        assert key == cache_key(base_url=server.url, model="stub", messages=sent["messages"], params=sent["params"],
                                prompt_version=version)


# -- a killed run ----------------------------------------------------------------------------------


class Clocked:
    """The stub's default answer, with the time each reply was decided (its latency after)."""

    def __init__(self):
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            self.times.append(time.monotonic())
        return default_answer(request)


def test_sigkill_mid_run_loses_at_most_the_last_batch_and_resume_repeats_nothing_stored(tmp_path):
    n = 200
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instance_id": f"u{i}", "gold": "joy", "transcript": f"line {i}"}) + "\n"
                            for i in range(n)))
    run_dir, database = tmp_path / "run", tmp_path / "run" / "run.sqlite"
    clock = Clocked()
    with StubServer(latency=0.05, responder=clock) as server:  # 40 answers/s: a run of seconds
        command = [sys.executable, "-m", "modsab", "agents", "run", str(data), "--labels", "meld", "--agents", "text",
                   "--model", "stub", "--base-url", server.url, "--run", str(run_dir), "--cache-dir",
                   str(tmp_path / "cache"), "--no-progress", "--concurrency", "2"]
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        answered, deadline = 0, time.monotonic() + 120
        while answered < 100 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
            with contextlib.suppress(sqlite3.Error):
                answered = visible(database, "SELECT COUNT(*) FROM answers")
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        process.wait()
        with contextlib.closing(sqlite3.connect(database)) as db:
            calls_before = dict(db.execute("SELECT cache_key, created_at FROM calls WHERE status = 'ok'"))
            answers_before = dict(db.execute("SELECT instance_id, created_at FROM answers"))
        replied_early = sum(t < killed - FLUSH_SECONDS - 1.0 for t in clock.times)  # answered well before the kill
        asked_before = len(server.requests)
        finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr
        asked_again = [request["messages"][1]["content"] for request in server.requests[asked_before:]]
    assert 100 <= len(answers_before) < n and replied_early >= 20
    assert len(answers_before) >= replied_early  # only the last batch (and what was in flight) was lost
    with contextlib.closing(sqlite3.connect(database)) as db:
        calls_after = dict(db.execute("SELECT cache_key, created_at FROM calls WHERE status = 'ok'"))
        answers_after = list(db.execute("SELECT instance_id, created_at, status, answer, raw FROM answers"))
    assert all(calls_after[key] == stamp for key, stamp in calls_before.items())  # none asked again
    stamps = {iid: stamp for iid, stamp, *_ in answers_after}
    assert all(stamps[iid] == stamp for iid, stamp in answers_before.items())  # none lost, none rewritten
    assert len(answers_after) == n and len(stamps) == n  # each answer once
    assert len(asked_again) == n - len(calls_before)  # what the store held was not requested again
    for _, _, status, answer, raw in answers_after:
        assert status == "ok" and AgentAnswer.model_validate_json(answer) and json.loads(raw)["candidates"]
    lines = (run_dir / "predictions.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["instance_id"] for line in lines) == sorted(f"u{i}" for i in range(n))


# -- the request body ------------------------------------------------------------------------------


def test_the_request_body_is_the_json_of_the_request_with_any_response_format(tmp_path):
    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="stub", api_key=None)
    runner = AgentRunner(backend, RunStore(tmp_path / "run"), labels=MELD)
    messages, params = runner.messages(Instance("a", descriptors={"transcript": 'héllo "quoted" \\ ü'}), "text")
    formats = [*runner.formats, {"type": "json_object"}]
    for _ in range(2):  # the second time from what was made the first
        for response_format in formats:
            payload = {"model": "stub", "messages": messages, **params}
            if response_format is not None:
                payload["response_format"] = response_format
            assert backend._body(messages, params, response_format) == json.dumps(payload).encode()
    changed = formats[0]
    changed["json_schema"]["name"] = "changed in place"  # never done, but never sent stale either
    assert b"changed in place" in backend._body(messages, params, changed)
    assert backend._body(messages, {**params, "response_format": 1}, None) == json.dumps(
        {"model": "stub", "messages": messages, **params, "response_format": 1}).encode()


# -- requests in flight ------------------------------------------------------------------------------


def test_twice_the_workers_still_send_at_most_concurrency_requests_at_once(tmp_path):
    class Watched(OpenAIBackend):
        """The real backend, counting its calls in flight."""

        now = peak = 0

        async def complete(self, messages, params, response_format):
            Watched.now += 1
            Watched.peak = max(Watched.peak, Watched.now)
            try:
                return await super().complete(messages, params, response_format)
            finally:
                Watched.now -= 1

    with StubServer(latency=0.02) as server:
        backend = Watched(base_url=server.url, model="stub", api_key=None)
        runner = AgentRunner(backend, RunStore(tmp_path / "run"), labels=MELD, limits=Limits(concurrency=3))
        items = [Instance(f"i{n}", descriptors={"transcript": f"words {n}"}) for n in range(40)]

        async def main():
            try:
                return await runner.run(items, ["text"])
            finally:
                await backend.aclose()

        stats = asyncio.run(main())
    assert runner.workers == 6 and stats.done == 40
    assert Watched.peak == 3
