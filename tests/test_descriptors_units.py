"""Descriptor building blocks without models: manifest, decoding, thresholds, wording."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from _media import RAVDESS_LABELS, ravdess, transcode, write_png, write_wav
from typer.testing import CliRunner

from modsab.cli import app
from modsab.contract.errors import InputError
from modsab.contract.labels import PRESETS, LeakageChecker
from modsab.descriptors import MediaItem, read_manifest
from modsab.descriptors.face import AU_TABLE, describe_face, face_quality, face_units_json, intensity_word
from modsab.descriptors.voice import audio_quality, baseline_zscores, describe_voice, level_word, signal_checks

CHECKER = LeakageChecker([label for labels in PRESETS.values() for label in labels] + list(RAVDESS_LABELS))

# -- manifest -------------------------------------------------------------------------


def test_manifest_formats_resolve_paths_relative_to_the_manifest(tmp_path):
    rows = [
        {"instance_id": "a", "audio_path": "clips/a.wav", "speaker": "s1", "transcript": ""},
        {"instance_id": "b", "video_path": "/abs/b.mp4", "speaker": None, "transcript": "hello there"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "m.parquet")
    for name in ("m.jsonl", "m.csv", "m.parquet"):
        items = read_manifest(tmp_path / name)
        assert items[0] == MediaItem("a", audio_path=tmp_path / "clips" / "a.wav", speaker="s1")
        assert items[1].video_path.as_posix() == "/abs/b.mp4"
        assert items[1].transcript == "hello there" and items[1].speaker is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("audio_path\nx.wav\n", "no 'instance_id' column"),
        ("instance_id,speaker\na,s\n", "neither an 'audio_path' nor a 'video_path'"),
        ("instance_id,audio_path\na,x.wav\nb,\n", "neither audio_path nor video_path"),
        ("instance_id,audio_path\na,x.wav\na,y.wav\n", "appears twice"),
    ],
)
def test_manifest_errors_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        read_manifest(path)
    assert str(path) in str(caught.value)
    if "twice" in message or "nor video_path" in message:
        assert caught.value.line == 3


# -- decoding --------------------------------------------------------------------------


def test_decoding_48k_stereo_wav_gives_16k_mono():
    pytest.importorskip("av")
    from modsab.descriptors.media import load_audio

    audio = load_audio(ravdess() / "av" / "03-01-08-01-02-02-01.wav")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 3.0 < audio.size / 16_000 < 3.6
    assert 0.05 < np.abs(audio).max() <= 1.0


def test_frames_are_sampled_at_the_set_rate():
    pytest.importorskip("av")
    from modsab.descriptors.media import load_audio, load_frames

    clip = ravdess() / "av" / "01-01-01-01-01-01-01.mp4"
    frames = load_frames(clip, fps=5)
    assert 16 <= len(frames) <= 18
    steps = np.diff(frames.times)
    assert abs(steps.mean() - 0.2) < 0.02 and steps.max() < 0.3  # reference frames come every ~0.1 s
    assert max(frames.images[0].shape[:2]) == 640 and frames.images[0].shape[2] == 3
    assert 6 <= len(load_frames(clip, fps=2)) <= 8
    assert 3.2 < load_audio(clip).size / 16_000 < 3.4  # AAC track of the mp4


@pytest.mark.parametrize(
    ("name", "video", "audio"),
    [("clip.mkv", "libx264", "aac"), ("clip.avi", "mpeg4", "mp3"), ("clip.webm", "libvpx", "libopus"),
     ("clip.mp3", None, "mp3"), ("clip.flac", None, "flac")],
)
def test_common_containers_decode(tmp_path, name, video, audio):
    pytest.importorskip("av")
    from modsab.descriptors.media import load_audio, load_frames

    path = transcode(ravdess() / "av" / "01-01-01-01-01-01-01.mp4", tmp_path / name, video=video, audio=audio)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and 1.9 < samples.size / 16_000 < 2.2 and np.abs(samples).max() > 0.01
    if video:
        frames = load_frames(path, fps=5)
        assert len(frames) == 10 and frames.images[0].shape == (180, 320, 3)


def test_broken_files_raise_media_errors_with_reasons(tmp_path):
    pytest.importorskip("av")
    from modsab.descriptors.media import MediaError, load_audio, load_frames

    empty = tmp_path / "empty.wav"
    empty.touch()
    with pytest.raises(MediaError, match="empty file"):
        load_audio(empty)
    clip = (ravdess() / "av" / "01-01-01-01-01-01-01.mp4").read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(clip[: len(clip) // 2])
    with pytest.raises(MediaError, match="truncated"):
        load_frames(half)
    with pytest.raises(MediaError, match="truncated"):
        load_audio(half)
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"not audio at all" * 100)
    with pytest.raises(MediaError):
        load_audio(garbage)
    with pytest.raises(MediaError, match="not found"):
        load_audio(tmp_path / "missing.flac")


def test_a_still_image_is_one_frame_without_audio(tmp_path):
    pytest.importorskip("av")
    from modsab.descriptors.media import load_audio, load_frames

    image = write_png(tmp_path / "grey.png", np.full((120, 160, 3), 128, np.uint8))
    frames = load_frames(image)
    assert len(frames) == 1 and frames.images[0].shape == (120, 160, 3)
    assert load_audio(image) is None


# -- audio wording ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("z", "word"),
    [(0.0, "typical"), (0.44, "typical"), (-0.6, "slightly low"), (0.96, "high"), (1.5, "high"),
     (-2.3, "very low"), (math.nan, "typical")],
)
def test_level_words_follow_the_documented_thresholds(z, word):
    assert level_word(z) == word


def test_baseline_is_the_speaker_when_known_else_the_run():
    features = pd.DataFrame({"egemaps_loudness_sma3_amean": [1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 5.0]})
    speakers = pd.Series(["a", "a", "a", "b", "b", "b", None])
    z, baseline = baseline_zscores(features, speakers)
    assert baseline[0].startswith("speaker a (3") and baseline[3].startswith("speaker b")
    assert baseline[6].startswith("all clips of the run (7")
    assert z["z_loudness"][2] == pytest.approx(np.sqrt(1.5))  # (3-2)/std([1,2,3])
    assert z["z_loudness"][0] == pytest.approx(-z["z_loudness"][2])
    few, none = baseline_zscores(features.head(2), pd.Series(["a", "a"]))
    assert none.str.startswith("none").all() and few.isna().all().all()


def _voice_row(**z):
    row = {f"z_{k}": 0.0 for k in ("pitch", "pitch_range", "loudness", "rate", "pauses", "hnr", "jitter",
                                   "shimmer", "alpha_ratio")}
    row.update({f"z_{k}": v for k, v in z.items()})
    row.update({
        "egemaps_F0semitoneFrom27.5Hz_sma3nz_amean": 36.0, "egemaps_F0semitoneFrom27.5Hz_sma3nz_pctlrange0-2": 5.0,
        "egemaps_loudness_sma3_amean": 0.4, "egemaps_HNRdBACF_sma3nz_amean": 4.0, "speech_rate_syl_s": 4.5,
        "pause_count": 1.0, "pause_total_s": 0.4, "loudness_end_change_db": -4.0,
    })
    return row


def test_voice_description_puts_numbers_next_to_words_and_names_no_feeling():
    text = describe_voice(_voice_row(pitch=1.4, pitch_range=1.2, loudness=2.3, hnr=-1.5, alpha_ratio=1.1),
                          baseline="speaker 01 (8 clips)")
    assert text.startswith("Pitch high for this speaker (z=+1.4, 220 Hz)")
    assert "widely varying (z=+1.2" in text and "loudness very high (z=+2.3)" in text
    assert "falling at the end (-4.0 dB)" in text and "1 pause (0.4 s)" in text
    assert "breathy or hoarse" in text and "bright" in text
    assert CHECKER.find(text) == []
    plain = describe_voice(_voice_row(), baseline="all clips of the run (40)")
    assert "typical for this set of clips" in plain and "quality typical" in plain
    alone = describe_voice({**_voice_row(), "z_pitch": math.nan})
    assert "no baseline" in alone and "220 Hz" in alone


def test_audio_quality_names_silence_noise_and_clipping():
    rng = np.random.default_rng(0)
    silent = signal_checks(np.zeros(32_000, np.float32))
    assert audio_quality({**silent, "voiced_fraction": 0.0}) == (0.0, "silent (peak -200 dBFS)")
    noise = signal_checks(rng.uniform(-0.5, 0.5, 32_000).astype(np.float32))
    score, issues = audio_quality({**noise, "voiced_fraction": 0.02})
    assert score <= 10 and "steady noise-like" in issues and "little voiced" in issues
    clipped = signal_checks(np.sign(np.sin(np.linspace(0, 400, 32_000))).astype(np.float32))
    assert "clipped" in audio_quality({**clipped, "voiced_fraction": 0.5})[1]


def test_pauses_come_from_the_level_contour_without_word_timings():
    from modsab.descriptors.asr import Word
    from modsab.descriptors.voice import timing_features

    t = np.arange(8000) / 16_000
    burst, gap = 0.3 * np.sin(2 * np.pi * 200 * t), np.zeros(6400)
    audio = np.concatenate([gap, burst, gap, burst, gap, burst, gap]).astype(np.float32)
    energy = timing_features(audio, [])
    assert energy["pause_count"] == 2 and energy["pause_total_s"] == pytest.approx(0.8, abs=0.05)
    assert energy["pauses_from_words"] == 0 and math.isnan(energy["speech_rate_syl_s"])
    words = [Word("hello", 0.4, 0.9, 1.0), Word("there", 1.3, 1.8, 1.0), Word("friend", 1.85, 2.2, 1.0)]
    timed = timing_features(audio, words)
    assert timed["pause_count"] == 1 and timed["pause_total_s"] == pytest.approx(0.4)
    assert timed["speech_rate_syl_s"] == pytest.approx(4 / 1.8)
    row = {**_voice_row(), **energy, "speech_rate_syl_s": math.nan}
    assert "2 pauses (0.8 s) in the sound" in describe_voice(row)


def test_unreadable_files_are_item_errors_and_the_batch_goes_on(tmp_path):
    from modsab.descriptors import describe

    table = describe([MediaItem("missing", audio_path=tmp_path / "nope.wav"),
                      MediaItem("folder", video_path=tmp_path)]).set_index("instance_id")
    assert table.loc["missing", "error"] == f"file: No such file or directory: {tmp_path / 'nope.wav'}"
    assert table.loc["folder", "error"].startswith("file: Is a directory")
    assert table["transcript"].isna().all() and table["audio_description"].isna().all()
    with pytest.raises(InputError, match="appears twice"):
        describe([MediaItem("a", audio_path=tmp_path / "x.wav"), MediaItem("a", audio_path=tmp_path / "y.wav")])


# -- face wording ------------------------------------------------------------------------


def _face_summary():
    units = {u.code: 0.0 for u in AU_TABLE}
    units.update(AU12=0.45, AU6=0.25, AU4=0.1, AU45=0.9)
    maxima = {code: [value, 1.2] for code, value in units.items()}
    maxima["AU26"] = [0.7, 2.0]
    minima = {code: 0.0 for code in units}
    minima["AU6"] = 0.2
    return {
        "frames": 20, "frames_with_face": 19, "face_fraction": 0.95, "face_size": 0.3,
        "blur_laplacian_var": 80.0, "duration_s": 4.0, "peak_time_s": 1.2, "peak_activation": 0.8,
        "peak_units": units, "unit_max": maxima, "unit_min": minima, "eyes_closed_frames": 1, "head_yaw_deg": -14.0,
        "head_pitch_deg": 3.0, "head_roll_deg": 1.0, "head_yaw_range_deg": 25.0, "gaze_side": 0.1,
        "gaze_vertical": -0.4,
    }


def test_face_description_lists_units_with_intensity_time_pose_and_gaze():
    text = describe_face(_face_summary())
    assert "moderately Lip Corner Puller (AU12, 0.45)" in text and "at 1.2 s" in text
    assert "slightly Cheek Raiser (AU6, 0.25, steady through the clip)" in text and "Brow Lowerer" not in text
    assert "strongly Jaw Drop (AU26, 0.70) at 2.0 s" in text
    assert "turned 14 deg toward the image left" in text and "gaze down (-0.40)" in text
    assert CHECKER.find(text) == []
    assert json.loads(face_units_json(_face_summary()))["AU12"] == 0.45
    assert [intensity_word(v) for v in (0.1, 0.3, 0.5, 0.7, 0.9)] == [
        None, "slightly", "moderately", "strongly", "very strongly"]


def test_face_quality_names_each_shortfall():
    assert face_quality(_face_summary()) == (95.0, "")
    poor = {**_face_summary(), "face_fraction": 0.5, "frames_with_face": 10, "face_size": 0.05,
            "blur_laplacian_var": 5.0}
    score, issues = face_quality(poor)
    assert score < 5 and "only 50% of frames" in issues and "small face" in issues and "blurry" in issues
    none = {"frames": 1, "frames_with_face": 0, "face_fraction": 0.0}
    assert face_quality(none) == (0.0, "no face in any of 1 sampled frames")
    assert describe_face(none) == "No face found in any of 1 sampled frames."


def test_au_table_codes_are_unique_and_blink_is_last():
    codes = [unit.code for unit in AU_TABLE]
    assert len(codes) == len(set(codes)) and codes[-1] == "AU45"


# -- CLI -----------------------------------------------------------------------------------


def test_cli_registers_describe_and_rejects_an_unknown_output_format(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["describe", "--help"])
    assert result.exit_code == 0 and "--workers" in result.output and "--fps" in result.output
    manifest = write_wav(tmp_path / "a.wav", np.zeros(1600))
    (tmp_path / "m.csv").write_text(f"instance_id,audio_path\na,{manifest.name}\n")
    result = runner.invoke(app, ["describe", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o.xlsx")])
    assert result.exit_code != 0 and "unknown output format" in str(result.exception)
