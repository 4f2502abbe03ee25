"""Build examples/ravdess-mini/clips from the shared RAVDESS copy (reproducible selection).

Two speech clips per actor (48), emotions rotating so each of the 8 appears 6 times,
strong intensity where the emotion has one, statement 01 ("Kids are talking by the
door"), first repetition; plus the one audio-visual clip. Files are copied unchanged
(16 kHz mono FLAC, and the original mp4).

    python scripts/make_ravdess_mini.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    source = args.data / "ravdess"
    out = ROOT / "examples" / "ravdess-mini" / "clips"
    out.mkdir(parents=True, exist_ok=True)
    for actor in range(1, 25):
        for slot in range(2):
            emotion = (2 * actor + slot) % 8 + 1
            intensity = 1 if emotion == 1 else 2
            name = f"03-01-{emotion:02d}-{intensity:02d}-01-01-{actor:02d}.flac"
            shutil.copyfile(source / "speech_16k" / f"Actor_{actor:02d}" / name, out / name)
    shutil.copyfile(source / "av" / "01-01-01-01-01-01-01.mp4", out / "01-01-01-01-01-01-01.mp4")
    print(f"{len(list(out.iterdir()))} files in {out}")


if __name__ == "__main__":
    main()
