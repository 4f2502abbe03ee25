"""Audio modality: how the voice sounds, in numbers and in plain, label-free words.

Features per clip (all kept as columns):

- the 88 openSMILE eGeMAPSv02 functionals, prefixed ``egemaps_`` (the voiced-frame ones,
  ``*_sma3nz_*``, are NaN when no frame is voiced);
- ``voiced_fraction`` (voiced segments per second x mean voiced segment length);
- pauses and speaking rate from the ASR word timings: ``pause_count`` and
  ``pause_total_s`` (gaps of at least :data:`PAUSE_MIN_S` between words; from the level
  contour when there are no word timings, e.g. a manifest transcript),
  ``speech_rate_syl_s`` (vowel-group syllables per second between the first and last
  word);
- ``loudness_end_change_db``: level of the last quarter of the speech minus the rest;
- signal checks: ``duration_s``, ``peak_dbfs``, ``rms_dbfs``, ``clipped_fraction``,
  ``dynamic_range_db`` (95th minus 10th percentile of 25 ms frame levels).

The description compares each clip with a baseline: the speaker's own clips when the
speaker is known and has at least :data:`MIN_BASELINE_CLIPS` usable clips, else all clips
of the run. Each cue gets a z-score ``z = (x - mean) / std`` and a word by these
thresholds (:func:`level_word`):

====================  =============================
``|z| < 0.5``         typical
``0.5 <= |z| < 1``    slightly high / slightly low
``1 <= |z| < 2``      high / low
``|z| >= 2``          very high / very low
====================  =============================

Cues described (z-scored feature in brackets): pitch level (mean F0, semitones) and
pitch range (20-80th percentile range); loudness (mean loudness) and its end contour
(``loudness_end_change_db`` beyond +-3 dB: rising / falling at the end); speaking rate
(syllables per second) and pauses (count, total length); voice quality: breathy or hoarse
when the harmonics-to-noise ratio is low (z <= -1), irregular when jitter or shimmer is
high (z >= 1), bright (more high-frequency energy) or dull from the alpha ratio
(|z| >= 1). Each word is followed by its number, e.g.
``pitch high for this speaker (z=+1.4, 212 Hz)``. The text never names a feeling; the
tests run it through :class:`modsab.contract.labels.LeakageChecker`.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from modsab.descriptors.asr import Word
from modsab.descriptors.media import SAMPLE_RATE

VOICE_VERSION = "voice-2:egemapsv02"

PAUSE_MIN_S = 0.2
ACTIVE_DB = 35.0
MIN_BASELINE_CLIPS = 3
END_CHANGE_DB = 3.0

#: z-scored cues: name -> source column.
CUES: dict[str, str] = {
    "pitch": "egemaps_F0semitoneFrom27.5Hz_sma3nz_amean",
    "pitch_range": "egemaps_F0semitoneFrom27.5Hz_sma3nz_pctlrange0-2",
    "loudness": "egemaps_loudness_sma3_amean",
    "rate": "speech_rate_syl_s",
    "pauses": "pause_total_s",
    "hnr": "egemaps_HNRdBACF_sma3nz_amean",
    "jitter": "egemaps_jitterLocal_sma3nz_amean",
    "shimmer": "egemaps_shimmerLocaldB_sma3nz_amean",
    "alpha_ratio": "egemaps_alphaRatioV_sma3nz_amean",
}

_SMILE = None


class Egemaps:
    """openSMILE eGeMAPSv02 functionals of 16 kHz mono audio, initialised once per process.

    ``opensmile.Smile.process_signal`` (kept as :meth:`reference`) parses the configuration
    and builds the component graph anew for every clip: about 0.01 CPU s, 15-20% of the
    feature time of a 3-4 s clip. Here openSMILE is initialised once and reset between clips
    (its API's ``reset``), which gives the same numbers bit for bit
    (``tests/test_fast_voice.py``). It feeds openSMILE exactly what ``process_signal``
    does: the float32 samples x 32768 as int16.
    """

    def __init__(self) -> None:
        import opensmile
        from opensmile.core import smile as smile_module

        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                     feature_level=opensmile.FeatureLevel.Functionals)
        self.names = list(self.smile.feature_names)
        self._config = smile_module.config
        self._sink = smile_module.Smile._sink_callback
        options = self.smile._options()
        options["source"] = str(Path(self.smile.default_config_root) / self._config.EXTERNAL_INPUT_CONFIG)
        options["sampleRate"] = SAMPLE_RATE
        options["nBits"] = 16
        self._api = self.smile._smile(options=options)
        self._used = False
        self._lock = threading.Lock()  # one openSMILE instance: one clip at a time

    def __call__(self, audio: np.ndarray) -> dict[str, float]:
        samples = (np.asarray(audio, dtype=np.float32) * 32768).astype(np.int16)
        rows: list[np.ndarray] = []
        with self._lock:
            if self._used:
                self._api.reset()
            self._used = True
            self._api.external_sink_set_callback_ex(self._config.EXTERNAL_OUTPUT_COMPONENT,
                                                    self._sink(rows, [], []))
            self._api.external_audio_source_write_data(self._config.EXTERNAL_SOURCE_COMPONENT, bytes(samples))
            self._api.external_audio_source_set_eoi(self._config.EXTERNAL_SOURCE_COMPONENT)
            self._api.run()
        values = np.vstack(rows)[0] if rows else np.full(len(self.names), np.nan)
        return {name: float(v) for name, v in zip(self.names, values, strict=True)}

    def reference(self, audio: np.ndarray) -> dict[str, float]:
        """The plain path: ``process_signal``, one openSMILE set-up per clip."""
        table = self.smile.process_signal(np.asarray(audio, dtype=np.float32), SAMPLE_RATE)
        return {k: float(v) for k, v in table.iloc[0].items()}


def _smile() -> Egemaps:
    global _SMILE
    if _SMILE is None:
        _SMILE = Egemaps()
    return _SMILE


def _frame_db(audio: np.ndarray, *, frame: int = 400, hop: int = 160) -> np.ndarray:
    """Level of 25 ms frames every 10 ms, in dBFS."""
    if audio.size < frame:
        audio = np.pad(audio, (0, frame - audio.size))
    n = 1 + (audio.size - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(audio[idx].astype(np.float64) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def _syllables(word: str) -> int:
    """Vowel groups, less a silent final e ("there" 1, "table" 2): a rough English count."""
    word = re.sub(r"[^a-z]", "", word.lower())
    count = len(re.findall(r"[aeiouy]+", word))
    if count > 1 and word.endswith("e") and not word.endswith(("le", "ee")):
        count -= 1
    return max(1, count)


def signal_checks(audio: np.ndarray, levels: np.ndarray | None = None) -> dict[str, float]:
    """Level, clipping and dynamic range: the inputs of :func:`audio_quality`. ``levels``:
    the clip's :func:`_frame_db`, when the caller has it already."""
    levels = _frame_db(audio) if levels is None else levels
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) if audio.size else 0.0
    return {
        "duration_s": audio.size / SAMPLE_RATE,
        "peak_dbfs": 20 * math.log10(max(peak, 1e-10)),
        "rms_dbfs": 20 * math.log10(max(rms, 1e-10)),
        "clipped_fraction": float(np.mean(np.abs(audio) >= 0.999)) if audio.size else 0.0,
        "dynamic_range_db": float(np.percentile(levels, 95) - np.percentile(levels, 10)),
    }


