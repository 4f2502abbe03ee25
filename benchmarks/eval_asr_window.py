"""Word error and quality of the ASR encoder windows (``fit`` against Whisper's ``full`` 30 s).

The ``fit`` window changes transcripts a little; this is the check that it does not make
them worse. Known words: RAVDESS speech clips (every clip says one of two fixed
statements, see PROVENANCE.md) and espeak-ng speech of fixed sentences. For each window:
word error rate (WER), how many transcripts equal the ``full`` ones, the distribution of
the text quality score (:func:`modsab.descriptors.asr.transcript_quality`) and of the
mean word probability, and the CPU / wall real-time factor, all in the same run.

    python benchmarks/eval_asr_window.py [--clips 240] [--data PATH] [--json out.json]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_describe import speech_clips, statement  # noqa: E402

from modsab.descriptors.asr import ASR_WINDOWS, Transcriber, transcript_quality, word_errors  # noqa: E402
from modsab.descriptors.media import SAMPLE_RATE, load_audio  # noqa: E402

SENTENCES = (
    "Please open the window and close the green door before dinner.",
    "The small boat drifted slowly across the quiet lake.",
    "My brother bought seven apples at the market on Monday.",
    "Turn left at the station and walk to the old bridge.",
    "She wrote a long letter to her friend in the city.",
    "The children played football in the park after school.",
    "We need more paper for the printer in the office.",
    "A cold wind blew through the empty street at night.",
    "He forgot his keys on the kitchen table this morning.",
    "The train to the north leaves at half past nine.",
    "Put the red box on the shelf next to the books.",
    "They painted the fence white during the summer holiday.",
    "The doctor told him to drink water and rest.",
    "Our neighbour grows tomatoes and beans in the garden.",
    "The museum opens early on the first day of the month.",
    "I heard a dog barking behind the wooden gate.",
    "The teacher asked the students to read the second chapter.",
    "Fresh bread smells wonderful when it comes out of the oven.",
    "The phone rang twice before anyone answered it.",
    "Bring a warm coat because the mountain air is cold.",
)


def espeak_clips(folder: Path) -> list[tuple[np.ndarray, str]]:
    binary = shutil.which("espeak-ng")
    if binary is None:
        print("espeak-ng not installed: the espeak check is skipped")
        return []
    out = []
    for i, text in enumerate(SENTENCES):
        voice = ("en", "en-us", "en+f3", "en-us+m3")[i % 4]
        path = folder / f"espeak{i}.wav"
        subprocess.run([binary, "-v", voice, "-s", "150", "-w", str(path), text], check=True, capture_output=True)
        out.append((load_audio(path), text))
    return out


def evaluate(transcriber: Transcriber, clips: list[tuple[np.ndarray, str]]) -> dict[str, object]:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    transcripts = [transcriber(audio) for audio, _ in clips]
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    seconds = sum(audio.size for audio, _ in clips) / SAMPLE_RATE
    counts = [word_errors(ref, t.text) for (_, ref), t in zip(clips, transcripts, strict=True)]
    errors, n_words = sum(e for e, _ in counts), sum(n for _, n in counts)
    quality = np.array([transcript_quality(t)[0] for t in transcripts])
    word_p = np.array([np.mean([w.probability for w in t.words]) if t.words else np.nan for t in transcripts])
    return {
        "texts": [t.text for t in transcripts],
        "wer": errors / n_words,
        "wrong_clips": sum(e > 0 for e, _ in counts),
        "quality_quantiles_10_25_50_75_90": np.percentile(quality, [10, 25, 50, 75, 90]).round(1).tolist(),
        "quality_mean": float(quality.mean()),
        "word_probability_mean": float(np.nanmean(word_p)),
        "rtf_cpu": cpu / seconds,
        "rtf_wall": wall / seconds,
    }


def main() -> None:
    args, paths = speech_clips(__doc__, 240)
    sets = {"ravdess": [(load_audio(p), statement(p)) for p in paths]}
    with tempfile.TemporaryDirectory() as tmp:
        sets["espeak"] = espeak_clips(Path(tmp))
    load_before = os.getloadavg()[0]
    transcribers = {window: Transcriber(threads=os.cpu_count() or 1, window=window) for window in ASR_WINDOWS}
    for transcriber in transcribers.values():
        transcriber(sets["ravdess"][0][0])  # load and warm up
    results: dict[str, dict[str, object]] = {}
    for name, clips in sets.items():
        if clips:
            results[name] = {window: evaluate(t, clips) for window, t in transcribers.items()}
    load_after = os.getloadavg()[0]
    print(f"1-min load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} cores")
    print(f"{'set':<9}{'window':<7}{'clips':>6}{'WER':>8}{'wrong':>6}{'same':>6}{'q mean':>8}"
          f"{'p mean':>8}{'cpu RTF':>9}{'wall RTF':>9}  quality p10/25/50/75/90")
    for name, by_window in results.items():
        full = by_window["full"]
        for window, r in by_window.items():
            same = sum(a == b for a, b in zip(r["texts"], full["texts"], strict=True))
            r["same_text_as_full"] = same
            print(f"{name:<9}{window:<7}{len(r['texts']):>6}{r['wer']:>8.4f}{r['wrong_clips']:>6}{same:>6}"
                  f"{r['quality_mean']:>8.1f}{r['word_probability_mean']:>8.4f}{r['rtf_cpu']:>9.3f}"
                  f"{r['rtf_wall']:>9.3f}  {r['quality_quantiles_10_25_50_75_90']}")
        print(f"{name}: fit / full CPU time {by_window['fit']['rtf_cpu'] / full['rtf_cpu']:.2f}, "
              f"wall {by_window['fit']['rtf_wall'] / full['rtf_wall']:.2f}")
        for a, b in zip(by_window["fit"]["texts"], full["texts"], strict=True):
            if a != b:
                print(f"  full: {b!r}  fit: {a!r}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_average": [load_before, load_after], **results}, indent=2))


if __name__ == "__main__":
    main()
