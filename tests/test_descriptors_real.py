"""Descriptors on real media: RAVDESS clips, espeak-ng speech and broken files.

One module-scoped batch runs the real extractors (faster-whisper tiny.en, openSMILE,
MediaPipe) once; the tests read its table. No extractor is mocked.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from _media import RAVDESS_LABELS, espeak, needs_describe_extra, ravdess, write_png, write_wav
from typer.testing import CliRunner

from modsab.cli import app
from modsab.contract.labels import PRESETS, LeakageChecker
from modsab.descriptors import DescribeConfig, MediaItem, describe

pytestmark = [pytest.mark.slow, pytest.mark.data]

CHECKER = LeakageChecker([label for labels in PRESETS.values() for label in labels] + list(RAVDESS_LABELS))
TEXT_FIELDS = ("audio_description", "face_description", "face_units", "audio_issues", "face_issues", "text_issues")
ESPEAK_TEXT = "Please open the window and close the green door before dinner."


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Real and broken media in one batch: the table, the run's events, the cache path."""
    needs_describe_extra()
    av_dir = ravdess() / "av"
    tmp = tmp_path_factory.mktemp("describe")
    rng = np.random.default_rng(7)
    clip = (av_dir / "01-01-01-01-01-01-01.mp4").read_bytes()
    (tmp / "half.mp4").write_bytes(clip[: len(clip) // 2])
    (tmp / "zero.wav").touch()
    items = [
        MediaItem("av", video_path=av_dir / "01-01-01-01-01-01-01.mp4", speaker="01"),
        MediaItem("wav48k", audio_path=av_dir / "03-01-05-02-01-01-01.wav", speaker="01"),
        MediaItem("stereo", audio_path=av_dir / "03-01-08-01-02-02-01.wav", speaker="01"),
        MediaItem("espeak", audio_path=espeak(tmp / "espeak.wav", ESPEAK_TEXT)),
        MediaItem("given", audio_path=av_dir / "03-01-05-02-01-01-01.wav", transcript="words from the manifest"),
        MediaItem("silent", audio_path=write_wav(tmp / "silent.wav", np.zeros(32_000))),
        MediaItem("noise", audio_path=write_wav(tmp / "noise.wav", rng.uniform(-0.4, 0.4, 48_000))),
        MediaItem("truncated", video_path=tmp / "half.mp4"),
        MediaItem("zero", audio_path=tmp / "zero.wav"),
        MediaItem("noface", video_path=write_png(tmp / "noface.png", rng.integers(0, 255, (360, 480, 3), np.uint8))),
    ]
    events = []
    start = time.perf_counter()
    table = describe(items, cache=tmp / "cache.sqlite",
                     on_record=lambda item, record, cached: events.append((item.instance_id, cached)))
    seconds = time.perf_counter() - start
    return {"table": table.set_index("instance_id"), "items": items, "events": events,
            "cache": tmp / "cache.sqlite", "seconds": seconds}


def test_asr_of_the_av_clip_hears_the_sentence(batch):
    row = batch["table"].loc["av"]
    words = row.transcript.lower()
    assert "kids" in words and "door" in words
    assert row.transcript_source == "asr" and row.asr_logprob > -1.0 and row.text_quality > 70
    timings = json.loads(row.asr_words)
    assert [w[0].strip(".").lower() for w in timings][-1] == "door"
    assert all(0 <= start <= end <= 3.4 for _, start, end, _ in timings)


def test_espeak_speech_is_transcribed(batch):
    text = batch["table"].loc["espeak", "transcript"].lower()
    for word in ("open", "window", "door", "dinner"):
        assert word in text, text


def test_manifest_transcript_is_used_as_is(batch):
    row = batch["table"].loc["given"]
    assert row.transcript == "words from the manifest" and row.transcript_source == "manifest"
    assert row.text_quality == 100 and pd.isna(row.asr_words)
    assert row.audio_description  # the voice is still described


def test_av_clip_gives_a_face_in_most_frames_and_a_peak(batch):
    row = batch["table"].loc["av"]
    assert row.face_frames >= 15 and row.face_fraction >= 0.9
    assert 0 <= row.face_peak_time_s <= 3.4 and row.face_peak_activation > 0
    assert row.face_quality >= 80 and row.face_size > 0.15
    units = json.loads(row.face_units)
    assert set(units) >= {"AU4", "AU12", "AU26", "AU45"}
    assert f"Peak facial activity at {row.face_peak_time_s:.1f} s" in row.face_description
    assert row.audio_description and "Hz" in row.audio_description  # audio read from the mp4


def test_broken_inputs_give_an_error_or_low_quality_with_a_reason(batch):
    table = batch["table"]
    assert table.loc["silent", "audio_quality"] == 0 and "silent" in table.loc["silent", "audio_issues"]
    assert table.loc["silent", "text_quality"] == 0
    assert table.loc["silent", "audio_description"].startswith("No voice measurable")
    assert table.loc["noise", "audio_quality"] < 50 and "noise-like" in table.loc["noise", "audio_issues"]
    assert "truncated" in table.loc["truncated", "error"]
    assert "empty file" in table.loc["zero", "error"]
    assert table.loc["noface", "face_quality"] == 0
    assert table.loc["noface", "face_issues"] == "no face in any of 1 sampled frames"
    assert pd.isna(table.loc["noface", "error"])  # an image without a face is not an error
    good = ["av", "wav48k", "stereo", "espeak", "given"]
    assert table.loc[good, "error"].isna().all()  # the batch went on past every failure
    assert len(table) == len(batch["items"])


def test_descriptions_on_real_data_name_no_feeling(batch):
    table = batch["table"].reset_index()
    leaks = [leak for record in table[list(TEXT_FIELDS)].to_dict("records") for leak in CHECKER.check(record)]
    assert leaks == []


def test_a_rerun_takes_finished_items_from_the_cache(batch):
    events = []
    start = time.perf_counter()
    again = describe(batch["items"], cache=batch["cache"],
                     on_record=lambda item, record, cached: events.append((item.instance_id, cached)))
    seconds = time.perf_counter() - start
    cached = {name for name, from_cache in events if from_cache}
    assert cached == {"av", "wav48k", "stereo", "espeak", "given", "silent", "noise", "noface"}
    assert {name for name, from_cache in events if not from_cache} == {"truncated", "zero"}  # errors retry
    assert seconds < batch["seconds"] / 3
    columns = ["transcript", "audio_description", "face_description", "audio_quality"]
    pd.testing.assert_frame_equal(again.set_index("instance_id")[columns], batch["table"][columns])


def test_angry_strong_clips_are_louder_for_the_speaker_than_neutral_ones():
    needs_describe_extra()
    root = ravdess() / "speech_16k"
    actors = ["01", "04", "09", "12", "17", "22"]
    items = []
    for actor in actors:
        for path in sorted((root / f"Actor_{actor}").glob("03-01-0[125]-*.flac")):
            emotion, intensity = path.stem.split("-")[2:4]
            if emotion == "05" and intensity == "01":
                continue  # angry at normal intensity: keep the contrast clear
            items.append(MediaItem(path.stem, audio_path=path, speaker=actor))
    table = describe(items, config=DescribeConfig(asr=False), workers=1)
    assert table["error"].isna().all()
    assert table["audio_baseline"].str.startswith("speaker").all()
    table["emotion"] = table["instance_id"].str.split("-").str[2]
    per_actor = table.groupby(["speaker", "emotion"])["z_loudness"].mean().unstack()
    assert (per_actor["05"] > per_actor["01"]).mean() >= 5 / 6
    assert per_actor["05"].mean() - per_actor["01"].mean() > 1.0
    leaks = [leak for text in table["audio_description"] for leak in CHECKER.find(text)]
    assert leaks == []


def test_cli_with_two_workers_writes_the_table_and_lists_failures(tmp_path):
    needs_describe_extra()
    clips = sorted((ravdess() / "speech_16k" / "Actor_02").glob("03-01-0[15]-*-01-01-02.flac"))[:3]
    (tmp_path / "media").mkdir()
    for clip in clips:
        (tmp_path / "media" / clip.name).write_bytes(clip.read_bytes())
    (tmp_path / "media" / "zero.flac").touch()
    lines = ["instance_id,audio_path,speaker"] + [f"{c.stem},media/{c.name},02" for c in clips]
    lines.append("broken,media/zero.flac,02")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "runs" / "descriptors.parquet"
    args = ["describe", str(tmp_path / "m.csv"), "--out", str(out), "--workers", "2", "--no-asr", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert list(table["instance_id"]) == [c.stem for c in clips] + ["broken"]
    assert table["audio_description"].iloc[:3].notna().all()
    assert "broken" in result.output and "empty file" in result.output
    assert "4 instances" in result.output and "0 from cache" in result.output
    again = CliRunner().invoke(app, args)
    assert "3 from cache" in again.output