def _active_spans(levels: np.ndarray) -> list[tuple[float, float]]:
    """Runs of frames within :data:`ACTIVE_DB` of the loudest frame (and above -60 dBFS)."""
    active = (levels > levels.max() - ACTIVE_DB) & (levels > -60)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], active.astype(np.int8), [0]))))
    return [(start / 100, end / 100) for start, end in zip(edges[::2], edges[1::2], strict=True)]


def timing_features(audio: np.ndarray, words: Sequence[Word], levels: np.ndarray | None = None) -> dict[str, float]:
    """Pauses, rate and end contour.

    Spans of speech are the ASR words when there are any (``pauses_from_words`` = 1),
    else runs of active 10 ms frames (``pauses_from_words`` = 0). A pause is a gap of at
    least :data:`PAUSE_MIN_S` between spans. The rate needs words (NaN without them).
    """
    out = {"pause_count": math.nan, "pause_total_s": math.nan, "speech_rate_syl_s": math.nan,
           "loudness_end_change_db": math.nan, "pauses_from_words": math.nan}
    levels = _frame_db(audio) if levels is None else levels
    words = [w for w in words if w.end > w.start]
    spans = [(w.start, w.end) for w in words] if words else _active_spans(levels)
    if not spans:
        return out
    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False)]
    gaps = [g for g in gaps if g >= PAUSE_MIN_S]
    out["pause_count"] = float(len(gaps))
    out["pause_total_s"] = float(sum(gaps))
    out["pauses_from_words"] = float(bool(words))
    span = spans[-1][1] - spans[0][0]
    if words and span > 0:
        out["speech_rate_syl_s"] = sum(_syllables(w.text) for w in words) / span
    speech = levels[int(spans[0][0] * 100): int(spans[-1][1] * 100)]
    speech = speech[speech > np.max(levels) - 40] if speech.size else speech
    if speech.size >= 8:
        cut = int(speech.size * 0.75)
        out["loudness_end_change_db"] = float(np.mean(speech[cut:]) - np.mean(speech[:cut]))
    return out


