"""Speed of the descriptor extractors on RAVDESS clips (2 cores, CPU only).

Real-time factor (RTF = processing seconds / audio seconds) of decoding, audio features
(openSMILE eGeMAPSv02 + timing features) and ASR (faster-whisper tiny.en, int8); face
analysis in milliseconds per analysed frame; and the throughput of ``describe`` with 1 and
2 worker processes (no cache, model loading included). Wall time and CPU time are both
given: on a shared machine the wall clock also measures the neighbours, CPU time does not.

Goals (issue 5): audio features <= 0.02 RTF, ASR <= 0.2 RTF, face <= 15 ms per frame.

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

from modsab.descriptors import DescribeConfig, MediaItem, describe  # noqa: E402
from modsab.descriptors.asr import Transcriber  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=12, help="RAVDESS speech clips to time")
    parser.add_argument("--data", help="folder holding ravdess/ (default: MODSAB_DATA or ../shared/data)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    ravdess = find_data(args.data)
    clips = sorted((ravdess / "speech_16k").glob("Actor_*/*.flac"))[:: max(1, 1440 // args.clips)][: args.clips]
    video = ravdess / "av" / "01-01-01-01-01-01-01.mp4"
    load_before = os.getloadavg()[0]
    results: dict[str, object] = {"clips": len(clips), "cores": os.cpu_count()}

    audios, decode = timed(load_audio, clips)
    seconds = sum(a.size for a in audios) / SAMPLE_RATE
    results["audio_seconds"] = round(seconds, 1)
    results["decode_rtf"] = {"wall": decode.wall / seconds, "cpu": decode.cpu / seconds}

    transcriber = Transcriber(threads=os.cpu_count() or 1)
    transcriber(audios[0])  # load and warm up
    transcripts, asr = timed(transcriber, audios)
    results["asr_rtf"] = {"wall": asr.wall / seconds, "cpu": asr.cpu / seconds}

    voice_features(audios[0])  # warm up openSMILE
    pairs = list(zip(audios, [t.words for t in transcripts], strict=True))
    _, features = timed(lambda pair: voice_features(*pair), pairs)
    results["audio_features_rtf"] = {"wall": features.wall / seconds, "cpu": features.cpu / seconds}

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
    for workers in (1, 2):
        with Clock() as run:
            table = describe(items, config=DescribeConfig(), workers=workers, cache=None)
        assert table["error"].isna().all(), table["error"].dropna().tolist()
        throughput[f"{workers}_workers"] = {
            "seconds": run.wall,
            "items_per_s": len(items) / run.wall,
            "media_seconds_per_s": (seconds + frames.duration) / run.wall,
        }
    results["throughput"] = throughput
    results["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}

    goals = {"audio_features_rtf": 0.02, "asr_rtf": 0.2, "face_ms_per_frame": 15.0}
    print(f"{len(clips)} RAVDESS clips, {seconds:.1f} s of audio; 1-min load average "
          f"{load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'measure':<36}{'wall':>10}{'cpu':>10}{'goal':>8}")
    for name in ("decode_rtf", "audio_features_rtf", "asr_rtf", "face_ms_per_frame"):
        value = results[name]
        print(f"{name:<36}{value['wall']:>10.3f}{value['cpu']:>10.3f}{goals.get(name, float('nan')):>8}")
    print(f"{'video_decode_ms_per_analysed_frame':<36}{results['video_decode_ms_per_analysed_frame']:>10.1f}")
    for name, value in throughput.items():
        print(f"describe, {name}: {value['seconds']:.1f} s, {value['items_per_s']:.2f} items/s, "
              f"{value['media_seconds_per_s']:.1f} media s per s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
