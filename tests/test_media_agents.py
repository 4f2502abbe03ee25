"""Agents that see and hear: media parts beside the text descriptors, against a stub
server that validates every request by the openai package's own request types."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import wave
from pathlib import Path

import numpy as np
import pytest
from _media import write_wav
from typer.testing import CliRunner

from modsab.agents import media
from modsab.agents.engine import Limits, check_media_support
from modsab.agents.inputs import DEFAULT_FIELDS, FieldConfig, Instance
from modsab.agents.run import AgentRunConfig, run_agents
from modsab.agents.testing import Reply, StubServer, chat_reply, default_answer
from modsab.cli import app
from modsab.contract.errors import InputError
from modsab.contract.labels import LabelSet

MELD = LabelSet.parse("meld")
FAST = Limits(concurrency=4, max_retries=2, backoff_base=0.01, backoff_max=0.02)


def jpeg(path, seed):
    rng = np.random.default_rng(seed)
    path.write_bytes(media.encode_jpeg(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)))
    return path


def instances(tmp_path, n=3):
    out = []
    for i in range(n):
        frame = jpeg(tmp_path / f"peak{i}.jpg", i)
        out.append(Instance(f"c{i}", descriptors={"face_description": f"Brow Lowerer (AU4, 0.{i + 3}0)."}, gold="anger",
                            media={"peak_frame": (str(frame),), "frames": (str(frame),)}))
    return out


def config(server, tmp_path, *, agent="vision_media", kinds=("peak_frame",), **extra):
    fields = FieldConfig({**DEFAULT_FIELDS, agent: ("face_description",)})
    return AgentRunConfig(model="stub-vlm", labels=MELD, agents=[agent], base_url=server.url, fields=fields,
                     media={agent: kinds}, templates={agent: "vision"}, limits=FAST,
                     cache_dir=str(tmp_path / "cache"), **extra)


def user_parts(request):
    content = request["messages"][1]["content"]
    assert isinstance(content, list)
    return content


def test_a_media_agent_sends_the_peak_frame_beside_its_descriptors_as_a_valid_openai_request(tmp_path):
    items = instances(tmp_path)
    with StubServer(validate=True) as server:
        result = run_agents(items, config(server, tmp_path), tmp_path / "run")
    assert server.invalid == []
    assert result.counts["vision_media"]["ok"] == 3
    for request in server.requests:
        text, image = user_parts(request)
        assert text["type"] == "text" and "Brow Lowerer" in text["text"] and "peak frame" in text["text"]
        assert image["type"] == "image_url"
        sent = base64.b64decode(image["image_url"]["url"].split(",", 1)[1])
        iid = next(i for i in items if i.descriptors["face_description"] in text["text"])
        assert sent == Path(iid.media["peak_frame"][0]).read_bytes()  # the file's bytes, as they are
    # the store keeps the request with the image as a content hash, never the bytes
    with sqlite3.connect(tmp_path / "run" / "run.sqlite") as db:
        stored = [json.loads(row[0]) for row in db.execute("SELECT request FROM calls")]
    assert all("base64" not in json.dumps(r) for r in stored)
    assert all(r["messages"][1]["content"][1]["image_url"]["url"].startswith("sha256:") for r in stored)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["media"] == {"vision_media": ["peak_frame"]}


def test_the_cache_key_covers_the_media_bytes(tmp_path):
    items = instances(tmp_path)
    with StubServer(validate=True) as server:
        run_agents(items, config(server, tmp_path), tmp_path / "first")
        assert len(server.requests) == 3
        run_agents(items, config(server, tmp_path), tmp_path / "second")  # same bytes: all from the cache
        assert len(server.requests) == 3
        jpeg(tmp_path / "peak1.jpg", 99)  # one frame changes
        result = run_agents(items, config(server, tmp_path), tmp_path / "third")
    assert len(server.requests) == 4 and result.stats.cached == 2


def test_audio_is_sent_as_16khz_wav_input_audio(tmp_path):
    clip = write_wav(tmp_path / "clip.wav", 0.3 * np.sin(np.linspace(0, 3000, 24_000)))
    item = Instance("a", descriptors={"audio_description": "Pitch high."}, gold="joy", media={"audio": (str(clip),)})
    fields = FieldConfig({**DEFAULT_FIELDS})
    with StubServer(validate=True) as server:
        cfg = AgentRunConfig(model="stub-alm", labels=MELD, agents=["audio"], base_url=server.url, fields=fields,
                        media={"audio": ("audio",)}, limits=FAST, cache_dir=str(tmp_path / "cache"))
        run_agents([item], cfg, tmp_path / "run")
    assert server.invalid == []
    (text, audio), = [user_parts(r) for r in server.requests]
    assert "Pitch high." in text["text"] and audio["input_audio"]["format"] == "wav"
    with wave.open(io.BytesIO(base64.b64decode(audio["input_audio"]["data"]))) as handle:
        assert (handle.getframerate(), handle.getnchannels(), handle.getnframes()) == (16_000, 1, 24_000)


@pytest.mark.parametrize("status", [400, 500])  # 500: llama.cpp's server without a projector
def test_a_server_that_cannot_take_images_stops_the_run_at_the_first_call(tmp_path, status):
    items = instances(tmp_path, n=6)
    server = StubServer(validate=True, refuse_parts={"image_url"}, refuse_status=status)
    with server, pytest.raises(InputError) as info:
        run_agents(items, config(server, tmp_path), tmp_path / "run")
    assert len(server.requests) == 1  # not one per instance, not after the whole run
    message = str(info.value)
    assert server.url in message and "image (image_url)" in message and "stub-vlm" in message
    assert "image input is not supported" in message and "'peak_frame'" in info.value.hint
    assert info.value.item == "agent 'vision_media'"


def test_a_refusal_that_does_not_name_the_part_still_stops_at_the_first_instance(tmp_path):
    items = instances(tmp_path, n=6)

    def responder(request):
        if any(p.get("type") == "image_url" for m in request["messages"] if isinstance(m["content"], list)
               for p in m["content"]):
            return Reply(400, {"error": {"message": "bad request"}})
        return default_answer(request)

    with StubServer(responder=responder) as server, pytest.raises(InputError) as info:
        run_agents(items, config(server, tmp_path), tmp_path / "run")
    # the engine tries its weaker response formats on a 400, then stops: one instance's worth
    assert len(server.requests) == 4
    assert server.url in str(info.value) and "image (image_url)" in str(info.value)


def test_once_the_server_took_a_part_a_later_failure_is_one_instance_not_a_stop(tmp_path):
    items = instances(tmp_path, n=4)
    seen = []

    def responder(request):
        seen.append(1)
        if len(seen) == 3:
            return Reply(422, {"error": {"message": "this image is too small"}})
        return default_answer(request)

    with StubServer(responder=responder) as server:
        cfg = config(server, tmp_path)
        cfg.limits = Limits(concurrency=1, max_retries=0)
        result = run_agents(items, cfg, tmp_path / "run")
    assert result.counts["vision_media"]["ok"] == 3 and result.counts["vision_media"]["error"] == 1


def test_a_text_only_backend_is_refused_before_any_call():
    class TextOnly:
        base_url, model, accepts = "local://llama.cpp/x.gguf", "local:smollm2", frozenset({"text"})

    with pytest.raises(InputError) as info:
        check_media_support(TextOnly(), {"vision_media": ["frames"]})
    assert "local://llama.cpp/x.gguf" in str(info.value) and "image (image_url)" in str(info.value)
    check_media_support(TextOnly(), {"text": []})  # nothing to send: fine


def test_media_count_in_the_budget(tmp_path):
    items = instances(tmp_path, n=3)
    with StubServer() as server:
        # one request reserves ~ text/4 + 765 (image) + 400 (max output); 2000 tokens allow one
        result = run_agents(items, config(server, tmp_path, max_tokens_budget=2000), tmp_path / "run")
    assert len(server.requests) == 1
    assert result.stats.stopped == "budget reached" and result.counts["vision_media"]["pending"] == 2


def test_resume_refuses_a_run_directory_made_with_other_media(tmp_path):
    items = instances(tmp_path, n=1)
    with StubServer() as server:
        run_agents(items, config(server, tmp_path), tmp_path / "run")
        with pytest.raises(InputError, match="different media"):
            run_agents(items, config(server, tmp_path, kinds=("frames",)), tmp_path / "run")


# -- the run config: a description-fed and a media-fed agent in one study ----------------------


def _study(tmp_path, server, agents_toml):
    rows = []
    for i, gold in enumerate(["anger", "joy", "anger", "sadness"]):
        frame = jpeg(tmp_path / f"f{i}.jpg", i)
        rows.append({"instance_id": f"c{i}", "gold": gold, "speaker": f"s{i % 2}",
                     "face_description": f"Brow Lowerer (AU4, 0.{i + 2}0).", "peak_frame_path": str(frame)})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    path = tmp_path / "run.toml"
    path.write_text(f'[run]\ndir = "{tmp_path / "run"}"\ncache_dir = "{tmp_path / "cache"}"\n'
                    f'[dataset]\nloader = "manifest"\npath = "{manifest}"\nlabels = "meld"\n'
                    + agents_toml.replace("URL", server.url) + '[outputs]\nreport = ""\n')
    return path


def test_one_config_compares_a_description_fed_and_a_media_fed_agent(tmp_path):
    agents = ('[[agents]]\nname = "vision"\nkind = "llm"\nmodel = "stub-vlm"\nbase_url = "URL"\n'
              'reads = ["face_description"]\n'
              '[[agents]]\nname = "vision_media"\nkind = "llm"\nmodel = "stub-vlm"\nbase_url = "URL"\n'
              'prompt = "vision"\nreads = []\nmedia = ["peak_frame"]\n')

    def responder(request):  # the media-fed agent answers anger, the description-fed one joy
        sees_image = any(isinstance(m["content"], list) for m in request["messages"])
        label = "anger" if sees_image else "joy"
        return chat_reply(json.dumps({"candidates": [{"label": label, "confidence": 80}], "primary_label": label,
                                      "quality": 70, "issues": [], "reason": "stub"}))

    with StubServer(validate=True, responder=responder) as server:
        path = _study(tmp_path, server, agents)
        result = CliRunner().invoke(app, ["run", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert server.invalid == []
    out = json.loads(result.stdout)
    assert list(out["agents"]) == ["vision", "vision_media"]
    assert out["agents"]["vision_media"]["top1"] == 0.5 and out["agents"]["vision"]["top1"] == 0.25
    with_image = [r for r in server.requests if isinstance(r["messages"][1]["content"], list)]
    assert len(with_image) == 4 and len(server.requests) == 8
    # the media-fed agent reads no text descriptor: only its prompt and the frame
    assert all("Brow Lowerer" not in user_parts(r)[0]["text"] for r in with_image)
    summary = json.loads((tmp_path / "run" / "run.json").read_text())["agent_summary"]
    assert summary["vision_media"]["media"] == ["peak_frame"] and summary["vision_media"]["answered"] == 4


def exits_2(capsys, *args):
    from modsab.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    assert info.value.code == 2
    return " ".join(capsys.readouterr().err.split())


def test_a_run_stops_at_the_first_refused_image_naming_the_agent_key(tmp_path, capsys):
    agents = ('[[agents]]\nname = "vision_media"\nkind = "llm"\nmodel = "text-only"\nbase_url = "URL"\n'
              'prompt = "vision"\nmedia = ["peak_frame"]\n')
    with StubServer(refuse_parts={"image_url"}) as server:
        path = _study(tmp_path, server, agents)
        error = exits_2(capsys, "run", str(path))
    assert len(server.requests) == 1
    assert "agents[0].media" in error and "image (image_url)" in error and server.url in error


@pytest.mark.parametrize("agent, message", [
    ('name = "p"\nkind = "probe"\nfeatures = "vision"\nmedia = ["peak_frame"]\n', "llm agents only"),
    ('name = "v"\nkind = "llm"\nmedia = ["peak_frame"]\n', "needs 'base_url'"),
    ('name = "v"\nkind = "llm"\nbase_url = "http://127.0.0.1:9/v1"\nmedia = ["video"]\n', "agents[0].media[0]"),
    ('name = "v"\nkind = "llm"\nbase_url = "http://127.0.0.1:9/v1"\nreads = []\n', "no input"),
])
def test_bad_media_keys_are_errors_naming_the_key(tmp_path, capsys, agent, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'[dataset]\nloader = "manifest"\npath = "x.jsonl"\n[[agents]]\n{agent}')
    assert message in exits_2(capsys, "run", str(path))


def test_agents_run_cli_sends_media_from_the_rows_frame_columns(tmp_path):
    rows = tmp_path / "descriptors.jsonl"
    jpeg(tmp_path / "p0.jpg", 0)
    rows.write_text(json.dumps({"instance_id": "c0", "gold": "anger", "face_description": "Brow Lowerer.",
                                "peak_frame_path": "p0.jpg"}) + "\n")  # relative to the file
    with StubServer(validate=True) as server:
        result = CliRunner().invoke(app, [
            "agents", "run", str(rows), "--base-url", server.url, "--model", "stub-vlm", "--agents", "vision_media",
            "--prompt", "vision_media=vision", "--media", "vision_media=peak_frame", "--run", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert server.invalid == [] and len(server.requests) == 1
    text, image = user_parts(server.requests[0])
    assert "Brow Lowerer." in text["text"]  # the vision prompt's default fields
    assert base64.b64decode(image["image_url"]["url"].split(",", 1)[1]) == (tmp_path / "p0.jpg").read_bytes()
    bad = CliRunner().invoke(app, ["agents", "run", str(rows), "--base-url", server.url, "--model", "m",
                                   "--media", "vision=video", "--run", str(tmp_path / "r2")])
    assert bad.exit_code != 0 and "unknown media 'video'" in str(bad.exception)


def test_a_media_file_that_is_gone_fails_that_answer_not_the_run(tmp_path):
    items = instances(tmp_path, n=3)
    (tmp_path / "peak1.jpg").unlink()
    with StubServer(validate=True) as server:
        result = run_agents(items, config(server, tmp_path), tmp_path / "run")
    assert result.counts["vision_media"]["ok"] == 2 and result.counts["vision_media"]["error"] == 1
    assert any("cannot read the media" in e and "peak1.jpg" in e for e in result.stats.errors)