def voice_features(audio: np.ndarray, words: Sequence[Word] = (), *, reference: bool = False) -> dict[str, float]:
    """Every numeric audio feature of one clip (see the module docstring); ``reference``
    takes the plain path (eGeMAPS by :meth:`Egemaps.reference`, frame levels computed by each
    step), the one before, for tests and benchmarks."""
    levels = None if reference else _frame_db(audio)  # once, for the signal checks and the timing features
    features = signal_checks(audio, levels)
    if audio.size >= SAMPLE_RATE // 4:
        smile = _smile()
        egemaps = smile.reference(audio) if reference else smile(audio)
        features.update({f"egemaps_{k}": v for k, v in egemaps.items()})
        if features["egemaps_F0semitoneFrom27.5Hz_sma3nz_amean"] <= 0:  # no voiced frame at all
            features.update({k: math.nan for k in features if "_sma3nz_" in k})
        voiced = (features["egemaps_VoicedSegmentsPerSec"]
                  * features["egemaps_MeanVoicedSegmentLengthSec"])
        features["voiced_fraction"] = float(min(1.0, max(0.0, voiced)))
    else:
        features["voiced_fraction"] = 0.0
    features.update(timing_features(audio, words, levels))
    return features


# -- baseline ------------------------------------------------------------------------


