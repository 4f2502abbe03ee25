"""Describe with a multimodal model: key frames, the scene and voice descriptions through
the engine, the leakage rule, the cache, and the request shape (validated by the openai
package's types). A real endpoint is used only when MODSAB_VLM_URL is set."""

from __future__ import annotations

import base64
import io
import json
import os
import sqlite3
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from _media import needs_describe_extra, ravdess, write_wav
from typer.testing import CliRunner

from modsab.agents.engine import Limits
from modsab.agents.media import encode_jpeg
from modsab.agents.testing import Reply, StubServer, chat_reply
from modsab.cli import app
from modsab.contract.errors import InputError
from modsab.contract.labels import PRESETS
from modsab.descriptors.keyframes import decode_at, frame_times, save_keyframes
from modsab.descriptors.llm import LLMDescriber, leakage_checker, run_describer

FAST = Limits(concurrency=2, max_retries=1, backoff_base=0.01, backoff_max=0.02)
OBJECTIVE = ("The man faces the camera against a white background; his brows are drawn together and lowered, "
             "the lips are pressed, the head is upright and the shoulders are level.")


def video(path, *, seconds=2.0, fps=10, size=(1280, 720)):
    """A clip whose frame k is uniformly grey at level 10 * k (so a decoded frame tells its time)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"qscale": "2"}
        for k in range(int(seconds * fps)):
            image = np.full((size[1], size[0], 3), 10 * k, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_key_frames_are_the_peak_then_its_neighbours_inside_the_clip():
    assert frame_times(1.0, 1.9, 4) == [1.0, 1.5, 0.5, 1.9]
    assert frame_times(0.1, 3.0, 3) == [0.1, 0.6, 1.1]  # 0.0 is too close to the peak: the next one
    assert frame_times(None, 3.0, 1) == [1.5]  # no face: the middle frame
    assert frame_times(2.0, 2.0, 2) == [2.0, 1.5]


def test_key_frames_decode_the_frame_at_each_time_as_jpeg_of_at_most_768_px(tmp_path):
    from PIL import Image

    clip = video(tmp_path / "clip.mp4")
    images = decode_at(clip, [1.2, 0.3])
    assert [round(float(image.mean()) / 10) for image in images] == [12, 3]
    paths = save_keyframes(clip, peak=1.2, duration=1.9, n=3, folder=tmp_path / "frames")
    assert len(paths) == 3
    levels = []
    for path in paths:
        picture = Image.open(path)
        assert picture.format == "JPEG" and max(picture.size) == 768
        levels.append(round(float(np.asarray(picture).mean()) / 10))
    assert levels == [12, 17, 7]  # the peak first, then +0.5 s and -0.5 s
    stamps = [p.stat().st_mtime_ns for p in paths]
    assert save_keyframes(clip, peak=1.2, duration=1.9, n=3, folder=tmp_path / "frames") == paths
    assert [p.stat().st_mtime_ns for p in paths] == stamps  # named by content: nothing decoded again


def frames(tmp_path, n_clips=3, per_clip=2):
    out = {}
    for c in range(n_clips):
        clip = video(tmp_path / f"clip{c}.mp4", seconds=1.5, size=(320, 180))
        out[f"c{c}"] = [str(p) for p in save_keyframes(clip, peak=0.5 + 0.1 * c, duration=1.4, n=per_clip,
                                                       folder=tmp_path / "frames")]
    return out


def scene(server, **extra):
    return LLMDescriber("scene", base_url=server.url, model=extra.pop("model", "stub-vlm"), limits=FAST, **extra)


def test_the_scene_description_sends_the_peak_frames_with_a_prompt_that_forbids_mental_states(tmp_path):
    media = frames(tmp_path)
    with StubServer(validate=True, responder=lambda r: chat_reply(OBJECTIVE)) as server:
        results, stats = run_describer(scene(server, frames=2), media, store_dir=tmp_path / "store",
                                       labels=PRESETS["ravdess"])
    assert server.invalid == [] and len(server.requests) == 3
    assert {iid: r.status for iid, r in results.items()} == dict.fromkeys(media, "ok")
    assert results["c0"].text == OBJECTIVE
    request = server.requests[0]
    system = request["messages"][0]["content"]
    assert "Never name or suggest an emotion" in system and "mental or psychological state" in system
    assert "response_format" not in request and request["model"] == "stub-vlm"
    parts = request["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
    sent = [base64.b64decode(p["image_url"]["url"].split(",", 1)[1]) for p in parts[1:]]
    iid = next(i for i, paths in media.items() if Path(paths[0]).read_bytes() == sent[0])
    assert sent == [Path(p).read_bytes() for p in media[iid]]


def test_descriptions_are_cached_by_frame_content_model_and_prompt(tmp_path):
    media = frames(tmp_path)
    with StubServer(validate=True, responder=lambda r: chat_reply(OBJECTIVE)) as server:
        cache = tmp_path / "cache"
        run_describer(scene(server), media, store_dir=tmp_path / "a", cache_dir=cache)
        _, stats = run_describer(scene(server), media, store_dir=tmp_path / "a", cache_dir=cache)
        assert len(server.requests) == 3 and stats.cached == 3 and stats.requests == 0  # from the store
        _, stats = run_describer(scene(server), media, store_dir=tmp_path / "b", cache_dir=cache)
        assert len(server.requests) == 3 and stats.cached == 3  # another store, the shared cache
        run_describer(scene(server, model="other-vlm"), media, store_dir=tmp_path / "a", cache_dir=cache)
        assert len(server.requests) == 6  # another model: asked again
        prompts = tmp_path / "prompts"
        prompts.mkdir()
        (prompts / "scene.txt").write_text("Describe the frame objectively.")
        run_describer(scene(server, prompts_dir=str(prompts)), media, store_dir=tmp_path / "a", cache_dir=cache)
        assert len(server.requests) == 9  # another prompt version
        same = dict(media, c1=[media["c2"][0]])  # c1 shows c2's frame: the same bytes, described already
        run_describer(scene(server), same, store_dir=tmp_path / "a", cache_dir=cache)
        assert len(server.requests) == 9
        new = tmp_path / "new.jpg"  # a frame with other bytes
        new.write_bytes(encode_jpeg(np.random.default_rng(5).integers(0, 255, (90, 160, 3), dtype=np.uint8)))
        run_describer(scene(server), dict(media, c1=[str(new)]), store_dir=tmp_path / "a", cache_dir=cache)
        assert len(server.requests) == 10


def test_a_description_that_names_a_state_is_stored_flagged_and_withheld(tmp_path):
    media = frames(tmp_path, n_clips=2)
    leaking = "The man looks angry: his brows are lowered and he seems tense and nervous."
    with StubServer(responder=lambda r: chat_reply(leaking)) as server:
        results, _ = run_describer(scene(server), media, store_dir=tmp_path / "store", labels=PRESETS["ravdess"])
        allowed, _ = run_describer(scene(server, allow_leaking=True), media, store_dir=tmp_path / "store",
                                   labels=PRESETS["ravdess"])
    assert all(r.text is None for r in results.values())
    assert results["c0"].status.startswith("withheld: names angry, nervous") and "run store" in results["c0"].status
    with sqlite3.connect(tmp_path / "store" / "run.sqlite") as db:
        stored = [json.loads(row[0]) for row in db.execute("SELECT answer FROM answers")]
    assert all(a["description"] == leaking and a["leaks"] == ["angry", "nervous"] for a in stored)
    assert allowed["c0"].text == leaking and allowed["c0"].status == "leaks: names angry, nervous"


def test_the_leakage_check_knows_labels_synonyms_and_mental_state_words():
    checker = leakage_checker(PRESETS["meld"])
    for text in ("She smiles happily.", "He seems frustrated.", "A joyful face.", "They look bored.",
                 "The man is feeling low.", "A surprised look."):
        assert checker.find(text), text
    assert not checker.find(OBJECTIVE)


def test_voice_llm_sends_the_clip_as_wav_input_audio(tmp_path):
    clip = write_wav(tmp_path / "a.wav", 0.3 * np.sin(np.linspace(0, 4000, 32_000)))
    text = "Pitch is high and rising, the pace is fast, the voice is breathy with little pause."
    with StubServer(validate=True, responder=lambda r: chat_reply(text)) as server:
        describer = LLMDescriber("voice_llm", base_url=server.url, model="stub-alm", limits=FAST)
        results, _ = run_describer(describer, {"a": [str(clip)], "silent": []}, store_dir=tmp_path / "s")
    assert server.invalid == [] and len(server.requests) == 1
    assert results["a"].text == text and results["silent"].status == "no audio"
    system = server.requests[0]["messages"][0]["content"]
    assert "prosody" in system and "Never name or suggest an emotion" in system
    part = server.requests[0]["messages"][1]["content"][1]
    import wave

    with wave.open(io.BytesIO(base64.b64decode(part["input_audio"]["data"]))) as handle:
        assert handle.getframerate() == 16_000 and handle.getnframes() == 32_000
    assert describer.column == "audio_llm_description"


def test_an_endpoint_that_cannot_take_images_stops_at_the_first_request(tmp_path):
    media = frames(tmp_path, n_clips=3)
    with StubServer(refuse_parts={"image_url"}, refuse_status=500) as server, pytest.raises(InputError) as info:
        run_describer(scene(server), media, store_dir=tmp_path / "s")
    assert len(server.requests) == 1
    assert server.url in str(info.value) and "image (image_url)" in str(info.value)


def test_a_budget_stop_leaves_the_rest_not_asked_and_a_rerun_goes_on(tmp_path):
    media = frames(tmp_path, n_clips=3, per_clip=1)
    with StubServer(responder=lambda r: chat_reply(OBJECTIVE)) as server:
        # one request reserves ~ 20 (text) + 765 (image) + 300 (max output) tokens
        results, stats = run_describer(scene(server, max_tokens_budget=1500), media, store_dir=tmp_path / "s")
        assert len(server.requests) == 1 and stats.stopped == "budget reached"
        assert sorted(r.status for r in results.values()) == ["not asked: budget reached"] * 2 + ["ok"]
        results, stats = run_describer(scene(server), media, store_dir=tmp_path / "s")
    assert len(server.requests) == 3 and stats.cached == 1
    assert all(r.status == "ok" for r in results.values())


def test_retries_and_failures_go_through_the_engine(tmp_path):
    media = frames(tmp_path, n_clips=2, per_clip=1)
    calls = []

    def responder(request):
        calls.append(1)
        if len(calls) == 1:
            return Reply(429, {"error": {"message": "slow down"}}, {"retry-after-ms": "20"}, immediate=True)
        return chat_reply(OBJECTIVE)

    with StubServer(responder=responder) as server:
        results, stats = run_describer(scene(server), media, store_dir=tmp_path / "s")
    assert stats.retries == 1 and all(r.status == "ok" for r in results.values())


# -- the run config ------------------------------------------------------------------------


def test_the_describe_section_takes_scene_and_voice_llm_and_errors_name_the_key(tmp_path, capsys):
    from modsab.cli import main
    from modsab.run.config import load_config

    base = ('[dataset]\nloader = "manifest"\npath = "m.jsonl"\n'
            '[[agents]]\nname = "a"\nkind = "probe"\nfeatures = "audio"\n')
    good = tmp_path / "good.toml"
    good.write_text(base + '[describe]\nscene = { base_url = "http://127.0.0.1:9/v1", model = "vlm", frames = 2, '
                    'concurrency = 2, max_tokens = 10000 }\nvoice_llm = { base_url = "http://127.0.0.1:9/v1", '
                    'model = "alm", allow_leaking = true }\n')
    config = load_config(good)
    assert config.describe.scene.frames == 2 and config.describe.voice_llm.allow_leaking
    assert 'scene = { base_url = "http://127.0.0.1:9/v1", model = "vlm"' in config.to_toml()
    for bad, key in (('scene = { base_url = "u", model = "m", frames = 5 }', "describe.scene.frames"),
                     ('scene = { model = "m" }', "describe.scene.base_url"),
                     ('voice_llm = { base_url = "u", model = "m", frames = 2 }', "describe.voice_llm.frames")):
        path = tmp_path / "bad.toml"
        path.write_text(base + f"[describe]\n{bad}\n")
        with pytest.raises(SystemExit) as info:
            main(["run", str(path)])
        assert info.value.code == 2 and key in capsys.readouterr().err
    missing = tmp_path / "key.toml"
    missing.write_text(base + '[describe]\nscene = { base_url = "u", model = "m", '
                       'api_key_env = "MODSAB_NO_SUCH_KEY" }\n')
    with pytest.raises(SystemExit):
        main(["run", str(missing)])
    err = capsys.readouterr().err
    assert "MODSAB_NO_SUCH_KEY" in err and "describe.scene.api_key_env" in err


# -- real media ----------------------------------------------------------------------------


def _av_clip():
    clip = ravdess() / "av" / "01-01-01-01-01-01-01.mp4"
    if not clip.is_file():
        pytest.skip(f"RAVDESS AV clip not found: {clip}")
    return clip


@pytest.mark.slow
@pytest.mark.data
def test_modsab_run_describes_the_ravdess_peak_frame_and_the_vision_agent_reads_it(tmp_path):
    needs_describe_extra()
    clip = _av_clip()
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"instance_id": "av1", "gold": "neutral", "speaker": "a01",
                                    "video_path": str(clip)}) + "\n")
    with StubServer(validate=True, responder=lambda r: chat_reply(
            OBJECTIVE if isinstance(r["messages"][1]["content"], list) and "frame" in r["messages"][1]["content"][0][
                "text"] else json.dumps({"candidates": [{"label": "neutral", "confidence": 60}],
                                         "primary_label": "neutral", "quality": 60, "issues": [],
                                         "reason": "stub"}))) as server:
        config = tmp_path / "run.toml"
        config.write_text(
            f'[run]\ndir = "{tmp_path / "run"}"\ncache_dir = "{tmp_path / "cache"}"\n'
            f'[dataset]\nloader = "manifest"\npath = "{manifest}"\nlabels = "ravdess"\n'
            f'[describe]\nasr = false\nscene = {{ base_url = "{server.url}", model = "stub-vlm", frames = 2 }}\n'
            f'[[agents]]\nname = "vision"\nkind = "llm"\nmodel = "stub"\nbase_url = "{server.url}"\n'
            '[outputs]\nreport = ""\n')
        result = CliRunner().invoke(app, ["run", str(config), "--json"])
        assert result.exit_code == 0, result.output
    import pandas as pd
    from PIL import Image

    assert server.invalid == []
    table = pd.read_parquet(tmp_path / "run" / "descriptors.parquet")
    row = table.iloc[0]
    assert row["visual_objective_description"] == OBJECTIVE and row["scene_status"] == "ok"
    frames_ = json.loads(row["frame_paths"])
    assert row["peak_frame_path"] == frames_[0] and len(frames_) == 2
    assert max(Image.open(frames_[0]).size) == 768
    # the scene request carried exactly those frames; the vision agent read the description
    scene_request = next(r for r in server.requests if isinstance(r["messages"][1]["content"], list))
    sent = base64.b64decode(scene_request["messages"][1]["content"][1]["image_url"]["url"].split(",", 1)[1])
    assert sent == Path(frames_[0]).read_bytes()
    agent_request = next(r for r in server.requests if isinstance(r["messages"][1]["content"], str))
    assert OBJECTIVE in agent_request["messages"][1]["content"]
    summary = json.loads((tmp_path / "run" / "describe" / "summary.json").read_text())
    assert summary["scene"]["described"] == 1 and summary["scene"]["requests"] == 1


@pytest.mark.slow
@pytest.mark.data
def test_a_real_vision_model_describes_the_ravdess_peak_frame_without_naming_a_state(tmp_path):
    """Against the endpoint in MODSAB_VLM_URL (model MODSAB_VLM_MODEL, key in the variable
    MODSAB_VLM_KEY_ENV names): no vision-language model that runs offline ships in a PyPI
    package here, so this runs only where one is served."""
    url = os.environ.get("MODSAB_VLM_URL")
    if not url:
        pytest.skip("set MODSAB_VLM_URL (and MODSAB_VLM_MODEL) to an OpenAI-compatible endpoint with a vision model")
    needs_describe_extra()
    from modsab.descriptors import MediaItem, describe

    clip = _av_clip()
    describer = LLMDescriber("scene", base_url=url, model=os.environ.get("MODSAB_VLM_MODEL", "default"),
                             api_key_env=os.environ.get("MODSAB_VLM_KEY_ENV") or None,
                             limits=Limits(concurrency=1), timeout=600)
    table = describe([MediaItem("av1", video_path=str(clip), speaker="a01")],
                     cache=tmp_path / "cache.sqlite", describers=[describer], labels=PRESETS["ravdess"])
    row = table.iloc[0]
    assert row["scene_status"] == "ok", row["scene_status"]
    text = row["visual_objective_description"]
    assert isinstance(text, str) and len(text.split()) >= 5
    assert not leakage_checker(PRESETS["ravdess"]).find(text)


def test_modsab_describe_writes_key_frames_and_the_scene_column(tmp_path):
    needs_describe_extra()
    import pandas as pd

    clip = video(tmp_path / "grey.mp4", seconds=1.5, size=(1280, 720))  # no face: the middle frame
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"instance_id,video_path\ng1,{clip}\n")
    out = tmp_path / "d.parquet"
    with StubServer(validate=True, responder=lambda r: chat_reply(OBJECTIVE)) as server:
        args = ["describe", str(manifest), "--out", str(out), "--no-asr", "-q", "--scene-url", server.url,
                "--scene-model", "stub-vlm", "--scene-frames", "2", "--keyframes", "3"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and len(server.requests) == 1  # the rerun is served from the store
    assert server.invalid == []
    row = pd.read_parquet(out).iloc[0]
    assert row["visual_objective_description"] == OBJECTIVE and row["scene_status"] == "ok"
    paths = json.loads(row["frame_paths"])
    assert len(paths) == 3 and Path(paths[0]).parent == tmp_path / "d.frames"
    assert len(server.requests[0]["messages"][1]["content"]) == 3  # text + the first two frames
    assert "scene (stub-vlm): 1 described, 0 withheld" in " ".join(result.output.split())


def test_the_api_key_is_sent_to_the_endpoint_and_never_stored(tmp_path, monkeypatch):
    media = frames(tmp_path, n_clips=1, per_clip=1)
    secret = "sk-test-4f9a2c7e"
    monkeypatch.setenv("MODSAB_TEST_VLM_KEY", secret)

    def responder(request, headers):
        return chat_reply(f"The face is lit from the left; header {headers.get('authorization')}.")

    with StubServer(responder=responder) as server:
        results, _ = run_describer(scene(server, api_key_env="MODSAB_TEST_VLM_KEY"), media,
                                   store_dir=tmp_path / "s", cache_dir=tmp_path / "cache")
    assert "***" in results["c0"].text and secret not in results["c0"].text
    dumps = {}
    for path in (tmp_path / "s" / "run.sqlite", tmp_path / "cache" / "cache.sqlite"):
        with sqlite3.connect(path) as db:
            dumps[path.name] = "\n".join(db.iterdump())
    assert all(secret not in dump for dump in dumps.values())
    assert "MODSAB_TEST_VLM_KEY" in dumps["run.sqlite"]  # the variable's name is what the store keeps
