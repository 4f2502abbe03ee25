"""Speed of the descriptor extractors on RAVDESS clips (2 cores, CPU only).

Real-time factor (RTF = processing seconds / audio seconds) of decoding, audio features
(openSMILE eGeMAPSv02 + timing features) and ASR (faster-whisper tiny.en, int8); face
analysis in milliseconds per analysed frame; and the throughput of ``describe`` with 1 and
2 worker processes (no cache, model loading included). Wall time and CPU time are both
given: on a shared machine the wall clock also measures the neighbours, CPU time does not.

ASR is timed with both encoder windows, clip by clip in turn so both meet the same load:
``full`` (Whisper's 30 s, the transcripts of asr-1: the baseline) and ``fit`` (the default,
see :mod:`modsab.descriptors.asr`); the new / old ratios, the word error of each against
the RAVDESS statement and how many transcripts are the same are printed too
(``eval_asr_window.py`` is the larger quality check). Audio features are timed the same way
with openSMILE set up once per process (the default) and once per clip (``process_signal``,
the reference; identical numbers).

Goals (issue 5, issue 15): audio features <= 0.02 RTF, ASR <= 0.2 RTF, face <= 15 ms per frame.

    python benchmarks/bench_describe.py [--clips 12] [--data PATH] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from modsab.data.loaders.ravdess import RAVDESS_STATEMENTS  # noqa: E402
from modsab.descriptors import DescribeConfig, MediaItem, describe  # noqa: E402
from modsab.descriptors.asr import Transcriber, word_errors  # noqa: E402
from modsab.descriptors.face import FaceAnalyzer  # noqa: E402
from modsab.descriptors.media import SAMPLE_RATE, load_audio, load_frames  # noqa: E402
from modsab.descriptors.voice import voice_features  # noqa: E402


def find_data(given: str | None) -> Path:
    candidates = [Path(given)] if given else []
    if os.environ.get("MODSAB_DATA"):
        candidates.append(Path(os.environ["MODSAB_DATA"]))
    candidates += [ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"]
    for path in candidates:
        if (path / "ravdess").is_dir():
            return path / "ravdess"
    sys.exit("RAVDESS not found: pass --data or set MODSAB_DATA")


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def timed(function, inputs):
    """Run ``function`` over ``inputs``; return outputs and the wall / CPU seconds."""
    with Clock() as clock:
        outputs = [function(x) for x in inputs]
    return outputs, clock


def speech_clips(description: str, default_clips: int) -> tuple[argparse.Namespace, list[Path]]:
    """The command line (--clips, --data, --json) and that many RAVDESS speech clips, spread
    evenly over the 1,440 (so over actors, emotions and both statements)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=default_clips, help="RAVDESS speech clips to use")
    parser.add_argument("--data", help="folder holding ravdess/ (default: MODSAB_DATA or ../shared/data)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    clips = sorted((find_data(args.data) / "speech_16k").glob("Actor_*/*.flac"))
    return args, clips[:: max(1, len(clips) // args.clips)][: args.clips]


def statement(path: Path) -> str:
    """The words a RAVDESS clip says (its file name's statement field)."""
    return RAVDESS_STATEMENTS[path.stem.split("-")[4]]


def wer(refs: list[str], hyps: list[str]) -> float:
    """Word error rate over clips: edit distance / reference words (:func:`word_errors`)."""
    counts = [word_errors(ref, hyp) for ref, hyp in zip(refs, hyps, strict=True)]
    return sum(e for e, _ in counts) / sum(n for _, n in counts)


def main() -> None:
    args, clips = speech_clips(__doc__, 12)
    video = find_data(args.data) / "av" / "01-01-01-01-01-01-01.mp4"
    load_before = os.getloadavg()[0]
    results: dict[str, object] = {"clips": len(clips), "cores": os.cpu_count()}

    audios, decode = timed(load_audio, clips)
    seconds = sum(a.size for a in audios) / SAMPLE_RATE
    results["audio_seconds"] = round(seconds, 1)
    results["decode_rtf"] = {"wall": decode.wall / seconds, "cpu": decode.cpu / seconds}

    transcribers = {w: Transcriber(threads=os.cpu_count() or 1, window=w) for w in ("full", "fit")}
    by_window: dict[str, list] = {w: [] for w in transcribers}
    clocks = {w: [0.0, 0.0] for w in transcribers}
    for transcriber in transcribers.values():
        transcriber(audios[0])  # load and warm up
    for audio in audios:  # in turn, so both windows meet the same load
        for window, transcriber in transcribers.items():
            with Clock() as clock:
                by_window[window].append(transcriber(audio))
            clocks[window][0] += clock.wall
            clocks[window][1] += clock.cpu
    transcripts = by_window["fit"]
    for window, (wall, cpu) in clocks.items():
        results[f"asr_rtf_{window}"] = {"wall": wall / seconds, "cpu": cpu / seconds}
    results["asr_rtf"] = results["asr_rtf_fit"]
    results["asr_fit_over_full"] = {k: results["asr_rtf_fit"][k] / results["asr_rtf_full"][k] for k in ("wall", "cpu")}
    results["asr_same_transcripts"] = sum(a.text == b.text for a, b in zip(*by_window.values(), strict=True))
    results["asr_wer"] = {w: wer([statement(p) for p in clips], [t.text for t in ts])
                          for w, ts in by_window.items()}

    voice_features(audios[0])  # warm up openSMILE
    feature_clocks = {"reference": [0.0, 0.0], "fast": [0.0, 0.0]}
    identical = 0
    for audio, transcript in zip(audios, transcripts, strict=True):  # in turn, as for ASR
        out = {}
        for path, clock_sum in feature_clocks.items():
            with Clock() as clock:
                out[path] = voice_features(audio, transcript.words, reference=path == "reference")
            clock_sum[0] += clock.wall
            clock_sum[1] += clock.cpu
        identical += json.dumps(out["fast"]) == json.dumps(out["reference"])  # NaN-safe equality
    (wall, cpu), (ref_wall, ref_cpu) = feature_clocks["fast"], feature_clocks["reference"]
    results["audio_features_rtf"] = {"wall": wall / seconds, "cpu": cpu / seconds}
    results["audio_features_rtf_reference"] = {"wall": ref_wall / seconds, "cpu": ref_cpu / seconds}
    results["audio_features_fast_over_reference"] = {"wall": wall / ref_wall, "cpu": cpu / ref_cpu}
    results["audio_features_identical"] = identical

    frames = load_frames(video, fps=5.0)
    with Clock() as video_decode:
        frames = load_frames(video, fps=5.0)
    analyzer = FaceAnalyzer()
    analyzer(frames)  # warm up
    _, face = timed(analyzer, [frames] * 3)
    analysed = 3 * len(frames)
    results["video_decode_ms_per_analysed_frame"] = 1000 * video_decode.wall / len(frames)
    results["face_ms_per_frame"] = {"wall": 1000 * face.wall / analysed, "cpu": 1000 * face.cpu / analysed}

    items = [MediaItem(p.stem, audio_path=p, speaker=p.parent.name) for p in clips]
    items.append(MediaItem("av", video_path=video, speaker="Actor_01"))
    throughput = {}
    for workers, window in ((1, "full"), (1, "fit"), (2, "fit")):
        with Clock() as run:
            table = describe(items, config=DescribeConfig(asr_window=window), workers=workers, cache=None)
        assert table["error"].isna().all(), table["error"].dropna().tolist()
        throughput[f"{workers}_workers_{window}"] = {
            "seconds": run.wall,
            "items_per_s": len(items) / run.wall,
            "media_seconds_per_s": (seconds + frames.duration) / run.wall,
        }
    results["throughput"] = throughput
    results["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}

    goals = {"audio_features_rtf": 0.02, "asr_rtf": 0.2, "face_ms_per_frame": 15.0,
             "audio_features_rtf_reference": 0.02, "asr_rtf_full": 0.2}
    print(f"{len(clips)} RAVDESS clips, {seconds:.1f} s of audio; 1-min load average "
          f"{load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'measure':<36}{'wall':>10}{'cpu':>10}{'goal':>8}")
    for name in ("decode_rtf", "audio_features_rtf_reference", "audio_features_rtf", "asr_rtf_full", "asr_rtf",
                 "face_ms_per_frame"):
        value = results[name]
        print(f"{name:<36}{value['wall']:>10.3f}{value['cpu']:>10.3f}{goals.get(name, float('nan')):>8}")
    ratio = results["audio_features_fast_over_reference"]
    print(f"{'audio features fast / reference':<36}{ratio['wall']:>10.2f}{ratio['cpu']:>10.2f}"
          f"   identical in {results['audio_features_identical']} of {len(clips)} clips")
    ratio = results["asr_fit_over_full"]
    print(f"{'asr fit / full (new / old)':<36}{ratio['wall']:>10.2f}{ratio['cpu']:>10.2f}")
    print(f"ASR word error vs the RAVDESS statements: full {results['asr_wer']['full']:.4f}, "
          f"fit {results['asr_wer']['fit']:.4f}; same transcript in {results['asr_same_transcripts']} "
          f"of {len(clips)} clips")
    print(f"{'video_decode_ms_per_analysed_frame':<36}{results['video_decode_ms_per_analysed_frame']:>10.1f}")
    for name, value in throughput.items():
        print(f"describe, {name}: {value['seconds']:.1f} s, {value['items_per_s']:.2f} items/s, "
              f"{value['media_seconds_per_s']:.1f} media s per s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