def baseline_zscores(features: pd.DataFrame, speakers: pd.Series | None = None, *,
                     usable: pd.Series | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """z-scores of :data:`CUES` against each speaker's clips, else the whole run's.

    ``usable`` marks the rows that may enter a baseline (audio decoded, not silent).
    Returns the ``z_<cue>`` columns and a ``baseline`` column naming the reference.
    """
    index = features.index
    usable = pd.Series(True, index=index) if usable is None else usable.astype(bool)
    columns = {cue: features.get(col, pd.Series(np.nan, index=index)) for cue, col in CUES.items()}
    values = pd.DataFrame(columns, index=index).astype(float)
    ref = values[usable]
    z = pd.DataFrame(np.nan, index=index, columns=[f"z_{c}" for c in CUES])
    baseline = pd.Series(f"none (fewer than {MIN_BASELINE_CLIPS} usable clips)", index=index)

    def fill(rows: pd.Index, pool: pd.DataFrame, name: str) -> None:
        mean, std = pool.mean(), pool.std(ddof=0).replace(0.0, np.nan)
        z.loc[rows] = ((values.loc[rows] - mean) / std).to_numpy()
        baseline.loc[rows] = name

    if len(ref) >= MIN_BASELINE_CLIPS:
        fill(index, ref, f"all clips of the run ({len(ref)})")
    if speakers is not None:
        known = speakers.notna() & (speakers.astype(str).str.strip() != "")
        for speaker, rows in speakers[known].groupby(speakers[known].astype(str)).groups.items():
            pool = ref.loc[ref.index.intersection(rows)]
            if len(pool) >= MIN_BASELINE_CLIPS:
                fill(pd.Index(rows), pool, f"speaker {speaker} ({len(pool)} clips)")
    return z, baseline


# -- words -----------------------------------------------------------------------------


def level_word(z: float, high: str = "high", low: str = "low") -> str:
    """The threshold table of the module docstring."""
    z = round(z, 1)  # the word agrees with the printed number
    if math.isnan(z) or abs(z) < 0.5:
        return "typical"
    word = high if z > 0 else low
    if abs(z) < 1:
        return f"slightly {word}"
    if abs(z) < 2:
        return word
    return f"very {word}"


def _z(value: float) -> str:
    return f"z={round(value, 1) + 0.0:+.1f}"  # + 0.0 turns -0.0 into +0.0


def describe_voice(row: Mapping[str, float], *, baseline: str = "") -> str:
    """One short objective description of a clip's voice; numbers next to the words."""
    def get(name: str) -> float:
        value = row.get(name, math.nan)
        return math.nan if value is None else float(value)

    semitones = get(CUES["pitch"])
    if math.isnan(semitones):
        return "No voice measurable (too short or no voiced sound)."
    hz = 27.5 * 2 ** (semitones / 12)
    who = "for this speaker" if baseline.startswith("speaker") else "for this set of clips"
    has_z = not math.isnan(get("z_pitch"))
    if not has_z:
        parts = [f"pitch mean {hz:.0f} Hz with a range of {get(CUES['pitch_range']):.1f} semitones",
                 f"loudness {get(CUES['loudness']):.2f} (sone-like units)"]
    else:
        pitch_range = level_word(get("z_pitch_range"), "widely varying", "narrow")
        if pitch_range == "typical":
            pitch_range = "typical range"
        parts = [
            f"pitch {level_word(get('z_pitch'))} {who} ({_z(get('z_pitch'))}, {hz:.0f} Hz), "
            f"{pitch_range} ({_z(get('z_pitch_range'))}, {get(CUES['pitch_range']):.1f} semitones)",
            f"loudness {level_word(get('z_loudness'))} ({_z(get('z_loudness'))})",
        ]
    change = get("loudness_end_change_db")
    if not math.isnan(change) and abs(change) >= END_CHANGE_DB:
        parts[1] += f", {'rising' if change > 0 else 'falling'} at the end ({change:+.1f} dB)"
    pause_text = _pause_text(get("pause_count"), get("pause_total_s"))
    rate = get("speech_rate_syl_s")
    if not math.isnan(rate):
        if has_z:
            word = level_word(get("z_rate"), "fast", "slow").replace("typical", "ordinary pace")
            parts.append(f"speech {word} ({rate:.1f} syllables/s, {_z(get('z_rate'))}) with {pause_text}")
        else:
            parts.append(f"speech at {rate:.1f} syllables/s with {pause_text}")
    elif pause_text:
        parts.append(f"{pause_text} in the sound")
    if has_z:
        parts.append("voice " + _voice_quality(get))
    else:
        parts.append(f"no baseline to compare with (fewer than {MIN_BASELINE_CLIPS} clips)")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _pause_text(count: float, total: float) -> str:
    if math.isnan(count):
        return ""
    if count == 0:
        return "no pauses"
    return f"{int(count)} pause{'s' if count > 1 else ''} ({total:.1f} s)"


def _voice_quality(get) -> str:
    notes = []
    if get("z_hnr") <= -1:
        notes.append(f"breathy or hoarse (HNR {_z(get('z_hnr'))}, {get(CUES['hnr']):.1f} dB)")
    rough = max(get("z_jitter"), get("z_shimmer"))
    if rough >= 1:
        notes.append(f"irregular in period or amplitude (jitter {_z(get('z_jitter'))}, "
                     f"shimmer {_z(get('z_shimmer'))})")
    alpha = get("z_alpha_ratio")
    if alpha >= 1:
        notes.append(f"bright, more high-frequency energy (alpha ratio {_z(alpha)})")
    elif alpha <= -1:
        notes.append(f"dull, little high-frequency energy (alpha ratio {_z(alpha)})")
    return ", ".join(notes) if notes else "quality typical (HNR, jitter, shimmer, tilt within 1 SD)"


def audio_quality(row: Mapping[str, float]) -> tuple[float, str]:
    """A 0-100 usability score of the audio and the reasons it is not 100.

    Silent (peak below -50 dBFS) gives 0; clipping over 1%, a dynamic range under 12 dB
    (steady noise or hum, no gaps between sounds), voiced sound under 10% of the clip and
    clips under 0.5 s each lower the score.
    """
    issues: list[str] = []
    score = 100.0
    if row.get("peak_dbfs", -200.0) < -50:
        return 0.0, f"silent (peak {row.get('peak_dbfs', -200.0):.0f} dBFS)"
    if row.get("duration_s", 0.0) < 0.5:
        score -= 40
        issues.append(f"very short ({row.get('duration_s', 0.0):.2f} s)")
    if row.get("clipped_fraction", 0.0) > 0.01:
        score -= 30
        issues.append(f"clipped ({100 * row['clipped_fraction']:.1f}% of samples)")
    if row.get("dynamic_range_db", 0.0) < 12:
        score -= 50
        issues.append(f"steady noise-like signal (dynamic range {row['dynamic_range_db']:.0f} dB)")
    if row.get("voiced_fraction", 0.0) < 0.1:
        score -= 40
        issues.append(f"little voiced sound ({100 * row.get('voiced_fraction', 0.0):.0f}% voiced)")
    return max(0.0, score), "; ".join(issues)
