"""Whisper's encoder window: ``full`` keeps the asr-1 transcripts, ``fit`` has its own key.

The unit tests need no model. The slow ones run the real tiny.en: the ``full`` window is
the plain faster-whisper model (the reference) bit for bit, long clips are the same under
both windows, and ``fit`` makes no more word errors on known words than ``full``
(``benchmarks/eval_asr_window.py`` is the larger check: 240 RAVDESS clips, 20 espeak-ng
sentences).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _media import espeak, needs_describe_extra, ravdess

from modsab.contract.errors import InputError
from modsab.data.loaders.ravdess import RAVDESS_STATEMENTS
from modsab.descriptors import DescribeConfig, MediaItem
from modsab.descriptors.asr import ASR_VERSION, ASR_WINDOWS, Transcriber, encoder_frames, word_errors
from modsab.descriptors.describe import item_key
from modsab.descriptors.face import FACE_VERSION
from modsab.descriptors.voice import VOICE_VERSION
from modsab.run.config import load_config

SENTENCES = ("Please open the window and close the green door before dinner.",
             "The small boat drifted slowly across the quiet lake.",
             "My brother bought seven apples at the market on Monday.")


def test_fit_window_is_the_clip_plus_two_seconds_at_least_ten_and_full_beyond_28_s():
    second = 16_000
    assert encoder_frames(3 * second, "fit") == 1000
    assert encoder_frames(int(8.5 * second), "fit") == 1100
    assert encoder_frames(27 * second, "fit") == 2900
    assert encoder_frames(28 * second, "fit") == 3000 == encoder_frames(95 * second, "fit")
    assert encoder_frames(3 * second, "full") == 3000
    with pytest.raises(ValueError, match="unknown ASR window 'short'"):
        encoder_frames(second, "short")


def test_full_window_keeps_the_cache_key_of_the_records_made_before_the_option():
    before = json.dumps({"version": f"media-2|{ASR_VERSION}|{VOICE_VERSION}|{FACE_VERSION}", "fps": 5.0,
                         "max_side": 640, "asr": True, "face": True, "beam_size": 1}, sort_keys=True)
    assert ASR_VERSION == "asr-1:faster-whisper-tiny.en"
    assert DescribeConfig(asr_window="full").fingerprint() == before
    fit = DescribeConfig()
    assert fit.asr_window == "fit" and ASR_WINDOWS["fit"] in fit.fingerprint() and fit.fingerprint() != before
    item = MediaItem("a", transcript="given words")
    assert item_key(item, DescribeConfig()) != item_key(item, DescribeConfig(asr_window="full"))
    # without ASR the window changes nothing, so the key does not change either
    assert DescribeConfig(asr=False).fingerprint() == DescribeConfig(asr=False, asr_window="full").fingerprint()
    with pytest.raises(ValueError, match="unknown ASR window"):
        DescribeConfig(asr_window="30s")


def test_word_errors_count_edits_and_ignore_case_and_punctuation():
    assert word_errors("Kids are talking by the door", "kids are talking by the door!") == (0, 6)
    assert word_errors("kids are talking by the door", "Because they're talking by the door.") == (2, 6)
    assert word_errors("dogs are sitting by the door", "dogs sitting by the the door") == (2, 6)
    assert word_errors("a b", "") == (2, 2)


def test_run_config_takes_the_window_and_names_the_key_when_it_is_wrong(tmp_path):
    text = ('[dataset]\nloader = "ravdess"\npath = "clips"\n[[agents]]\nname = "audio"\nkind = "probe"\n'
            'features = "audio"\n[describe]\nasr_window = "{}"\n')
    path = tmp_path / "run.toml"
    path.write_text(text.format("full"))
    assert load_config(path).describe.asr_window == "full"
    path.write_text(text.replace('asr_window = "{}"\n', ""))
    assert load_config(path).describe.asr_window == "fit"
    path.write_text(text.format("short"))
    with pytest.raises(InputError, match="describe.asr_window"):
        load_config(path)


# -- the real model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def known_speech(tmp_path_factory):
    """(audio, words said): 16 RAVDESS clips over the actors and 3 espeak-ng sentences."""
    needs_describe_extra()
    from modsab.descriptors.media import load_audio

    paths = sorted((ravdess() / "speech_16k").glob("Actor_*/*.flac"))[::90]
    clips = [(load_audio(p), RAVDESS_STATEMENTS[p.stem.split("-")[4]]) for p in paths]
    tmp = tmp_path_factory.mktemp("espeak")
    clips += [(load_audio(espeak(tmp / f"s{i}.wav", text)), text) for i, text in enumerate(SENTENCES)]
    return clips


@pytest.mark.slow
@pytest.mark.data
def test_full_window_is_the_plain_faster_whisper_model_bit_for_bit(known_speech):
    from faster_whisper import WhisperModel

    full = Transcriber(threads=2, window="full")
    reference = Transcriber(threads=2, window="full")
    reference._model = WhisperModel(full.model_path or _model_path(), device="cpu", compute_type="int8",
                                    cpu_threads=2)
    for audio, _ in known_speech[::3]:
        assert full(audio) == reference(audio)


@pytest.mark.slow
@pytest.mark.data
def test_clips_of_28_s_and_more_are_the_same_under_both_windows(known_speech):
    audio = np.concatenate([a for a, _ in known_speech[:9]])
    assert audio.size >= 28 * 16_000
    fit, full = Transcriber(threads=2, window="fit")(audio), Transcriber(threads=2, window="full")(audio)
    assert (fit.text, fit.words, fit.no_speech) == (full.text, full.words, full.no_speech)
    # on audio over 30 s the plain model's own mean log-prob differs by ~1e-4 from one call
    # to the next (CTranslate2; the same model, window and input), so only that is approximate
    assert fit.logprob == pytest.approx(full.logprob, abs=1e-3)


@pytest.mark.slow
@pytest.mark.data
def test_fit_window_makes_no_more_word_errors_than_full(known_speech):
    errors = {}
    for window in ASR_WINDOWS:
        transcriber = Transcriber(threads=2, window=window)
        errors[window] = sum(word_errors(ref, transcriber(audio).text)[0] for audio, ref in known_speech)
    words = sum(len(ref.split()) for _, ref in known_speech)
    assert errors["fit"] <= errors["full"] <= 0.1 * words, errors


def _model_path() -> str:
    from modsab.descriptors.asr import default_model_path

    return default_model_path()
