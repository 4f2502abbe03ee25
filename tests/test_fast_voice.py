"""The audio features' openSMILE, initialised once and reset between clips, equals the
plain ``process_signal`` (one set-up per clip) bit for bit, whatever came before."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _media import ravdess

pytestmark = pytest.mark.data


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a
    )


@pytest.fixture(scope="module")
def clips():
    """Real speech in varied order and length, and the awkward cases, one after another."""
    pytest.importorskip("opensmile", reason="install the describe extra: pip install 'modsab[describe]'")
    pytest.importorskip("av", reason="install the describe extra: pip install 'modsab[describe]'")
    from modsab.descriptors.media import load_audio

    speech = [load_audio(p) for p in sorted((ravdess() / "speech_16k").glob("Actor_*/*.flac"))[::48]]
    rng = np.random.default_rng(3)
    odd = [
        np.zeros(8_000, np.float32),  # silence: no voiced frame
        rng.uniform(-0.4, 0.4, 48_000).astype(np.float32),  # noise
        speech[0][:4_000],  # 0.25 s, the shortest clip that gets eGeMAPS
        np.concatenate(speech[:6]),  # ~20 s
        speech[1].astype(np.float64),  # float64 input
        np.clip(speech[2] * 8, -1, 1),  # clipped
    ]
    order = rng.permutation(len(speech))
    return [speech[i] for i in order[:10]] + odd + [speech[i] for i in order[10:]]


def test_reused_opensmile_gives_the_numbers_of_one_set_up_per_clip(clips):
    from modsab.descriptors.voice import Egemaps

    egemaps = Egemaps()
    for audio in clips:
        fast, reference = egemaps(audio), egemaps.reference(audio)
        assert len(fast) == 88 and _same(fast, reference)


def test_voice_features_are_the_same_on_either_path(clips):
    from modsab.descriptors.asr import Word
    from modsab.descriptors.voice import voice_features

    words = [Word("kids", 0.9, 1.2, 0.9), Word("door", 1.6, 2.0, 0.8)]
    for audio in clips[:12]:
        assert _same(voice_features(audio, words), voice_features(audio, words, reference=True))
